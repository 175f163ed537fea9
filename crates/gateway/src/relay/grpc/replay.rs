//! A call's request body that can be sent again. What the client sent so far is kept
//! (up to [`LIMIT`] bytes) while it flows to the member, so that a reissue of an
//! idempotent call first replays it to the next member and then goes on with what the
//! client still sends: unary calls and streams alike, nothing held back from the first
//! member (a bidirectional stream whose client waits for replies keeps flowing).
//!
//! Each attempt reads through its own [`Replay`]; a newer attempt retires the older
//! ones (an older body still held by a dead connection's task reads nothing more), so
//! only one reader polls the client's stream and is woken by it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::client_body::ClientBody;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};

/// The most bytes of a call kept for a reissue; a longer call is sent once.
pub const LIMIT: usize = 1 << 20;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What every attempt of one call shares.
struct Kept {
    source: ClientBody,
    frames: Vec<Kind>,
    bytes: usize,
    /// More than [`LIMIT`] was sent: what was kept is not the whole call any more.
    overflow: bool,
    /// The client's stream ended.
    ended: bool,
    /// The attempt allowed to read.
    generation: u64,
}

enum Kind {
    Data(Bytes),
    Trailers(HeaderMap),
}

/// One attempt's view of a call's request body.
pub struct Replay {
    kept: Arc<Mutex<Kept>>,
    next: usize,
    generation: u64,
}

impl Replay {
    pub fn new(source: ClientBody) -> Replay {
        let kept = Kept {
            source,
            frames: Vec::new(),
            bytes: 0,
            overflow: false,
            ended: false,
            generation: 0,
        };
        Replay {
            kept: Arc::new(Mutex::new(kept)),
            next: 0,
            generation: 0,
        }
    }

    /// Whether everything the client sent so far was kept, so that another attempt can
    /// send the call whole.
    pub fn replayable(&self) -> bool {
        !self.kept.lock().expect("replay").overflow
    }

    /// The body of the next attempt, from the first byte; older attempts read no more.
    pub fn again(&self) -> Replay {
        let mut kept = self.kept.lock().expect("replay");
        kept.generation += 1;
        Replay {
            kept: self.kept.clone(),
            next: 0,
            generation: kept.generation,
        }
    }
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut kept = this.kept.lock().expect("replay");
        if kept.generation != this.generation {
            return Poll::Ready(Some(Err("the call was reissued to another member".into())));
        }
        if let Some(frame) = kept.frames.get(this.next) {
            this.next += 1;
            return Poll::Ready(Some(Ok(match frame {
                Kind::Data(data) => Frame::data(data.clone()),
                Kind::Trailers(trailers) => Frame::trailers(trailers.clone()),
            })));
        }
        if kept.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut kept.source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                kept.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                if !kept.overflow {
                    let copy = match frame.data_ref() {
                        Some(data) => {
                            kept.bytes += data.len();
                            Kind::Data(data.clone())
                        }
                        None => Kind::Trailers(frame.trailers_ref().cloned().unwrap_or_default()),
                    };
                    if kept.bytes > LIMIT {
                        kept.overflow = true;
                        kept.frames = Vec::new();
                    } else {
                        kept.frames.push(copy);
                        this.next = kept.frames.len();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }
}
