//! The gRPC services. Every handler authenticates, authorizes (role × operation, then the
//! caller's own limits), validates input (naming the field), and only then writes.

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use tonic::{Request, Response, Status};
use zt_entry_api::pb;
use zt_entry_api::validate::{self, FieldError, ValidEntry};

use crate::auth::{Authenticator, Op, Principal, Role, new_api_key};
use crate::hub::Hub;
use crate::presence::Presence;
use crate::store::{Actor, AuditFilter, EntryFilter, Store};

/// Largest batch accepted by `BatchCreateEntries` / `BatchDeleteEntries`.
pub const MAX_BATCH: usize = 10_000;
/// Longest long-poll.
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(30);

/// Shared state of every service.
#[derive(Debug, Clone)]
pub struct Api {
    store: Store,
    auth: Authenticator,
    hub: Hub,
    presence: Presence,
}

type Res<T> = Result<Response<T>, Status>;

/// The request's trace ID, as the request layer chose it (`zt_service::request`).
fn trace_id<T>(req: &Request<T>) -> String {
    match req.extensions().get::<zt_service::request::TraceId>() {
        Some(t) => t.0.clone(),
        None => zt_service::request::trace_id(req.metadata().as_ref()),
    }
}

fn ts_to_time(field: &str, t: &Option<prost_types::Timestamp>) -> Result<Option<time::OffsetDateTime>, Status> {
    match t {
        None => Ok(None),
        Some(t) => time::OffsetDateTime::from_unix_timestamp(t.seconds)
            .map(|d| Some(d + time::Duration::nanoseconds(t.nanos as i64)))
            .map_err(|_| FieldError::new(field, "is out of range").into()),
    }
}

fn page_size(field: &str, n: i32, default: usize) -> Result<usize, Status> {
    match n {
        0 => Ok(default),
        1..=1000 => Ok(n as usize),
        _ => Err(FieldError::new(field, format!("{n}: use 1..=1000 (0 for {default})")).into()),
    }
}

impl Api {
    /// The services over `store`.
    pub fn new(store: Store, auth: Authenticator, hub: Hub) -> Self {
        Self { store, auth, hub, presence: Presence::default() }
    }

    /// Authenticates and authorizes a request, names its actor on the request span, and logs
    /// it (the span adds the trace ID and the actor).
    async fn ctx<T>(&self, req: &Request<T>, op: Op) -> Result<(Principal, Actor), Status> {
        let trace_id = trace_id(req);
        let principal = match self.auth.authenticate(req).await.and_then(|p| p.check(op).map(|()| p)) {
            Ok(p) => p,
            Err(status) => {
                tracing::warn!(method = ?op, code = ?status.code(), reason = %status.message(), "request refused");
                return Err(status);
            }
        };
        zt_service::request::set_actor(&principal.actor);
        tracing::info!(method = ?op, "request");
        let actor = Actor { name: principal.actor.clone(), trace_id };
        Ok((principal, actor))
    }

    fn parse_entry(principal: &Principal, field: &str, spec: Option<&pb::EntrySpec>) -> Result<ValidEntry, Status> {
        let spec = spec.ok_or_else(|| Status::from(FieldError::new(field, "is required")))?;
        // Authorize first (a Developer's path prefixes), then validate.
        principal.check_spiffe_id(&format!("{field}.spiffe_id"), &spec.spiffe_id)?;
        Ok(ValidEntry::parse(field, spec)?)
    }

    fn check_site_id(field: &str, id: &str) -> Result<String, Status> {
        Ok(validate::site_id(field, id)?)
    }

    /// `PollEntries`: answers at once when `site`'s desired state is newer than `known` (or a
    /// resync is due), else when it changes, else after `wait`.
    async fn long_poll(&self, site: &str, known: u64, wait: Duration) -> Res<pb::PollEntriesResponse> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.hub.watch();
        loop {
            changes.borrow_and_update();
            let (version, resync) = self.store.site_version(site).await?;
            let changed = version > known || resync || known == 0;
            // Nothing changed by the deadline: answer anyway (recording the contact) and let the
            // agent come back.
            if changed || tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                let (version, entries, resync_requested) = self.store.desired_entries(site).await?;
                return Ok(Response::new(pb::PollEntriesResponse { version, entries, changed, resync_requested }));
            }
        }
    }

    /// A SPIFFE ID filter: a malformed one is an error, not a search that finds nothing.
    fn filter_id(field: &str, id: &str) -> Result<String, Status> {
        Ok(validate::spiffe_id(field, id)?.to_string())
    }

    /// A SPIFFE ID prefix filter: at least `spiffe://`, as every stored SPIFFE ID starts.
    fn filter_prefix(prefix: &str) -> Result<String, Status> {
        if prefix.starts_with("spiffe://") {
            Ok(prefix.to_owned())
        } else {
            let shown: String = prefix.chars().take(80).collect();
            Err(FieldError::new(
                "filter.spiffe_id_prefix",
                format!("{shown:?} does not start with spiffe:// (for example spiffe://ztlab.test/ns/dev/)"),
            )
            .into())
        }
    }
}

