//! Timer firings claimed once per cluster: every node runs every app, so every node's
//! timer task reaches each firing; before posting it, a node creates the key
//! `APP.FUNCTION.SCHEDULED_MS` in the firings bucket. A create succeeds only when the key
//! does not exist (JetStream's per-subject sequence check), so exactly one node wins and
//! fires; the others skip. Keys age out after [`FIRINGS_TTL`], long after every node has
//! reached that firing. Every node computes the same `SCHEDULED_MS` because schedules
//! are wall-clock times in cluster mode (intervals aligned on the Unix epoch).
//!
//! A node that cannot reach NATS within [`CLAIM_TIMEOUT`] does not fire: at most once,
//! never twice (a create that timed out may still have landed, and then nobody fires).

use std::time::Duration;

use anyhow::{anyhow, Result};
use async_nats::jetstream::kv;

/// How long a claim is kept: far longer than nodes' clocks or timer tasks disagree.
pub const FIRINGS_TTL: Duration = Duration::from_secs(300);
/// How long a node waits for its claim to be answered before giving the firing up.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);

/// One app's timer firings in the cluster's firings bucket.
#[derive(Clone)]
pub struct Firings {
    store: kv::Store,
    app: String,
    node: String,
}

impl Firings {
    /// Claims in `store` (`Nats::firings`) for `app`, as node `node`.
    pub fn new(store: kv::Store, app: &str, node: &str) -> Firings {
        Firings {
            store,
            app: app.to_string(),
            node: node.to_string(),
        }
    }

    /// Ok(true): this node fires `function`'s firing of `scheduled_ms`; Ok(false):
    /// another node claimed it; Err: NATS did not answer, so nobody here fires it.
    pub async fn claim(&self, function: &str, scheduled_ms: u64) -> Result<bool> {
        let key = format!("{}.{function}.{scheduled_ms}", self.app);
        let create = self.store.create(&key, self.node.clone().into());
        match tokio::time::timeout(CLAIM_TIMEOUT, create).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Ok(Err(e)) => Err(anyhow!("claim {key} in the cluster: {e}")),
            Err(_) => Err(anyhow!(
                "claim {key} in the cluster: no answer from NATS within {CLAIM_TIMEOUT:?}"
            )),
        }
    }
}
