//! One pull request to a group's consumer: up to `batch` messages, now (`no_wait`) or
//! within a long poll. Whatever the server hands out is leased to the group, so nothing
//! may be dropped on the floor: a pull cut short (its fetch cancelled, a client gone)
//! keeps listening until the request ends and gives back (naks) what still arrives, so
//! that it is redelivered at once rather than after its lease.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::BatchConfig;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::{Client, StatusCode, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long past a pull's expiry the server's answer is waited for.
const GRACE: Duration = Duration::from_secs(5);
/// How long messages a request delivered are waited for after the status that ended it.
const LATE: Duration = Duration::from_secs(2);
/// The header of a status that says how many messages the request left undelivered.
const PENDING_MESSAGES: &str = "Nats-Pending-Messages";

/// Why a pull handed out nothing more.
#[derive(Debug)]
pub(crate) enum PullError {
    /// The consumer or its stream was deleted (or `gone` was cancelled).
    Gone,
    /// JetStream did not serve it (no consumer leader yet, lost connection): try again.
    Unavailable(String),
}

/// How the pull ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Every message asked for came.
    Full,
    /// The server had no more (now, or within the long poll).
    Dry,
    /// The next message was larger than the bytes asked for.
    TooLarge,
}

/// Pulls up to `batch` messages of at most `max_bytes` together (0: no bound; the server
/// counts subject and headers too). With `wait`, a long poll: the request waits up to
/// `wait` for a first message, then hands out what is there with it (`no_wait` with an
/// expiry, in JetStream's terms); without, only what is there now. Ends early with
/// [`PullError::Gone`] when `gone` is cancelled.
///
/// A status from the server ends the request but may come before messages it delivered
/// (a replicated consumer sends a delivery once its replicas have it): its
/// `Nats-Pending-Messages` says how many the request left undelivered, and those
/// delivered are waited for.
pub(crate) async fn pull(
    client: &Client,
    consumer: &PullConsumer,
    batch: usize,
    max_bytes: usize,
    wait: Option<Duration>,
    gone: &CancellationToken,
) -> Result<(Vec<async_nats::Message>, Ended), PullError> {
    let inbox = client.new_inbox();
    let subscriber = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| PullError::Unavailable(format!("subscribe to a pull inbox: {e}")))?;
    let config = BatchConfig {
        batch,
        expires: wait,
        no_wait: true,
        max_bytes,
        ..Default::default()
    };
    let mut open = Open {
        subscriber: Some(subscriber),
        outstanding: batch,
        ends: Instant::now() + wait.unwrap_or_default() + GRACE,
        client: client.clone(),
    };
    consumer
        .request_batch(config, inbox.into())
        .await
        .map_err(|e| PullError::Unavailable(format!("send a pull request: {e}")))?;
    let mut out = Vec::new();
    // Once a status ended the request: how many messages it delivered in all, and why.
    let mut ending: Option<(usize, Ended)> = None;
    loop {
        if let Some((delivered, ended)) = ending {
            if out.len() >= delivered {
                open.end();
                return Ok((out, ended));
            }
        }
        let until = match ending {
            Some(_) => open.ends.min(Instant::now() + LATE),
            None => open.ends,
        };
        let subscriber = open.subscriber.as_mut().expect("open until ended");
        let next = tokio::select! {
            m = subscriber.next() => m,
            _ = tokio::time::sleep_until(until) => None,
            _ = gone.cancelled() => return Err(PullError::Gone),
        };
        let Some(m) = next else {
            // Nothing more in time: what may still come is given back when `open` drops.
            let ended = ending.map_or(Ended::Dry, |(_, e)| e);
            open.outstanding = ending.map_or(0, |(d, _)| d.saturating_sub(out.len()));
            if open.outstanding == 0 {
                open.end();
            }
            return Ok((out, ended));
        };
        match m.status {
            None | Some(StatusCode::OK) => {
                out.push(m);
                open.outstanding = open.outstanding.saturating_sub(1);
                if out.len() >= batch {
                    open.end();
                    return Ok((out, Ended::Full));
                }
            }
            Some(StatusCode::IDLE_HEARTBEAT) => {}
            Some(StatusCode::NO_RESPONDERS) => {
                open.end();
                return Err(PullError::Unavailable(
                    "no JetStream server serves the group's consumer (no leader yet?)".into(),
                ));
            }
            Some(status) => {
                let what = m.description.clone().unwrap_or_default().to_lowercase();
                if what.contains("deleted") {
                    open.end();
                    return if out.is_empty() {
                        Err(PullError::Gone)
                    } else {
                        Ok((out, Ended::Dry))
                    };
                }
                let undelivered = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(PENDING_MESSAGES))
                    .and_then(|v| v.as_str().trim().parse::<usize>().ok());
                let delivered = match undelivered {
                    Some(left) => batch.saturating_sub(left).max(out.len()),
                    None => out.len(),
                };
                let ended = if what.contains("maxbytes") || what.contains("max bytes") {
                    Ended::TooLarge
                } else if delivered >= batch {
                    Ended::Full
                } else {
                    Ended::Dry
                };
                if status != StatusCode::NOT_FOUND && status != StatusCode::TIMEOUT {
                    // Batch completed, leadership change, server shutdown, limits.
                    tracing::debug!(%status, what, "a pull request ended");
                }
                open.outstanding = delivered.saturating_sub(out.len());
                ending = Some((delivered, ended));
            }
        }
    }
}

/// A pull request still open on the server, with the subscription its messages come to.
struct Open {
    subscriber: Option<Subscriber>,
    outstanding: usize,
    ends: Instant,
    client: Client,
}

impl Open {
    /// The server ended the request: nothing more will come to the inbox.
    fn end(&mut self) {
        self.subscriber = None;
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let Some(mut subscriber) = self.subscriber.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, ends, mut outstanding) = (self.client.clone(), self.ends, self.outstanding);
        // Cut short: what the server still sends for this request is leased to the
        // group with nobody to see it. Give it back.
        runtime.spawn(async move {
            while outstanding > 0 {
                let m = tokio::select! {
                    m = subscriber.next() => m,
                    _ = tokio::time::sleep_until(ends) => None,
                };
                let Some(m) = m else { return };
                match (m.status, m.reply) {
                    (None | Some(StatusCode::OK), Some(reply)) => {
                        outstanding -= 1;
                        let _ = client.publish(reply, Bytes::from_static(b"-NAK")).await;
                    }
                    (None | Some(StatusCode::OK), None) => return,
                    // A status may come before deliveries its request made: keep listening.
                    (Some(_), _) => {}
                }
            }
        });
    }
}
