//! A [`Disk`] that reads the real files and never changes them: repair runs the queue's
//! own recovery (`segment::recover`) on it, so it reads exactly what a node would, while
//! whatever recovery writes (a torn tail zeroed, a leftover prepared segment removed)
//! stays in memory. Files are opened read-only; a change to one is kept in pages beside
//! it and read back; names created, renamed or removed are forgotten.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use strata_os::disk::{Disk, DiskFile, Open};

const PAGE: u64 = 4096;

/// The real file system, read-only, with changes kept in memory.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReadOnlyDisk;

/// A real file opened read-only (or none, for one created here), and the changes made
/// to it.
pub(crate) struct ReadOnlyFile {
    base: Option<File>,
    changes: Mutex<Changes>,
}

struct Changes {
    /// Pages written, whole, by index.
    pages: HashMap<u64, Vec<u8>>,
    len: u64,
    /// Bytes of the real file still seen where no page was written (less than its size
    /// after a `set_len` that cut it).
    base_len: u64,
}

impl ReadOnlyFile {
    fn new(base: Option<File>) -> io::Result<ReadOnlyFile> {
        let len = match &base {
            Some(f) => f.metadata()?.len(),
            None => 0,
        };
        Ok(ReadOnlyFile {
            base,
            changes: Mutex::new(Changes {
                pages: HashMap::new(),
                len,
                base_len: len,
            }),
        })
    }

    fn changes(&self) -> std::sync::MutexGuard<'_, Changes> {
        self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Page `index` as it reads now: written, or the real file's bytes, zeros past them.
    fn page(&self, c: &Changes, index: u64) -> io::Result<Vec<u8>> {
        if let Some(page) = c.pages.get(&index) {
            return Ok(page.clone());
        }
        let mut page = vec![0u8; PAGE as usize];
        let start = index * PAGE;
        if let Some(base) = &self.base {
            let end = c.base_len.min(start + PAGE);
            if end > start {
                FileExt::read_exact_at(base, &mut page[..(end - start) as usize], start)?;
            }
        }
        Ok(page)
    }
}

impl Disk for ReadOnlyDisk {
    type File = ReadOnlyFile;

    fn open(&self, path: &Path, how: Open) -> io::Result<ReadOnlyFile> {
        let base = match (how, File::open(path)) {
            (Open::Truncate, _) => None,
            (_, Ok(f)) => Some(f),
            (Open::Create, Err(e)) if e.kind() == io::ErrorKind::NotFound => None,
            (_, Err(e)) => return Err(e),
        };
        ReadOnlyFile::new(base)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect()
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn rename(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        Ok(())
    }

    fn remove_file(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn remove_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

impl DiskFile for ReadOnlyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let c = self.changes();
        let n = (c.len.saturating_sub(pos)).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < n {
            let at = pos + done as u64;
            let (index, within) = (at / PAGE, (at % PAGE) as usize);
            let take = (PAGE as usize - within).min(n - done);
            let page = self.page(&c, index)?;
            buf[done..done + take].copy_from_slice(&page[within..within + take]);
            done += take;
        }
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        let mut c = self.changes();
        let mut done = 0;
        while done < buf.len() {
            let at = pos + done as u64;
            let (index, within) = (at / PAGE, (at % PAGE) as usize);
            let take = (PAGE as usize - within).min(buf.len() - done);
            let mut page = self.page(&c, index)?;
            page[within..within + take].copy_from_slice(&buf[done..done + take]);
            c.pages.insert(index, page);
            done += take;
        }
        c.len = c.len.max(pos + buf.len() as u64);
        Ok(buf.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut c = self.changes();
        if len < c.len {
            // What is cut off reads as zeros if the file grows again.
            let index = len / PAGE;
            let mut page = self.page(&c, index)?;
            page[(len % PAGE) as usize..].fill(0);
            c.pages.retain(|&i, _| i < index);
            c.pages.insert(index, page);
            c.base_len = c.base_len.min(len);
        }
        c.len = len;
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.changes().len)
    }

    fn forget_cached(&self) -> io::Result<()> {
        Ok(())
    }

    fn try_lock_exclusive(&self) -> io::Result<()> {
        Ok(())
    }

    fn read_cached(&self, buf: &mut [u8], pos: u64) -> io::Result<bool> {
        Ok(self.read_at(buf, pos)? == buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_read_back_and_never_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let original: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &original).unwrap();
        let disk = ReadOnlyDisk;
        let f = disk.open(&path, Open::Existing).unwrap();
        f.write_all_at(&[0xee; 5000], 3000).unwrap();
        f.write_all_at(b"tail", 12_000).unwrap();
        assert_eq!(f.size().unwrap(), 12_004);
        let mut all = vec![0u8; 12_004];
        f.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(all[..3000], original[..3000]);
        assert!(all[3000..8000].iter().all(|&b| b == 0xee));
        assert_eq!(all[8000..10_000], original[8000..]);
        assert!(all[10_000..12_000].iter().all(|&b| b == 0));
        assert_eq!(&all[12_000..], b"tail");
        // Cut, then grown again: the cut part reads as zeros.
        f.set_len(100).unwrap();
        f.set_len(9000).unwrap();
        f.read_exact_at(&mut all[..9000], 0).unwrap();
        assert_eq!(all[..100], original[..100]);
        assert!(all[100..9000].iter().all(|&b| b == 0));
        disk.remove_file(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), original);
        // A file that does not exist is created empty, in memory only.
        let new = disk.open(&dir.path().join("new"), Open::Create).unwrap();
        new.write_all_at(b"x", 0).unwrap();
        assert!(!dir.path().join("new").exists());
        assert_eq!(
            disk.open(&dir.path().join("new"), Open::Existing).err().unwrap().kind(),
            io::ErrorKind::NotFound
        );
    }
}
