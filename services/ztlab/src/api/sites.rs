//! `ztlab sites` (sites and their sync health) and `ztlab sync` (status and resyncs).

use super::*;

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
            let answer = client.sites().create_site(pb::CreateSiteRequest { site: Some(site) }).await;
            print_sites(vec![answer.map_err(status_err)?.into_inner()]);
        }
        SitesCmd::Update { id, revision, trust_domain, description } => {
            let site = pb::Site { id, trust_domain, description, revision, ..Default::default() };
            let answer = client.sites().update_site(pb::UpdateSiteRequest { site: Some(site) }).await;
            print_sites(vec![answer.map_err(status_err)?.into_inner()]);
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
