//! Entries: create, read, update, delete and list, with each entry's per-site status.

use super::*;

impl Store {
    pub(super) async fn statuses<C: GenericClient>(
        client: &C,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<pb::SiteStatus>>> {
        let rows = client.query("SELECT * FROM entry_sites WHERE entry_id = ANY($1) ORDER BY site_id", &[&ids]).await?;
        let mut out: HashMap<Uuid, Vec<pb::SiteStatus>> = HashMap::new();
        for r in rows {
            let entry_id: Uuid = r.get("entry_id");
            let attempts: i32 = r.get("attempts");
            out.entry(entry_id).or_default().push(pb::SiteStatus {
                site_id: r.get("site_id"),
                state: state_of(r.get("state")) as i32,
                spire_entry_id: zt_entry_api::spire_entry_id(&entry_id.to_string()),
                last_error: r.get("last_error"),
                last_sync_at: ts_opt(r.get("last_sync_at")),
                attempts: attempts as u32,
                next_retry_at: ts_opt(r.get("next_retry_at")),
                alerting: attempts >= ALERT_AFTER,
                synced_revision: r.get("synced_revision"),
            });
        }
        Ok(out)
    }

    pub(super) fn entry_row(r: &Row, status: Vec<pb::SiteStatus>) -> pb::Entry {
        let id: Uuid = r.get("id");
        let selectors: Value = r.get("selectors");
        let selectors = selectors
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| pb::Selector {
                        r#type: s["type"].as_str().unwrap_or_default().to_owned(),
                        value: s["value"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut site_ids: Vec<String> = status.iter().map(|s| s.site_id.clone()).collect();
        site_ids.sort();
        pb::Entry {
            id: id.to_string(),
            spiffe_id: r.get("spiffe_id"),
            parent_id: r.get("parent_id"),
            selectors,
            x509_svid_ttl: r.get("x509_svid_ttl"),
            jwt_svid_ttl: r.get("jwt_svid_ttl"),
            dns_names: r.get("dns_names"),
            admin: r.get("admin"),
            downstream: r.get("downstream"),
            hint: r.get("hint"),
            site_ids,
            revision: r.get("revision"),
            created_by: r.get("created_by"),
            created_at: Some(ts(r.get("created_at"))),
            updated_at: Some(ts(r.get("updated_at"))),
            site_status: status,
        }
    }

    pub(super) async fn load_entries<C: GenericClient>(client: &C, rows: &[Row]) -> Result<Vec<pb::Entry>> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.get("id")).collect();
        let mut statuses = Self::statuses(client, &ids).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let id: Uuid = r.get("id");
                Self::entry_row(r, statuses.remove(&id).unwrap_or_default())
            })
            .collect())
    }

    /// Every site's trust domain, read once per transaction.
    pub(super) async fn site_tds(tx: &Transaction<'_>) -> Result<HashMap<String, String>> {
        Ok(tx.query("SELECT id, trust_domain FROM sites", &[]).await?.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Checks the sites exist and share the entry's trust domain.
    pub(super) fn check_sites(tds: &HashMap<String, String>, field: &str, e: &ValidEntry) -> Result<()> {
        for (i, s) in e.spec().site_ids.iter().enumerate() {
            match tds.get(s) {
                None => {
                    return Err(FieldError::new(
                        format!("{field}.site_ids[{i}]"),
                        format!("site {s:?} does not exist"),
                    )
                    .into());
                }
                Some(td) if td != e.trust_domain() => {
                    return Err(FieldError::new(
                        format!("{field}.spiffe_id"),
                        format!("trust domain {} is not site {s:?}'s trust domain {td}", e.trust_domain()),
                    )
                    .into());
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(super) fn map_unique(field: &str, e: tokio_postgres::Error) -> StoreError {
        if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
            StoreError::Duplicate(FieldError::new(
                field,
                "an entry with the same SPIFFE ID, parent ID and selectors already exists",
            ))
        } else {
            StoreError::Db(e)
        }
    }

    /// Creates entries, all or nothing. `fields[i]` names entry i in errors.
    pub async fn create_entries(
        &self,
        actor: &Actor,
        entries: &[(String, ValidEntry)],
    ) -> Result<(Vec<pb::Entry>, Updates)> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let insert = tx
            .prepare(
                "INSERT INTO entries (id, spiffe_id, parent_id, selectors, selector_key, x509_svid_ttl, jwt_svid_ttl, dns_names, admin, downstream, hint, revision, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12) RETURNING *",
            )
            .await?;
        let insert_site =
            tx.prepare("INSERT INTO entry_sites (entry_id, site_id, state) VALUES ($1, $2, 'PENDING')").await?;
        let tds = Self::site_tds(&tx).await?;
        let mut created = Vec::with_capacity(entries.len());
        let mut updates = Vec::new();
        let mut touched = std::collections::BTreeSet::new();
        for (field, e) in entries {
            Self::check_sites(&tds, field, e)?;
            let s = e.spec();
            let id = Uuid::now_v7();
            let selectors =
                Value::Array(s.selectors.iter().map(|x| json!({"type": x.r#type, "value": x.value})).collect());
            let row = tx
                .query_one(
                    &insert,
                    &[
                        &id,
                        &s.spiffe_id,
                        &s.parent_id,
                        &selectors,
                        &selector_key(s),
                        &s.x509_svid_ttl,
                        &s.jwt_svid_ttl,
                        &s.dns_names,
                        &s.admin,
                        &s.downstream,
                        &s.hint,
                        &actor.name,
                    ],
                )
                .await
                .map_err(|err| Self::map_unique(field, err))?;
            let mut status = Vec::new();
            for site in &s.site_ids {
                tx.execute(&insert_site, &[&id, site]).await?;
                touched.insert(site.clone());
                updates.push(update(&id.to_string(), site, pb::SyncState::Pending, 1, "", false));
                status.push(pb::SiteStatus {
                    site_id: site.clone(),
                    state: pb::SyncState::Pending as i32,
                    spire_entry_id: zt_entry_api::spire_entry_id(&id.to_string()),
                    ..Default::default()
                });
            }
            let entry = Self::entry_row(&row, status);
            Self::audit(&tx, actor, "entry.create", "entry", &entry.id, None, Some(entry_json(&entry))).await?;
            created.push(entry);
        }
        Self::bump_sites(&tx, &touched.into_iter().collect::<Vec<_>>()).await?;
        tx.commit().await?;
        Ok((created, updates))
    }

    /// An entry by ID (also while it is being deleted).
    pub async fn get_entry(&self, id: &str) -> Result<pb::Entry> {
        let uuid = parse_uuid("id", id, ENTRY_ID)?;
        let client = self.pool.get().await?;
        let row = client
            .query_opt("SELECT * FROM entries WHERE id = $1", &[&uuid])
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("entry {id} does not exist")))?;
        Ok(Self::load_entries(&client, &[row]).await?.remove(0))
    }

    /// Replaces an entry's fields if `revision` is current.
    pub async fn update_entry(
        &self,
        actor: &Actor,
        id: &str,
        revision: i64,
        e: &ValidEntry,
    ) -> Result<(pb::Entry, Updates)> {
        let uuid = parse_uuid("id", id, ENTRY_ID)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt("SELECT * FROM entries WHERE id = $1 FOR UPDATE", &[&uuid])
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("entry {id} does not exist")))?;
        let before = Self::load_entries(&tx, &[row]).await?.remove(0);
        let deleted = tx.query_one("SELECT deleted FROM entries WHERE id = $1", &[&uuid]).await?.get::<_, bool>(0);
        if deleted {
            return Err(StoreError::FailedPrecondition(format!("entry {id} is being deleted")));
        }
        if before.revision != revision {
            return Err(StoreError::Aborted(format!(
                "entry {id} is at revision {}, not {revision}: read it again and retry",
                before.revision
            )));
        }
        Self::check_sites(&Self::site_tds(&tx).await?, "entry", e)?;
        let s = e.spec();
        let selectors = Value::Array(s.selectors.iter().map(|x| json!({"type": x.r#type, "value": x.value})).collect());
        tx.execute(
            "UPDATE entries SET spiffe_id = $2, parent_id = $3, selectors = $4, selector_key = $5, x509_svid_ttl = $6, jwt_svid_ttl = $7,
                    dns_names = $8, admin = $9, downstream = $10, hint = $11, revision = revision + 1, updated_at = now()
              WHERE id = $1",
            &[&uuid, &s.spiffe_id, &s.parent_id, &selectors, &selector_key(s), &s.x509_svid_ttl, &s.jwt_svid_ttl, &s.dns_names, &s.admin, &s.downstream, &s.hint],
        )
        .await
        .map_err(|err| Self::map_unique("entry", err))?;
        let new_rev = revision + 1;
        let mut updates = Vec::new();
        let mut touched: Vec<String> = before.site_ids.clone();
        for site in &s.site_ids {
            // New sites and changed ones go back to PENDING.
            tx.execute(
                "INSERT INTO entry_sites (entry_id, site_id, state) VALUES ($1, $2, 'PENDING')
                 ON CONFLICT (entry_id, site_id) DO UPDATE SET state = 'PENDING', attempts = 0, next_retry_at = NULL, last_error = '', changed_at = now()",
                &[&uuid, site],
            )
            .await?;
            updates.push(update(id, site, pb::SyncState::Pending, new_rev, "", false));
            if !touched.contains(site) {
                touched.push(site.clone());
            }
        }
        for site in before.site_ids.iter().filter(|x| !s.site_ids.contains(x)) {
            tx.execute(
                "UPDATE entry_sites SET state = 'DELETING', attempts = 0, next_retry_at = NULL, last_error = '', changed_at = now() WHERE entry_id = $1 AND site_id = $2",
                &[&uuid, site],
            )
            .await?;
            updates.push(update(id, site, pb::SyncState::Deleting, new_rev, "", false));
        }
        let row = tx.query_one("SELECT * FROM entries WHERE id = $1", &[&uuid]).await?;
        let after = Self::load_entries(&tx, &[row]).await?.remove(0);
        Self::audit(&tx, actor, "entry.update", "entry", id, Some(entry_json(&before)), Some(entry_json(&after)))
            .await?;
        Self::bump_sites(&tx, &touched).await?;
        tx.commit().await?;
        Ok((after, updates))
    }

    /// Marks entries deleted: every site goes DELETING until its agent reports them gone.
    pub async fn delete_entries(&self, actor: &Actor, ids: &[(String, String)]) -> Result<(Vec<pb::Entry>, Updates)> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut out = Vec::new();
        let mut updates = Vec::new();
        let mut touched = std::collections::BTreeSet::new();
        for (field, id) in ids {
            let uuid = parse_uuid(field, id, ENTRY_ID)?;
            let row = tx
                .query_opt("SELECT * FROM entries WHERE id = $1 FOR UPDATE", &[&uuid])
                .await?
                .ok_or_else(|| StoreError::UnknownRef(FieldError::new(field, format!("entry {id} does not exist"))))?;
            if row.get::<_, bool>("deleted") {
                return Err(StoreError::UnknownRef(FieldError::new(
                    field,
                    format!("entry {id} is already being deleted"),
                )));
            }
            let before = Self::load_entries(&tx, &[row]).await?.remove(0);
            tx.execute("UPDATE entries SET deleted = true, updated_at = now() WHERE id = $1", &[&uuid]).await?;
            tx.execute(
                "UPDATE entry_sites SET state = 'DELETING', attempts = 0, next_retry_at = NULL, last_error = '', changed_at = now() WHERE entry_id = $1",
                &[&uuid],
            )
            .await?;
            for site in &before.site_ids {
                touched.insert(site.clone());
                updates.push(update(id, site, pb::SyncState::Deleting, before.revision, "", false));
            }
            Self::audit(&tx, actor, "entry.delete", "entry", id, Some(entry_json(&before)), None).await?;
            let row = tx.query_one("SELECT * FROM entries WHERE id = $1", &[&uuid]).await?;
            out.push(Self::load_entries(&tx, &[row]).await?.remove(0));
        }
        Self::bump_sites(&tx, &touched.into_iter().collect::<Vec<_>>()).await?;
        tx.commit().await?;
        Ok((out, updates))
    }

    /// Lists entries by `filter`, ordered by ID (creation order), after `page_token`.
    pub async fn list_entries(
        &self,
        filter: &EntryFilter,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<pb::Entry>, String)> {
        let mut sql = String::from("SELECT e.* FROM entries e WHERE true");
        let mut params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = Vec::new();
        let mut add = |cond: &str, p: Box<dyn tokio_postgres::types::ToSql + Sync + Send>| {
            params.push(p);
            sql.push_str(&cond.replace("$$", &format!("${}", params.len())));
        };
        if !page_token.is_empty() {
            add(" AND e.id > $$", Box::new(parse_uuid("page_token", page_token, "a page token this server issued")?));
        }
        if let Some(v) = &filter.spiffe_id {
            add(" AND e.spiffe_id = $$", Box::new(v.clone()));
        }
        if let Some(v) = &filter.spiffe_id_prefix {
            let escaped = v.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            add(" AND e.spiffe_id LIKE $$", Box::new(format!("{escaped}%")));
        }
        if let Some(v) = &filter.parent_id {
            add(" AND e.parent_id = $$", Box::new(v.clone()));
        }
        if let Some(v) = &filter.selector {
            add(" AND e.selectors @> $$", Box::new(json!([{"type": v.r#type, "value": v.value}])));
        }
        match (&filter.site_id, filter.state) {
            (Some(site), Some(state)) => {
                add(
                    " AND EXISTS (SELECT 1 FROM entry_sites s WHERE s.entry_id = e.id AND s.site_id = $$",
                    Box::new(site.clone()),
                );
                add(" AND s.state = $$)", Box::new(state_name(state).to_owned()));
            }
            (Some(site), None) => add(
                " AND EXISTS (SELECT 1 FROM entry_sites s WHERE s.entry_id = e.id AND s.site_id = $$)",
                Box::new(site.clone()),
            ),
            (None, Some(state)) => add(
                " AND EXISTS (SELECT 1 FROM entry_sites s WHERE s.entry_id = e.id AND s.state = $$)",
                Box::new(state_name(state).to_owned()),
            ),
            (None, None) => {}
        }
        params.push(Box::new(page_size as i64 + 1));
        sql.push_str(&format!(" ORDER BY e.id LIMIT ${}", params.len()));
        let client = self.pool.get().await?;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
        let mut rows = client.query(&sql, &refs).await?;
        let next = if rows.len() > page_size {
            rows.truncate(page_size);
            rows.last().map(|r| r.get::<_, Uuid>("id").to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((Self::load_entries(&client, &rows).await?, next))
    }

    /// The number of live (not deleted) entries.
    pub async fn count_entries(&self) -> Result<i64> {
        let client = self.pool.get().await?;
        Ok(client.query_one("SELECT count(*) FROM entries WHERE NOT deleted", &[]).await?.get(0))
    }

    // ----------------------------------------------------------------- sync
}
