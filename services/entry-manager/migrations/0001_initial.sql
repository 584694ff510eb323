-- entry-manager store, version 1.

CREATE TABLE sites (
    id                  TEXT PRIMARY KEY,
    trust_domain        TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    revision            BIGINT NOT NULL DEFAULT 1,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- What the site agent last reported.
    last_contact_at     TIMESTAMPTZ,
    unmanaged_entry_ids TEXT[] NOT NULL DEFAULT '{}',
    resync_requested    BOOLEAN NOT NULL DEFAULT false,
    -- Bumped (from desired_version_seq) whenever the site's desired entries change.
    desired_version     BIGINT NOT NULL DEFAULT 1
);

CREATE SEQUENCE desired_version_seq START 2;

CREATE TABLE entries (
    id            UUID PRIMARY KEY,
    spiffe_id     TEXT NOT NULL,
    parent_id     TEXT NOT NULL,
    selectors     JSONB NOT NULL,
    -- Canonical sorted "type:value" lines, so that similar entries are unique.
    selector_key  TEXT NOT NULL,
    x509_svid_ttl INTEGER NOT NULL,
    jwt_svid_ttl  INTEGER NOT NULL,
    dns_names     TEXT[] NOT NULL,
    admin         BOOLEAN NOT NULL,
    downstream    BOOLEAN NOT NULL,
    hint          TEXT NOT NULL,
    revision      BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Deleted centrally; the row stays until no site holds the entry.
    deleted       BOOLEAN NOT NULL DEFAULT false
);

-- SPIRE refuses two entries with the same SPIFFE ID, parent and selectors; so does the store.
CREATE UNIQUE INDEX entries_similar ON entries (spiffe_id, parent_id, selector_key) WHERE NOT deleted;
CREATE INDEX entries_spiffe_id ON entries (spiffe_id text_pattern_ops);
CREATE INDEX entries_parent_id ON entries (parent_id);

CREATE TABLE entry_sites (
    entry_id        UUID NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    site_id         TEXT NOT NULL REFERENCES sites (id),
    state           TEXT NOT NULL CHECK (state IN ('PENDING', 'SYNCED', 'FAILED', 'DELETING')),
    last_error      TEXT NOT NULL DEFAULT '',
    last_sync_at    TIMESTAMPTZ,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_retry_at   TIMESTAMPTZ,
    synced_revision BIGINT NOT NULL DEFAULT 0,
    -- When the desired state last changed (sync lag is measured from here).
    changed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (entry_id, site_id)
);
CREATE INDEX entry_sites_site_state ON entry_sites (site_id, state);

CREATE TABLE audit_events (
    id            BIGSERIAL PRIMARY KEY,
    at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    before        JSONB,
    after         JSONB,
    trace_id      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_resource ON audit_events (resource_id, id);
CREATE INDEX audit_events_actor ON audit_events (actor, id);

CREATE TABLE api_keys (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    -- SHA-256 of the random secret; the secret itself is shown once and never stored.
    secret_sha256 BYTEA NOT NULL,
    role          TEXT NOT NULL,
    path_prefixes TEXT[] NOT NULL DEFAULT '{}',
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at    TIMESTAMPTZ
);
