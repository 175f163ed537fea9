//! [`ControlClient`]: the CLI's side of the node's control API (ps, scale, logs, events,
//! down), a small HTTP/1.1 client. Instances and programs use `strata-client` instead.

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub struct ControlClient {
    /// `host:port` of the node API.
    authority: String,
    /// The node's control token, sent as `Authorization: Bearer` ([`control_token`]).
    token: Option<String>,
}

impl ControlClient {
    /// `base` is the API URL, for example `http://127.0.0.1:4000`.
    pub fn new(base: &str) -> Result<ControlClient> {
        let uri: http::Uri = base.parse().with_context(|| format!("{base:?} is not a URL"))?;
        let authority = uri
            .authority()
            .with_context(|| format!("{base:?} has no host:port"))?
            .to_string();
        Ok(ControlClient {
            authority,
            token: control_token(base),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("reach the strata node API at {}", self.authority))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("talk to the node API")?;
        tokio::spawn(conn);
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.authority)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Full::new(body))?;
        sender.send_request(req).await.context("call the node API")
    }

    /// Calls the API and reads the whole reply.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, Bytes)> {
        let res = self.send(method, path, body).await?;
        let status = res.status();
        let bytes = res
            .into_body()
            .collect()
            .await
            .context("read the node API reply")?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Calls the API and copies the reply to stdout as it arrives.
    pub async fn stream_to_stdout(&self, path: &str) -> Result<()> {
        let mut res = self.send(Method::GET, path, None).await?;
        let status = res.status();
        if !status.is_success() {
            // An error is the node's JSON error body: its words, not its JSON, on stderr.
            let body = res
                .into_body()
                .collect()
                .await
                .context("read the node API reply")?
                .to_bytes();
            anyhow::bail!("{}", error_message(&body));
        }
        let mut out = tokio::io::stdout();
        while let Some(frame) = res.body_mut().frame().await {
            if let Ok(data) = frame.context("read the node API reply")?.into_data() {
                out.write_all(&data).await?;
                out.flush().await?;
            }
        }
        Ok(())
    }
}

/// The words of a node API error body (`{"error": ...}`), or the body as it is.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// The control token for the node API at `base`: `$STRATA_CONTROL_TOKEN`, else the token
/// file of the running node with that API (found through the user's registry of running
/// nodes, so `-C DIR` and `--api URL` both work from anywhere), else
/// `./.strata/control.token`. None: the node will answer 401, saying where to look.
fn control_token(base: &str) -> Option<String> {
    if let Some(token) = std::env::var("STRATA_CONTROL_TOKEN").ok().filter(|t| !t.is_empty()) {
        return Some(token);
    }
    strata_node::nodefile::token_for_api(base)
        .or_else(|| strata_node::nodefile::read_token(std::path::Path::new(".strata")))
}
