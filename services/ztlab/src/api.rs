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

#[derive(Debug, Subcommand)]
pub enum EntriesCmd {
    /// List entries (with filters), in creation order.
    List {
        /// Only entries that target this site.
        #[arg(long)]
        site: Option<String>,
        /// Only entries with this selector, as `type:value` (for example unix:uid:1000).
        #[arg(long)]
        selector: Option<String>,
        /// Only entries with exactly this SPIFFE ID.
        #[arg(long)]
        spiffe_id: Option<String>,
        /// Only entries whose SPIFFE ID starts with this (for example spiffe://ztlab.test/ns/dev/).
        #[arg(long)]
        prefix: Option<String>,
        /// Only entries with this parent ID.
        #[arg(long)]
        parent_id: Option<String>,
        /// Only entries in this state at some site: PENDING, SYNCED, FAILED or DELETING.
        #[arg(long)]
        state: Option<String>,
        /// Print at most N entries, fetched a page (up to 1000) at a time as needed; 0 prints all.
        #[arg(long, value_name = "N", default_value = "0", value_parser = limit_arg, allow_negative_numbers = true)]
        limit: usize,
    },
    /// Show one entry with its per-site status.
    Get {
        /// The entry's ID (a UUID, as `entries list` shows).
        id: String,
    },
    /// Create an entry.
    Create {
        #[command(flatten)]
        spec: SpecArgs,
        /// Wait until every site is SYNCED.
        #[arg(long)]
        wait: bool,
    },
    /// Replace an entry's fields; --revision must be the one you last read.
    Update {
        /// The entry's ID (a UUID, as `entries list` shows).
        id: String,
        /// The revision you last read (`entries get` shows it); a stale one changes nothing.
        #[arg(long, allow_negative_numbers = true)]
        revision: i64,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Delete an entry (DELETING at each site until it is gone from SPIRE).
    Delete {
        /// The entry's ID (a UUID, as `entries list` shows).
        id: String,
        /// Wait until it is gone from every site.
        #[arg(long)]
        wait: bool,
    },
    /// Create or update the entries of a catalogue file (idempotent; nothing is deleted).
    Apply {
        /// The catalogue (TOML); `-` for standard input.
        #[arg(short, long)]
        file: PathBuf,
        /// Wait until every entry of the file is SYNCED.
        #[arg(long)]
        wait: bool,
    },
}

impl EntriesCmd {
    /// Checks the input that needs no server, so that bad input is refused (naming its field)
    /// before any connection is made.
    pub fn check(&self) -> anyhow::Result<()> {
        match self {
            EntriesCmd::Create { spec, .. } | EntriesCmd::Update { spec, .. } => spec.to_spec().map(drop),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SpecArgs {
    /// The workload's SPIFFE ID, for example spiffe://ztlab.test/ns/dev/sa/api.
    #[arg(long)]
    spiffe_id: String,
    /// The parent: the agent's node alias, for example spiffe://ztlab.test/ztlab/nodes/local.
    #[arg(long)]
    parent_id: String,
    /// A selector as `type:value` (for example unix:uid:1000); repeatable, each at most once.
    #[arg(long = "selector", required = true)]
    selectors: Vec<String>,
    /// A site to sync the entry to; repeatable.
    #[arg(long = "site", required = true)]
    sites: Vec<String>,
    /// X.509-SVID lifetime in seconds: 0 for the SPIRE server's default, else 10 to 2592000.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    x509_svid_ttl: i32,
    /// JWT-SVID lifetime in seconds: 0 for the SPIRE server's default, else 10 to 2592000.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    jwt_svid_ttl: i32,
    /// A DNS name for the X.509-SVID (the first becomes its CN); repeatable.
    #[arg(long = "dns")]
    dns_names: Vec<String>,
    /// A hint for workloads that get several SVIDs (at most 1024 printable characters).
    #[arg(long, default_value = "")]
    hint: String,
    /// The SVID may call SPIRE's admin APIs.
    #[arg(long)]
    admin: bool,
    /// The SVID may mint SVIDs for a downstream SPIRE server.
    #[arg(long)]
    downstream: bool,
}

impl SpecArgs {
    /// The entry to send, checked by the API's own rules first (the server checks again), so
    /// that bad input is refused, naming its field, before anything is sent.
    pub fn to_spec(&self) -> anyhow::Result<pb::EntrySpec> {
        let mut selectors = Vec::new();
        for (i, s) in self.selectors.iter().enumerate() {
            selectors.push(zt_entry_api::validate::selector_str(&format!("entry.selectors[{i}]"), s)?);
        }
        let spec = pb::EntrySpec {
            spiffe_id: self.spiffe_id.clone(),
            parent_id: self.parent_id.clone(),
            selectors,
            x509_svid_ttl: self.x509_svid_ttl,
            jwt_svid_ttl: self.jwt_svid_ttl,
            dns_names: self.dns_names.clone(),
            admin: self.admin,
            downstream: self.downstream,
            hint: self.hint.clone(),
            site_ids: self.sites.clone(),
        };
        ValidEntry::parse("entry", &spec)?;
        Ok(spec)
    }
}

fn parse_state(s: &str) -> anyhow::Result<pb::SyncState> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "PENDING" => pb::SyncState::Pending,
        "SYNCED" => pb::SyncState::Synced,
        "FAILED" => pb::SyncState::Failed,
        "DELETING" => pb::SyncState::Deleting,
        _ => anyhow::bail!("--state: {s:?} is not PENDING, SYNCED, FAILED or DELETING"),
    })
}

fn entry_row(e: &pb::Entry) -> Vec<String> {
    let sites: Vec<String> = e
        .site_status
        .iter()
        .map(|s| {
            let mut t = format!("{}={}", s.site_id, zt_entry_api::json::state(s.state));
            if s.alerting {
                t.push('!');
            }
            t
        })
        .collect();
    vec![
        e.id.clone(),
        e.spiffe_id.clone(),
        e.selectors.iter().map(|s| format!("{}:{}", s.r#type, s.value)).collect::<Vec<_>>().join(","),
        e.revision.to_string(),
        sites.join(" "),
    ]
}

fn print_entries(out: Output, entries: &[pb::Entry]) {
    match out {
        Output::Json => println!("{}", Value::Array(entries.iter().map(zt_entry_api::json::entry).collect())),
        Output::Table => {
            let mut t = Table::new(["ID", "SPIFFE ID", "SELECTORS", "REV", "SITES"]);
            for e in entries {
                t.row(entry_row(e));
            }
            t.print();
        }
    }
}

fn print_entry(out: Output, e: &pb::Entry) {
    match out {
        Output::Json => println!("{:#}", zt_entry_api::json::entry(e)),
        Output::Table => {
            let v = zt_entry_api::json::entry(e);
            for k in [
                "id",
                "spiffe_id",
                "parent_id",
                "selectors",
                "x509_svid_ttl",
                "jwt_svid_ttl",
                "dns_names",
                "hint",
                "admin",
                "downstream",
                "revision",
                "created_by",
                "created_at",
                "updated_at",
            ] {
                println!("{:<14} {}", k, v[k]);
            }
            let mut t = Table::new(["SITE", "STATE", "SPIRE ENTRY ID", "SYNCED REV", "ATTEMPTS", "LAST ERROR"]);
            for s in &e.site_status {
                t.row(vec![
                    s.site_id.clone(),
                    zt_entry_api::json::state(s.state).into(),
                    s.spire_entry_id.clone(),
                    s.synced_revision.to_string(),
                    s.attempts.to_string(),
                    s.last_error.clone(),
                ]);
            }
            println!();
            t.print();
        }
    }
}

/// Waits until `ids` are SYNCED everywhere, printing progress; errors after `timeout`.
pub async fn wait_synced(client: &Client, ids: &[String], timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = usize::MAX;
    loop {
        let mut done = 0;
        let mut problems = Vec::new();
        for id in ids {
            let e = client
                .entries()
                .get_entry(pb::GetEntryRequest { id: id.clone() })
                .await
                .map_err(status_err)?
                .into_inner();
            if e.site_status.iter().all(|s| s.state == pb::SyncState::Synced as i32) {
                done += 1;
            }
            for s in e.site_status.iter().filter(|s| s.state == pb::SyncState::Failed as i32) {
                problems.push(format!("{} at {}: {}", e.spiffe_id, s.site_id, s.last_error));
            }
        }
        if done != last {
            eprintln!("    {done}/{} entries SYNCED at every site", ids.len());
            last = done;
        }
        if done == ids.len() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "entries did not sync within {timeout:?}{}",
                if problems.is_empty() { String::new() } else { format!(": {}", problems.join("; ")) }
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

pub async fn entries(
    client: &Client,
    out: Output,
    cmd: EntriesCmd,
    spec: &zt_runtime::lab::LabSpec,
) -> anyhow::Result<()> {
    match cmd {
        EntriesCmd::List { site, selector, spiffe_id, prefix, parent_id, state, limit } => {
            let filter = pb::ListEntriesFilter {
                site_id: site.unwrap_or_default(),
                selector: selector.unwrap_or_default(),
                spiffe_id: spiffe_id.unwrap_or_default(),
                spiffe_id_prefix: prefix.unwrap_or_default(),
                parent_id: parent_id.unwrap_or_default(),
                sync_state: state.as_deref().map(parse_state).transpose()?.map(|s| s as i32).unwrap_or(0),
            };
            let all = fetch_rows(limit, |page_size, page_token| {
                let req = pb::ListEntriesRequest { filter: Some(filter.clone()), page_size, page_token };
                let mut entries = client.entries();
                async move {
                    let r = entries.list_entries(req).await?.into_inner();
                    Ok((r.entries, r.next_page_token))
                }
            })
            .await?;
            print_entries(out, &all);
        }
        EntriesCmd::Get { id } => {
            let e = client.entries().get_entry(pb::GetEntryRequest { id }).await.map_err(status_err)?.into_inner();
            print_entry(out, &e);
        }
        EntriesCmd::Create { spec, wait } => {
            let e = client
                .entries()
                .create_entry(pb::CreateEntryRequest { entry: Some(spec.to_spec()?) })
                .await
                .map_err(status_err)?
                .into_inner();
            if wait {
                wait_synced(client, std::slice::from_ref(&e.id), Duration::from_secs(60)).await?;
                let e = client
                    .entries()
                    .get_entry(pb::GetEntryRequest { id: e.id })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                print_entry(out, &e);
            } else {
                print_entry(out, &e);
            }
        }
        EntriesCmd::Update { id, revision, spec } => {
            let e = client
                .entries()
                .update_entry(pb::UpdateEntryRequest { id, revision, entry: Some(spec.to_spec()?) })
                .await
                .map_err(status_err)?
                .into_inner();
            print_entry(out, &e);
        }
        EntriesCmd::Delete { id, wait } => {
            let e = client
                .entries()
                .delete_entry(pb::DeleteEntryRequest { id: id.clone() })
                .await
                .map_err(status_err)?
                .into_inner();
            print_entry(out, &e);
            if wait {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    match client.entries().get_entry(pb::GetEntryRequest { id: id.clone() }).await {
                        Err(s) if s.code() == tonic::Code::NotFound => break,
                        _ if tokio::time::Instant::now() >= deadline => {
                            anyhow::bail!("entry {id} is still being deleted after 60 s")
                        }
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
                eprintln!("entry {id} is gone from every site");
            }
        }
        EntriesCmd::Apply { file, wait } => {
            let (text, name) = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                (s, "standard input".to_owned())
            } else {
                (
                    std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?,
                    file.display().to_string(),
                )
            };
            let catalogue = Catalogue::parse(&text, &name)?;
            let entries = catalogue.entries(spec)?;
            let applied = apply(client, &entries).await?;
            eprintln!(
                "applied {name}: {} created, {} updated, {} unchanged",
                applied.created, applied.updated, applied.unchanged
            );
            if wait {
                wait_synced(client, &applied.ids, Duration::from_secs(60)).await?;
            }
            if matches!(out, Output::Json) {
                println!(
                    "{}",
                    serde_json::json!({"created": applied.created, "updated": applied.updated, "unchanged": applied.unchanged, "ids": applied.ids})
                );
            }
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum SitesCmd {
    /// List sites.
    List,
    /// Show a site.
    Get {
        /// The site's ID, for example a.
        id: String,
    },
    /// Create a site (Admin).
    Create {
        /// The new site's ID: 1-63 of a-z, 0-9 and -, for example b.
        id: String,
        /// The trust domain of the site's SPIRE server, for example ztlab.test.
        #[arg(long)]
        trust_domain: String,
        /// Free text about the site.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Update a site's description or trust domain; --revision must be current (Admin).
    Update {
        /// The site's ID.
        id: String,
        /// The revision you last read (`sites get` shows it); a stale one changes nothing.
        #[arg(long, allow_negative_numbers = true)]
        revision: i64,
        /// The trust domain of the site's SPIRE server.
        #[arg(long)]
        trust_domain: String,
        /// Free text about the site.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a site; refused while entries target it (Admin).
    Delete {
        /// The site's ID.
        id: String,
    },
    /// Agent connection, sync lag, backlog, failures and unmanaged entries of every site (or one).
    Health {
        /// Only this site.
        id: Option<String>,
    },
}

pub async fn sites(client: &Client, out: Output, cmd: SitesCmd) -> anyhow::Result<()> {
    let print_sites = |sites: Vec<pb::Site>| match out {
        Output::Json => println!("{}", Value::Array(sites.iter().map(zt_entry_api::json::site).collect())),
        Output::Table => {
            let mut t = Table::new(["ID", "TRUST DOMAIN", "REV", "DESCRIPTION"]);
            for s in sites {
                t.row(vec![s.id, s.trust_domain, s.revision.to_string(), s.description]);
            }
            t.print();
        }
    };
    match cmd {
        SitesCmd::List => print_sites(
            client.sites().list_sites(pb::ListSitesRequest {}).await.map_err(status_err)?.into_inner().sites,
        ),
        SitesCmd::Get { id } => print_sites(vec![
            client.sites().get_site(pb::GetSiteRequest { id }).await.map_err(status_err)?.into_inner(),
        ]),
        SitesCmd::Create { id, trust_domain, description } => {
            let site = pb::Site { id, trust_domain, description, ..Default::default() };
            print_sites(vec![
                client
                    .sites()
                    .create_site(pb::CreateSiteRequest { site: Some(site) })
                    .await
                    .map_err(status_err)?
                    .into_inner(),
            ]);
        }
        SitesCmd::Update { id, revision, trust_domain, description } => {
            let site = pb::Site { id, trust_domain, description, revision, ..Default::default() };
            print_sites(vec![
                client
                    .sites()
                    .update_site(pb::UpdateSiteRequest { site: Some(site) })
                    .await
                    .map_err(status_err)?
                    .into_inner(),
            ]);
        }
        SitesCmd::Delete { id } => print_sites(vec![
            client.sites().delete_site(pb::DeleteSiteRequest { id }).await.map_err(status_err)?.into_inner(),
        ]),
        SitesCmd::Health { id } => {
            let ids = match id {
                Some(id) => vec![id],
                None => client
                    .sites()
                    .list_sites(pb::ListSitesRequest {})
                    .await
                    .map_err(status_err)?
                    .into_inner()
                    .sites
                    .into_iter()
                    .map(|s| s.id)
                    .collect(),
            };
            let mut all = Vec::new();
            for id in ids {
                all.push(
                    client
                        .sites()
                        .get_site_health(pb::GetSiteHealthRequest { id })
                        .await
                        .map_err(status_err)?
                        .into_inner(),
                );
            }
            match out {
                Output::Json => println!("{}", Value::Array(all.iter().map(zt_entry_api::json::health).collect())),
                Output::Table => {
                    let mut t = Table::new([
                        "SITE",
                        "AGENT",
                        "LAST CONTACT",
                        "LAG S",
                        "SYNCED",
                        "PENDING",
                        "FAILED",
                        "DELETING",
                        "ALERTING",
                        "UNMANAGED",
                    ]);
                    for h in &all {
                        t.row(vec![
                            h.site_id.clone(),
                            if h.agent_connected { "connected" } else { "DISCONNECTED" }.into(),
                            zt_entry_api::json::time(&h.last_contact_at).as_str().unwrap_or("never").to_owned(),
                            format!("{:.1}", h.sync_lag_seconds),
                            h.synced.to_string(),
                            h.pending.to_string(),
                            h.failed.to_string(),
                            h.deleting.to_string(),
                            h.alerting.to_string(),
                            h.unmanaged_entries.to_string(),
                        ]);
                    }
                    t.print();
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Audit events, newest first.
    List {
        /// Events about this entry (or other resource ID).
        #[arg(long)]
        entry: Option<String>,
        /// Events by this actor, as the audit shows it (for example apikey:ci, oidc:jake).
        #[arg(long)]
        actor: Option<String>,
        /// Events at or after this RFC 3339 time (for example 2026-11-22T10:00:00Z).
        #[arg(long, value_parser = parse_time)]
        since: Option<time::OffsetDateTime>,
        /// Events before this RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        until: Option<time::OffsetDateTime>,
        /// Print at most N events (newest first), fetched a page (up to 1000) at a time as needed;
        /// 0 prints all.
        #[arg(long, value_name = "N", default_value = "50", value_parser = limit_arg, allow_negative_numbers = true)]
        limit: usize,
    },
}

fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time like 2026-11-22T10:00:00Z ({e})"))
}

fn timestamp(t: time::OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.unix_timestamp(), nanos: t.nanosecond() as i32 }
}

pub async fn audit(client: &Client, out: Output, cmd: AuditCmd) -> anyhow::Result<()> {
    let AuditCmd::List { entry, actor, since, until, limit } = cmd;
    let events = fetch_rows(limit, |page_size, page_token| {
        let req = pb::ListAuditEventsRequest {
            entry_id: entry.clone().unwrap_or_default(),
            actor: actor.clone().unwrap_or_default(),
            since: since.map(timestamp),
            until: until.map(timestamp),
            page_size,
            page_token,
        };
        let mut audit = client.audit();
        async move {
            let r = audit.list_audit_events(req).await?.into_inner();
            Ok((r.events, r.next_page_token))
        }
    })
    .await?;
    match out {
        Output::Json => println!("{}", Value::Array(events.iter().map(zt_entry_api::json::audit_event).collect())),
        Output::Table => {
            let mut t = Table::new(["ID", "AT", "ACTOR", "ACTION", "RESOURCE"]);
            for e in &events {
                t.row(vec![
                    e.id.to_string(),
                    zt_entry_api::json::time(&e.at).as_str().unwrap_or("").to_owned(),
                    e.actor.clone(),
                    e.action.clone(),
                    e.resource_id.clone(),
                ]);
            }
            t.print();
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Create an API key (Admin); prints the secret once.
    Create {
        /// The key's name: 1-64 of letters, digits, - and _ (for example ci).
        name: String,
        /// The key's role: admin, operator, developer or viewer.
        #[arg(long)]
        role: String,
        /// For developer keys: a SPIFFE ID path prefix it may write (repeatable).
        #[arg(long = "path-prefix")]
        path_prefixes: Vec<String>,
    },
    /// List API keys (no secrets).
    List,
    /// Revoke an API key.
    Revoke {
        /// The key's ID (a UUID, as `keys list` shows).
        id: String,
    },
}

pub async fn keys(client: &Client, out: Output, cmd: KeysCmd) -> anyhow::Result<()> {
    let print = |keys: Vec<pb::ApiKey>| match out {
        Output::Json => println!("{}", Value::Array(keys.iter().map(zt_entry_api::json::api_key).collect())),
        Output::Table => {
            let mut t = Table::new(["ID", "NAME", "ROLE", "PREFIXES", "CREATED BY", "REVOKED"]);
            for k in keys {
                t.row(vec![
                    k.id,
                    k.name,
                    zt_entry_api::json::role(k.role).into(),
                    k.path_prefixes.join(","),
                    k.created_by,
                    k.revoked.to_string(),
                ]);
            }
            t.print();
        }
    };
    match cmd {
        KeysCmd::Create { name, role, path_prefixes } => {
            let role = match role.to_ascii_lowercase().as_str() {
                "admin" => pb::Role::Admin,
                "operator" => pb::Role::Operator,
                "developer" => pb::Role::Developer,
                "viewer" => pb::Role::Viewer,
                _ => anyhow::bail!("--role: {role:?} is not admin, operator, developer or viewer"),
            };
            let resp = client
                .keys()
                .create_api_key(pb::CreateApiKeyRequest { name, role: role as i32, path_prefixes })
                .await
                .map_err(status_err)?
                .into_inner();
            eprintln!("the secret is shown once; store it now:");
            println!("{}", resp.secret);
        }
        KeysCmd::List => {
            print(client.keys().list_api_keys(pb::ListApiKeysRequest {}).await.map_err(status_err)?.into_inner().keys)
        }
        KeysCmd::Revoke { id } => print(vec![
            client.keys().revoke_api_key(pb::RevokeApiKeyRequest { id }).await.map_err(status_err)?.into_inner(),
        ]),
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum SyncCmd {
    /// Ask a site's agent for a full resync now.
    Trigger {
        /// The site's ID.
        site: String,
    },
    /// An entry's status at each site.
    Status {
        /// The entry's ID.
        entry: String,
    },
    /// Print status changes as they happen (Ctrl-C to stop).
    Watch {
        /// Only changes at this site.
        #[arg(long)]
        site: Option<String>,
        /// Only changes of this entry (its ID).
        #[arg(long)]
        entry: Option<String>,
    },
}

pub async fn sync(client: &Client, cmd: SyncCmd) -> anyhow::Result<()> {
    match cmd {
        SyncCmd::Trigger { site } => {
            client.sync().trigger_sync(pb::TriggerSyncRequest { site_id: site.clone() }).await.map_err(status_err)?;
            eprintln!("site {site}: full resync requested");
        }
        SyncCmd::Status { entry } => {
            let st = client
                .sync()
                .get_sync_status(pb::GetSyncStatusRequest { entry_id: entry })
                .await
                .map_err(status_err)?
                .into_inner();
            for s in st.site_status {
                println!(
                    "{} {} rev={} attempts={} {}",
                    s.site_id,
                    zt_entry_api::json::state(s.state),
                    s.synced_revision,
                    s.attempts,
                    s.last_error
                );
            }
        }
        SyncCmd::Watch { site, entry } => {
            let mut stream = client
                .sync()
                .stream_sync_updates(pb::StreamSyncUpdatesRequest {
                    site_id: site.unwrap_or_default(),
                    entry_id: entry.unwrap_or_default(),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    m = stream.message() => match m.map_err(status_err)? {
                        Some(u) => println!(
                            "{} entry={} site={} {}{} rev={} {}",
                            zt_entry_api::json::time(&u.at).as_str().unwrap_or(""),
                            u.entry_id, u.site_id, zt_entry_api::json::state(u.state),
                            if u.removed { " (removed)" } else { "" }, u.revision, u.error
                        ),
                        None => return Ok(()),
                    }
                }
            }
        }
    }
    Ok(())
}

pub async fn whoami(client: &Client, out: Output) -> anyhow::Result<()> {
    let me = client.identity().who_am_i(pb::WhoAmIRequest {}).await.map_err(status_err)?.into_inner();
    let v = serde_json::json!({"actor": me.actor, "role": zt_entry_api::json::role(me.role), "site_id": me.site_id, "path_prefixes": me.path_prefixes});
    match out {
        Output::Json => println!("{v}"),
        Output::Table => println!("{} ({})", me.actor, zt_entry_api::json::role(me.role)),
    }
    Ok(())
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
