//! The gRPC client wrapper: entry-manager's mTLS listener, called with the frontend's own SVID
//! (the server must present entry-manager's SPIFFE ID), with a timeout on every call.

use std::sync::Arc;
use std::time::Duration;

use zt_entry_api::client::Client;
use zt_entry_api::pb;
use zt_tls::X509Source;

use super::errors::UNREACHABLE_TODO;
use crate::error::Failure;

/// A client for entry-manager's mTLS listener.
#[derive(Debug)]
pub struct EntryManager {
    client: Client,
    url: String,
    timeout: Duration,
}

/// What the pages show.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every entry.
    pub entries: Vec<pb::Entry>,
    /// Every site with its health.
    pub sites: Vec<(pb::Site, pb::SiteHealth)>,
    /// Who entry-manager takes the UI for (role, Developer prefixes): the pages leave out the
    /// actions it would refuse. None when WhoAmI failed (the buttons stay; entry-manager decides).
    pub caller: Option<pb::WhoAmIResponse>,
}

impl Snapshot {
    /// A snapshot of `entries` alone (no sites, caller unknown), for tests.
    #[cfg(test)]
    pub fn of(entries: Vec<pb::Entry>) -> Self {
        Self { entries, sites: vec![], caller: None }
    }

    /// Whether the UI's caller may delete (or otherwise write) the entry of `spiffe_id`.
    pub fn may_write(&self, spiffe_id: &str) -> bool {
        self.caller.as_ref().is_none_or(|c| zt_entry_api::access::may_write(c.role(), &c.path_prefixes, spiffe_id))
    }
}

/// `host:port` of an `https://host:port` URL (a bare `host:port` is taken as it is).
pub fn authority(url: &str) -> Result<String, String> {
    let rest = url.trim().trim_end_matches('/');
    let rest = rest.strip_prefix("https://").unwrap_or(rest);
    if rest.contains("://") {
        return Err("entry-manager speaks gRPC over mTLS: use https://host:port".into());
    }
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !rest.contains('/') && port.parse::<u16>().is_ok() => {
            Ok(rest.to_owned())
        }
        _ => Err("expected https://host:port".into()),
    }
}

impl EntryManager {
    /// A client for `config.entry_manager_url` with the SVIDs of `source`.
    pub fn new(config: &crate::Config, source: &X509Source) -> anyhow::Result<Self> {
        let td = config.workload.trust_domain()?;
        let addr = authority(&config.entry_manager_url).map_err(|reason| crate::Error::InvalidSetting {
            field: "entry_manager_url".into(),
            value: config.entry_manager_url.clone(),
            reason,
        })?;
        let id = zt_identity::lab::id(td.as_str(), zt_identity::lab::ENTRY_MANAGER)?;
        let channel = zt_tls::client::grpc_channel(source, &td, Arc::new(zt_identity::Rule::Exact(id)), &addr)?;
        Ok(Self {
            client: Client::with_channel(channel, None)?,
            url: config.entry_manager_url.clone(),
            timeout: config.request_timeout,
        })
    }

    /// A client over an existing `client` (tests use a plain channel to a fake server).
    pub fn over(client: Client, url: &str, timeout: Duration) -> Self {
        Self { client, url: url.to_owned(), timeout }
    }

    /// The URL it calls, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `msg` as a request carrying `trace_id` (entry-manager stores it with the audit row).
    fn request<T>(msg: T, trace_id: &str) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Ok(v) = trace_id.parse() {
            req.metadata_mut().insert("x-trace-id", v);
        }
        req
    }

    /// Runs `call` within the timeout (a late answer is `DeadlineExceeded`).
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    /// `CreateEntry`.
    pub async fn create(&self, spec: pb::EntrySpec, trace_id: &str) -> Result<pb::Entry, tonic::Status> {
        let req = Self::request(pb::CreateEntryRequest { entry: Some(spec) }, trace_id);
        self.timed(self.client.entries().create_entry(req)).await
    }

    /// `DeleteEntry`: the entry goes DELETING at every site.
    pub async fn delete(&self, id: &str, trace_id: &str) -> Result<pb::Entry, tonic::Status> {
        let req = Self::request(pb::DeleteEntryRequest { id: id.to_owned() }, trace_id);
        self.timed(self.client.entries().delete_entry(req)).await
    }

    /// `ListAuditEvents`, newest first: every event, or those of entry `entry_id`.
    pub async fn audit(&self, entry_id: &str, page_size: i32) -> Result<Vec<pb::AuditEvent>, tonic::Status> {
        let req = pb::ListAuditEventsRequest { entry_id: entry_id.to_owned(), page_size, ..Default::default() };
        let mut events = self.timed(self.client.audit().list_audit_events(req)).await?.events;
        events.sort_by_key(|e| std::cmp::Reverse(e.id));
        Ok(events)
    }

    /// Every entry and every site with its health.
    pub async fn snapshot(&self) -> Result<Snapshot, Failure> {
        match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(r) => r.map_err(|s| Failure::from_status(&self.url, &s)),
            Err(_) => Err(Failure::new(
                format!(
                    "entry-manager at {} did not answer within {}",
                    self.url,
                    humantime::format_duration(self.timeout)
                ),
                UNREACHABLE_TODO,
            )),
        }
    }

    async fn fetch(&self) -> Result<Snapshot, tonic::Status> {
        let mut entries = Vec::new();
        let mut token = String::new();
        loop {
            let resp = self
                .client
                .entries()
                .list_entries(pb::ListEntriesRequest { filter: None, page_size: 1000, page_token: token })
                .await?
                .into_inner();
            entries.extend(resp.entries);
            token = resp.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let sites = self.client.sites().list_sites(pb::ListSitesRequest {}).await?.into_inner().sites;
        let mut health = Vec::new();
        for s in sites {
            let h = self.client.sites().get_site_health(pb::GetSiteHealthRequest { id: s.id.clone() }).await?;
            health.push((s, h.into_inner()));
        }
        let caller = self.client.identity().who_am_i(pb::WhoAmIRequest {}).await.ok().map(|r| r.into_inner());
        Ok(Snapshot { entries, sites: health, caller })
    }
}
