//! The checks of the store's settings (`store`).

use super::*;
use crate::StoreSpec;

/// Largest blob a node may be allowed: 16 TiB.
const MAX_BLOB_BYTES: u64 = 1 << 44;

pub(super) fn check_store(store: &StoreSpec, path: &FieldPath, p: &mut Problems) {
    p.check(within(
        path.key("max_blob_bytes"),
        store.max_blob_bytes,
        1,
        MAX_BLOB_BYTES,
        "bytes",
    ));
}
