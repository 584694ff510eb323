//! The diff between the desired entries of a site and what its SPIRE server holds, and how to
//! apply it. `plan` is pure (unit-tested); `apply` talks to SPIRE.

use std::collections::{BTreeSet, HashMap};

use time::OffsetDateTime;
use zt_entry_api::{MANAGED_PREFIX, pb};
use zt_spire_api::{Entry, Selector, SpiffeId, SpireEntryClient};

/// What a round will do.
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries to create, with the central entry they come from.
    pub create: Vec<(pb::DesiredEntry, Entry)>,
    /// Entries to overwrite.
    pub update: Vec<(pb::DesiredEntry, Entry)>,
    /// Managed entries to delete because they were deleted centrally.
    pub delete: Vec<pb::DesiredEntry>,
    /// Managed entries that the central store does not know (deleted while the agent was
    /// away): removed, nothing to report.
    pub delete_orphans: Vec<String>,
    /// Results known without touching SPIRE (already equal; already gone).
    pub already: Vec<pb::SyncResult>,
    /// IDs of entries the agent does not manage.
    pub unmanaged: Vec<String>,
}

fn due(d: &pb::DesiredEntry, now: OffsetDateTime) -> bool {
    d.next_retry_at.as_ref().is_none_or(|t| t.seconds <= now.unix_timestamp())
}

/// Whether some entry that is not yet in its wanted state has a retry due.
pub fn retry_due(desired: &[pb::DesiredEntry], now: OffsetDateTime) -> bool {
    desired.iter().any(|d| d.next_retry_at.is_some() && due(d, now))
}

/// Seconds until the earliest scheduled retry.
pub fn secs_until_next_retry(desired: &[pb::DesiredEntry], now: OffsetDateTime) -> Option<u64> {
    desired
        .iter()
        .filter_map(|d| d.next_retry_at.as_ref())
        .map(|t| (t.seconds - now.unix_timestamp()).max(0) as u64)
        .min()
}

/// When SPIRE cannot be reached: a failure for every entry whose change is due.
pub fn fail_all_due(desired: &[pb::DesiredEntry], now: OffsetDateTime, error: &str) -> Vec<pb::SyncResult> {
    desired
        .iter()
        .filter(|d| {
            due(d, now) && (d.deleting || d.state != pb::SyncState::Synced as i32 || d.synced_revision != d.revision)
        })
        .map(|d| result(d, pb::SyncOutcome::Failed, error))
        .collect()
}

fn result(d: &pb::DesiredEntry, outcome: pb::SyncOutcome, error: &str) -> pb::SyncResult {
    pb::SyncResult {
        entry_id: d.entry_id.clone(),
        revision: d.revision,
        outcome: outcome as i32,
        spire_entry_id: d.spire_entry_id.clone(),
        error: error.to_owned(),
    }
}

