//! Kept-alive HTTP/1.1 connections to the node API: one request at a time on each, idle
//! ones kept in a small list and reused most-recently-used first.
//!
//! A request that fails on a reused connection before hyper wrote it (the node had
//! closed the idle connection) goes again on another connection; after it may have been
//! written, only a GET or PUT does. A publish is never sent twice by this layer.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{Error, TraceContext};

type Sender = SendRequest<Full<Bytes>>;

/// Idle connections kept per client; more concurrent callers open more, and the extra
/// ones close when their request ends.
const MAX_IDLE: usize = 32;

pub(crate) struct Conns {
    /// `host:port` of the node API.
    authority: String,
    host: HeaderValue,
    /// `Bearer TOKEN`, sent with every request when there is a token.
    auth: Option<HeaderValue>,
    idle: Mutex<Vec<Sender>>,
}

/// A whole answer.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// What to send, besides the method and path.
#[derive(Default)]
pub(crate) struct Outgoing {
    pub content_type: Option<&'static str>,
    pub accept: Option<&'static str>,
    pub body: Bytes,
}

impl Conns {
    pub fn new(authority: String, token: Option<&str>) -> Result<Arc<Conns>, Error> {
        let host = HeaderValue::from_str(&authority).map_err(|e| Error::Url {
            url: authority.clone(),
            reason: e.to_string(),
        })?;
        let auth = match token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| Error::Invalid("the token has characters a header cannot carry".to_string()))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Arc::new(Conns {
            authority,
            host,
            auth,
            idle: Mutex::new(Vec::new()),
        }))
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Sends one request (with the headers of `trace` when given) and reads its whole
    /// answer, whatever its status.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        out: Outgoing,
        trace: Option<&TraceContext>,
    ) -> Result<Answer, Error> {
        let retry_after_write = method == Method::GET || method == Method::PUT || method == Method::HEAD;
        let mut req = self.request(&method, path, &out, trace)?;
        loop {
            let (mut sender, reused) = match self.take_idle().await {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            let res = match sender.try_send_request(req).await {
                Ok(res) => res,
                Err(mut e) => {
                    if reused {
                        if let Some(unsent) = e.take_message() {
                            req = unsent;
                            continue;
                        }
                        if retry_after_write {
                            req = self.request(&method, path, &out, trace)?;
                            continue;
                        }
                    }
                    return Err(e.into_error().into());
                }
            };
            let status = res.status();
            let content_type = res.headers().get(CONTENT_TYPE).cloned();
            let body = res.into_body().collect().await?.to_bytes();
            self.put_idle(sender);
            return Ok(Answer {
                status,
                content_type,
                body,
            });
        }
    }

    fn request(
        &self,
        method: &Method,
        path: &str,
        out: &Outgoing,
        trace: Option<&TraceContext>,
    ) -> Result<Request<Full<Bytes>>, Error> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, self.host.clone());
        if let Some(auth) = &self.auth {
            b = b.header(AUTHORIZATION, auth.clone());
        }
        if let Some(ct) = out.content_type {
            b = b.header(CONTENT_TYPE, ct);
        }
        if let Some(accept) = out.accept {
            b = b.header(ACCEPT, accept);
        }
        if let Some(trace) = trace {
            b = b.header("traceparent", trace.traceparent.clone());
            if let Some(state) = &trace.tracestate {
                b = b.header("tracestate", state.clone());
            }
        }
        b.body(Full::new(out.body.clone()))
            .map_err(|e| Error::Invalid(format!("cannot build {method} {path}: {e}")))
    }

    /// An idle connection that is still open and ready for a request.
    async fn take_idle(&self) -> Option<Sender> {
        loop {
            let mut sender = self.idle.lock().expect("idle list lock").pop()?;
            if sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put_idle(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("idle list lock");
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<Sender, Error> {
        let connect_err = |e: std::io::Error| Error::Connect {
            addr: self.authority.clone(),
            source: Arc::new(e),
        };
        let stream = TcpStream::connect(&self.authority).await.map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection task ends when its sender is dropped or the node closes it.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}
