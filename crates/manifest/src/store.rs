//! The node's durable store (`store`, see docs/state.md): its limits.

use serde::{Deserialize, Serialize};

/// Every field may be left out; [`Default`] holds the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSpec {
    /// Largest blob body accepted. An upload that goes past it is refused (413) while it
    /// streams, and nothing of it is kept.
    pub max_blob_bytes: u64,
}

impl Default for StoreSpec {
    fn default() -> Self {
        StoreSpec {
            max_blob_bytes: 5 << 30,
        }
    }
}
