//! `ztlab entries|sites|audit|keys|sync|whoami`: the entry-management API from the command
//! line, over entry-manager's operator listener (TLS with the server's SVID, bearer token).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;
use zt_entry_api::client::Client;
use zt_entry_api::pb;
use zt_entry_api::validate::ValidEntry;
use zt_runtime::lab::Lab;

use crate::Output;
use crate::config::Catalogue;
use crate::table::Table;

mod entries;
mod people;
mod sites;

pub use entries::{EntriesCmd, SpecArgs, entries};
pub use people::{AuditCmd, KeysCmd, audit, keys, whoami};
pub use sites::{SitesCmd, SyncCmd, sites, sync};

/// How to reach entry-manager. Defaults come from the running lab's state dir.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// entry-manager's operator address (host:port). Default: the lab's.
    #[arg(long, global = true, env = "ZT_SERVER")]
    pub server: Option<String>,
    /// PEM trust bundle to verify the server with. Default: the lab's SPIRE bundle.
    #[arg(long, global = true, env = "ZT_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// The DNS name in the server's certificate. Default: entry-manager.<trust domain>.
    #[arg(long, global = true)]
    pub server_name: Option<String>,
    /// An API key or OIDC token. Default: $ZT_TOKEN, else the lab's bootstrap admin key.
    #[arg(long, global = true, env = "ZT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Conn {
    pub fn client(&self, state_dir: &Path) -> anyhow::Result<Client> {
        let lab = Lab::open(state_dir).ok();
        let em = lab.as_ref().and_then(|l| l.spec().workloads.iter().find(|w| w.name == "entry-manager").cloned());
        let server = match (&self.server, &em) {
            (Some(s), _) => s.clone(),
            (None, Some(w)) => format!("127.0.0.1:{}", w.ports.get("operator").copied().unwrap_or(8443)),
            (None, None) => anyhow::bail!(
                "no lab with entry management in {} and no --server: run `ztlab up`, or pass --server, --ca-bundle and --token",
                state_dir.display()
            ),
        };
        let td = em
            .as_ref()
            .and_then(|w| lab.as_ref().and_then(|l| l.site_spec(&w.site).ok()).map(|s| s.trust_domain.clone()))
            .unwrap_or_else(|| "ztlab.test".into());
        let bundle_path = match (&self.ca_bundle, &em, &lab) {
            (Some(p), _, _) => p.clone(),
            (None, Some(w), Some(l)) => l.site_paths(&w.site)?.bundle(),
            _ => anyhow::bail!("--ca-bundle is required when no lab is running here"),
        };
        let bundle = std::fs::read(&bundle_path)
            .with_context(|| format!("reading the trust bundle {}", bundle_path.display()))?;
        let token = match &self.token {
            Some(t) => Some(t.clone()),
            None => {
                let key = zt_runtime::entrymgmt::admin_key_file(state_dir);
                std::fs::read_to_string(&key).ok().map(|s| s.trim().to_owned())
            }
        };
        let name = self.server_name.clone().unwrap_or_else(|| zt_runtime::entrymgmt::entry_manager_dns(&td));
        Ok(Client::operator(&bundle, &name, &server, token.as_deref())?)
    }
}

fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

/// The most rows one request asks for (the server's page-size limit).
const PAGE: usize = 1000;

/// `--limit`'s value: a number of rows, 0 for all.
fn limit_arg(s: &str) -> Result<usize, String> {
    match s.parse::<i128>() {
        Ok(n) if n < 0 => Err(format!("{n} rows is impossible: use 0 (all) or a positive number")),
        Ok(n) => usize::try_from(n).map_err(|_| format!("{n} is too large: use 0 for all")),
        Err(_) => Err(format!("{s:?} is not a number of rows: use 0 (all) or a positive number")),
    }
}

/// Fetches up to `limit` rows (0: all), page by page: `fetch(page_size, page_token)` returns a
/// page and the next token (empty at the end).
async fn fetch_rows<T, F, Fut>(limit: usize, mut fetch: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(i32, String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let want = if limit == 0 { PAGE } else { (limit - all.len()).min(PAGE) };
        let (rows, next) = fetch(want as i32, token).await.map_err(status_err)?;
        all.extend(rows);
        if next.is_empty() || (limit > 0 && all.len() >= limit) {
            break;
        }
        token = next;
    }
    if limit > 0 {
        all.truncate(limit);
    }
    Ok(all)
}

/// Waits until `ids` are SYNCED everywhere, printing progress; errors after `timeout`.
pub async fn wait_synced(client: &Client, ids: &[String], timeout: Duration) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use zt_runtime::wait::{Check, poll_until};
    let last = AtomicUsize::new(usize::MAX);
    poll_until(timeout, Duration::from_millis(200), || async {
        let mut done = 0;
        let mut problems = Vec::new();
        for id in ids {
            let e = match client.entries().get_entry(pb::GetEntryRequest { id: id.clone() }).await {
                Ok(e) => e.into_inner(),
                Err(s) => return Check::Failed(status_err(s)),
            };
            if e.site_status.iter().all(|s| s.state == pb::SyncState::Synced as i32) {
                done += 1;
            }
            for s in e.site_status.iter().filter(|s| s.state == pb::SyncState::Failed as i32) {
                problems.push(format!("{} at {}: {}", e.spiffe_id, s.site_id, s.last_error));
            }
        }
        if last.swap(done, Ordering::Relaxed) != done {
            eprintln!("    {done}/{} entries SYNCED at every site", ids.len());
        }
        if done == ids.len() {
            return Check::Done(());
        }
        Check::NotYet(anyhow::anyhow!(
            "entries did not sync within {timeout:?}{}",
            if problems.is_empty() { String::new() } else { format!(": {}", problems.join("; ")) }
        ))
    })
    .await
}

