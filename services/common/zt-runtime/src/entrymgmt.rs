//! The entry-management components of the lab: `entry-manager` and one `site-agent` per site,
//! as workloads with bootstrap entries (the only entries not created through the API) and
//! config files written by the lab.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lab::{LabSpec, MGMT_DATABASE, WorkloadSpec};
use crate::postgres::{Cluster, SUPERUSER};
use crate::spire::SitePaths;

/// entry-manager's SPIFFE ID path.
pub const ENTRY_MANAGER_PATH: &str = "/ns/ztlab-system/sa/entry-manager";

/// The frontend's SPIFFE ID path; entry-manager grants it the `Developer` role limited to
/// [`FRONTEND_PATH_PREFIXES`].
pub const FRONTEND_PATH: &str = "/ns/demo/sa/frontend";

/// The SPIFFE ID path prefixes under which the frontend's UI may create and delete entries
/// (least privilege: the UI itself can write only `spiffe://<td>/demo/...`).
pub const FRONTEND_PATH_PREFIXES: [&str; 1] = ["/demo"];

/// A site agent's SPIFFE ID path.
pub fn site_agent_path(site: &str) -> String {
    format!("/ns/ztlab-system/sa/site-agent-{site}")
}

/// The DNS name in entry-manager's SVID, which bearer-token clients verify.
pub fn entry_manager_dns(trust_domain: &str) -> String {
    format!("entry-manager.{trust_domain}")
}

/// Where entry-manager writes the bootstrap admin API key (mode 0600).
pub fn admin_key_file(state_dir: &Path) -> PathBuf {
    state_dir.join("entry-manager/admin.key")
}

/// An OIDC group and the role it grants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupRole {
    /// Group name in the token.
    pub group: String,
    /// `Admin`, `Operator`, `Developer` or `Viewer`.
    pub role: String,
    /// For Developer: SPIFFE ID path prefixes.
    #[serde(default)]
    pub path_prefixes: Vec<String>,
}

/// OIDC settings for entry-manager.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Oidc {
    /// Issuer URL.
    pub issuer: String,
    /// Audience.
    pub audience: String,
    /// Groups claim.
    pub groups_claim: String,
    /// Username claim.
    pub username_claim: String,
    /// Group → role.
    pub group_roles: Vec<GroupRole>,
}

/// How to run entry management in a lab.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntryMgmtSpec {
    /// The site whose agent serves entry-manager.
    pub site: String,
    /// The entry-manager binary.
    pub entry_manager: PathBuf,
    /// The site-agent binary.
    pub site_agent: PathBuf,
    /// mTLS gRPC port.
    pub listen_port: u16,
    /// Operator (TLS + bearer) gRPC port.
    pub operator_port: u16,
    /// entry-manager's ops port.
    pub ops_port: u16,
    /// Each site agent's ops port.
    pub agent_ops_ports: BTreeMap<String, u16>,
    /// Site agents' full-resync interval, seconds.
    pub full_resync_secs: u64,
    /// OIDC for people.
    pub oidc: Option<Oidc>,
}

fn q(s: &str) -> String {
    // TOML basic strings accept Rust's escapes for the characters that occur here.
    format!("{s:?}")
}