#[tonic::async_trait]
impl pb::workload_entry_service_server::WorkloadEntryService for Api {
    async fn create_entry(&self, req: Request<pb::CreateEntryRequest>) -> Res<pb::Entry> {
        let (p, actor) = self.ctx(&req, Op::CreateEntry).await?;
        let entry = Self::parse_entry(&p, "entry", req.get_ref().entry.as_ref())?;
        let (mut created, updates) = self.store.create_entries(&actor, &[("entry".into(), entry)]).await?;
        self.hub.publish(updates);
        Ok(Response::new(created.remove(0)))
    }

    async fn get_entry(&self, req: Request<pb::GetEntryRequest>) -> Res<pb::Entry> {
        self.ctx(&req, Op::GetEntry).await?;
        Ok(Response::new(self.store.get_entry(&req.get_ref().id).await?))
    }

    async fn update_entry(&self, req: Request<pb::UpdateEntryRequest>) -> Res<pb::Entry> {
        let (p, actor) = self.ctx(&req, Op::UpdateEntry).await?;
        let r = req.get_ref();
        let entry = Self::parse_entry(&p, "entry", r.entry.as_ref())?;
        if r.revision <= 0 {
            return Err(FieldError::new("revision", "is required: the revision you last read").into());
        }
        if p.role == Role::Developer {
            let current = self.store.get_entry(&r.id).await?;
            p.check_spiffe_id("id", &current.spiffe_id)?;
        }
        let (entry, updates) = self.store.update_entry(&actor, &r.id, r.revision, &entry).await?;
        self.hub.publish(updates);
        Ok(Response::new(entry))
    }

    async fn delete_entry(&self, req: Request<pb::DeleteEntryRequest>) -> Res<pb::Entry> {
        let (p, actor) = self.ctx(&req, Op::DeleteEntry).await?;
        let id = req.get_ref().id.clone();
        if p.role == Role::Developer {
            p.check_spiffe_id("id", &self.store.get_entry(&id).await?.spiffe_id)?;
        }
        let (mut out, updates) = self.store.delete_entries(&actor, &[("id".into(), id)]).await?;
        self.hub.publish(updates);
        Ok(Response::new(out.remove(0)))
    }

    async fn list_entries(&self, req: Request<pb::ListEntriesRequest>) -> Res<pb::ListEntriesResponse> {
        self.ctx(&req, Op::ListEntries).await?;
        let r = req.get_ref();
        let f = r.filter.clone().unwrap_or_default();
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let filter = EntryFilter {
            site_id: opt(&f.site_id).map(|s| Self::check_site_id("filter.site_id", &s)).transpose()?,
            selector: opt(&f.selector).map(|s| validate::selector_str("filter.selector", &s)).transpose()?,
            spiffe_id: opt(&f.spiffe_id).map(|s| Self::filter_id("filter.spiffe_id", &s)).transpose()?,
            spiffe_id_prefix: opt(&f.spiffe_id_prefix).map(|s| Self::filter_prefix(&s)).transpose()?,
            parent_id: opt(&f.parent_id).map(|s| Self::filter_id("filter.parent_id", &s)).transpose()?,
            state: match pb::SyncState::try_from(f.sync_state) {
                Ok(pb::SyncState::Unspecified) => None,
                Ok(s) => Some(s),
                Err(_) => return Err(FieldError::new("filter.sync_state", "unknown state").into()),
            },
        };
        let size = page_size("page_size", r.page_size, 100)?;
        let (entries, next_page_token) = self.store.list_entries(&filter, size, &r.page_token).await?;
        Ok(Response::new(pb::ListEntriesResponse { entries, next_page_token }))
    }

