//! The audit trail and the API keys.

use super::*;

impl Store {
    /// Audit events, newest first.
    pub async fn list_audit(
        &self,
        f: &AuditFilter,
        page_size: usize,
        page_token: &str,
    ) -> Result<(Vec<pb::AuditEvent>, String)> {
        let before: i64 = if page_token.is_empty() {
            i64::MAX
        } else {
            page_token.parse().map_err(|_| FieldError::new("page_token", "is not a token this server issued"))?
        };
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT * FROM audit_events WHERE id < $1
                   AND ($2::text IS NULL OR resource_id = $2) AND ($3::text IS NULL OR actor = $3)
                   AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)
                 ORDER BY id DESC LIMIT $6",
                &[&before, &f.resource_id, &f.actor, &f.since, &f.until, &(page_size as i64 + 1)],
            )
            .await?;
        let mut events: Vec<pb::AuditEvent> = rows
            .iter()
            .map(|r| {
                let b: Option<Value> = r.get("before");
                let a: Option<Value> = r.get("after");
                pb::AuditEvent {
                    id: r.get("id"),
                    at: Some(ts(r.get("at"))),
                    actor: r.get("actor"),
                    action: r.get("action"),
                    resource_type: r.get("resource_type"),
                    resource_id: r.get("resource_id"),
                    before_json: b.map(|v| v.to_string()).unwrap_or_default(),
                    after_json: a.map(|v| v.to_string()).unwrap_or_default(),
                    trace_id: r.get("trace_id"),
                }
            })
            .collect();
        let next = if events.len() > page_size {
            events.truncate(page_size);
            events.last().map(|e| e.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((events, next))
    }

    // ------------------------------------------------------------- api keys

    /// Stores a new API key (its secret's hash only).
    pub async fn create_api_key(
        &self,
        actor: &Actor,
        key: &pb::ApiKey,
        role: &str,
        secret_sha256: &[u8],
    ) -> Result<pb::ApiKey> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let id = Uuid::parse_str(&key.id).map_err(|_| StoreError::Invalid(FieldError::new("id", "bad key id")))?;
        let row = tx
            .query_opt(
                "INSERT INTO api_keys (id, name, secret_sha256, role, path_prefixes, created_by) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (name) DO NOTHING RETURNING created_at",
                &[&id, &key.name, &secret_sha256, &role, &key.path_prefixes, &actor.name],
            )
            .await?
            .ok_or_else(|| StoreError::Duplicate(FieldError::new("name", format!("an API key named {:?} already exists", key.name))))?;
        let mut out = key.clone();
        out.created_by = actor.name.clone();
        out.created_at = Some(ts(row.get(0)));
        Self::audit(
            &tx,
            actor,
            "apikey.create",
            "apikey",
            &key.name,
            None,
            Some(json!({"name": key.name, "role": role, "path_prefixes": key.path_prefixes})),
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// A key by ID, for authentication.
    pub async fn api_key(&self, id: &Uuid) -> Result<Option<StoredKey>> {
        let client = self.pool.get().await?;
        Ok(client.query_opt("SELECT * FROM api_keys WHERE id = $1", &[id]).await?.map(|r| StoredKey {
            name: r.get("name"),
            secret_sha256: r.get("secret_sha256"),
            role: r.get("role"),
            path_prefixes: r.get("path_prefixes"),
            revoked: r.get::<_, Option<OffsetDateTime>>("revoked_at").is_some(),
        }))
    }

    /// Every key (without secrets), with its role name.
    pub async fn list_api_keys(&self) -> Result<Vec<(pb::ApiKey, String)>> {
        let client = self.pool.get().await?;
        Ok(client
            .query("SELECT * FROM api_keys ORDER BY created_at", &[])
            .await?
            .iter()
            .map(|r| {
                (
                    pb::ApiKey {
                        id: r.get::<_, Uuid>("id").to_string(),
                        name: r.get("name"),
                        role: 0,
                        path_prefixes: r.get("path_prefixes"),
                        created_by: r.get("created_by"),
                        created_at: Some(ts(r.get("created_at"))),
                        revoked: r.get::<_, Option<OffsetDateTime>>("revoked_at").is_some(),
                    },
                    r.get("role"),
                )
            })
            .collect())
    }

    /// Revokes a key.
    pub async fn revoke_api_key(&self, actor: &Actor, id: &str) -> Result<String> {
        let uuid = parse_uuid("id", id, "an API key ID (a UUID)")?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let name: String = tx
            .query_opt(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING name",
                &[&uuid],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("API key {id} does not exist")))?
            .get(0);
        Self::audit(&tx, actor, "apikey.revoke", "apikey", &name, None, None).await?;
        tx.commit().await?;
        Ok(name)
    }

    /// Whether any API key exists (the bootstrap admin key is made only when none does).
    pub async fn has_api_keys(&self) -> Result<bool> {
        let client = self.pool.get().await?;
        Ok(client.query_one("SELECT EXISTS (SELECT 1 FROM api_keys)", &[]).await?.get(0))
    }
}
