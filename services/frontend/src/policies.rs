//! `GET /policies`: the lab's policies as they are enforced, for the presenter to show.
//!
//! Three sections, each with a plain-language explanation:
//! 1. `#rbac`, Envoy RBAC of the backend's Envoy: the mode installed now (`#rbac-mode`, text
//!    `allow-frontend` or `deny-frontend`), the installed policy file (`<state>/envoy-backend/
//!    rbac/rbac.yaml`, [`zt_runtime::app::AppPaths::rbac_file`]), the allowed SPIFFE IDs in words,
//!    and the backend Envoy's live `http.inbound.rbac.*` counters from its admin `/stats`. This
//!    part is updated in place from `GET /events/policies`, a server-sent event stream that pushes
//!    a [`RbacView`] every second, so a policy swap shows within about a second, with no reload.
//! 2. `#rego`, the OPA/Rego delegation policy (`policies/rego/**/*.rego` without `*_test.rego`)
//!    and its data (`policies/rego/data.json`), with the departments of users and agents as a
//!    table (`#departments`).
//! 3. `#cilium`, the CiliumNetworkPolicies of the kind runtime (`infrastructure/kind/policies/
//!    *.yaml`) and the who-may-reach-whom matrix (`#reachability`) from
//!    `infrastructure/kind/reachability.toml`. Shown, not enforced, on the local runtime.
//!
//! The Rego and Cilium files are read at request time from the repository checkout
//! ([`zt_runtime::repo_root`]: `$ZT_ROOT`, else the checkout this binary was built from), the same files the
//! opa service and `scripts/validate-kind.sh` use. A file that is missing or does not parse
//! gives an error box in its section (what failed, what to do); the other sections still show.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use zt_runtime::app::{AppPaths, RbacMode};

use crate::AppState;
use crate::ui::{error_box, esc, html, layout};

/// The policies page's routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/policies", get(policies_page)).route("/events/policies", get(rbac_events))
}

/// What to do when a policy file of the repository is missing.
fn root_todo(root: &Path) -> String {
    format!(
        "The frontend reads this file from the repository checkout, now {}. Run it from a full \
         checkout, or set ZT_ROOT to one.",
        root.display()
    )
}

/// Something that failed, with what to do about it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// What failed.
    pub what: String,
    /// What to do.
    pub todo: String,
}

impl Problem {
    fn new(what: impl Into<String>, todo: impl Into<String>) -> Self {
        Self { what: what.into(), todo: todo.into() }
    }

    fn html(&self) -> String {
        error_box(&self.what, &self.todo)
    }
}

/// One Envoy stat.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Counter {
    /// Its name, e.g. `http.inbound.rbac.denied`.
    pub name: String,
    /// Its value.
    pub value: u64,
}

/// The backend Envoy's RBAC as it is now (pushed on `GET /events/policies`).
#[derive(Debug, Clone, Serialize)]
pub struct RbacView {
    /// `allow-frontend`, `deny-frontend`, or `None` when no policy file is installed.
    pub mode: Option<String>,
    /// The installed policy file.
    pub file: String,
    /// Its content.
    pub policy: Option<String>,
    /// The SPIFFE IDs it allows.
    pub principals: Vec<String>,
    /// Who may call the backend, in words.
    pub who: String,
    /// Why the policy file could not be read.
    pub error: Option<Problem>,
    /// The `*.rbac.*` stats of the backend's Envoy.
    pub counters: Vec<Counter>,
    /// The sum of the `*.rbac.allowed` stats.
    pub allowed: Option<u64>,
    /// The sum of the `*.rbac.denied` stats.
    pub denied: Option<u64>,
    /// Where the counters come from (the admin URL).
    pub counters_from: Option<String>,
    /// Why the counters could not be read.
    pub counters_error: Option<Problem>,
}

/// The SPIFFE IDs an Envoy RBAC policy file allows: every `principal_name: { exact: "…" }`.
pub fn principals(policy: &str) -> Vec<String> {
    policy
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("principal_name"))
        .filter_map(|l| {
            let rest = l[l.find("exact:")? + "exact:".len()..].trim_start().strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
}

/// Who may call the backend, in words.
fn who_words(mode: Option<RbacMode>, principals: &[String]) -> String {
    match (mode, principals) {
        (None, _) => "Unknown: no RBAC policy file is installed.".into(),
        (Some(RbacMode::DenyFrontend), _) | (_, []) => {
            "Nobody may call the backend: the policy allows no SPIFFE ID, so even the frontend's requests \
             get 403 \"RBAC: denied\"."
                .into()
        }
        (_, [one]) => format!(
            "Only {one} may call the backend. Any other caller, even one with a valid SVID of the trust \
             domain, gets 403 \"RBAC: denied\"."
        ),
        (_, many) => format!("Only these SPIFFE IDs may call the backend: {}.", many.join(", ")),
    }
}

/// The `*.rbac.*` lines of an Envoy admin `/stats` answer.
pub fn rbac_counters(stats: &str) -> Vec<Counter> {
    stats
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim();
            if !name.contains(".rbac.") && !name.starts_with("rbac.") {
                return None;
            }
            Some(Counter { name: name.to_owned(), value: value.trim().parse().ok()? })
        })
        .collect()
}

