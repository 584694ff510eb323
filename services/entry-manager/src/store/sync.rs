//! What the site agents need: each site's desired entries and version, their reports, resyncs.

use super::*;

impl Store {
    /// The site's desired-state version and whether a resync was requested.
    pub async fn site_version(&self, site: &str) -> Result<(u64, bool)> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt("SELECT desired_version, resync_requested FROM sites WHERE id = $1", &[&site])
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {site:?} does not exist")))?;
        Ok((row.get::<_, i64>(0) as u64, row.get(1)))
    }

    /// The site's whole desired state; also records the agent's contact and clears a pending
    /// resync request.
    pub async fn desired_entries(&self, site: &str) -> Result<(u64, Vec<pb::DesiredEntry>, bool)> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "UPDATE sites SET last_contact_at = now(), resync_requested = false WHERE id = $1
                 RETURNING desired_version, (SELECT resync_requested FROM sites WHERE id = $1)",
                &[&site],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {site:?} does not exist")))?;
        let version = row.get::<_, i64>(0) as u64;
        let resync: bool = row.get(1);
        let rows = client
            .query(
                "SELECT e.*, s.state, s.next_retry_at, s.synced_revision FROM entry_sites s JOIN entries e ON e.id = s.entry_id
                  WHERE s.site_id = $1 ORDER BY e.id",
                &[&site],
            )
            .await?;
        let entries = rows
            .iter()
            .map(|r| {
                let e = Self::entry_row(r, vec![]);
                let state = state_of(r.get("state"));
                pb::DesiredEntry {
                    spire_entry_id: zt_entry_api::spire_entry_id(&e.id),
                    entry_id: e.id.clone(),
                    revision: e.revision,
                    deleting: state == pb::SyncState::Deleting,
                    next_retry_at: ts_opt(r.get("next_retry_at")),
                    state: state as i32,
                    synced_revision: r.get("synced_revision"),
                    spec: Some(pb::EntrySpec {
                        spiffe_id: e.spiffe_id,
                        parent_id: e.parent_id,
                        selectors: e.selectors,
                        x509_svid_ttl: e.x509_svid_ttl,
                        jwt_svid_ttl: e.jwt_svid_ttl,
                        dns_names: e.dns_names,
                        admin: e.admin,
                        downstream: e.downstream,
                        hint: e.hint,
                        site_ids: vec![site.to_owned()],
                    }),
                }
            })
            .collect();
        Ok((version, entries, resync))
    }

    /// Applies a site agent's report. Results for an older revision than the entry's current one
    /// change nothing (a newer change is on its way).
    pub async fn report(&self, site: &str, results: &[pb::SyncResult], unmanaged: &[String]) -> Result<Updates> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let found = tx
            .execute(
                "UPDATE sites SET last_contact_at = now(), unmanaged_entry_ids = $2 WHERE id = $1",
                &[&site, &unmanaged],
            )
            .await?;
        if found == 0 {
            return Err(StoreError::NotFound(format!("site {site:?} does not exist")));
        }
        let mut updates = Vec::new();
        let mut bump = false;
        // Lock entries in one global order (by ID): two sites reporting on the same entries
        // serialize instead of deadlocking, and the last site to report a delete sees the
        // others' and removes the entry row.
        let select = tx
            .prepare_cached(
                "SELECT e.revision, e.deleted, s.state, s.attempts FROM entry_sites s JOIN entries e ON e.id = s.entry_id
                  WHERE s.entry_id = $1 AND s.site_id = $2 FOR UPDATE OF s, e",
            )
            .await?;
        let mark_synced = tx
            .prepare_cached(
                "UPDATE entry_sites SET state = 'SYNCED', synced_revision = $3, last_sync_at = now(), attempts = 0,
                        next_retry_at = NULL, last_error = '' WHERE entry_id = $1 AND site_id = $2",
            )
            .await?;
        let delete_site = tx.prepare_cached("DELETE FROM entry_sites WHERE entry_id = $1 AND site_id = $2").await?;
        let delete_entry = tx
            .prepare_cached(
                "DELETE FROM entries e WHERE e.id = $1 AND e.deleted AND NOT EXISTS (SELECT 1 FROM entry_sites s WHERE s.entry_id = e.id)",
            )
            .await?;
        let mut order: Vec<(usize, &pb::SyncResult)> = results.iter().enumerate().collect();
        order.sort_by(|a, b| a.1.entry_id.cmp(&b.1.entry_id));
        for (i, r) in order {
            let uuid = parse_uuid(&format!("results[{i}].entry_id"), &r.entry_id, ENTRY_ID)?;
            let Some(cur) = tx.query_opt(&select, &[&uuid, &site]).await? else {
                continue;
            };
            let revision: i64 = cur.get(0);
            let state = state_of(cur.get(2));
            let attempts: i32 = cur.get(3);
            match pb::SyncOutcome::try_from(r.outcome).unwrap_or(pb::SyncOutcome::Unspecified) {
                pb::SyncOutcome::Synced if state != pb::SyncState::Deleting && r.revision == revision => {
                    tx.execute(&mark_synced, &[&uuid, &site, &revision]).await?;
                    if state != pb::SyncState::Synced {
                        updates.push(update(&r.entry_id, site, pb::SyncState::Synced, revision, "", false));
                    }
                }
                pb::SyncOutcome::Deleted if state == pb::SyncState::Deleting => {
                    tx.execute(&delete_site, &[&uuid, &site]).await?;
                    let gone = tx.execute(&delete_entry, &[&uuid]).await?;
                    updates.push(update(&r.entry_id, site, pb::SyncState::Deleting, revision, "", true));
                    if gone > 0 {
                        tracing::info!(entry_id = %r.entry_id, "entry removed from every site");
                    }
                    bump = true;
                }
                pb::SyncOutcome::Failed if r.revision == revision || state == pb::SyncState::Deleting => {
                    let attempts = attempts + 1;
                    let next = OffsetDateTime::now_utc() + backoff(attempts as u32);
                    let new_state =
                        if state == pb::SyncState::Deleting { SyncState::Deleting } else { SyncState::Failed }.as_str();
                    tx.execute(
                        "UPDATE entry_sites SET state = $3, attempts = $4, next_retry_at = $5, last_error = $6, last_sync_at = now()
                          WHERE entry_id = $1 AND site_id = $2",
                        &[&uuid, &site, &new_state, &attempts, &next, &r.error],
                    )
                    .await?;
                    if attempts >= ALERT_AFTER {
                        tracing::warn!(entry_id = %r.entry_id, site, attempts, error = %r.error, "entry sync failing repeatedly");
                    }
                    updates.push(update(&r.entry_id, site, state_of(new_state), revision, &r.error, false));
                }
                _ => {}
            }
        }
        if bump {
            Self::bump_sites(&tx, &[site.to_owned()]).await?;
        }
        tx.commit().await?;
        Ok(updates)
    }

    /// Asks the site's agent for a full resync on its next poll.
    pub async fn request_resync(&self, actor: &Actor, site: &str) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute("UPDATE sites SET resync_requested = true, desired_version = nextval('desired_version_seq') WHERE id = $1", &[&site])
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("site {site:?} does not exist")));
        }
        Self::audit(&tx, actor, "site.trigger_sync", "site", site, None, None).await?;
        tx.commit().await?;
        Ok(())
    }
}
