//! The access log: one line per request, buffered in memory per gateway worker thread,
//! so workers never wait on each other. A worker writes its buffer out itself when it
//! holds [`BUFFER`] bytes (one `write` every few hundred requests, as nginx's
//! `access_log ... buffer=64k` does); a background thread writes what is left every
//! second, so a quiet gateway's lines still reach the file promptly.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};

/// Bytes a worker gathers before writing them out.
pub const BUFFER: usize = 64 * 1024;
/// How often the background thread writes out partly filled buffers.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// One buffer per gateway worker (by its worker slot), shared only with the
    /// background writer.
    bufs: Vec<Mutex<Vec<u8>>>,
    /// Opened for appending: each `write` lands whole at the end, from any thread.
    file: std::fs::File,
}

impl Inner {
    fn flush(&self) {
        for buf in &self.bufs {
            let mut buf = buf.lock().unwrap();
            if !buf.is_empty() {
                let _ = (&self.file).write_all(&buf);
                buf.clear();
            }
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
            bufs: (0..crate::worker::SLOTS).map(|_| Mutex::new(Vec::new())).collect(),
            file,
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("strata-access-log".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
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
        let mut buf = self.inner.bufs[crate::worker::slot()].lock().unwrap();
        if buf.capacity() == 0 {
            buf.reserve(BUFFER + 1024);
        }
        for part in parts {
            buf.extend_from_slice(part);
        }
        buf.push(b'\n');
        if buf.len() >= BUFFER {
            let _ = (&self.inner.file).write_all(&buf);
            buf.clear();
        }
    }

    /// Writes what is buffered now.
    pub fn flush(&self) {
        self.inner.flush();
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `now`, the part before the milliseconds made once a second
/// per thread.
pub fn timestamp(now: std::time::SystemTime, out: &mut [u8; 24]) -> &[u8] {
    use std::cell::Cell;
    thread_local! {
        static CACHED: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
    }
    let now = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let prefix = CACHED.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        let text = civil(secs);
        c.set((secs, text));
        text
    });
    out[..20].copy_from_slice(&prefix);
    let ms = now.subsec_millis();
    out[19] = b'.';
    out[20] = b'0' + (ms / 100) as u8;
    out[21] = b'0' + (ms / 10 % 10) as u8;
    out[22] = b'0' + (ms % 10) as u8;
    out[23] = b'Z';
    &out[..]
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (days to civil date after Howard Hinnant).
fn civil(secs: u64) -> [u8; 20] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let mut out = [0u8; 20];
    out.copy_from_slice(&text.as_bytes()[..20]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(&civil(0), b"1970-01-01T00:00:00Z");
        assert_eq!(&civil(951_782_400), b"2000-02-29T00:00:00Z");
        assert_eq!(&civil(1_795_856_225), b"2026-11-28T08:57:05Z");
        let mut buf = [0u8; 24];
        let stamp = timestamp(std::time::SystemTime::now(), &mut buf);
        assert_eq!(stamp.len(), 24);
        assert_eq!(stamp[23], b'Z');
        assert_eq!(stamp[19], b'.');
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