    async fn batch_create_entries(
        &self,
        req: Request<pb::BatchCreateEntriesRequest>,
    ) -> Res<pb::BatchCreateEntriesResponse> {
        let (p, actor) = self.ctx(&req, Op::BatchCreateEntries).await?;
        let r = req.get_ref();
        if r.entries.is_empty() || r.entries.len() > MAX_BATCH {
            return Err(
                FieldError::new("entries", format!("send 1..={MAX_BATCH} entries, not {}", r.entries.len())).into()
            );
        }
        let mut valid = Vec::with_capacity(r.entries.len());
        for (i, e) in r.entries.iter().enumerate() {
            let field = format!("entries[{i}]");
            valid.push((field.clone(), Self::parse_entry(&p, &field, Some(e))?));
        }
        let (entries, updates) = self.store.create_entries(&actor, &valid).await?;
        self.hub.publish(updates);
        Ok(Response::new(pb::BatchCreateEntriesResponse { entries }))
    }

    async fn batch_delete_entries(
        &self,
        req: Request<pb::BatchDeleteEntriesRequest>,
    ) -> Res<pb::BatchDeleteEntriesResponse> {
        let (p, actor) = self.ctx(&req, Op::BatchDeleteEntries).await?;
        let r = req.get_ref();
        if r.ids.is_empty() || r.ids.len() > MAX_BATCH {
            return Err(FieldError::new("ids", format!("send 1..={MAX_BATCH} IDs, not {}", r.ids.len())).into());
        }
        let ids: Vec<(String, String)> =
            r.ids.iter().enumerate().map(|(i, id)| (format!("ids[{i}]"), id.clone())).collect();
        if p.role == Role::Developer {
            for (field, id) in &ids {
                p.check_spiffe_id(field, &self.store.get_entry(id).await?.spiffe_id)?;
            }
        }
        let (entries, updates) = self.store.delete_entries(&actor, &ids).await?;
        self.hub.publish(updates);
        Ok(Response::new(pb::BatchDeleteEntriesResponse { entries }))
    }
}

fn valid_site(s: Option<&pb::Site>) -> Result<pb::Site, Status> {
    let s = s.ok_or_else(|| Status::from(FieldError::new("site", "is required")))?;
    validate::site_id("site.id", &s.id)?;
    validate::trust_domain("site.trust_domain", &s.trust_domain)?;
    if s.description.len() > 1024 {
        return Err(FieldError::new("site.description", "at most 1024 characters").into());
    }
    Ok(s.clone())
}

#[tonic::async_trait]
impl pb::site_service_server::SiteService for Api {
    async fn create_site(&self, req: Request<pb::CreateSiteRequest>) -> Res<pb::Site> {
        let (_, actor) = self.ctx(&req, Op::CreateSite).await?;
        let site = valid_site(req.get_ref().site.as_ref())?;
        Ok(Response::new(self.store.create_site(&actor, &site).await?))
    }

    async fn get_site(&self, req: Request<pb::GetSiteRequest>) -> Res<pb::Site> {
        self.ctx(&req, Op::GetSite).await?;
        Ok(Response::new(self.store.get_site(&req.get_ref().id).await?))
    }

    async fn update_site(&self, req: Request<pb::UpdateSiteRequest>) -> Res<pb::Site> {
        let (_, actor) = self.ctx(&req, Op::UpdateSite).await?;
        let site = valid_site(req.get_ref().site.as_ref())?;
        if site.revision <= 0 {
            return Err(FieldError::new("site.revision", "is required: the revision you last read").into());
        }
        Ok(Response::new(self.store.update_site(&actor, &site).await?))
    }

    async fn delete_site(&self, req: Request<pb::DeleteSiteRequest>) -> Res<pb::Site> {
        let (_, actor) = self.ctx(&req, Op::DeleteSite).await?;
        Ok(Response::new(self.store.delete_site(&actor, &req.get_ref().id).await?))
    }

    async fn list_sites(&self, req: Request<pb::ListSitesRequest>) -> Res<pb::ListSitesResponse> {
        self.ctx(&req, Op::ListSites).await?;
        Ok(Response::new(pb::ListSitesResponse { sites: self.store.list_sites().await? }))
    }

