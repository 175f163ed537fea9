//! The file system as the durable engines use it — the queue's segments, `groups.log` and
//! `queue.json`, the store's write-ahead log and database file — behind two narrow traits,
//! so that a test can put a disk that fails underneath them:
//! - [`Disk`]: opening files and the directory operations (create, list, rename, remove,
//!   sync a directory);
//! - [`DiskFile`]: one open file: positioned reads and writes, `sync_data`, `set_len`.
//!
//! Two implementations: [`OsDisk`], the real one (`std::fs`; its file is `std::fs::File`
//! itself), and [`FaultDisk`] (in memory, for tests), which keeps per file what is synced
//! and what is only written, and on demand cuts the power (every write not yet synced is
//! dropped), fails an fsync with `EIO`, returns short reads or flips bits.
//!
//! The engines are generic over [`Disk`] with [`OsDisk`] as the default type, so the real
//! disk costs what direct `std::fs` calls cost: no `dyn` call, no extra allocation.
//!
//! # What is durable when (the contract [`FaultDisk`] enforces)
//!
//! | operation | survives a power cut once |
//! |---|---|
//! | [`DiskFile::write_at`], [`DiskFile::set_len`] | a later [`DiskFile::sync_data`] of that file returned `Ok` |
//! | a new file ([`Open::Create`], [`Open::Truncate`]), [`Disk::rename`], [`Disk::remove_file`], [`Disk::create_dir_all`] | a later [`Disk::sync_dir`] of the directory holding the name returned `Ok` |
//! | anything, after `sync_data` failed | never, for the writes that sync was to cover |
//!
//! The last row is the Linux behaviour behind PostgreSQL's "fsyncgate": a failed
//! `fsync` may leave the unsynced pages marked clean, so a second `fsync` succeeds without
//! them. A caller whose sync failed must not acknowledge, nor retry and then acknowledge:
//! it must stop taking writes until it is restarted and has re-read what is on disk — and
//! re-read it from the disk, not from those pages, which a restarted process would
//! otherwise still be served: [`DiskFile::forget_cached`] at open.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

mod fault;

pub use fault::{FaultDisk, FaultFile};

/// How [`Disk::open`] opens a file; always for reading and writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// An existing file (`NotFound` otherwise).
    Existing,
    /// Created empty when missing, kept as it is otherwise.
    Create,
    /// Created when missing, emptied otherwise.
    Truncate,
}

/// A file system: what the engines ask of one besides reading and writing open files.
pub trait Disk: Clone + Send + Sync + 'static {
    type File: DiskFile;

    /// Opens `path` for reading and writing. A file created here survives a power cut
    /// only after [`Disk::sync_dir`] of its directory.
    fn open(&self, path: &Path, how: Open) -> io::Result<Self::File>;

    /// The whole contents of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.open(path, Open::Existing)?;
        let mut buf = vec![0; file.size()? as usize];
        file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// The names in directory `dir` (files and directories).
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;

    /// Creates `dir` and its missing parents; each new one survives a power cut only
    /// after [`Disk::sync_dir`] of its parent.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Renames a file, replacing `to` if it exists; or a directory, with what it holds,
    /// to a name not in use. Durable once the directory holding `to` is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes an empty directory; durable once its parent is synced.
    fn remove_dir(&self, dir: &Path) -> io::Result<()>;

    /// Makes the names in `dir` (files created, renamed or removed there) durable.
    /// Syncing a file makes its contents durable, not its name.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One open file of a [`Disk`].
