//! redb's storage over a database file that is never changed: the file is opened
//! read-only, and what redb writes (the repair it makes at open, an integrity check's
//! fixes) is kept in memory, by page, and read back. So repair, and a dry run, can let
//! redb do all it can with a damaged file while the file stays as it was.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use redb::StorageBackend;

const PAGE: u64 = 4096;

#[derive(Debug)]
pub(crate) struct ReadOnlyFile {
    file: File,
    changes: Mutex<Changes>,
}

#[derive(Debug)]
struct Changes {
    pages: HashMap<u64, Vec<u8>>,
    len: u64,
    /// Bytes of the file still seen where no page was written.
    file_len: u64,
}

impl ReadOnlyFile {
    pub fn open(path: &Path) -> io::Result<ReadOnlyFile> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(ReadOnlyFile {
            file,
            changes: Mutex::new(Changes {
                pages: HashMap::new(),
                len,
                file_len: len,
            }),
        })
    }

    fn changes(&self) -> std::sync::MutexGuard<'_, Changes> {
        self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn page(&self, c: &Changes, index: u64) -> io::Result<Vec<u8>> {
        if let Some(page) = c.pages.get(&index) {
            return Ok(page.clone());
        }
        let mut page = vec![0u8; PAGE as usize];
        let start = index * PAGE;
        let end = c.file_len.min(start + PAGE);
        if end > start {
            self.file.read_exact_at(&mut page[..(end - start) as usize], start)?;
        }
        Ok(page)
    }
}

impl StorageBackend for ReadOnlyFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.changes().len)
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let c = self.changes();
        if offset + len as u64 > c.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "a read of {len} bytes at {offset} runs past the end of the file ({} bytes)",
                    c.len
                ),
            ));
        }
        let mut out = Vec::with_capacity(len);
        let mut at = offset;
        while out.len() < len {
            let (index, within) = (at / PAGE, (at % PAGE) as usize);
            let take = (PAGE as usize - within).min(len - out.len());
            out.extend_from_slice(&self.page(&c, index)?[within..within + take]);
            at += take as u64;
        }
        Ok(out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut c = self.changes();
        if len < c.len {
            let index = len / PAGE;
            let mut page = self.page(&c, index)?;
            page[(len % PAGE) as usize..].fill(0);
            c.pages.retain(|&i, _| i < index);
            c.pages.insert(index, page);
            c.file_len = c.file_len.min(len);
        }
        c.len = len;
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut c = self.changes();
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let (index, within) = (at / PAGE, (at % PAGE) as usize);
            let take = (PAGE as usize - within).min(data.len() - done);
            let mut page = self.page(&c, index)?;
            page[within..within + take].copy_from_slice(&data[done..done + take]);
            c.pages.insert(index, page);
            done += take;
        }
        c.len = c.len.max(offset + data.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_read_back_and_never_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let original: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &original).unwrap();
        let f = ReadOnlyFile::open(&path).unwrap();
        f.write(5000, &[1; 6000]).unwrap();
        assert_eq!(f.len().unwrap(), 11_000);
        let all = f.read(0, 11_000).unwrap();
        assert_eq!(all[..5000], original[..5000]);
        assert!(all[5000..].iter().all(|&b| b == 1));
        f.set_len(10).unwrap();
        f.set_len(8192).unwrap();
        let all = f.read(0, 8192).unwrap();
        assert_eq!(all[..10], original[..10]);
        assert!(all[10..].iter().all(|&b| b == 0));
        assert!(f.read(8000, 200).is_err(), "past the end");
        assert_eq!(std::fs::read(&path).unwrap(), original);
    }
}