fn sum(counters: &[Counter], suffix: &str) -> Option<u64> {
    let mut it = counters.iter().filter(|c| c.name.ends_with(suffix)).peekable();
    it.peek()?;
    Some(it.map(|c| c.value).sum())
}

/// The backend Envoy's RBAC: the installed policy (from `state_dir`) and its live counters.
pub async fn rbac_view(state_dir: &Path) -> RbacView {
    let paths = AppPaths::new(state_dir);
    let file = paths.rbac_file();
    let (policy, error) = match std::fs::read_to_string(&file) {
        Ok(text) => (Some(text), None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            None,
            Some(Problem::new(
                format!("no RBAC policy is installed for the backend's Envoy: {} does not exist", file.display()),
                "Start the lab with `ztlab up` (it installs allow-frontend), or install one with \
                 `ztlab policy rbac allow-frontend`. The frontend looks under its state_dir (ZT_STATE_DIR).",
            )),
        ),
        Err(e) => (
            None,
            Some(Problem::new(
                format!("cannot read {}: {e}", file.display()),
                "Check the file's permissions, or install the policy again with `ztlab policy rbac allow-frontend`.",
            )),
        ),
    };
    let mode = policy.as_ref().and_then(|_| zt_runtime::app::current_rbac(&paths));
    let found = policy.as_deref().map(principals).unwrap_or_default();
    let who = who_words(mode, &found);
    let mut view = RbacView {
        mode: mode.map(|m| m.to_string()),
        file: file.display().to_string(),
        policy,
        principals: found,
        who,
        error,
        counters: Vec::new(),
        allowed: None,
        denied: None,
        counters_from: None,
        counters_error: None,
    };
    match backend_admin(state_dir) {
        Err(p) => view.counters_error = Some(p),
        Ok(port) => {
            let path = "/stats?filter=rbac";
            view.counters_from = Some(format!("http://127.0.0.1:{port}{path}"));
            match zt_runtime::health::http_get(port, path).await {
                Some((200, body)) => {
                    view.counters = rbac_counters(&body);
                    view.allowed = sum(&view.counters, ".rbac.allowed");
                    view.denied = sum(&view.counters, ".rbac.denied");
                    if view.counters.is_empty() {
                        view.counters_error = Some(Problem::new(
                            "the backend's Envoy has no RBAC stats: its RBAC filter has not loaded a policy",
                            "Install a policy with `ztlab policy rbac allow-frontend` and check \
                             `ztlab logs envoy-backend` for a rejected config.",
                        ));
                    }
                }
                Some((code, body)) => {
                    view.counters_error = Some(Problem::new(
                        format!(
                            "the backend Envoy's admin {path} answered {code}: {}",
                            body.trim().chars().take(200).collect::<String>()
                        ),
                        "Check `ztlab logs envoy-backend`.",
                    ))
                }
                None => {
                    view.counters_error = Some(Problem::new(
                        format!("the backend Envoy's admin interface (127.0.0.1:{port}) does not answer"),
                        "Check `ztlab status` (envoy-backend should be healthy) and `ztlab logs envoy-backend`; \
                         `ztlab up` starts it again.",
                    ))
                }
            }
        }
    }
    view
}

/// The backend Envoy's admin port, from the lab spec in `state_dir`.
fn backend_admin(state_dir: &Path) -> Result<u16, Problem> {
    let lab = zt_runtime::lab::Lab::open(state_dir)
        .map_err(|e| Problem::new(format!("cannot read the lab state: {e}"), crate::ui::STATE_TODO))?;
    let app = lab.spec().app.as_ref().ok_or_else(|| {
        Problem::new(
            "this lab runs no app chain (no [app] in its config), so there is no backend Envoy",
            "Bring the lab up with the app chain: `ztlab up` with the default lab.toml.",
        )
    })?;
    Ok(app.backend_envoy.admin)
}

// --- Rego -----------------------------------------------------------------------------------------

/// Every `*.rego` under `dir` except `*_test.rego`, as (path relative to `dir`, text), sorted.
fn rego_files(root: &Path, dir: &Path) -> Result<Vec<(String, String)>, Problem> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if path.is_dir() {
                walk(&path, base, out)?;
            } else if name.ends_with(".rego") && !name.ends_with("_test.rego") {
                let rel = path.strip_prefix(base).unwrap_or(&path).display().to_string();
                out.push((rel, std::fs::read_to_string(&path)?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out).map_err(|e| {
        Problem::new(format!("cannot read the Rego policies in {}: {e}", dir.display()), root_todo(root))
    })?;
    if out.is_empty() {
        return Err(Problem::new(
            format!("no Rego policy (*.rego other than *_test.rego) in {}", dir.display()),
            root_todo(root),
        ));
    }
    out.sort();
    Ok(out)
}

/// A user or agent and the departments it has.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    agent: bool,
    departments: BTreeSet<String>,
}

