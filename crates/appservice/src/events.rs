use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

const KEPT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    SetupStarted,
    SetupSkipped,
    SetupProgress,
    SetupFinished,
    /// The step failed and runs again after a pause (it is given up on after a few).
    SetupRetrying,
    /// The step failed on its last attempt; the service is not launched.
    SetupFailed,
    WaitingForBindings,
    Unschedulable,
    Launched,
    /// A starting instance is not ready yet after a while: what its check found.
    NotReady,
    Ready,
    Exited,
    /// The kernel killed an instance (a container) for memory over its limit; an
    /// `exited` or `crash-loop` event follows, as for any exit.
    Oom,
    /// The last lines an instance printed before it exited or was given up on.
    Output,
    Unhealthy,
    CrashLoop,
    Stopped,
    Scaled,
    /// An autoscaler decision, with its inputs and reason.
    Autoscaled,
    /// Requests shed at instances.max.
    Shed,
    /// An instance started for a pool at zero became ready.
    ColdStart,
    /// A function's trigger failed to deliver an event.
    TriggerFailed,
    /// Messages of a queue the service consumes were moved to its dead-letter queue
    /// after `max_deliveries` deliveries.
    DeadLettered,
    /// The cluster's scheduler changed this service's placement, with its reason.
    Placed,
}

/// Something the App Service did or saw, with the reason in words.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(with = "unix_ms")]
    pub at: SystemTime,
    pub service: String,
    pub instance: Option<String>,
    pub kind: EventKind,
    pub message: String,
}

mod unix_ms {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        s.serialize_u128(ms)
    }
}

pub(crate) struct EventLog {
    recent: Mutex<VecDeque<Event>>,
    tx: broadcast::Sender<Event>,
}

impl EventLog {
    pub fn new() -> EventLog {
        EventLog {
            recent: Mutex::new(VecDeque::new()),
            tx: broadcast::channel(1024).0,
        }
    }

    pub fn emit(&self, service: &str, instance: Option<&str>, kind: EventKind, message: String) {
        let event = Event {
            at: SystemTime::now(),
            service: service.to_string(),
            instance: instance.map(str::to_string),
            kind,
            message,
        };
        tracing::debug!(service, instance, kind = ?event.kind, "{}", event.message);
        {
            let mut recent = self.recent.lock().unwrap();
            if recent.len() == KEPT {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    pub fn recent(&self) -> Vec<Event> {
        self.recent.lock().unwrap().iter().cloned().collect()
    }
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in milliseconds, as `strata events` shows an
/// event's time.
pub fn time_of_day(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::time_of_day;

    #[test]
    fn a_unix_time_in_ms_reads_as_its_utc_time_of_day() {
        assert_eq!(time_of_day(1_796_585_779_391), "19:36:19.391");
        assert_eq!(time_of_day(0), "00:00:00.000");
    }
}
