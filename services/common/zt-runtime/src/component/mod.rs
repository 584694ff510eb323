//! The lab's components as values: what each one is ([`Component`], [`Kind`]), the list of them
//! in start order ([`Lab::components`]), and how each reports its status ([`Lab::status_of`]).
//! `status`, `down` and the component names are this list; `up` walks the plan
//! ([`Lab::plan`]) it comes from, and each component starts itself ([`start`]).
//!
//! A runtime other than local processes (Kubernetes) provides the same operations on the same
//! components: start, stop, status.

use serde::{Deserialize, Serialize};

use crate::app::{self as appchain, AppPaths};
use crate::lab::{ComponentStatus, Lab, MGMT_DB, OPENBAO, Step};

mod start;

/// What kind of thing a component is. One string mapping: [`Kind::as_str`] (also its JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A PostgreSQL server.
    Postgres,
    /// A SPIRE server.
    SpireServer,
    /// A SPIRE agent.
    SpireAgent,
    /// The OpenBao server.
    Openbao,
    /// A spiffe-helper writing SVID files.
    SpiffeHelper,
    /// SPIRE's OIDC Discovery Provider.
    OidcDiscoveryProvider,
    /// A test double of an outside service (GitHub's API).
    Fixture,
    /// A ztlab service (SVID from the Workload API).
    Workload,
    /// An Envoy sidecar (SVID over SDS).
    Envoy,
}

