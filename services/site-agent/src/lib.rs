//! `site-agent`: keeps one SPIRE server equal to the central store, for one site.
//!
//! Reconciliation is level-triggered. Each round takes the site's whole desired state from
//! entry-manager (`PollEntries`, a long-poll that returns at once on change), lists what the
//! SPIRE server holds (Entry API over its admin unix socket), and converges:
//! - entries it manages carry caller-chosen IDs `ztlab.<central id>`, so a create that is
//!   repeated after a crash finds its entry instead of making a second one;
//! - entries without the prefix are unmanaged: reported, never touched;
//! - results are per entry (SPIRE batches are not atomic) and reported back
//!   (`ReportSyncResult`); failures are retried at the time the store schedules (5 s → 5 min).
//!
//! A full round also runs every `full_resync_secs` as a safety net, and on `TriggerSync`.
//!
//! Module map: [`Config`], [`Agent`] (the loop), [`plan`] (the pure diff, unit-tested).

pub mod plan;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zt_entry_api::pb;
use zt_entry_api::pb::sync_service_client::SyncServiceClient;
use zt_service::workload::WorkloadSettings;
use zt_spire_api::SpireEntryClient;
use zt_tls::X509Source;

/// Configuration: defaults, then the TOML file, then `ZT_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Workload API socket, trust domain, ops listener.
    #[serde(flatten)]
    pub workload: WorkloadSettings,
    /// The site this agent serves.
    pub site_id: String,
    /// entry-manager's mTLS gRPC address.
    pub entry_manager_addr: String,
    /// The SPIFFE ID entry-manager must present; empty: `/ns/ztlab-system/sa/entry-manager`
    /// in this trust domain.
    pub entry_manager_id: String,
    /// The SPIRE server's admin API socket.
    pub spire_admin_socket: PathBuf,
    /// A full reconciliation at least this often, seconds.
    pub full_resync_secs: u64,
    /// Longest long-poll, seconds.
    pub poll_wait_secs: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workload: WorkloadSettings::default(),
            site_id: String::new(),
            entry_manager_addr: "127.0.0.1:8444".into(),
            entry_manager_id: String::new(),
            spire_admin_socket: PathBuf::from("/tmp/spire-server/private/api.sock"),
            full_resync_secs: 30,
            poll_wait_secs: 25,
        }
    }
}

/// The running agent.
pub struct Agent {
    config: Config,
    sync: SyncServiceClient<tonic::transport::Channel>,
    source: X509Source,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("site", &self.config.site_id).finish_non_exhaustive()
    }
}

