//! The access log: one line per request, buffered in memory and written by a background
//! thread every 100 ms, so a request never waits on a write to disk.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};

#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

struct Inner {
    buf: Mutex<Vec<u8>>,
    spare: Mutex<Vec<u8>>,
    file: Mutex<std::fs::File>,
}

impl Inner {
    fn flush(&self) {
        let mut file = self.file.lock().unwrap();
        // Swap in the writer's spare buffer, so that neither side reallocates.
        let mut pending = std::mem::take(&mut *self.spare.lock().unwrap());
        std::mem::swap(&mut *self.buf.lock().unwrap(), &mut pending);
        if !pending.is_empty() {
            let _ = file.write_all(&pending);
        }
        pending.clear();
        *self.spare.lock().unwrap() = pending;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush();
    }
}

impl AccessLog {
    /// Appends to `path`.
    pub fn open(path: &Path) -> Result<AccessLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).context("create access log dir")?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open access log {}", path.display()))?;
        let inner = Arc::new(Inner {
            buf: Mutex::new(Vec::with_capacity(64 * 1024)),
            spare: Mutex::new(Vec::with_capacity(64 * 1024)),
            file: Mutex::new(file),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("strata-access-log".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(100));
                match weak.upgrade() {
                    Some(inner) => inner.flush(),
                    None => break,
                }
            })
            .context("start access log writer")?;
        Ok(AccessLog { inner })
    }

    /// Adds one line made of `parts` (a newline is appended).
    pub fn line(&self, parts: &[&[u8]]) {
        let mut buf = self.inner.buf.lock().unwrap();
        for part in parts {
            buf.extend_from_slice(part);
        }
        buf.push(b'\n');
    }

    /// Writes what is buffered now.
    pub fn flush(&self) {
        self.inner.flush();
    }
}

/// Decimal digits of `n`, without the formatting machinery.
pub fn decimal(n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    let mut n = n;
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(1234, &mut buf), b"1234");
        assert_eq!(decimal(u64::MAX, &mut buf), u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn lines_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::open(&path).unwrap();
        log.line(&[b"a ", b"b"]);
        log.line(&[b"c"]);
        log.flush();
        log.line(&[b"d"]);
        log.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a b\nc\nd\n");
    }
}