impl Kind {
    /// Its name: `postgres`, `spire-server`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::SpireServer => "spire-server",
            Kind::SpireAgent => "spire-agent",
            Kind::Openbao => "openbao",
            Kind::SpiffeHelper => "spiffe-helper",
            Kind::OidcDiscoveryProvider => "oidc-discovery-provider",
            Kind::Fixture => "fixture",
            Kind::Workload => "workload",
            Kind::Envoy => "envoy",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a component is doing. One string mapping: [`Health::as_str`] (also its JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Running and answering its readiness check.
    Healthy,
    /// Running, but its readiness check fails (the detail says why).
    Unhealthy,
    /// Not running.
    Stopped,
}

impl Health {
    /// `healthy`, `unhealthy` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Stopped => "stopped",
        }
    }

    /// Healthy when `ok`, else unhealthy (for a running component).
    pub fn from_check(ok: bool) -> Self {
        if ok { Health::Healthy } else { Health::Unhealthy }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One component of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// The management PostgreSQL (entry-manager's store, unix socket only).
    MgmtDb,
    /// The SPIRE server of a site.
    SpireServer(String),
    /// The SPIRE agent of a site.
    SpireAgent(String),
    /// OpenBao.
    OpenBao,
    /// An app-chain component started before the services ([`appchain::BEFORE_SERVICES`]).
    AppInfra(&'static str),
    /// A workload of the spec (a ztlab service), by name.
    Workload(String),
    /// An Envoy sidecar, started after the services ([`appchain::AFTER_SERVICES`]).
    Envoy(&'static str),
}

impl Component {
    /// Its name: `spire-server-a`, `backend`, `envoy-frontend`, …
    pub fn name(&self) -> String {
        match self {
            Component::MgmtDb => MGMT_DB.to_owned(),
            Component::SpireServer(site) => format!("spire-server-{site}"),
            Component::SpireAgent(site) => format!("spire-agent-{site}"),
            Component::OpenBao => OPENBAO.to_owned(),
            Component::AppInfra(name) | Component::Envoy(name) => (*name).to_owned(),
            Component::Workload(name) => name.clone(),
        }
    }

    /// For a SPIRE component's name: whether it is the server, and its site.
    pub(crate) fn spire_site(name: &str) -> Option<(bool, &str)> {
        name.strip_prefix("spire-server-")
            .map(|site| (true, site))
            .or_else(|| name.strip_prefix("spire-agent-").map(|site| (false, site)))
    }

    /// What it is.
    pub fn kind(&self) -> Kind {
        match self {
            Component::MgmtDb => Kind::Postgres,
            Component::SpireServer(_) => Kind::SpireServer,
            Component::SpireAgent(_) => Kind::SpireAgent,
            Component::OpenBao => Kind::Openbao,
            Component::AppInfra(appchain::HELPER_POSTGRES | appchain::HELPER_BACKEND) => Kind::SpiffeHelper,
            Component::AppInfra(appchain::POSTGRES_APP) => Kind::Postgres,
            Component::AppInfra(appchain::OIDC) => Kind::OidcDiscoveryProvider,
            Component::AppInfra(_) => Kind::Fixture,
            Component::Workload(_) => Kind::Workload,
            Component::Envoy(_) => Kind::Envoy,
        }
    }
}

impl Lab {
    /// What `up` does, in order: every component of the spec ([`Step::Start`]) and the steps
    /// between them. Entry management (the mgmt PostgreSQL, the SPIRE sites, OpenBao, and the
    /// workloads with bootstrap entries) comes first; then the catalogue; then what gets its
    /// entries from the catalogue (the app chain's infrastructure, the services, the Envoys).
    pub fn plan(&self) -> Vec<Step> {
        let spec = self.spec();
        let mut plan = Vec::new();
        if spec.mgmt_db {
            plan.push(Step::Start(Component::MgmtDb));
        }
        for s in &spec.sites {
            plan.push(Step::Start(Component::SpireServer(s.name.clone())));
            plan.push(Step::Start(Component::SpireAgent(s.name.clone())));
        }
        if spec.openbao.is_some() {
            plan.push(Step::Start(Component::OpenBao));
            plan.push(Step::ConfigureIdentity);
        }
        let (bootstrap, services): (Vec<_>, Vec<_>) = spec.workloads.iter().partition(|w| w.bootstrap_entry);
        plan.extend(bootstrap.iter().map(|w| Step::Start(Component::Workload(w.name.clone()))));
        if spec.app.is_some() || !services.is_empty() {
            plan.push(Step::Catalogue);
        }
        if let Some(app) = &spec.app {
            for name in appchain::BEFORE_SERVICES {
                if name == appchain::GITHUB_FIXTURE {
                    // The backend's secrets are configured once their sources run.
                    plan.push(Step::ConfigureSecrets);
                    if app.github_fixture.is_none() {
                        continue;
                    }
                }
                plan.push(Step::Start(Component::AppInfra(name)));
            }
        }
        plan.extend(services.iter().map(|w| Step::Start(Component::Workload(w.name.clone()))));
        if spec.app.is_some() {
            plan.extend(appchain::AFTER_SERVICES.iter().map(|n| Step::Start(Component::Envoy(n))));
        }
        plan
    }

    /// Every component of the spec, in start order ([`Lab::plan`]'s starts).
    pub fn components(&self) -> Vec<Component> {
        self.plan()
            .into_iter()
            .filter_map(|s| match s {
                Step::Start(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// The status of every component, in start order.
    pub async fn status(&self) -> Vec<ComponentStatus> {
        let mut out = Vec::new();
        for c in self.components() {
            out.push(self.status_of(&c).await);
        }
        out
    }

    /// The status of one component: whether it runs (its recorded pid is alive), whether it
    /// answers its readiness check, and who it is (SPIFFE ID, SVID expiry and serial).
    pub async fn status_of(&self, c: &Component) -> ComponentStatus {
        let name = c.name();
        let rec = self.process(&name).ok().flatten().filter(|r| r.is_alive()).cloned();
        let mut st = ComponentStatus {
            name: name.clone(),
            kind: c.kind(),
            site: String::new(),
            pid: rec.as_ref().map(|r| r.pid),
            health: Health::Stopped,
            spiffe_id: None,
            svid_expires_at: None,
            svid_seconds_left: None,
            svid_serial: None,
            detail: None,
        };
        match c {
            Component::MgmtDb => {
                st.detail = Some(format!("unix socket {}", self.mgmt_cluster().socket_dir().display()));
                if rec.is_some() {
                    st.health = Health::from_check(self.mgmt_cluster().psql("postgres", "SELECT 1").await.is_ok());
                }
            }
            Component::SpireServer(site) | Component::SpireAgent(site) => {
                let spec = self.site_spec(site).ok();
                let state = self.site_state(site).ok();
                st.site = site.clone();
                let server = matches!(c, Component::SpireServer(_));
                st.spiffe_id = spec
                    .map(|s| if server { format!("spiffe://{}/spire/server", s.trust_domain) } else { s.node_alias() });
                let port = state.map(|s| if server { s.server_health_port } else { s.agent_health_port });
                if rec.is_some() {
                    match crate::health::http_get(port.unwrap_or(0), "/ready").await {
                        Some((200, _)) => st.health = Health::Healthy,
                        other => {
                            st.health = Health::Unhealthy;
                            st.detail = Some(format!("/ready answered {:?}", other.map(|o| o.0)));
                        }
                    }
                }
            }
            Component::OpenBao => {
                let port = self.spec().openbao.as_ref().map(|b| b.port).unwrap_or(0);
                st.detail = Some(format!("OIDC issuer http://127.0.0.1:{port}/v1/identity/oidc"));
                if rec.is_some() {
                    let ok = matches!(crate::health::http_get(port, "/v1/sys/health").await, Some((200, _)));
                    st.health = Health::from_check(ok);
                }
            }
            Component::Workload(_) => self.workload_status(&mut st, rec.is_some()).await,
            Component::AppInfra(_) | Component::Envoy(_) => self.app_status(&mut st, rec.is_some()).await,
        }
        st
    }

    /// A ztlab service: its `/healthz` on the ops port gives health, SPIFFE ID and SVID.
    async fn workload_status(&self, st: &mut ComponentStatus, running: bool) {
        let Some(w) = self.spec().workloads.iter().find(|w| w.name == st.name) else { return };
        st.site = w.site.clone();
        st.spiffe_id = self.site_spec(&w.site).ok().map(|s| format!("spiffe://{}{}", s.trust_domain, w.spiffe_path));
        if !running {
            return;
        }
        match crate::health::http_get(w.ops_port, "/healthz").await {
            Some((code, body)) => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                st.health = Health::from_check(code == 200);
                if let Some(id) = v.get("spiffe_id").and_then(|x| x.as_str()) {
                    st.spiffe_id = Some(id.to_owned());
                }
                st.svid_expires_at = v.get("svid_expires_at").and_then(|x| x.as_str()).map(str::to_owned);
                st.svid_seconds_left = v.get("svid_seconds_left").and_then(serde_json::Value::as_i64);
                st.svid_serial = v.get("svid_serial").and_then(|x| x.as_str()).map(appchain::normalize_serial);
                st.detail = v.get("reason").and_then(|x| x.as_str()).map(str::to_owned);
            }
            None => {
                st.health = Health::Unhealthy;
                st.detail = Some("/healthz did not answer".into());
            }
        }
    }

    /// An app-chain component: who it is does not depend on whether it runs; its check does.
    async fn app_status(&self, st: &mut ComponentStatus, running: bool) {
        let Some(app) = self.spec().app.clone() else { return };
        let td = self.site_spec(&app.site).ok().map(|s| s.trust_domain.clone());
        let paths = AppPaths::new(self.state_dir());
        st.site = app.site.clone();
        let path = match st.name.as_str() {
            appchain::HELPER_POSTGRES | appchain::POSTGRES_APP => Some("/ns/demo/sa/postgres"),
            appchain::HELPER_BACKEND | appchain::ENVOY_BACKEND_NAME => Some(zt_identity::lab::BACKEND),
            appchain::ENVOY_FRONTEND_NAME => Some(zt_identity::lab::FRONTEND),
            _ => None,
        };
        st.spiffe_id = path.and_then(|p| td.as_ref().map(|t| format!("spiffe://{t}{p}")));
        if !running {
            return;
        }
        let http_ok = |port: u16, path: &'static str, want: &'static str| async move {
            match crate::health::http_get(port, path).await {
                Some((200, body)) if body.contains(want) => (true, None),
                other => (false, Some(format!("GET {path} answered {:?}", other.map(|o| o.0)))),
            }
        };
        let (ok, detail) = match st.name.as_str() {
            appchain::HELPER_POSTGRES | appchain::HELPER_BACKEND => {
                let dir =
                    if st.name == appchain::HELPER_POSTGRES { paths.pg_cert_dir() } else { paths.backend_cert_dir() };
                match appchain::svid_file_expiry(&dir) {
                    Some(exp) => {
                        let left = exp - time::OffsetDateTime::now_utc().unix_timestamp();
                        st.svid_seconds_left = Some(left);
                        st.svid_expires_at = time::OffsetDateTime::from_unix_timestamp(exp)
                            .ok()
                            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
                        st.svid_serial = appchain::svid_file_serial(&dir);
                        (left > 0, Some(format!("writes {}", dir.display())))
                    }
                    None => (false, Some(format!("no SVID in {}", dir.display()))),
                }
            }
            appchain::POSTGRES_APP => {
                let ok = paths.pg_cluster(app.postgres_port).psql("postgres", "SELECT 1").await.is_ok();
                (ok, Some(format!("TLS 1.3 on 127.0.0.1:{}", app.postgres_port)))
            }
            appchain::OIDC => http_ok(app.oidc_port, "/keys", "kid").await,
            appchain::GITHUB_FIXTURE => {
                let port = app.github_fixture.as_ref().map(|f| f.port).unwrap_or(0);
                let ok = crate::health::http_get(port, "/user").await.is_some();
                (ok, Some("test double of GitHub's API".into()))
            }
            _ => {
                let port = if st.name == appchain::ENVOY_BACKEND_NAME {
                    app.backend_envoy.admin
                } else {
                    app.frontend_envoy.admin
                };
                // Its SVID comes over SDS; the admin `/certs` shows the one it serves.
                if let Some(svid) =
                    crate::health::http_get(port, "/certs").await.and_then(|(_, body)| appchain::envoy_svid(&body))
                {
                    st.svid_serial = Some(svid.serial);
                    st.svid_expires_at = svid.expires_at;
                    st.svid_seconds_left = svid.not_after.map(|t| t - time::OffsetDateTime::now_utc().unix_timestamp());
                }
                http_ok(port, "/ready", "LIVE").await
            }
        };
        st.health = Health::from_check(ok);
        st.detail = detail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_health_have_one_name_each_and_it_is_their_json() {
        for k in [
            Kind::Postgres,
            Kind::SpireServer,
            Kind::SpireAgent,
            Kind::Openbao,
            Kind::SpiffeHelper,
            Kind::OidcDiscoveryProvider,
            Kind::Fixture,
            Kind::Workload,
            Kind::Envoy,
        ] {
            assert_eq!(serde_json::to_value(k).expect("json"), serde_json::json!(k.as_str()));
        }
        for h in [Health::Healthy, Health::Unhealthy, Health::Stopped] {
            assert_eq!(serde_json::to_value(h).expect("json"), serde_json::json!(h.as_str()));
        }
    }

    #[test]
    fn components_have_their_kinds() {
        assert_eq!(Component::SpireServer("a".into()).name(), "spire-server-a");
        assert_eq!(Component::AppInfra(appchain::HELPER_BACKEND).kind(), Kind::SpiffeHelper);
        assert_eq!(Component::AppInfra(appchain::POSTGRES_APP).kind(), Kind::Postgres);
        assert_eq!(Component::AppInfra(appchain::GITHUB_FIXTURE).kind(), Kind::Fixture);
        assert_eq!(Component::Envoy(appchain::ENVOY_FRONTEND_NAME).kind(), Kind::Envoy);
    }
}