    async fn get_site_health(&self, req: Request<pb::GetSiteHealthRequest>) -> Res<pb::SiteHealth> {
        self.ctx(&req, Op::GetSiteHealth).await?;
        let mut health = self.store.site_health(&req.get_ref().id).await?;
        let last_contact = ts_to_time("last_contact_at", &health.last_contact_at).ok().flatten();
        let (connected, since) =
            self.presence.agent_link(&health.site_id, last_contact, time::OffsetDateTime::now_utc());
        health.agent_connected = connected;
        health.disconnected_since = since.map(crate::store::ts);
        Ok(Response::new(health))
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<pb::SyncUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl pb::sync_service_server::SyncService for Api {
    async fn trigger_sync(&self, req: Request<pb::TriggerSyncRequest>) -> Res<pb::TriggerSyncResponse> {
        let (_, actor) = self.ctx(&req, Op::TriggerSync).await?;
        self.store.request_resync(&actor, &req.get_ref().site_id).await?;
        self.hub.changed();
        Ok(Response::new(pb::TriggerSyncResponse {}))
    }

    async fn get_sync_status(&self, req: Request<pb::GetSyncStatusRequest>) -> Res<pb::GetSyncStatusResponse> {
        self.ctx(&req, Op::GetSyncStatus).await?;
        let e = self.store.get_entry(&req.get_ref().entry_id).await?;
        Ok(Response::new(pb::GetSyncStatusResponse { site_status: e.site_status }))
    }

    type StreamSyncUpdatesStream = UpdateStream;

    async fn stream_sync_updates(&self, req: Request<pb::StreamSyncUpdatesRequest>) -> Res<UpdateStream> {
        self.ctx(&req, Op::StreamSyncUpdates).await?;
        let want = req.into_inner();
        let mut rx = self.hub.subscribe();
        let stream = async_stream(move |tx| async move {
            loop {
                match rx.recv().await {
                    Ok(u) => {
                        let site_ok = want.site_id.is_empty() || want.site_id == u.site_id;
                        let entry_ok = want.entry_id.is_empty() || want.entry_id == u.entry_id;
                        if site_ok && entry_ok && tx.send(Ok(u)).await.is_err() {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "the stream fell {n} updates behind; reconnect and re-read"
                            ))))
                            .await;
                        break;
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn poll_entries(&self, req: Request<pb::PollEntriesRequest>) -> Res<pb::PollEntriesResponse> {
        let (p, _) = self.ctx(&req, Op::PollEntries).await?;
        let r = req.get_ref();
        let site = Self::check_site_id("site_id", &r.site_id)?;
        p.check_site(&site)?;
        let wait = Duration::from_secs(u64::from(r.wait_seconds)).min(MAX_POLL_WAIT);
        // Open while the agent waits; dropped unanswered when its stream breaks (see presence).
        let poll = self.presence.poll_started(&site);
        let answer = self.long_poll(&site, r.known_version, wait).await;
        poll.answered();
        answer
    }

    async fn report_sync_result(&self, req: Request<pb::ReportSyncResultRequest>) -> Res<pb::ReportSyncResultResponse> {
        let (p, _) = self.ctx(&req, Op::ReportSyncResult).await?;
        let r = req.get_ref();
        let site = Self::check_site_id("site_id", &r.site_id)?;
        p.check_site(&site)?;
        crate::metrics::record_phases(&site, r.list_ms, r.apply_ms);
        let updates = self.store.report(&site, &r.results, &r.unmanaged_entry_ids).await?;
        self.hub.publish(updates);
        Ok(Response::new(pb::ReportSyncResultResponse {}))
    }
}

/// A stream fed by a task; the task ends when the receiver is dropped.
fn async_stream<F, Fut>(f: F) -> UpdateStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::SyncUpdate, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for Api {
    async fn list_audit_events(&self, req: Request<pb::ListAuditEventsRequest>) -> Res<pb::ListAuditEventsResponse> {
        self.ctx(&req, Op::ListAuditEvents).await?;
        let r = req.get_ref();
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let filter = AuditFilter {
            resource_id: opt(&r.entry_id),
            actor: opt(&r.actor),
            since: ts_to_time("since", &r.since)?,
            until: ts_to_time("until", &r.until)?,
        };
        let size = page_size("page_size", r.page_size, 100)?;
        let (events, next_page_token) = self.store.list_audit(&filter, size, &r.page_token).await?;
        Ok(Response::new(pb::ListAuditEventsResponse { events, next_page_token }))
    }
}

#[tonic::async_trait]
impl pb::api_key_service_server::ApiKeyService for Api {
    async fn create_api_key(&self, req: Request<pb::CreateApiKeyRequest>) -> Res<pb::CreateApiKeyResponse> {
        let (_, actor) = self.ctx(&req, Op::CreateApiKey).await?;
        let r = req.get_ref();
        let name_ok = !r.name.is_empty()
            && r.name.len() <= 64
            && r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(FieldError::new("name", "use 1-64 of letters, digits, - and _").into());
        }
        let role = pb::Role::try_from(r.role)
            .ok()
            .and_then(Role::from_pb)
            .filter(|r| *r != Role::SiteAgent)
            .ok_or_else(|| {
                Status::from(FieldError::new("role", "use ROLE_ADMIN, ROLE_OPERATOR, ROLE_DEVELOPER or ROLE_VIEWER"))
            })?;
        for (i, p) in r.path_prefixes.iter().enumerate() {
            if !p.starts_with('/') || p.contains("//") || p.split('/').any(|s| s == "." || s == "..") {
                return Err(FieldError::new(
                    format!("path_prefixes[{i}]"),
                    format!("{p:?} is not a SPIFFE ID path like /ns/dev"),
                )
                .into());
            }
        }
        if role == Role::Developer && r.path_prefixes.is_empty() {
            return Err(FieldError::new("path_prefixes", "a Developer key needs at least one path prefix").into());
        }
        let (id, secret, hash) = new_api_key();
        let key = pb::ApiKey {
            id: id.to_string(),
            name: r.name.clone(),
            role: role.to_pb() as i32,
            path_prefixes: r.path_prefixes.clone(),
            ..Default::default()
        };
        let key = self.store.create_api_key(&actor, &key, role.name(), &hash).await?;
        Ok(Response::new(pb::CreateApiKeyResponse { key: Some(key), secret }))
    }

    async fn list_api_keys(&self, req: Request<pb::ListApiKeysRequest>) -> Res<pb::ListApiKeysResponse> {
        self.ctx(&req, Op::ListApiKeys).await?;
        let keys = self
            .store
            .list_api_keys()
            .await?
            .into_iter()
            .map(|(mut k, role)| {
                k.role = Role::parse(&role).map(|r| r.to_pb() as i32).unwrap_or(0);
                k
            })
            .collect();
        Ok(Response::new(pb::ListApiKeysResponse { keys }))
    }

    async fn revoke_api_key(&self, req: Request<pb::RevokeApiKeyRequest>) -> Res<pb::ApiKey> {
        let (_, actor) = self.ctx(&req, Op::RevokeApiKey).await?;
        let id = req.get_ref().id.clone();
        self.store.revoke_api_key(&actor, &id).await?;
        let key = self
            .store
            .list_api_keys()
            .await?
            .into_iter()
            .find(|(k, _)| k.id == id)
            .map(|(mut k, role)| {
                k.role = Role::parse(&role).map(|r| r.to_pb() as i32).unwrap_or(0);
                k
            })
            .ok_or_else(|| Status::not_found(format!("API key {id} does not exist")))?;
        Ok(Response::new(key))
    }
}

#[tonic::async_trait]
impl pb::identity_service_server::IdentityService for Api {
    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> Res<pb::WhoAmIResponse> {
        let (p, _) = self.ctx(&req, Op::WhoAmI).await?;
        Ok(Response::new(pb::WhoAmIResponse {
            actor: p.actor,
            role: p.role.to_pb() as i32,
            site_id: p.site.unwrap_or_default(),
            path_prefixes: p.path_prefixes,
        }))
    }
}

/// Makes sure an admin API key exists for the lab's own tooling: when `path` is missing, creates
/// a new admin key, writes it there (mode 0600, atomically), and revokes earlier bootstrap keys.
/// Returns whether a key was made.
pub async fn bootstrap_admin_key(store: &Store, path: &std::path::Path) -> anyhow::Result<bool> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(false);
    }
    let actor = Actor { name: "entry-manager:bootstrap".into(), trace_id: String::new() };
    for (k, _) in store.list_api_keys().await? {
        if k.name.starts_with("bootstrap-admin") && !k.revoked {
            store.revoke_api_key(&actor, &k.id).await?;
        }
    }
    let (id, secret, hash) = new_api_key();
    let name = format!("bootstrap-admin-{}", time::OffsetDateTime::now_utc().unix_timestamp());
    let key = pb::ApiKey { id: id.to_string(), name, role: pb::Role::Admin as i32, ..Default::default() };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Write the secret first, then store its hash: a crash in between leaves a file whose key
    // does not work yet, and the next start replaces it.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    store.create_api_key(&actor, &key, Role::Admin.name(), &hash).await?;
    std::fs::rename(&tmp, path)?;
    tracing::info!(path = %path.display(), "created the bootstrap admin API key");
    Ok(true)
}