pub trait DiskFile: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `pos`; fewer (a short read) is not an error.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;

    /// Writes up to `buf.len()` bytes at `pos`, extending the file if needed.
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize>;

    /// Makes what was written (and the file's size) durable (`fdatasync`). After an
    /// error, the writes it was to cover may be lost even if a later sync succeeds.
    fn sync_data(&self) -> io::Result<()>;

    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// The file's size in bytes.
    fn size(&self) -> io::Result<u64>;

    /// Drops the copy of the file the page cache holds, except what is still to be
    /// written, so that later reads come from the device. Call it when opening a file to
    /// recover from it: after a failed sync the kernel keeps the pages it could not write,
    /// marked clean, and a process reading them would build on data the disk does not
    /// have (and never will).
    fn forget_cached(&self) -> io::Result<()>;

    /// Takes an exclusive lock on the file, held until this handle is dropped;
    /// `WouldBlock` when another handle holds it.
    fn try_lock_exclusive(&self) -> io::Result<()>;

    /// Fills `buf` from `pos` only if that needs no wait for the device (the page cache
    /// holds the bytes): `Ok(false)` when it would wait, or read short.
    fn read_cached(&self, buf: &mut [u8], pos: u64) -> io::Result<bool>;

    /// Reads exactly `buf.len()` bytes at `pos`, however many reads it takes.
    fn read_exact_at(&self, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, pos) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file ends before")),
                Ok(n) => {
                    buf = &mut buf[n..];
                    pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `pos`, however many writes it takes.
    fn write_all_at(&self, mut buf: &[u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, pos) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the write took nothing")),
                Ok(n) => {
                    buf = &buf[n..];
                    pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The real file system, through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsDisk;

impl Disk for OsDisk {
    type File = File;

    fn open(&self, path: &Path, how: Open) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = OpenOptions::new();
        // Data files are the owner's alone, whatever the umask (applies when created).
        options.read(true).write(true).mode(0o600);
        match how {
            Open::Existing => {}
            Open::Create => {
                options.create(true).truncate(false);
            }
            Open::Truncate => {
                options.create(true).truncate(true);
            }
        }
        options.open(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        crate::fs::sync_dir(dir)
    }
}

impl DiskFile for File {
    #[inline]
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, pos)
    }

    #[inline]
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        FileExt::write_at(self, buf, pos)
    }

    #[inline]
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    /// `posix_fadvise(POSIX_FADV_DONTNEED)`: clean pages leave the page cache (dirty ones
    /// stay; pages whose writeback failed are clean).
    fn forget_cached(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: an advice on a descriptor this `File` owns; no memory is passed.
        match unsafe { libc::posix_fadvise(self.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) } {
            0 => Ok(()),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    fn try_lock_exclusive(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this `File` owns; no memory is passed.
        if unsafe { libc::flock(self.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `preadv2` with `RWF_NOWAIT`, which never waits for the disk.
    fn read_cached(&self, buf: &mut [u8], pos: u64) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: `iov` points at `buf`, which lives and is `buf.len()` bytes long for the
        // call.
        let n = unsafe { libc::preadv2(self.as_raw_fd(), &iov, 1, pos as libc::off_t, libc::RWF_NOWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(false),
                _ => Err(e),
            };
        }
        Ok(n as usize == buf.len())
    }

    #[inline]
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, pos)
    }

    #[inline]
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, pos)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::io;

    use super::{Disk, DiskFile, Open, OsDisk};

    #[test]
    fn the_os_disk_opens_reads_writes_renames_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let disk = OsDisk;
        let sub = dir.path().join("a/b");
        disk.create_dir_all(&sub).unwrap();
        let path = sub.join("f");
        assert_eq!(
            disk.open(&path, Open::Existing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let f = disk.open(&path, Open::Create).unwrap();
        f.write_all_at(b"hello", 3).unwrap();
        f.sync_data().unwrap();
        assert_eq!(f.size().unwrap(), 8);
        f.forget_cached().unwrap();
        assert_eq!(disk.read(&path).unwrap(), b"\0\0\0hello");
        let mut buf = [0u8; 5];
        f.read_exact_at(&mut buf, 3).unwrap();
        assert_eq!(&buf, b"hello");
        // Just written: in the page cache.
        assert!(f.read_cached(&mut buf, 3).unwrap());
        f.try_lock_exclusive().unwrap();
        let other = disk.open(&path, Open::Create).unwrap();
        assert_eq!(
            other.try_lock_exclusive().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(f);
        other.try_lock_exclusive().unwrap();
        disk.rename(&path, &sub.join("g")).unwrap();
        disk.sync_dir(&sub).unwrap();
        assert_eq!(disk.list(&sub).unwrap(), [OsString::from("g")]);
        assert_eq!(disk.open(&sub.join("g"), Open::Truncate).unwrap().size().unwrap(), 0);
        disk.remove_file(&sub.join("g")).unwrap();
        assert!(disk.list(&sub).unwrap().is_empty());
        disk.rename(&sub, &dir.path().join("a/c")).unwrap();
        disk.remove_dir(&dir.path().join("a/c")).unwrap();
        assert!(disk.list(&dir.path().join("a")).unwrap().is_empty());
    }
}
