//! The database file on the store's [`Disk`]: [`open`] opens `store.redb` there, locked
//! against a second opener, with redb reading and writing it through [`DbFile`] (redb's
//! `StorageBackend` over a [`DiskFile`]). On the real disk this makes the calls redb's
//! own file backend makes (`pread`, `pwrite`, `fdatasync`, `flock`); on a test's
//! fault-injecting disk, a power cut or a failed sync reaches the checkpoints too.

use std::io;
use std::path::Path;

use redb::{Database, StorageBackend};
use strata_os::disk::{Disk, DiskFile, Open};

use crate::record::db_err;
use crate::StoreError;

/// redb's storage on a [`DiskFile`].
pub(crate) struct DbFile<F>(F);

impl<F> std::fmt::Debug for DbFile<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbFile")
    }
}

impl<F: DiskFile> StorageBackend for DbFile<F> {
    fn len(&self) -> io::Result<u64> {
        self.0.size()
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.0.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }
}

/// Opens (creating) the database at `path` on `disk` with a page cache of `cache_bytes`;
/// refused when another opener holds it.
pub(crate) fn open<D: Disk>(disk: &D, path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let io_err = |e: io::Error| StoreError::Io(format!("open {}: {e}", path.display()));
    let file = disk.open(path, Open::Create).map_err(io_err)?;
    match file.try_lock_exclusive() {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            return Err(StoreError::Io(format!(
                "{} is already open (by this process or another one)",
                path.parent().unwrap_or(path).display()
            )))
        }
        Err(e) => return Err(io_err(e)),
    }
    // What the disk holds, not pages a failed sync of an earlier run left in the cache:
    // redb would build on them, and a power cut later would leave it corrupt.
    file.forget_cached().map_err(io_err)?;
    redb::Builder::new()
        .set_cache_size(cache_bytes)
        .create_with_backend(DbFile(file))
        .map_err(db_err)
}
