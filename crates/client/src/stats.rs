//! Queue administration: create, stats, list.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;

use crate::client::segment;
use crate::conn::Outgoing;
use crate::{Client, Error};

/// `GET /v1/queues/NAME`. Fields the node leaves out read as zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct QueueStats {
    pub name: String,
    /// `always`, `interval` or `none`.
    pub fsync: String,
    pub first_offset: u64,
    pub next_offset: u64,
    pub messages: u64,
    pub bytes: u64,
    pub segments: u64,
    /// Records found corrupt and skipped.
    pub corrupt: u64,
    pub groups: Vec<GroupStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct GroupStats {
    pub name: String,
    pub floor: u64,
    pub unread: u64,
    pub leased: u64,
    /// unread + leased: what the autoscaler reads.
    pub backlog: u64,
    pub dead_lettered: u64,
    /// Acked by the group's consumers since the queue opened (on JetStream: through the
    /// node asked).
    pub acked: u64,
    /// Leases that ran out; `None` on JetStream.
    pub lease_expiries: Option<u64>,
}

impl Client {
    /// `PUT /v1/queues/NAME` with the queue's settings (the manifest's object, `None`
    /// for the defaults). `true` when it was created, `false` when it already existed.
    pub async fn create_queue(&self, queue: &str, settings: Option<&serde_json::Value>) -> Result<bool, Error> {
        let path = format!("/v1/queues/{}", segment(queue)?);
        let out = match settings {
            Some(s) => Outgoing {
                content_type: Some("application/json"),
                body: Bytes::from(s.to_string()),
                ..Outgoing::default()
            },
            None => Outgoing::default(),
        };
        let answer = self.call(Method::PUT, &path, out).await?;
        Ok(answer.status == StatusCode::CREATED)
    }

    pub async fn stats(&self, queue: &str) -> Result<QueueStats, Error> {
        let path = format!("/v1/queues/{}", segment(queue)?);
        let (_, stats) = self.call_json(Method::GET, &path, None::<&()>).await?;
        Ok(stats)
    }

    /// `GET /v1/queues`: the stats of every queue.
    pub async fn list_queues(&self) -> Result<Vec<QueueStats>, Error> {
        #[derive(Deserialize)]
        struct Answer {
            queues: Vec<QueueStats>,
        }
        let (_, a): (_, Answer) = self.call_json(Method::GET, "/v1/queues", None::<&()>).await?;
        Ok(a.queues)
    }
}