/// Waits until entry `id` is gone (NotFound: removed from every site); false after `timeout`.
pub async fn wait_deleted(client: &Client, id: &str, timeout: Duration) -> bool {
    use zt_runtime::wait::{Check, poll_until};
    let gone = poll_until(timeout, Duration::from_millis(200), || async {
        match client.entries().get_entry(pb::GetEntryRequest { id: id.to_owned() }).await {
            Err(s) if s.code() == tonic::Code::NotFound => Check::Done(()),
            _ => Check::NotYet(()),
        }
    })
    .await;
    gone.is_ok()
}

/// What `apply` did.
#[derive(Debug, Default)]
pub struct Applied {
    pub ids: Vec<String>,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// Creates or updates the catalogue's entries. Everything is validated before anything is
/// written; new entries are created in one all-or-nothing batch.
pub async fn apply(client: &Client, entries: &[(String, pb::EntrySpec)]) -> anyhow::Result<Applied> {
    let mut valid = Vec::new();
    for (field, spec) in entries {
        valid.push((field.clone(), ValidEntry::parse(field, spec)?));
    }
    let mut out = Applied::default();
    let mut to_create = Vec::new();
    for (field, v) in &valid {
        let want = v.spec();
        let found = client
            .entries()
            .list_entries(pb::ListEntriesRequest {
                filter: Some(pb::ListEntriesFilter {
                    spiffe_id: want.spiffe_id.clone(),
                    parent_id: want.parent_id.clone(),
                    ..Default::default()
                }),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{field}: {:?}: {}", s.code(), s.message()))?
            .into_inner()
            .entries
            .into_iter()
            .find(|e| {
                let mut a: Vec<_> = e.selectors.iter().map(|s| (s.r#type.clone(), s.value.clone())).collect();
                let mut b: Vec<_> = want.selectors.iter().map(|s| (s.r#type.clone(), s.value.clone())).collect();
                a.sort();
                b.sort();
                a == b && !e.site_status.iter().all(|s| s.state == pb::SyncState::Deleting as i32)
            });
        match found {
            None => to_create.push(want.clone()),
            Some(e) => {
                let same = e.x509_svid_ttl == want.x509_svid_ttl
                    && e.jwt_svid_ttl == want.jwt_svid_ttl
                    && e.dns_names == want.dns_names
                    && e.hint == want.hint
                    && e.admin == want.admin
                    && e.downstream == want.downstream
                    && e.site_ids == want.site_ids;
                if same {
                    out.unchanged += 1;
                } else {
                    client
                        .entries()
                        .update_entry(pb::UpdateEntryRequest {
                            id: e.id.clone(),
                            revision: e.revision,
                            entry: Some(want.clone()),
                        })
                        .await
                        .map_err(|s| anyhow::anyhow!("{field}: {:?}: {}", s.code(), s.message()))?;
                    out.updated += 1;
                }
                out.ids.push(e.id);
            }
        }
    }
    if !to_create.is_empty() {
        let created = client
            .entries()
            .batch_create_entries(pb::BatchCreateEntriesRequest { entries: to_create })
            .await
            .map_err(status_err)?
            .into_inner()
            .entries;
        out.created = created.len();
        out.ids.extend(created.into_iter().map(|e| e.id));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fetch_rows` over `total` numbered rows served `page` at a time (the server caps the page
    /// size at 1000): the rows it returns and the page sizes it asked for.
    async fn fetched(total: usize, limit: usize) -> (usize, Vec<i32>) {
        let asked = std::cell::RefCell::new(Vec::new());
        let rows = fetch_rows(limit, |size, token| {
            asked.borrow_mut().push(size);
            let start: usize = if token.is_empty() { 0 } else { token.parse().expect("token") };
            let end = (start + usize::try_from(size).expect("size")).min(total);
            let next = if end < total { end.to_string() } else { String::new() };
            async move {
                assert!((1..=1000).contains(&size), "page size {size}");
                Ok(((start..end).collect::<Vec<_>>(), next))
            }
        })
        .await
        .expect("rows");
        assert!(rows.iter().enumerate().all(|(i, r)| i == *r), "in order, no gaps");
        (rows.len(), asked.into_inner())
    }

    /// `--limit N`: at most N rows, over as many pages as needed; 0 is all.
    #[tokio::test]
    async fn limits_fetch_across_pages() {
        assert_eq!(fetched(2500, 0).await, (2500, vec![1000, 1000, 1000]));
        assert_eq!(fetched(6000, 5000).await, (5000, vec![1000; 5]));
        assert_eq!(fetched(2500, 1200).await, (1200, vec![1000, 200]));
        assert_eq!(fetched(30, 5000).await, (30, vec![1000]));
        assert_eq!(fetched(30, 5).await, (5, vec![5]));
        assert_eq!(fetched(0, 0).await, (0, vec![1000]));
    }

    #[test]
    fn impossible_limits_are_refused() {
        assert_eq!(limit_arg("0"), Ok(0));
        assert_eq!(limit_arg("5000"), Ok(5000));
        for bad in ["-1", "-5000", "x", "1.5", "", "99999999999999999999999999"] {
            assert!(limit_arg(bad).is_err(), "{bad}");
        }
    }
}
