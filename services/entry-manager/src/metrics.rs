//! Prometheus metrics: gRPC requests, entries, sync status, lag and failures, per-phase sync
//! latency. Histograms get their buckets from `zt_service::ops::LATENCY_BUCKETS`.

use std::time::{Duration, Instant};

use zt_entry_api::pb;

use crate::store::Store;

/// Records one finished RPC.
pub fn record_rpc(method: &str, code: tonic::Code, elapsed: Duration) {
    let code = format!("{code:?}");
    metrics::counter!("grpc_requests_total", "method" => method.to_owned(), "code" => code).increment(1);
    metrics::histogram!("grpc_request_duration_seconds", "method" => method.to_owned()).record(elapsed.as_secs_f64());
}

/// Counts a published status change.
pub fn record_update(u: &pb::SyncUpdate) {
    if u.state == pb::SyncState::Failed as i32 || (!u.error.is_empty() && u.state == pb::SyncState::Deleting as i32) {
        metrics::counter!("sync_failures_total", "site" => u.site_id.clone()).increment(1);
    }
}

/// Records a site agent's per-phase timings and the change-to-synced latency.
pub fn record_phases(site: &str, list_ms: f64, apply_ms: f64) {
    metrics::histogram!("sync_phase_duration_seconds", "site" => site.to_owned(), "phase" => "list")
        .record(list_ms / 1000.0);
    metrics::histogram!("sync_phase_duration_seconds", "site" => site.to_owned(), "phase" => "apply")
        .record(apply_ms / 1000.0);
}

/// Refreshes the gauges from the store every `every`.
pub async fn refresh_gauges(store: Store, every: Duration) {
    loop {
        let t = Instant::now();
        if let Ok(n) = store.count_entries().await {
            metrics::gauge!("entries_total").set(n as f64);
        }
        if let Ok(counts) = store.site_counts().await {
            for (site, c) in counts {
                for s in zt_entry_api::state::SyncState::ALL {
                    let v = c.by_state.get(s.as_str()).copied().unwrap_or(0);
                    metrics::gauge!("sync_status_by_site", "site" => site.clone(), "state" => s.as_str()).set(v as f64);
                }
                metrics::gauge!("sync_lag_seconds", "site" => site.clone()).set(c.lag_seconds);
                metrics::gauge!("sync_alerting_entries", "site" => site.clone()).set(c.alerting as f64);
            }
        }
        metrics::histogram!("store_gauge_refresh_seconds").record(t.elapsed().as_secs_f64());
        tokio::time::sleep(every).await;
    }
}