/// The SPIRE entry a desired entry should be.
pub fn to_spire(d: &pb::DesiredEntry) -> Entry {
    let s = d.spec.clone().unwrap_or_default();
    Entry {
        id: d.spire_entry_id.clone(),
        spiffe_id: SpiffeId::parse(&s.spiffe_id),
        parent_id: SpiffeId::parse(&s.parent_id),
        selectors: s.selectors.iter().map(|x| Selector::new(x.r#type.clone(), x.value.clone())).collect(),
        x509_svid_ttl: s.x509_svid_ttl,
        jwt_svid_ttl: s.jwt_svid_ttl,
        dns_names: s.dns_names.clone(),
        admin: s.admin,
        downstream: s.downstream,
        hint: s.hint.clone(),
        ..Default::default()
    }
}

/// Whether the SPIRE entry has every field the central entry sets. Selectors compare as a set;
/// DNS names in order (the first becomes the certificate's CN).
pub fn equal(want: &Entry, have: &Entry) -> bool {
    let sel = |e: &Entry| e.selectors.iter().map(|s| (s.r#type.clone(), s.value.clone())).collect::<BTreeSet<_>>();
    let id = |x: &Option<SpiffeId>| x.as_ref().map(ToString::to_string);
    id(&want.spiffe_id) == id(&have.spiffe_id)
        && id(&want.parent_id) == id(&have.parent_id)
        && sel(want) == sel(have)
        && want.x509_svid_ttl == have.x509_svid_ttl
        && want.jwt_svid_ttl == have.jwt_svid_ttl
        && want.dns_names == have.dns_names
        && want.admin == have.admin
        && want.downstream == have.downstream
        && want.hint == have.hint
        && have.federates_with.is_empty()
        && !have.store_svid
}

/// Compares the desired state with the server's entries.
pub fn plan(desired: &[pb::DesiredEntry], current: &[Entry], now: OffsetDateTime) -> Plan {
    let mut managed: HashMap<&str, &Entry> = HashMap::new();
    let mut out = Plan::default();
    for e in current {
        if e.id.starts_with(MANAGED_PREFIX) {
            managed.insert(e.id.as_str(), e);
        } else {
            out.unmanaged.push(e.id.clone());
        }
    }
    let wanted: BTreeSet<&str> = desired.iter().map(|d| d.spire_entry_id.as_str()).collect();
    for d in desired {
        let have = managed.get(d.spire_entry_id.as_str());
        if d.deleting {
            match have {
                None => out.already.push(result(d, pb::SyncOutcome::Deleted, "")),
                Some(_) if due(d, now) => out.delete.push(d.clone()),
                Some(_) => {}
            }
            continue;
        }
        let want = to_spire(d);
        match have {
            Some(h)
                if equal(&want, h) && (d.state != pb::SyncState::Synced as i32 || d.synced_revision != d.revision) =>
            {
                out.already.push(result(d, pb::SyncOutcome::Synced, ""));
            }
            Some(h) if equal(&want, h) => {}
            Some(_) if due(d, now) => out.update.push((d.clone(), want)),
            None if due(d, now) => out.create.push((d.clone(), want)),
            _ => {}
        }
    }
    for id in managed.keys() {
        if !wanted.contains(id) {
            out.delete_orphans.push((*id).to_owned());
        }
    }
    out.delete_orphans.sort();
    out
}

/// Applies a plan; returns a result per central entry.
pub async fn apply(
    client: &SpireEntryClient,
    create: &[(pb::DesiredEntry, Entry)],
    update: &[(pb::DesiredEntry, Entry)],
    delete: &[pb::DesiredEntry],
    orphans: &[String],
) -> Vec<pb::SyncResult> {
    let mut out = Vec::new();
    let whole = |d: &[(pb::DesiredEntry, Entry)], e: &str| {
        d.iter().map(|(d, _)| result(d, pb::SyncOutcome::Failed, e)).collect::<Vec<_>>()
    };
    if !create.is_empty() {
        let entries: Vec<Entry> = create.iter().map(|(_, e)| e.clone()).collect();
        match client.batch_create(&entries).await {
            Ok(rs) => {
                for r in rs {
                    let d = &create[r.index].0;
                    out.push(match r.result {
                        Ok(_) => result(d, pb::SyncOutcome::Synced, ""),
                        // Ours already (a repeated create after a crash): the next round compares it.
                        Err(s) if s.is_already_exists() && r.existing.as_ref().is_some_and(|e| e.id == d.spire_entry_id) => {
                            result(d, pb::SyncOutcome::Failed, "created concurrently; will be compared on the next round")
                        }
                        Err(s) if s.is_already_exists() => match &r.existing {
                            Some(e) => result(
                                d,
                                pb::SyncOutcome::Failed,
                                &format!("SPIRE already has a similar entry {} (same SPIFFE ID, parent and selectors) that ztlab does not manage", e.id),
                            ),
                            None => result(d, pb::SyncOutcome::Failed, &format!("SPIRE refused the entry: {s}")),
                        },
                        Err(s) => result(d, pb::SyncOutcome::Failed, &format!("SPIRE refused the entry: {s}")),
                    });
                }
            }
            Err(e) => out.extend(whole(create, &format!("SPIRE BatchCreateEntry failed: {e}"))),
        }
    }
    if !update.is_empty() {
        let entries: Vec<Entry> = update.iter().map(|(_, e)| e.clone()).collect();
        match client.batch_update(&entries, None).await {
            Ok(rs) => {
                for r in rs {
                    let d = &update[r.index].0;
                    out.push(match r.result {
                        Ok(_) => result(d, pb::SyncOutcome::Synced, ""),
                        Err(s) => result(d, pb::SyncOutcome::Failed, &format!("SPIRE refused the update: {s}")),
                    });
                }
            }
            Err(e) => out.extend(whole(update, &format!("SPIRE BatchUpdateEntry failed: {e}"))),
        }
    }
    if !delete.is_empty() {
        let ids: Vec<&str> = delete.iter().map(|d| d.spire_entry_id.as_str()).collect();
        match client.batch_delete(&ids).await {
            Ok(rs) => {
                for r in rs {
                    let d = &delete[r.index];
                    out.push(match r.result {
                        Ok(()) => result(d, pb::SyncOutcome::Deleted, ""),
                        Err(s) if s.is_not_found() => result(d, pb::SyncOutcome::Deleted, ""),
                        Err(s) => result(d, pb::SyncOutcome::Failed, &format!("SPIRE refused the delete: {s}")),
                    });
                }
            }
            Err(e) => out.extend(
                delete
                    .iter()
                    .map(|d| result(d, pb::SyncOutcome::Failed, &format!("SPIRE BatchDeleteEntry failed: {e}"))),
            ),
        }
    }
    if !orphans.is_empty() {
        match client.batch_delete(orphans).await {
            Ok(rs) => {
                for r in rs.iter().filter(|r| r.result.is_ok()) {
                    tracing::info!(spire_entry_id = %r.id, "removed a managed entry the central store no longer has");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not remove orphaned managed entries"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(id: &str, rev: i64, state: pb::SyncState) -> pb::DesiredEntry {
        pb::DesiredEntry {
            entry_id: id.into(),
            spire_entry_id: format!("ztlab.{id}"),
            revision: rev,
            spec: Some(pb::EntrySpec {
                spiffe_id: format!("spiffe://ztlab.test/w/{id}"),
                parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
                selectors: vec![pb::Selector { r#type: "unix".into(), value: format!("path:/bin/{id}") }],
                x509_svid_ttl: 60,
                ..Default::default()
            }),
            state: state as i32,
            synced_revision: if state == pb::SyncState::Synced { rev } else { 0 },
            ..Default::default()
        }
    }

    #[test]
    fn plans_create_update_delete_and_leaves_unmanaged_alone() {
        let now = OffsetDateTime::now_utc();
        let new = desired("new", 1, pb::SyncState::Pending);
        let same = desired("same", 2, pb::SyncState::Synced);
        let changed = desired("changed", 3, pb::SyncState::Pending);
        let mut gone = desired("gone", 1, pb::SyncState::Deleting);
        gone.deleting = true;
        let mut already_gone = desired("already-gone", 1, pb::SyncState::Deleting);
        already_gone.deleting = true;
        let mut stale = to_spire(&changed);
        stale.x509_svid_ttl = 999;
        let unmanaged = Entry { id: "hand-made".into(), ..to_spire(&new) };
        let orphan = Entry { id: "ztlab.orphan".into(), ..Default::default() };
        let current = vec![to_spire(&same), stale, to_spire(&gone), unmanaged, orphan];
        let p = plan(&[new, same, changed, gone, already_gone], &current, now);
        assert_eq!(p.create.iter().map(|c| c.0.entry_id.as_str()).collect::<Vec<_>>(), ["new"]);
        assert_eq!(p.update.iter().map(|c| c.0.entry_id.as_str()).collect::<Vec<_>>(), ["changed"]);
        assert_eq!(p.delete.iter().map(|d| d.entry_id.as_str()).collect::<Vec<_>>(), ["gone"]);
        assert_eq!(p.delete_orphans, ["ztlab.orphan"]);
        assert_eq!(p.unmanaged, ["hand-made"]);
        // "same" is equal and already SYNCED at its revision: nothing to report.
        assert_eq!(p.already.len(), 1);
        assert_eq!(p.already[0].entry_id, "already-gone");
        assert_eq!(p.already[0].outcome, pb::SyncOutcome::Deleted as i32);
    }

    #[test]
    fn equal_entries_that_were_pending_are_reported_synced() {
        let d = desired("x", 4, pb::SyncState::Pending);
        let p = plan(std::slice::from_ref(&d), &[to_spire(&d)], OffsetDateTime::now_utc());
        assert!(p.create.is_empty() && p.update.is_empty());
        assert_eq!(p.already[0].outcome, pb::SyncOutcome::Synced as i32);
        assert_eq!(p.already[0].revision, 4);
    }

    #[test]
    fn retries_wait_for_their_time() {
        let now = OffsetDateTime::now_utc();
        let mut d = desired("x", 1, pb::SyncState::Failed);
        d.next_retry_at = Some(prost_types::Timestamp { seconds: now.unix_timestamp() + 30, nanos: 0 });
        let p = plan(std::slice::from_ref(&d), &[], now);
        assert!(p.create.is_empty(), "not before its retry time");
        assert!(!retry_due(std::slice::from_ref(&d), now));
        assert_eq!(secs_until_next_retry(std::slice::from_ref(&d), now), Some(30));
        let later = now + time::Duration::seconds(31);
        assert_eq!(plan(std::slice::from_ref(&d), &[], later).create.len(), 1);
        assert!(retry_due(&[d], later));
    }

    #[test]
    fn selectors_compare_as_a_set() {
        let d = desired("x", 1, pb::SyncState::Pending);
        let mut a = to_spire(&d);
        a.selectors.push(Selector::new("unix", "uid:0"));
        let mut b = a.clone();
        b.selectors.reverse();
        assert!(equal(&a, &b));
        b.selectors.pop();
        assert!(!equal(&a, &b));
    }
}
