//! The signals that stop a node: Ctrl-C (SIGINT), SIGTERM, and SIGHUP (its terminal
//! closed), each a graceful stop.

use tokio::signal::unix::Signal;

/// The next delivery of `signal`; never, when it could not be registered.
pub async fn recv(signal: &mut Option<Signal>) {
    match signal.as_mut() {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
