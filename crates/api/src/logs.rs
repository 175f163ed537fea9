//! `strata logs`: the captured output of a service's instances, one line each prefixed
//! with the instance id, optionally followed as it grows.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Frame;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::extract::{Path, Query};
use crate::{ApiError, NodeParts};

#[derive(Deserialize)]
pub(crate) struct LogQuery {
    #[serde(default)]
    follow: bool,
    instance: Option<String>,
    /// The setup step's log instead of the instances'.
    #[serde(default)]
    setup: bool,
}

pub(crate) async fn logs(
    State(state): State<Arc<NodeParts>>,
    Path(service): Path<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    let Some(dir) = state.app.log_dir(&service) else {
        let names: Vec<String> = state.app.snapshot().into_iter().map(|s| s.name).collect();
        return ApiError::not_found(format!(
            "no service named {service:?} in app {:?} (services: {})",
            state.info.app,
            names.join(", ")
        ))
        .into_response();
    };
    if q.setup && state.app.has_setup(&service) == Some(false) {
        return ApiError::not_found(format!(
            "service {service:?} has no setup step (services.{service}.setup): its instances' logs are `strata logs {service}`"
        ))
        .into_response();
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let mut offsets: BTreeMap<PathBuf, u64> = BTreeMap::new();
        loop {
            for file in log_files(&dir, q.instance.as_deref(), q.setup) {
                let offset = offsets.entry(file.clone()).or_insert(0);
                let label = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?").to_string();
                // A file is read to its end, a MiB at a time; without `follow`, to where
                // it ended when the request came (a chatty instance would keep a slow
                // reader on one file for ever), a last line not ended yet too.
                let end = match q.follow {
                    true => u64::MAX,
                    false => tokio::fs::metadata(&file).await.map_or(0, |m| m.len()),
                };
                while *offset < end {
                    let Some(mut chunk) = read_from(&file, offset, !q.follow).await else {
                        break;
                    };
                    if *offset > end {
                        // Read past where the file ended: only up to it.
                        let over = (*offset - end) as usize;
                        chunk.truncate(chunk.len().saturating_sub(over));
                        *offset = end;
                    }
                    if tx.send(prefix_lines(&label, &chunk)).await.is_err() {
                        return;
                    }
                }
            }
            if !q.follow {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
            }
        }
    });
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::new(ChannelBody { rx }),
    )
        .into_response()
}

fn log_files(dir: &FsPath, instance: Option<&str>, setup: bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let is_log = p.extension().is_some_and(|e| e == "log");
            is_log
                && match (setup, instance) {
                    (true, _) => stem == "setup",
                    (false, Some(id)) => stem == id,
                    (false, None) => stem != "setup",
                }
        })
        .collect();
    files.sort();
    files
}

/// Reads what was appended since `offset` (at most a MiB), up to whole lines, or to
/// its end when `unended` (a last line without its newline).
async fn read_from(file: &FsPath, offset: &mut u64, unended: bool) -> Option<Vec<u8>> {
    let mut f = tokio::fs::File::open(file).await.ok()?;
    let len = f.metadata().await.ok()?.len();
    if len < *offset {
        *offset = 0;
    }
    if len == *offset {
        return None;
    }
    f.seek(std::io::SeekFrom::Start(*offset)).await.ok()?;
    let mut buf = Vec::with_capacity((len - *offset).min(1 << 20) as usize);
    (&mut f)
        .take((len - *offset).min(1 << 20))
        .read_to_end(&mut buf)
        .await
        .ok()?;
    let read_all = *offset + buf.len() as u64 == len;
    let whole = match buf.iter().rposition(|&b| b == b'\n') {
        _ if unended && read_all && !buf.is_empty() => buf.len(),
        Some(i) => i + 1,
        None if buf.len() >= 1 << 20 => buf.len(),
        None => return None,
    };
    buf.truncate(whole);
    *offset += whole as u64;
    Some(buf)
}

fn prefix_lines(label: &str, chunk: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(chunk.len() + 16);
    for line in chunk.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(b" | ");
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\n") && !out.is_empty() {
        out.push(b'\n');
    }
    Bytes::from(out)
}

/// A reply body of the chunks a task sends, ended when the task drops its sender (the
/// followed logs here, the dashboard's stream).
pub(crate) struct ChannelBody {
    pub(crate) rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(file: &FsPath, unended: bool) -> Vec<u8> {
        let (mut offset, mut out) = (0, Vec::new());
        while let Some(chunk) = read_from(file, &mut offset, unended).await {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[tokio::test]
    async fn a_log_longer_than_a_read_is_read_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web-1.log");
        let mut text: Vec<u8> = (0..30_000)
            .flat_map(|i| format!("line {i} {}\n", "x".repeat(40)).into_bytes())
            .collect();
        assert!(text.len() > 1 << 20);
        text.extend_from_slice(b"LAST-LINE\n");
        std::fs::write(&file, &text).unwrap();
        assert_eq!(read_all(&file, true).await, text);
        // A last line not ended yet: shown once the rest is read when not following,
        // kept for its end when following.
        let mut unended = text.clone();
        unended.extend_from_slice(b"half");
        std::fs::write(&file, &unended).unwrap();
        assert_eq!(read_all(&file, true).await, unended);
        assert_eq!(read_all(&file, false).await, text);
        assert_eq!(&prefix_lines("web-1", b"a\nhalf")[..], b"web-1 | a\nweb-1 | half\n");
    }
}
