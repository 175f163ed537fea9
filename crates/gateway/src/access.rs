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
    file: Mutex<std::fs::File>,
}

impl Inner {
    fn flush(&self) {
        let pending = std::mem::take(&mut *self.buf.lock().unwrap());
        if !pending.is_empty() {
            let _ = self.file.lock().unwrap().write_all(&pending);
        }
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

    /// Adds one line (a newline is appended).
    pub fn line(&self, args: std::fmt::Arguments<'_>) {
        let mut buf = self.inner.buf.lock().unwrap();
        let _ = buf.write_fmt(args);
        buf.push(b'\n');
    }

    /// Writes what is buffered now.
    pub fn flush(&self) {
        self.inner.flush();
    }
}
