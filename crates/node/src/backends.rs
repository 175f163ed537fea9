//! The queue and store implementations a node runs on. A node started without them
//! opens the embedded engines under its state dir; a test (the conformance suite) or a
//! cluster node passes its own.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use strata_manifest::Manifest;
use strata_queue::{QueueBackend, Queues};
use strata_store::{Store, StoreBackend};

/// The durable parts of a node: its queues and its store.
#[derive(Clone)]
pub struct Backends {
    pub queues: Arc<dyn QueueBackend>,
    pub store: Arc<dyn StoreBackend>,
}

impl Backends {
    /// The embedded engines under `state_dir` (`queues/`, `store/`), with the manifest's
    /// declared queues created. Blocking: recovery reads the files.
    pub fn embedded(state_dir: &Path, manifest: &Manifest) -> Result<Backends> {
        let queues = Queues::open(&state_dir.join("queues"), &manifest.queues).context("open the queues")?;
        let store = Store::open(&state_dir.join("store")).context("open the store")?;
        Ok(Backends {
            queues: Arc::new(queues),
            store: Arc::new(store),
        })
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
