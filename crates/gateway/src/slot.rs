//! [`GatewaySlot`]: the [`Gateway`] that a set of workers serves, replaceable while they
//! run. A cluster node rolling an app over to a new version starts the new version's
//! gateway (its routes, its pools) beside the old one and swaps it in once the new
//! instances are ready: the listening sockets and the clients' connections stay as they
//! are, and the next request on every connection goes to the new gateway, while the
//! requests already under way finish on the old one. Nothing is refused, nothing is
//! reconnected.
//!
//! The cost on the request path is one uncontended lock and one atomic load per
//! request (`Pinned::get`): each connection keeps the gateway it last used and looks
//! again only when the slot's version moved.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::Gateway;

/// What the slot holds: the gateway served now, if any.
type Current = Option<Arc<Gateway>>;

/// The gateway the workers serve; empty until the first is put in.
pub struct GatewaySlot {
    current: watch::Sender<Current>,
}

impl GatewaySlot {
    /// A slot with no gateway yet: workers bind and wait for one (connections are
    /// accepted only once it is there).
    pub fn empty() -> Arc<GatewaySlot> {
        Arc::new(GatewaySlot {
            current: watch::Sender::new(None),
        })
    }

    /// A slot holding `gateway`.
    pub fn with(gateway: Arc<Gateway>) -> Arc<GatewaySlot> {
        Arc::new(GatewaySlot {
            current: watch::Sender::new(Some(gateway)),
        })
    }

    /// Puts `gateway` in; returns the one it replaced. Requests that begin after this
    /// go to `gateway`.
    pub fn set(&self, gateway: Arc<Gateway>) -> Option<Arc<Gateway>> {
        self.current.send_replace(Some(gateway))
    }

    /// Puts `gateway` in only if the slot is empty; true if it did.
    pub fn set_if_empty(&self, gateway: Arc<Gateway>) -> bool {
        self.current.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(gateway);
            true
        })
    }

    /// The gateway served now.
    pub fn current(&self) -> Option<Arc<Gateway>> {
        self.current.borrow().clone()
    }

    /// Waits until the slot holds a gateway; returns it.
    pub(crate) async fn filled(&self) -> Arc<Gateway> {
        let mut rx = self.current.subscribe();
        let filled = rx
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives in self")
            .clone();
        filled.expect("waited for one")
    }

    /// One connection's view of the slot.
    pub(crate) fn pin(&self, gateway: Arc<Gateway>) -> Pinned {
        let mut rx = self.current.subscribe();
        rx.mark_unchanged();
        Pinned {
            seen: Mutex::new((rx, gateway)),
        }
    }
}

/// The gateway a connection last used, and the slot's version it saw then.
pub(crate) struct Pinned {
    seen: Mutex<(watch::Receiver<Current>, Arc<Gateway>)>,
}

impl Pinned {
    /// The gateway for the connection's next request: the slot's current one.
    pub fn get(&self) -> Arc<Gateway> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (rx, gateway) = &mut *seen;
        if rx.has_changed().unwrap_or(false) {
            if let Some(newer) = rx.borrow_and_update().clone() {
                *gateway = newer;
            }
        }
        gateway.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GatewayConfig;

    fn gateway() -> Arc<Gateway> {
        let config = GatewayConfig {
            routes: Vec::new(),
            traces: crate::trace::Traces::new(),
            max_header_bytes: 8192,
            max_body_bytes: None,
            header_read_timeout: std::time::Duration::from_secs(1),
            max_connections: 10,
        };
        Gateway::new(config, &strata_bus::Bus::new(), None)
    }

    #[tokio::test]
    async fn a_connection_sees_the_newest_gateway_from_its_next_request() {
        let (first, second) = (gateway(), gateway());
        let slot = GatewaySlot::empty();
        assert!(slot.current().is_none());
        assert!(slot.set_if_empty(first.clone()));
        assert!(!slot.set_if_empty(second.clone()), "a filled slot is kept");
        assert!(Arc::ptr_eq(&slot.filled().await, &first));
        let pinned = slot.pin(first.clone());
        assert!(Arc::ptr_eq(&pinned.get(), &first));
        let replaced = slot.set(second.clone()).expect("there was one");
        assert!(Arc::ptr_eq(&replaced, &first));
        assert!(Arc::ptr_eq(&pinned.get(), &second));
        assert!(Arc::ptr_eq(&pinned.get(), &second));
    }
}
