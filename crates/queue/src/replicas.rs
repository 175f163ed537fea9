//! Where a replicated queue's (or bucket's) copies are: the servers holding its stream,
//! as JetStream reports them. `strata queues` and `strata ps` show it; the embedded
//! queue, one copy in this node's files, has none.

use serde::{Deserialize, Serialize};

/// The copies of one replicated stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Replicas {
    /// Copies asked for (the stream's `replicas`: 3, or fewer on a smaller cluster).
    pub wanted: usize,
    /// The server that takes its writes; none while an election is under way.
    pub leader: Option<String>,
    /// Every server holding a copy, the leader first.
    pub servers: Vec<Copy>,
}

/// One server's copy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Copy {
    pub server: String,
    /// Up to date with the leader.
    pub current: bool,
    /// Not heard from by the group.
    pub offline: bool,
    /// Operations behind the leader.
    pub lag: u64,
}

impl Replicas {
    /// In words: `3 copies: n1 (leader), n2, n3 (behind by 4 operations)`.
    pub fn describe(&self) -> String {
        let copies: Vec<String> = self
            .servers
            .iter()
            .map(|c| {
                let mut s = c.server.clone();
                if Some(&c.server) == self.leader.as_ref() {
                    s.push_str(" (leader)");
                } else if c.offline {
                    s.push_str(" (offline)");
                } else if !c.current {
                    s.push_str(&format!(" (behind by {} operations)", c.lag));
                }
                s
            })
            .collect();
        let mut out = format!(
            "{} cop{}: {}",
            self.servers.len(),
            if self.servers.len() == 1 { "y" } else { "ies" },
            copies.join(", ")
        );
        if self.leader.is_none() {
            let offline = self.servers.iter().filter(|c| c.offline).count();
            // Raft elects a leader only with a majority of the copies.
            if offline > 0 && offline * 2 >= self.servers.len() {
                out.push_str(&format!(
                    "; no leader: {offline} of {} copies offline, no majority left to elect one (writes wait until they return)",
                    self.servers.len()
                ));
            } else {
                out.push_str("; no leader (an election is under way)");
            }
        }
        if self.servers.len() < self.wanted {
            out.push_str(&format!("; {} asked for", self.wanted));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(server: &str, current: bool, lag: u64) -> Copy {
        Copy {
            server: server.into(),
            current,
            offline: false,
            lag,
        }
    }

    #[test]
    fn described_in_words() {
        let r = Replicas {
            wanted: 3,
            leader: Some("n1".into()),
            servers: vec![copy("n1", true, 0), copy("n2", true, 0), copy("n3", false, 4)],
        };
        assert_eq!(r.describe(), "3 copies: n1 (leader), n2, n3 (behind by 4 operations)");
        let lone = Replicas {
            wanted: 3,
            leader: None,
            servers: vec![copy("n2", true, 0)],
        };
        assert_eq!(
            lone.describe(),
            "1 copy: n2; no leader (an election is under way); 3 asked for"
        );
        let offline = |server: &str| Copy {
            offline: true,
            ..copy(server, false, 0)
        };
        let one_down = Replicas {
            wanted: 3,
            leader: None,
            servers: vec![copy("n2", true, 0), copy("n3", true, 0), offline("n1")],
        };
        assert_eq!(
            one_down.describe(),
            "3 copies: n2, n3, n1 (offline); no leader (an election is under way)"
        );
        let two_down = Replicas {
            wanted: 3,
            leader: None,
            servers: vec![copy("n2", true, 0), offline("n0"), offline("n1")],
        };
        assert_eq!(
            two_down.describe(),
            "3 copies: n2, n0 (offline), n1 (offline); no leader: 2 of 3 copies offline, no majority left to elect one (writes wait until they return)"
        );
    }
}