/// entry-manager and the site agents, in start order.
pub fn workloads(lab: &LabSpec, em: &EntryMgmtSpec) -> Vec<WorkloadSpec> {
    let td = lab.sites.iter().find(|s| s.name == em.site).map(|s| s.trust_domain.clone()).unwrap_or_default();
    let cluster = Cluster::new(&lab.state_dir.join("pg-mgmt"), 5432);
    let db = format!(
        "host={} port={} user={SUPERUSER} dbname={MGMT_DATABASE}",
        cluster.socket_dir().display(),
        cluster.port
    );
    let mut cfg = format!(
        "listen_addr = {}\noperator_addr = {}\ndatabase_url = {}\nbootstrap_admin_key_file = {}\n",
        q(&format!("127.0.0.1:{}", em.listen_port)),
        q(&format!("127.0.0.1:{}", em.operator_port)),
        q(&db),
        q(&admin_key_file(&lab.state_dir).display().to_string()),
    );
    for s in &lab.sites {
        cfg.push_str(&format!("\n[[sites]]\nid = {}\ntrust_domain = {}\n", q(&s.name), q(&s.trust_domain)));
        cfg.push_str(&format!(
            "\n[[identities]]\nspiffe_id = {}\nrole = \"SiteAgent\"\nsite = {}\n",
            q(&format!("spiffe://{}{}", s.trust_domain, site_agent_path(&s.name))),
            q(&s.name)
        ));
    }
    // The frontend's UI (`/entries`, `/sites`, `/entries/audit`): it reads everything, and may
    // create and delete entries only under its path prefixes (Developer).
    if !td.is_empty() {
        let prefixes: Vec<String> = FRONTEND_PATH_PREFIXES.iter().map(|p| q(p)).collect();
        cfg.push_str(&format!(
            "\n[[identities]]\nspiffe_id = {}\nrole = \"Developer\"\npath_prefixes = [{}]\n",
            q(&format!("spiffe://{td}{FRONTEND_PATH}")),
            prefixes.join(", ")
        ));
    }
    if let Some(o) = &em.oidc {
        cfg.push_str(&format!(
            "\n[oidc]\nissuer = {}\naudience = {}\ngroups_claim = {}\nusername_claim = {}\n",
            q(&o.issuer),
            q(&o.audience),
            q(&o.groups_claim),
            q(&o.username_claim)
        ));
        for g in &o.group_roles {
            let prefixes: Vec<String> = g.path_prefixes.iter().map(|p| q(p)).collect();
            cfg.push_str(&format!(
                "\n[[group_roles]]\ngroup = {}\nrole = {}\npath_prefixes = [{}]\n",
                q(&g.group),
                q(&g.role),
                prefixes.join(", ")
            ));
        }
    }
    let mut out = vec![WorkloadSpec {
        ops_port: em.ops_port,
        ports: BTreeMap::from([("listen".to_owned(), em.listen_port), ("operator".to_owned(), em.operator_port)]),
        dns_names: vec![entry_manager_dns(&td)],
        config: Some(cfg),
        ..WorkloadSpec::new("entry-manager", &em.site, ENTRY_MANAGER_PATH, em.entry_manager.clone())
    }];
    for s in &lab.sites {
        let ops = em.agent_ops_ports.get(&s.name).copied().unwrap_or(0);
        let cfg = format!(
            "site_id = {}\nentry_manager_addr = {}\nspire_admin_socket = {}\nfull_resync_secs = {}\n",
            q(&s.name),
            q(&format!("127.0.0.1:{}", em.listen_port)),
            q(&SitePaths::new(&lab.state_dir, &s.name).admin_socket().display().to_string()),
            em.full_resync_secs,
        );
        out.push(WorkloadSpec {
            ops_port: ops,
            config: Some(cfg),
            ..WorkloadSpec::new(
                &format!("site-agent-{}", s.name),
                &s.name,
                &site_agent_path(&s.name),
                em.site_agent.clone(),
            )
        });
    }
    out
}

/// The lab's people and their groups (OpenBao userpass users).
pub fn lab_users() -> Vec<(String, Vec<String>)> {
    [
        ("admin", "ztlab-admins"),
        ("operator", "ztlab-operators"),
        ("developer", "ztlab-developers"),
        ("viewer", "ztlab-viewers"),
    ]
    .into_iter()
    .map(|(u, g)| (u.to_owned(), vec![g.to_owned()]))
    .collect()
}

/// entry-manager's OIDC settings for the lab's OpenBao at `port`: its identity-token issuer,
/// and the four groups mapped to roles (developers may write under `/ns/dev`).
pub fn lab_oidc(port: u16) -> Oidc {
    let info =
        crate::openbao::OidcInfo::for_addr(&format!("http://127.0.0.1:{port}"), crate::openbao::DEFAULT_AUDIENCE);
    let role = |group: &str, role: &str, prefixes: &[&str]| GroupRole {
        group: group.into(),
        role: role.into(),
        path_prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
    };
    Oidc {
        issuer: info.issuer,
        audience: info.audience,
        groups_claim: info.groups_claim,
        username_claim: info.username_claim,
        group_roles: vec![
            role("ztlab-admins", "Admin", &[]),
            role("ztlab-operators", "Operator", &[]),
            role("ztlab-developers", "Developer", &["/ns/dev"]),
            role("ztlab-viewers", "Viewer", &[]),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::SiteSpec;

    #[test]
    fn the_frontend_is_a_developer_under_demo() {
        let lab = LabSpec {
            sites: ["a", "b"]
                .iter()
                .map(|n| SiteSpec { name: (*n).into(), trust_domain: "ztlab.test".into(), ..SiteSpec::default() })
                .collect(),
            ..LabSpec::default()
        };
        let em = EntryMgmtSpec {
            site: "a".into(),
            entry_manager: "em".into(),
            site_agent: "sa".into(),
            listen_port: 8444,
            operator_port: 8443,
            ops_port: 9444,
            agent_ops_ports: BTreeMap::new(),
            full_resync_secs: 30,
            oidc: None,
        };
        let cfg = workloads(&lab, &em)[0].config.clone().expect("config");
        assert!(
            cfg.contains(
                "\n[[identities]]\nspiffe_id = \"spiffe://ztlab.test/ns/demo/sa/frontend\"\nrole = \"Developer\"\n\
                 path_prefixes = [\"/demo\"]\n"
            ),
            "{cfg}"
        );
        assert_eq!(cfg.matches("role = \"SiteAgent\"").count(), 2, "{cfg}");
    }
}