impl Agent {
    /// Validates the config and connects (lazily) to entry-manager with this workload's SVID.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        zt_entry_api::validate::site_id("site_id", &config.site_id)?;
        let td = config.workload.trust_domain()?;
        let em_id = if config.entry_manager_id.is_empty() {
            zt_identity::lab::id(td.as_str(), zt_identity::lab::ENTRY_MANAGER)?
        } else {
            zt_identity::parse_id("entry_manager_id", &config.entry_manager_id)?
        };
        let source = config.workload.connect().await?;
        let channel = zt_tls::client::grpc_channel(
            &source,
            &td,
            Arc::new(zt_identity::Rule::Exact(em_id)),
            &config.entry_manager_addr,
        )?;
        let sync =
            SyncServiceClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20);
        Ok(Self { config, sync, source })
    }

    /// Runs until `shutdown` resolves.
    pub async fn run_until_stopped<F>(mut self, shutdown: F) -> anyhow::Result<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let ops_l = zt_service::workload::bind("ops_addr", &self.config.workload.ops_addr).await?;
        let ops = zt_service::ops::router("site-agent", self.source.clone(), zt_service::ops::install_metrics());
        tokio::spawn(axum::serve(ops_l, ops).into_future());
        let _svid = zt_tls::source::watch_svid(&self.source);
        tokio::pin!(shutdown);
        let mut known = 0u64;
        let mut last_full = Instant::now() - Duration::from_secs(3600);
        let mut spire: Option<SpireEntryClient> = None;
        let mut errors = 0u32;
        let mut next_wait = 0u32;
        tracing::info!(site = %self.config.site_id, "running");
        loop {
            let poll = self.sync.poll_entries(pb::PollEntriesRequest {
                site_id: self.config.site_id.clone(),
                known_version: known,
                wait_seconds: next_wait,
            });
            let resp = tokio::select! {
                r = poll => r,
                () = &mut shutdown => break,
            };
            let resp = match resp {
                Ok(r) => {
                    errors = 0;
                    r.into_inner()
                }
                Err(status) => {
                    errors += 1;
                    let pause = Duration::from_millis(500 * u64::from(errors.min(20)));
                    tracing::warn!(site = %self.config.site_id, code = ?status.code(), error = %status.message(), "poll failed; retrying in {pause:?}");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = &mut shutdown => break,
                    }
                }
            };
            let full_due = last_full.elapsed() >= Duration::from_secs(self.config.full_resync_secs);
            let retry_due = plan::retry_due(&resp.entries, time::OffsetDateTime::now_utc());
            if resp.changed || resp.resync_requested || full_due || retry_due || known == 0 {
                let report = self.round(&mut spire, &resp.entries).await;
                let clean = report.results.iter().all(|r| r.outcome != pb::SyncOutcome::Failed as i32);
                if let Err(status) = self.sync.report_sync_result(report).await {
                    tracing::warn!(code = ?status.code(), error = %status.message(), "report failed");
                } else if clean || known == 0 {
                    known = resp.version;
                }
                last_full = Instant::now();
            }
            // Come back for the earliest scheduled retry or the next full resync.
            let until_full = self.config.full_resync_secs.saturating_sub(last_full.elapsed().as_secs());
            let until_retry = plan::secs_until_next_retry(&resp.entries, time::OffsetDateTime::now_utc());
            next_wait = [u64::from(self.config.poll_wait_secs), until_full, until_retry.unwrap_or(u64::MAX)]
                .into_iter()
                .min()
                .unwrap_or(1)
                .max(1) as u32;
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// One reconciliation: list, diff, apply, and the per-entry results to report.
    async fn round(
        &self,
        spire: &mut Option<SpireEntryClient>,
        desired: &[pb::DesiredEntry],
    ) -> pb::ReportSyncResultRequest {
        let site = self.config.site_id.clone();
        let now = time::OffsetDateTime::now_utc();
        let started = Instant::now();
        let listed = async {
            if spire.is_none() {
                *spire = Some(SpireEntryClient::connect(&self.config.spire_admin_socket).await?);
            }
            let client = spire.as_ref().expect("connected above");
            client.list_all(None).await
        }
        .await;
        let list_ms = started.elapsed().as_secs_f64() * 1000.0;
        let current = match listed {
            Ok(c) => c,
            Err(e) => {
                *spire = None;
                let msg = format!("SPIRE server unavailable: {e}");
                tracing::warn!(site = %site, error = %msg, "cannot list entries");
                let results = plan::fail_all_due(desired, now, &msg);
                metrics::counter!("site_agent_rounds_total", "outcome" => "spire_unavailable").increment(1);
                return pb::ReportSyncResultRequest {
                    site_id: site,
                    results,
                    unmanaged_entry_ids: vec![],
                    list_ms,
                    apply_ms: 0.0,
                };
            }
        };
        let plan = plan::plan(desired, &current, now);
        let client = spire.as_ref().expect("connected above");
        let applied = Instant::now();
        let mut results = plan.already;
        results.extend(plan::apply(client, &plan.create, &plan.update, &plan.delete, &plan.delete_orphans).await);
        let apply_ms = applied.elapsed().as_secs_f64() * 1000.0;
        metrics::counter!("site_agent_rounds_total", "outcome" => "ok").increment(1);
        metrics::histogram!("site_agent_round_seconds").record(started.elapsed().as_secs_f64());
        if !plan.create.is_empty()
            || !plan.update.is_empty()
            || !plan.delete.is_empty()
            || !plan.delete_orphans.is_empty()
        {
            tracing::info!(
                site = %site,
                created = plan.create.len(), updated = plan.update.len(), deleted = plan.delete.len() + plan.delete_orphans.len(),
                unmanaged = plan.unmanaged.len(), list_ms, apply_ms, "reconciled"
            );
        }
        pb::ReportSyncResultRequest { site_id: site, results, unmanaged_entry_ids: plan.unmanaged, list_ms, apply_ms }
    }
}
