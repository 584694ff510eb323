//! `ztlab audit`, `ztlab keys` and `ztlab whoami`: who did what, API keys, who you are.

use super::*;

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
            let rows = events.iter().map(|e| {
                let at = zt_entry_api::json::time(&e.at).as_str().unwrap_or("").to_owned();
                vec![e.id.to_string(), at, e.actor.clone(), e.action.clone(), e.resource_id.clone()]
            });
            Table::with_rows(["ID", "AT", "ACTOR", "ACTION", "RESOURCE"], rows).print();
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

pub async fn whoami(client: &Client, out: Output) -> anyhow::Result<()> {
    let me = client.identity().who_am_i(pb::WhoAmIRequest {}).await.map_err(status_err)?.into_inner();
    let v = serde_json::json!({"actor": me.actor, "role": zt_entry_api::json::role(me.role), "site_id": me.site_id, "path_prefixes": me.path_prefixes});
    match out {
        Output::Json => println!("{v}"),
        Output::Table => println!("{} ({})", me.actor, zt_entry_api::json::role(me.role)),
    }
    Ok(())
}
