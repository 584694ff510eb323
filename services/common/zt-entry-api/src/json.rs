//! JSON views of the API's messages, for the audit trail and `--output json`.

use serde_json::{Value, json};

use crate::pb;

/// RFC 3339, or null.
pub fn time(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .map(Value::String)
        .unwrap_or(Value::Null)
}

/// `PENDING`, `SYNCED`, … ([`crate::state::SyncState::as_str`]); `UNSPECIFIED` for none.
pub fn state(s: i32) -> &'static str {
    crate::state::SyncState::from_pb(s).map_or("UNSPECIFIED", crate::state::SyncState::as_str)
}

/// `Admin`, `Operator`, …
pub fn role(r: i32) -> &'static str {
    match pb::Role::try_from(r).unwrap_or(pb::Role::Unspecified) {
        pb::Role::Admin => "Admin",
        pb::Role::Operator => "Operator",
        pb::Role::Developer => "Developer",
        pb::Role::Viewer => "Viewer",
        pb::Role::SiteAgent => "SiteAgent",
        pb::Role::Unspecified => "Unspecified",
    }
}

/// The fields of an entry that callers set, plus its ID and revision (the audit trail's view).
pub fn entry_fields(e: &pb::Entry) -> Value {
    json!({
        "id": e.id,
        "spiffe_id": e.spiffe_id,
        "parent_id": e.parent_id,
        "selectors": e.selectors.iter().map(|s| format!("{}:{}", s.r#type, s.value)).collect::<Vec<_>>(),
        "x509_svid_ttl": e.x509_svid_ttl,
        "jwt_svid_ttl": e.jwt_svid_ttl,
        "dns_names": e.dns_names,
        "admin": e.admin,
        "downstream": e.downstream,
        "hint": e.hint,
        "site_ids": e.site_ids,
        "revision": e.revision,
    })
}

/// An entry with its per-site status.
pub fn entry(e: &pb::Entry) -> Value {
    let mut v = entry_fields(e);
    v["created_by"] = json!(e.created_by);
    v["created_at"] = time(&e.created_at);
    v["updated_at"] = time(&e.updated_at);
    v["site_status"] = Value::Array(
        e.site_status
            .iter()
            .map(|s| {
                json!({
                    "site_id": s.site_id,
                    "state": state(s.state),
                    "spire_entry_id": s.spire_entry_id,
                    "last_error": s.last_error,
                    "last_sync_at": time(&s.last_sync_at),
                    "attempts": s.attempts,
                    "next_retry_at": time(&s.next_retry_at),
                    "alerting": s.alerting,
                    "synced_revision": s.synced_revision,
                })
            })
            .collect(),
    );
    v
}

/// A site.
pub fn site(s: &pb::Site) -> Value {
    json!({
        "id": s.id, "trust_domain": s.trust_domain, "description": s.description, "revision": s.revision,
        "created_at": time(&s.created_at), "updated_at": time(&s.updated_at),
    })
}

/// A site's health.
pub fn health(h: &pb::SiteHealth) -> Value {
    json!({
        "site_id": h.site_id, "agent_connected": h.agent_connected, "last_contact_at": time(&h.last_contact_at),
        "disconnected_since": time(&h.disconnected_since),
        "sync_lag_seconds": h.sync_lag_seconds, "pending": h.pending, "failed": h.failed, "deleting": h.deleting,
        "synced": h.synced, "alerting": h.alerting, "unmanaged_entries": h.unmanaged_entries,
        "unmanaged_entry_ids": h.unmanaged_entry_ids,
    })
}

/// An audit event (before/after parsed back to JSON).
pub fn audit_event(e: &pb::AuditEvent) -> Value {
    let parse = |s: &str| {
        if s.is_empty() { Value::Null } else { serde_json::from_str(s).unwrap_or(Value::String(s.to_owned())) }
    };
    json!({
        "id": e.id, "at": time(&e.at), "actor": e.actor, "action": e.action, "resource_type": e.resource_type,
        "resource_id": e.resource_id, "before": parse(&e.before_json), "after": parse(&e.after_json), "trace_id": e.trace_id,
    })
}

/// An API key (never its secret).
pub fn api_key(k: &pb::ApiKey) -> Value {
    json!({
        "id": k.id, "name": k.name, "role": role(k.role), "path_prefixes": k.path_prefixes,
        "created_by": k.created_by, "created_at": time(&k.created_at), "revoked": k.revoked,
    })
}
