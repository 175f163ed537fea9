//! Scale to zero: for a service with `instances.min: 0`, a request that finds no instance
//! is held at the gateway (bounded, within its deadline) and asks for one
//! ([`Pool::hold`]); this task starts it, and stops the last instance once the service has
//! had no request for `instances.idle_timeout_ms`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_appservice::AppService;
use strata_bus::Pool;
use tokio_util::sync::CancellationToken;

/// How long the first instance may take to become ready before its cold start is no
/// longer reported.
const COLD_START_REPORT: Duration = Duration::from_secs(120);

pub(crate) async fn run(app: Arc<AppService>, pool: Arc<Pool>, idle: Duration, token: CancellationToken) {
    pool.set_scale_from_zero(true);
    let service = pool.service.clone();
    let desired = |app: &AppService| {
        app.snapshot()
            .into_iter()
            .find(|s| s.name == service)
            .map_or(0, |s| s.desired)
    };
    loop {
        tokio::select! {
            _ = pool.demanded() => {
                if desired(&app) > 0 {
                    continue;
                }
                let started = Instant::now();
                if let Err(e) = app.scale(&service, 1) {
                    tracing::warn!(service = %service, "scale from zero failed: {e:#}");
                    continue;
                }
                let (pool, name) = (pool.clone(), service.clone());
                tokio::spawn(async move {
                    let mut ready = pool.watch_ready();
                    let became_ready = async { ready.wait_for(|n| *n > 0).await.is_ok() };
                    if let Ok(true) = tokio::time::timeout(COLD_START_REPORT, became_ready).await {
                        tracing::info!(service = %name, cold_start_ms = started.elapsed().as_millis() as u64, "scaled from zero");
                    }
                });
            }
            _ = tokio::time::sleep(idle.min(Duration::from_secs(1))) => {
                let quiet = pool.held() == 0
                    && pool.idle_for() >= idle
                    && pool.members().iter().all(|m| m.inflight() == 0);
                if quiet && desired(&app) > 0 {
                    if let Err(e) = app.scale(&service, 0) {
                        tracing::warn!(service = %service, "scale to zero failed: {e:#}");
                    }
                }
            }
            _ = token.cancelled() => return,
        }
    }
}