/// `data.ztlab.directory` of `data.json`, as far as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Directory {
    trust_domain: String,
    direct_callers: Vec<String>,
    members: Vec<Member>,
    documents: Vec<(String, String)>,
}

fn directory(text: &str) -> Result<Directory, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("it is not JSON: {e}"))?;
    let d = v
        .pointer("/ztlab/directory")
        .and_then(serde_json::Value::as_object)
        .ok_or("it has no ztlab.directory object")?;
    let members = |key: &str, agent: bool| -> Result<Vec<Member>, String> {
        let map =
            d.get(key).and_then(serde_json::Value::as_object).ok_or(format!("ztlab.directory.{key} is missing"))?;
        Ok(map
            .iter()
            .map(|(name, m)| Member {
                name: name.clone(),
                agent,
                departments: m
                    .get("departments")
                    .and_then(serde_json::Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
            })
            .collect())
    };
    let mut all = members("users", false)?;
    all.extend(members("agents", true)?);
    let documents = d
        .get("documents")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flatten()
        .map(|(id, doc)| {
            (id.clone(), doc.get("department").and_then(serde_json::Value::as_str).unwrap_or("—").to_owned())
        })
        .collect();
    Ok(Directory {
        trust_domain: d.get("trust_domain").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned(),
        direct_callers: d
            .get("direct_callers")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        members: all,
        documents,
    })
}

fn departments_table(d: &Directory) -> String {
    let mut depts: BTreeSet<String> = d.members.iter().flat_map(|m| m.departments.iter().cloned()).collect();
    depts.extend(d.documents.iter().map(|(_, dep)| dep.clone()));
    let mut out = String::from(
        "<table id=\"departments\" aria-label=\"Departments of users and agents\"><thead><tr>\
         <th scope=\"col\">Who</th><th scope=\"col\">Kind</th><th scope=\"col\">SPIFFE ID</th>",
    );
    for dep in &depts {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(dep));
    }
    out.push_str("</tr></thead><tbody>");
    for m in &d.members {
        let (kind, id) = if m.agent {
            ("AI agent", format!("spiffe://{}/agent/{}", d.trust_domain, m.name))
        } else {
            ("user", "— (signs in; no SVID)".to_owned())
        };
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{kind}</td><td class=\"mono\">{}</td>",
            esc(&m.name),
            esc(&id)
        );
        for dep in &depts {
            if m.departments.contains(dep) {
                out.push_str("<td class=\"cell-yes\">✓ yes</td>");
            } else {
                out.push_str("<td class=\"cell-no\">✗ no</td>");
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if !d.documents.is_empty() {
        out.push_str(
            "<h3>Documents and the department each needs</h3><table id=\"documents\" aria-label=\"Documents\">\
             <thead><tr><th scope=\"col\">Document</th><th scope=\"col\">Needs department</th></tr></thead><tbody>",
        );
        for (id, dep) in &d.documents {
            let _ = write!(out, "<tr><td class=\"mono\">{}</td><td>{}</td></tr>", esc(id), esc(dep));
        }
        out.push_str("</tbody></table>");
    }
    out
}

fn rego_section(root: &Path) -> String {
    let dir = root.join("policies/rego");
    let mut out = String::from(
        "<section id=\"rego\" class=\"panel\" aria-labelledby=\"rego-h\"><h2 id=\"rego-h\">2. Rego (OPA): who may \
         read which document</h2>\n<p class=\"explain\">Before every read, the document service asks OPA. A user \
         reading directly, through the frontend, needs the document's department. When an AI agent acts for a \
         user, <strong>both</strong> the user and the agent need it. OPA knows the agent by the SPIFFE ID it \
         authenticated with over mTLS (<span class=\"mono\">spiffe://…/agent/&lt;name&gt;</span>), never by what the \
         request claims.</p>\n",
    );
    let _ = write!(
        out,
        "<p class=\"muted\">Read now from <span class=\"mono\">{}</span>: the same files the opa service loads.</p>",
        esc(&dir.display().to_string())
    );
    let data_file = dir.join("data.json");
    out.push_str("<h3>Who has which department (data.json)</h3>");
    match std::fs::read_to_string(&data_file) {
        Ok(text) => match directory(&text) {
            Ok(d) => {
                if !d.direct_callers.is_empty() {
                    let callers: Vec<String> =
                        d.direct_callers.iter().map(|p| format!("spiffe://{}{p}", d.trust_domain)).collect();
                    let _ = write!(
                        out,
                        "<p>Direct callers (a user reads without an agent): <span class=\"mono\">{}</span></p>",
                        esc(&callers.join(", "))
                    );
                }
                out.push_str(&departments_table(&d));
            }
            Err(e) => out.push_str(&error_box(
                &format!("{} does not give the directory: {e}", data_file.display()),
                "Fix policies/rego/data.json (opa test policies/rego checks it).",
            )),
        },
        Err(e) => out.push_str(&error_box(&format!("cannot read {}: {e}", data_file.display()), &root_todo(root))),
    }
    out.push_str("<h3>The policy</h3>");
    match rego_files(root, &dir) {
        Ok(files) => {
            for (name, text) in files {
                let _ = write!(
                    out,
                    "<details class=\"file\" open><summary class=\"mono\">policies/rego/{}</summary><pre class=\"code\">{}</pre></details>",
                    esc(&name),
                    esc(&text)
                );
            }
        }
        Err(p) => out.push_str(&p.html()),
    }
    // A missing data.json is reported above.
    if let Ok(text) = std::fs::read_to_string(&data_file) {
        let _ = write!(
            out,
            "<details class=\"file\"><summary class=\"mono\">policies/rego/data.json</summary><pre class=\"code\">{}</pre></details>",
            esc(&text)
        );
    }
    out.push_str("</section>");
    out
}

// --- Cilium ---------------------------------------------------------------------------------------

/// One `[[flow]]` of reachability.toml, expanded to names and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Flow {
    from: Vec<String>,
    to: Vec<String>,
    ports: Vec<i64>,
    protocol: String,
    allowed: bool,
    mutual_auth: bool,
}

