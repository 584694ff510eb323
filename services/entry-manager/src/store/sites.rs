//! Sites: create, read, update, delete, and each site's sync counts and health.

use super::*;

impl Store {
    pub(super) fn site_row(r: &Row) -> pb::Site {
        pb::Site {
            id: r.get("id"),
            trust_domain: r.get("trust_domain"),
            description: r.get("description"),
            revision: r.get("revision"),
            created_at: Some(ts(r.get("created_at"))),
            updated_at: Some(ts(r.get("updated_at"))),
        }
    }

    /// Creates a site.
    pub async fn create_site(&self, actor: &Actor, site: &pb::Site) -> Result<pb::Site> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "INSERT INTO sites (id, trust_domain, description) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING *",
                &[&site.id, &site.trust_domain, &site.description],
            )
            .await?
            .ok_or_else(|| StoreError::AlreadyExists(format!("site {:?} already exists", site.id)))?;
        let created = Self::site_row(&row);
        Self::audit(&tx, actor, "site.create", "site", &created.id, None, Some(site_json(&created))).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// A site by ID.
    pub async fn get_site(&self, id: &str) -> Result<pb::Site> {
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT * FROM sites WHERE id = $1", &[&id]).await?;
        row.map(|r| Self::site_row(&r)).ok_or_else(|| StoreError::NotFound(format!("site {id:?} does not exist")))
    }

    /// Updates a site's description and trust domain; `site.revision` must be current. The trust
    /// domain cannot change while entries target the site.
    pub async fn update_site(&self, actor: &Actor, site: &pb::Site) -> Result<pb::Site> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let before = tx
            .query_opt("SELECT * FROM sites WHERE id = $1 FOR UPDATE", &[&site.id])
            .await?
            .map(|r| Self::site_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("site {:?} does not exist", site.id)))?;
        if before.revision != site.revision {
            return Err(StoreError::Aborted(format!(
                "site {:?} is at revision {}, not {}: read it again and retry",
                site.id, before.revision, site.revision
            )));
        }
        if before.trust_domain != site.trust_domain {
            let used: i64 =
                tx.query_one("SELECT count(*) FROM entry_sites WHERE site_id = $1", &[&site.id]).await?.get(0);
            if used > 0 {
                return Err(StoreError::FailedPrecondition(format!(
                    "site {:?}: the trust domain cannot change while {used} entries target the site",
                    site.id
                )));
            }
        }
        let row = tx
            .query_one(
                "UPDATE sites SET trust_domain = $2, description = $3, revision = revision + 1, updated_at = now() WHERE id = $1 RETURNING *",
                &[&site.id, &site.trust_domain, &site.description],
            )
            .await?;
        let after = Self::site_row(&row);
        Self::audit(&tx, actor, "site.update", "site", &site.id, Some(site_json(&before)), Some(site_json(&after)))
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deletes a site; refused while entries target it.
    pub async fn delete_site(&self, actor: &Actor, id: &str) -> Result<pb::Site> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let before = tx
            .query_opt("SELECT * FROM sites WHERE id = $1 FOR UPDATE", &[&id])
            .await?
            .map(|r| Self::site_row(&r))
            .ok_or_else(|| StoreError::NotFound(format!("site {id:?} does not exist")))?;
        let used: i64 = tx.query_one("SELECT count(*) FROM entry_sites WHERE site_id = $1", &[&id]).await?.get(0);
        if used > 0 {
            return Err(StoreError::FailedPrecondition(format!(
                "site {id:?} is still targeted by {used} entries: remove it from them (or delete them) first"
            )));
        }
        tx.execute("DELETE FROM sites WHERE id = $1", &[&id]).await?;
        Self::audit(&tx, actor, "site.delete", "site", id, Some(site_json(&before)), None).await?;
        tx.commit().await?;
        Ok(before)
    }

    /// Every site.
    pub async fn list_sites(&self) -> Result<Vec<pb::Site>> {
        let client = self.pool.get().await?;
        Ok(client.query("SELECT * FROM sites ORDER BY id", &[]).await?.iter().map(Self::site_row).collect())
    }

    /// Counts and lag per site.
    pub async fn site_counts(&self) -> Result<HashMap<String, SiteCounts>> {
        let client = self.pool.get().await?;
        let mut out: HashMap<String, SiteCounts> = HashMap::new();
        for s in client.query("SELECT id FROM sites", &[]).await? {
            out.entry(s.get(0)).or_default();
        }
        let rows = client
            .query(
                "SELECT site_id, state, count(*), count(*) FILTER (WHERE attempts >= $1),
                        COALESCE(EXTRACT(EPOCH FROM now() - min(changed_at) FILTER (WHERE state <> 'SYNCED')), 0)::float8
                   FROM entry_sites GROUP BY site_id, state",
                &[&ALERT_AFTER],
            )
            .await?;
        for r in rows {
            let c = out.entry(r.get(0)).or_default();
            c.by_state.insert(r.get(1), r.get(2));
            c.alerting += r.get::<_, i64>(3);
            c.lag_seconds = c.lag_seconds.max(r.get::<_, f64>(4));
        }
        Ok(out)
    }

    /// Health of one site. Whether its agent is connected is not the store's to say: the
    /// caller fills in `agent_connected` and `disconnected_since` (see `presence`).
    pub async fn site_health(&self, id: &str) -> Result<pb::SiteHealth> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt("SELECT last_contact_at, unmanaged_entry_ids FROM sites WHERE id = $1", &[&id])
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {id:?} does not exist")))?;
        let last: Option<OffsetDateTime> = row.get(0);
        let unmanaged: Vec<String> = row.get(1);
        drop(client);
        let counts = self.site_counts().await?.remove(id).unwrap_or_default();
        let n = |s: SyncState| counts.by_state.get(s.as_str()).copied().unwrap_or(0) as u32;
        Ok(pb::SiteHealth {
            site_id: id.to_owned(),
            agent_connected: false,
            disconnected_since: None,
            last_contact_at: ts_opt(last),
            sync_lag_seconds: counts.lag_seconds,
            pending: n(SyncState::Pending),
            failed: n(SyncState::Failed),
            deleting: n(SyncState::Deleting),
            synced: n(SyncState::Synced),
            alerting: counts.alerting as u32,
            unmanaged_entries: unmanaged.len() as u32,
            unmanaged_entry_ids: unmanaged,
        })
    }
}
