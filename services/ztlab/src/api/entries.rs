//! `ztlab entries`: list, get, create, update, delete and apply registration entries.

use super::*;
use zt_entry_api::state::SyncState;

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
    let state = SyncState::from_name(&s.to_ascii_uppercase());
    let state = state.ok_or_else(|| anyhow::anyhow!("--state: {s:?} is not PENDING, SYNCED, FAILED or DELETING"))?;
    Ok(state.to_pb())
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
                if !wait_deleted(client, &id, Duration::from_secs(60)).await {
                    anyhow::bail!("entry {id} is still being deleted after 60 s");
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