fn names(v: Option<&toml::Value>, field: &str) -> Result<Vec<String>, String> {
    match v {
        Some(toml::Value::String(s)) => Ok(vec![s.clone()]),
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or(format!("{field}: a list of names is expected")))
            .collect(),
        _ => Err(format!("{field} is missing")),
    }
}

fn flows(text: &str) -> Result<Vec<Flow>, String> {
    let t: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let list = t.get("flow").and_then(toml::Value::as_array).ok_or("it has no [[flow]]")?;
    list.iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.as_table().ok_or(format!("flow[{i}] is not a table"))?;
            let ports = match f.get("port") {
                Some(toml::Value::Integer(p)) => vec![*p],
                Some(toml::Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_integer().ok_or(format!("flow[{i}].port: numbers are expected")))
                    .collect::<Result<_, _>>()?,
                _ => return Err(format!("flow[{i}].port is missing")),
            };
            Ok(Flow {
                from: names(f.get("from"), &format!("flow[{i}].from"))?,
                to: names(f.get("to"), &format!("flow[{i}].to"))?,
                ports,
                protocol: f.get("protocol").and_then(toml::Value::as_str).unwrap_or("TCP").to_owned(),
                allowed: f
                    .get("allowed")
                    .and_then(toml::Value::as_bool)
                    .ok_or(format!("flow[{i}].allowed is missing"))?,
                mutual_auth: f.get("mutual_auth").and_then(toml::Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

fn push_unique(list: &mut Vec<String>, name: &str) {
    if !list.iter().any(|n| n == name) {
        list.push(name.to_owned());
    }
}

/// How the flows of one matrix cell are grouped: allowed, mutual auth, protocol.
type FlowKey<'a> = (bool, bool, &'a str);

/// The who-may-reach-whom matrix: sources down, destinations across, each cell the ports with
/// ✓ (allowed) or ✗ (denied); a pair the file does not list is denied by default.
fn reachability_table(flows: &[Flow]) -> String {
    let (mut from, mut to) = (Vec::new(), Vec::new());
    for f in flows {
        f.from.iter().for_each(|n| push_unique(&mut from, n));
        f.to.iter().for_each(|n| push_unique(&mut to, n));
    }
    let mut out = String::from(
        "<div class=\"scroll\"><table id=\"reachability\" aria-label=\"Who may reach whom\"><thead><tr>\
         <th scope=\"col\">from ↓ to →</th>",
    );
    for t in &to {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(t));
    }
    out.push_str("</tr></thead><tbody>");
    for s in &from {
        let _ = write!(out, "<tr><th scope=\"row\">{}</th>", esc(s));
        for d in &to {
            // (allowed, mutual auth, protocol) -> ports, in file order.
            let mut groups: Vec<(FlowKey<'_>, Vec<i64>)> = Vec::new();
            for f in flows.iter().filter(|f| f.from.contains(s) && f.to.contains(d)) {
                let key = (f.allowed, f.mutual_auth, f.protocol.as_str());
                let ports = match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, p)) => p,
                    None => {
                        groups.push((key, Vec::new()));
                        &mut groups.last_mut().expect("just pushed").1
                    }
                };
                for p in &f.ports {
                    if !ports.contains(p) {
                        ports.push(*p);
                    }
                }
            }
            let any_allowed = groups.iter().any(|((a, _, _), _)| *a);
            let cls = if groups.is_empty() {
                "cell-none"
            } else if any_allowed {
                "cell-yes"
            } else {
                "cell-no"
            };
            let _ = write!(out, "<td class=\"{cls}\" data-from=\"{}\" data-to=\"{}\">", esc(s), esc(d));
            if groups.is_empty() {
                out.push_str("<span class=\"flow none\">✗ not listed: denied</span>");
            }
            for ((allowed, mutual, proto), ports) in &groups {
                let ports = ports.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
                let (c, mark) = if *allowed { ("yes", "✓") } else { ("no", "✗") };
                let auth = if *allowed && *mutual { " · mutual auth" } else { "" };
                let _ = write!(out, "<div class=\"flow {c}\">{mark} {} {}{auth}</div>", esc(proto), esc(&ports));
            }
            out.push_str("</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// The `description:` of a CiliumNetworkPolicy YAML, if it has one on one line.
fn description(yaml: &str) -> Option<String> {
    yaml.lines().find_map(|l| {
        let d = l.trim_start().strip_prefix("description:")?.trim();
        Some(d.trim_matches('"').to_owned()).filter(|d| !d.is_empty())
    })
}

fn cilium_section(root: &Path) -> String {
    let dir = root.join("infrastructure/kind/policies");
    let matrix = root.join("infrastructure/kind/reachability.toml");
    let mut out = String::from(
        "<section id=\"cilium\" class=\"panel\" aria-labelledby=\"cilium-h\"><h2 id=\"cilium-h\">3. Cilium: which pod \
         may open a connection to which (kind only)</h2>\n\
         <p class=\"notice\" id=\"cilium-note\"><strong>Enforced only on kind (Cilium with SPIRE mutual auth); the local \
         runtime does not enforce these — it shows them.</strong></p>\n\
         <p class=\"explain\">Below the identity layer, the network itself is default-deny. Each pod may open only the \
         connections listed here; for the app's own traffic Cilium also requires both ends to prove their SPIFFE \
         identity (mutual authentication). Everything not allowed is dropped before it reaches the pod.</p>\n",
    );
    let _ = write!(
        out,
        "<h3>Who may reach whom</h3><p class=\"muted\">From <span class=\"mono\">{}</span>, the matrix \
         <span class=\"mono\">scripts/validate-kind.sh</span> checks the policies against. ✓ allowed, ✗ denied.</p>",
        esc(&matrix.display().to_string())
    );
    match std::fs::read_to_string(&matrix) {
        Ok(text) => match flows(&text) {
            Ok(f) => out.push_str(&reachability_table(&f)),
            Err(e) => out.push_str(&error_box(
                &format!("{} does not parse: {e}", matrix.display()),
                "Fix infrastructure/kind/reachability.toml (scripts/validate-kind.sh checks it).",
            )),
        },
        Err(e) => out.push_str(&error_box(&format!("cannot read {}: {e}", matrix.display()), &root_todo(root))),
    }
    let _ = write!(
        out,
        "<h3>The CiliumNetworkPolicies</h3><p class=\"muted\">From <span class=\"mono\">{}</span>.</p>",
        esc(&dir.display().to_string())
    );
    let listing = std::fs::read_dir(&dir).map(|rd| {
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        files
    });
    match listing {
        Ok(files) if files.is_empty() => {
            out.push_str(&error_box(&format!("no CiliumNetworkPolicy (*.yaml) in {}", dir.display()), &root_todo(root)))
        }
        Ok(files) => {
            for f in files {
                let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                match std::fs::read_to_string(&f) {
                    Ok(text) => {
                        let desc = description(&text).map(|d| format!(": {}", esc(&d))).unwrap_or_default();
                        let _ = write!(
                            out,
                            "<details class=\"file\"><summary><span class=\"mono\">{}</span>{desc}</summary>\
                             <pre class=\"code\">{}</pre></details>",
                            esc(&name),
                            esc(&text)
                        );
                    }
                    Err(e) => out.push_str(&error_box(&format!("cannot read {}: {e}", f.display()), &root_todo(root))),
                }
            }
        }
        Err(e) => out.push_str(&error_box(&format!("cannot read {}: {e}", dir.display()), &root_todo(root))),
    }
    out.push_str("</section>");
    out
}

// --- the page -------------------------------------------------------------------------------------

fn rbac_section(v: &RbacView) -> String {
    let (cls, mode) = match v.mode.as_deref() {
        Some("allow-frontend") => ("ok", "allow-frontend"),
        Some(m) => ("bad", m),
        None => ("warn", "none installed"),
    };
    let counters: String = v
        .counters
        .iter()
        .map(|c| format!("<tr><td class=\"mono\">{}</td><td>{}</td></tr>", esc(&c.name), c.value))
        .collect();
    let num = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "—".into());
    format!(
        "<section id=\"rbac\" class=\"panel\" aria-labelledby=\"rbac-h\"><h2 id=\"rbac-h\">1. Envoy RBAC: who may call \
         the backend</h2>\n<p class=\"explain\">The backend never sees a request its Envoy has not checked. That Envoy \
         terminates mTLS, so it knows the caller's SPIFFE ID from the caller's certificate, and its RBAC policy says \
         which SPIFFE IDs may pass. Everyone else gets 403 before the backend app is reached.</p>\n\
         <p class=\"big\">Installed now: <strong id=\"rbac-mode\" class=\"badge {cls}\">{mode}</strong> \
         <span id=\"rbac-live\" class=\"muted\" role=\"status\" aria-live=\"polite\"></span></p>\n\
         <p id=\"rbac-who\" class=\"big\">{who}</p>\n<div id=\"rbac-error\">{error}</div>\n\
         <h3>Live counters of the backend's Envoy</h3>\
         <p class=\"big\">allowed <strong id=\"rbac-allowed\" class=\"count ok\">{allowed}</strong> · denied \
         <strong id=\"rbac-denied\" class=\"count bad\">{denied}</strong></p>\
         <p class=\"muted\">From <span id=\"rbac-counters-from\" class=\"mono\">{from}</span></p>\
         <div id=\"rbac-counters-error\">{cerror}</div>\
         <table aria-label=\"RBAC counters\"><thead><tr><th scope=\"col\">Envoy stat</th><th scope=\"col\">Value</th>\
         </tr></thead><tbody id=\"rbac-counters\">{counters}</tbody></table>\n\
         <h3>The installed policy file</h3><p class=\"muted mono\" id=\"rbac-file\">{file}</p>\
         <pre class=\"code\" id=\"rbac-policy\">{policy}</pre>\n\
         <h3>Flip it</h3><p>Run <span class=\"mono\">ztlab policy rbac deny-frontend</span> or \
         <span class=\"mono\">ztlab policy rbac allow-frontend</span>, or play the \
         <a href=\"/scenarios/envoy-rbac\">Envoy RBAC scenario</a>. Envoy reloads the file in place, without a \
         restart, and this section follows within about a second.</p></section>",
        who = esc(&v.who),
        error = v.error.as_ref().map(Problem::html).unwrap_or_default(),
        allowed = num(v.allowed),
        denied = num(v.denied),
        from = esc(v.counters_from.as_deref().unwrap_or("—")),
        cerror = v.counters_error.as_ref().map(Problem::html).unwrap_or_default(),
        file = esc(&v.file),
        policy = esc(v.policy.as_deref().unwrap_or("(no policy file)")),
    )
}

/// The policies page for the lab in `state_dir` and the repository checkout `root`.
pub async fn page(state_dir: &Path, root: &Path) -> String {
    let rbac = rbac_view(state_dir).await;
    let body = format!(
        "<style>{PAGE_CSS}</style>\n<h1>Policies</h1>\n<p class=\"lead\">Three layers decide who may talk to whom. Each \
         is a file in the repository, shown here as it is enforced: <a href=\"#rbac\">Envoy RBAC</a> · \
         <a href=\"#rego\">Rego (OPA)</a> · <a href=\"#cilium\">Cilium</a>.</p>\n{}\n{}\n{}\n<script>{POLICIES_JS}</script>",
        rbac_section(&rbac),
        rego_section(root),
        cilium_section(root),
    );
    layout("Policies", "policies", &body)
}

async fn policies_page(State(state): State<AppState>) -> Response {
    html(StatusCode::OK, page(&state.state_dir, &zt_runtime::repo_root()).await)
}

/// `GET /events/policies`: the [`RbacView`] as JSON, once a second.
async fn rbac_events(State(state): State<AppState>) -> Response {
    crate::live(Duration::from_secs(1), state.state_dir, |dir| async move {
        let view = rbac_view(&dir).await;
        serde_json::to_string(&view).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
    })
}

const PAGE_CSS: &str = r#"
.explain { font-size: 24px; max-width: 60em; }
p.big { font-size: 26px; }
.count { font-size: 32px; } .count.ok { color: var(--ok); } .count.bad { color: var(--bad); }
#rbac-mode { font-size: 26px; font-family: ui-monospace, Menlo, Consolas, monospace; }
pre.code { background: #1b1b1f; color: #f5f5f7; padding: 16px 20px; border-radius: 10px; overflow-x: auto; font-size: 18px; line-height: 1.45; margin: 8px 0 16px; }
details.file { margin: 8px 0; } details.file summary { cursor: pointer; font-size: 22px; padding: 4px 0; }
h3 { font-size: 24px; margin: 22px 0 8px; }
.scroll { overflow-x: auto; }
td.cell-yes { background: #e7f5ec; color: var(--ok); font-weight: 700; }
td.cell-no { background: #fdecea; color: var(--bad); font-weight: 700; }
td.cell-none { background: #fafafa; }
.flow.yes { color: var(--ok); } .flow.no { color: var(--bad); } .flow.none { color: var(--muted); font-weight: 400; font-size: 18px; }
#reachability td { white-space: nowrap; font-size: 20px; }
#cilium-note { font-size: 24px; }
"#;

const POLICIES_JS: &str = r#"
(function () {
  "use strict";
  function byId(id) { return document.getElementById(id); }
  var live = byId("rbac-live");
  var el = zt.el;
  function box(target, problem) { zt.errorBox(target, problem && problem.what, problem && problem.todo); }
  function num(n) { return typeof n === "number" ? String(n) : "\u2014"; }
  zt.follow("/events/policies", live, function (v) {
    var mode = byId("rbac-mode");
    mode.textContent = v.mode || "none installed";
    mode.className = "badge " + (v.mode === "allow-frontend" ? "ok" : (v.mode ? "bad" : "warn"));
    byId("rbac-who").textContent = v.who || "";
    box(byId("rbac-error"), v.error);
    byId("rbac-policy").textContent = v.policy || "(no policy file)";
    byId("rbac-file").textContent = v.file || "";
    byId("rbac-allowed").textContent = num(v.allowed);
    byId("rbac-denied").textContent = num(v.denied);
    byId("rbac-counters-from").textContent = v.counters_from || "\u2014";
    box(byId("rbac-counters-error"), v.counters_error);
    var tbody = byId("rbac-counters");
    tbody.textContent = "";
    (v.counters || []).forEach(function (c) {
      var tr = el("tr");
      tr.appendChild(el("td", "mono", c.name));
      tr.appendChild(el("td", null, String(c.value)));
      tbody.appendChild(tr);
    });
  });
})();
"#;

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::Config;

    async fn get(state_dir: &Path, path: &str) -> (StatusCode, String, String) {
        let mut state = Config { state_dir: state_dir.to_path_buf(), ..Config::default() }.state().expect("state");
        let cookie = crate::auth::testing::sign_in(&mut state, "jake");
        let req = Request::builder().uri(path).header("cookie", cookie).body(Body::empty()).expect("request");
        let resp = crate::router(state).oneshot(req).await.expect("answer");
        let status = resp.status();
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, ct, String::from_utf8(bytes.to_vec()).expect("utf8"))
    }

    fn text_of(page: &str, id: &str) -> String {
        let start = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
        let rest = &page[start..];
        let open = rest.find('>').expect(">") + 1;
        let close = rest[open..].find('<').expect("<");
        rest[open..open + close].to_owned()
    }

    #[tokio::test]
    async fn the_page_shows_the_three_layers_from_the_repository() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = AppPaths::new(dir.path());
        zt_runtime::app::write_rbac(&paths, "ztlab.test", RbacMode::AllowFrontend).expect("rbac");
        let (status, ct, page) = get(dir.path(), "/policies").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("text/html"), "{ct}");
        assert!(page.contains("aria-current=\"page\">Policies"), "nav marks policies");
        assert!(page.contains("id=\"whoami\">jake<"), "signed in");
        // 1. Envoy RBAC: the mode, the allowed ID in words, the installed file.
        assert_eq!(text_of(&page, "rbac-mode"), "allow-frontend");
        assert!(
            text_of(&page, "rbac-who").starts_with("Only spiffe://ztlab.test/ns/demo/sa/frontend may call the backend")
        );
        assert!(
            text_of(&page, "rbac-policy")
                .contains("principal_name: { exact: &quot;spiffe://ztlab.test/ns/demo/sa/frontend&quot; }")
        );
        assert!(page.contains("ztlab policy rbac deny-frontend") && page.contains("href=\"/scenarios/envoy-rbac\""));
        // No lab.json here: the counters say why, in an error box, and the page still renders.
        assert!(page.contains("cannot read the lab state"), "counters error box");
        assert!(page.contains("zt.follow(\"/events/policies\""));
        // 2. Rego: the policy source and the department table.
        assert!(page.contains("id=\"rego\""));
        assert!(page.contains("package ztlab.documents"), "documents.rego is shown");
        assert!(!page.contains("documents_test.rego"), "tests are not policy");
        let table = &page[page.find("id=\"departments\"").expect("departments")..];
        let table = &table[..table.find("</table>").expect("end")];
        assert!(table.contains("<th scope=\"row\">alice</th><td>user</td>"), "{table}");
        assert!(table.contains("spiffe://ztlab.test/agent/claude"), "{table}");
        assert!(table.contains("✓ yes") && table.contains("✗ no"));
        assert!(page.contains("DOC-003"));
        // 3. Cilium: the note, the YAMLs and the matrix.
        assert!(page.contains("id=\"cilium\""));
        assert!(page.contains(
            "Enforced only on kind (Cilium with SPIRE mutual auth); the local runtime does not enforce these — it shows them."
        ));
        assert!(page.contains("10-frontend.yaml") && page.contains("kind: CiliumNetworkPolicy"));
        let m = &page[page.find("id=\"reachability\"").expect("matrix")..];
        let cell = &m[m.find("data-from=\"frontend\" data-to=\"backend\"").expect("frontend→backend")..];
        let cell = &cell[..cell.find("</td>").expect("td")];
        assert!(cell.contains("✓ TCP 10443 · mutual auth") && cell.contains("✗ TCP 8090, 9090"), "{cell}");
        assert!(m.contains("data-from=\"world\" data-to=\"postgres\""));
    }

    #[tokio::test]
    async fn deny_mode_says_nobody() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = AppPaths::new(dir.path());
        zt_runtime::app::write_rbac(&paths, "ztlab.test", RbacMode::DenyFrontend).expect("rbac");
        let (_, _, page) = get(dir.path(), "/policies").await;
        assert_eq!(text_of(&page, "rbac-mode"), "deny-frontend");
        assert!(text_of(&page, "rbac-who").starts_with("Nobody may call the backend"));
        let v = rbac_view(dir.path()).await;
        assert_eq!(v.mode.as_deref(), Some("deny-frontend"));
        assert!(v.principals.is_empty());
        // The SSE JSON has what the script reads.
        let json = serde_json::to_value(&v).expect("json");
        for key in ["mode", "who", "policy", "file", "allowed", "denied", "counters", "error", "counters_error"] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }

    #[tokio::test]
    async fn the_event_stream_is_behind_the_login_and_streams() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = Config { state_dir: dir.path().to_path_buf(), ..Config::default() }.state().expect("state");
        let req = Request::builder().uri("/events/policies").body(Body::empty()).expect("request");
        let resp = crate::router(state).oneshot(req).await.expect("answer");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let mut state = Config { state_dir: dir.path().to_path_buf(), ..Config::default() }.state().expect("state");
        let cookie = crate::auth::testing::sign_in(&mut state, "jake");
        let req = Request::builder().uri("/events/policies").header("cookie", cookie).body(Body::empty()).expect("req");
        let resp = crate::router(state).oneshot(req).await.expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/event-stream"));
        let mut body = resp.into_body();
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.expect("in time");
        let data = frame.expect("frame").expect("ok").into_data().expect("data");
        let text = String::from_utf8_lossy(&data);
        assert!(text.starts_with("data: {") && text.contains("\"mode\":null"), "{text}");
        assert!(text.contains("no RBAC policy is installed"), "{text}");
    }

    #[tokio::test]
    async fn missing_files_give_error_boxes() {
        let state = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("root");
        let page = page(state.path(), root.path()).await;
        assert_eq!(text_of(&page, "rbac-mode"), "none installed");
        let boxes = page.matches("class=\"error-box\"").count();
        // RBAC file, counters (no lab), data.json, rego, reachability.toml, the YAML dir.
        assert_eq!(boxes, 6, "{page}");
        assert!(page.contains("no RBAC policy is installed for the backend&#39;s Envoy"));
        assert!(page.contains("set ZT_ROOT to one"));
        assert!(page.contains("id=\"rego\"") && page.contains("id=\"cilium\""), "sections still render");
        // Malformed files: say what does not parse.
        std::fs::create_dir_all(root.path().join("policies/rego")).expect("mkdir");
        std::fs::write(root.path().join("policies/rego/data.json"), "{").expect("write");
        std::fs::create_dir_all(root.path().join("infrastructure/kind")).expect("mkdir");
        std::fs::write(root.path().join("infrastructure/kind/reachability.toml"), "[[flow]]\nfrom = \"a\"\nport = 1\n")
            .expect("write");
        let page = super::page(state.path(), root.path()).await;
        assert!(page.contains("does not give the directory: it is not JSON"), "{page}");
        assert!(page.contains("flow[0].to is missing"), "{page}");
    }

    #[test]
    fn values_are_escaped() {
        let d = directory(
            r#"{"ztlab":{"directory":{"trust_domain":"td","users":{"<b>eve</b>":{"departments":["x&y"]}},
               "agents":{},"documents":{"<i>":{"department":"x&y"}}}}}"#,
        )
        .expect("directory");
        let t = departments_table(&d);
        assert!(t.contains("&lt;b&gt;eve&lt;/b&gt;") && t.contains("x&amp;y") && t.contains("&lt;i&gt;"), "{t}");
        assert!(!t.contains("<b>eve"));
        let m =
            reachability_table(&flows("[[flow]]\nfrom = \"<a>\"\nto = \"b\"\nport = 1\nallowed = true\n").expect("f"));
        assert!(m.contains("&lt;a&gt;") && !m.contains("<a>"), "{m}");
        let v = RbacView {
            mode: Some("allow-frontend".into()),
            file: "/x".into(),
            policy: Some("exact: \"<script>\"".into()),
            principals: vec!["<script>".into()],
            who: who_words(Some(RbacMode::AllowFrontend), &["<script>".into()]),
            error: None,
            counters: vec![Counter { name: "http.<x>.rbac.allowed".into(), value: 3 }],
            allowed: Some(3),
            denied: None,
            counters_from: None,
            counters_error: Some(Problem::new("<oops>", "<do>")),
        };
        let html = rbac_section(&v);
        assert!(!html.contains("<script>") && !html.contains("<oops>") && !html.contains("<x>"), "{html}");
        assert!(html.contains("&lt;script&gt;") && html.contains("&lt;oops&gt;"));
    }

    #[test]
    fn envoy_stats_and_principals_parse() {
        let stats = "http.inbound.rbac.allowed: 4\nhttp.inbound.rbac.denied: 1\n\
                     http.inbound.rbac.shadow_allowed: 0\ncluster.x.upstream_rq: 9\n";
        let c = rbac_counters(stats);
        assert_eq!(c.len(), 3);
        assert_eq!((sum(&c, ".rbac.allowed"), sum(&c, ".rbac.denied")), (Some(4), Some(1)));
        assert_eq!(sum(&[], ".rbac.denied"), None);
        let p = principals(
            "# principal_name: { exact: \"spiffe://commented/out\" }\n\
             - authenticated: { principal_name: { exact: \"spiffe://ztlab.test/ns/demo/sa/frontend\" } }\n",
        );
        assert_eq!(p, ["spiffe://ztlab.test/ns/demo/sa/frontend"]);
    }
}
