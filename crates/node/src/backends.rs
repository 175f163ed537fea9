//! The queue and store implementations a node runs on. A node started without them
//! opens the embedded engines under its state dir; a test (the conformance suite) or a
//! cluster node passes its own.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use strata_manifest::Manifest;
use strata_queue::{QueueBackend, Queues, QueuesConfig};
use strata_store::{FailedStore, Store, StoreBackend, StoreConfig};

/// The durable parts of a node: its queues and its store.
#[derive(Clone)]
pub struct Backends {
    pub queues: Arc<dyn QueueBackend>,
    pub store: Arc<dyn StoreBackend>,
}

impl Backends {
    /// The embedded engines under `state_dir` (`queues/`, `store/`), with the manifest's
    /// declared queues created and its bounds (`queue_limits`, `store`) applied. Blocking:
    /// recovery reads the files. A queue or a store
    /// whose files cannot be opened does not stop the node: it is out of service with
    /// the reason (queue calls answer 503, `strata queues` lists it; the store answers
    /// 503 and `ps` says why), and everything else serves.
    pub fn embedded(state_dir: &Path, manifest: &Manifest) -> Result<Backends> {
        let queues = embedded_queues(state_dir, manifest)?;
        let store_dir = state_dir.join("store");
        let store_config = StoreConfig {
            max_blob_bytes: manifest.store.max_blob_bytes,
            ..StoreConfig::default()
        };
        // redb has been seen to panic on a truncated file: a panic is a failure too.
        let opened = std::panic::catch_unwind(|| Store::open_with(&store_dir, store_config));
        let store: Arc<dyn StoreBackend> = match opened {
            Ok(Ok(store)) => Arc::new(store),
            Ok(Err(e)) => failed_store(format!("{} could not be opened: {e}", store_dir.display())),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                failed_store(format!("{} could not be opened: {what}", store_dir.display()))
            }
        };
        Ok(Backends { queues, store })
    }

    /// Declares the manifest's queues on backends opened elsewhere.
    pub async fn declare(&self, manifest: &Manifest) -> Result<()> {
        for (name, spec) in &manifest.queues {
            self.queues
                .create(name, spec.clone())
                .await
                .with_context(|| format!("declare queue {name:?}"))?;
        }
        Ok(())
    }

    /// Stops the queues and the store after what they were given is durable. Blocking.
    pub fn close(&self) {
        self.queues.close();
        self.store.close();
    }
}

fn embedded_queues(state_dir: &Path, manifest: &Manifest) -> Result<Arc<dyn QueueBackend>> {
    let queues_config = QueuesConfig {
        limits: manifest.queue_limits.clone(),
        ..QueuesConfig::default()
    };
    let queues =
        Queues::open_with(&state_dir.join("queues"), &manifest.queues, queues_config).context("open the queues")?;
    Ok(Arc::new(queues))
}

fn failed_store(reason: String) -> Arc<dyn StoreBackend> {
    tracing::error!("the store is out of service: {reason}");
    Arc::new(FailedStore::new(reason))
}
