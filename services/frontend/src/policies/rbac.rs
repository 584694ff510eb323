//! Section 1 of the policies page: Envoy RBAC of the backend's Envoy, as installed now, with
//! its live counters ([`RbacView`], also pushed on `GET /events/policies`).

use std::path::Path;

use maud::{Markup, html};
use serde::Serialize;
use zt_runtime::app::{AppPaths, RbacMode};

use crate::error::Failure;

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
    pub error: Option<Failure>,
    /// The `*.rbac.*` stats of the backend's Envoy.
    pub counters: Vec<Counter>,
    /// The sum of the `*.rbac.allowed` stats.
    pub allowed: Option<u64>,
    /// The sum of the `*.rbac.denied` stats.
    pub denied: Option<u64>,
    /// Where the counters come from (the admin URL).
    pub counters_from: Option<String>,
    /// Why the counters could not be read.
    pub counters_error: Option<Failure>,
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
pub(super) fn who_words(mode: Option<RbacMode>, principals: &[String]) -> String {
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

pub(super) fn sum(counters: &[Counter], suffix: &str) -> Option<u64> {
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
            Some(Failure::new(
                format!("no RBAC policy is installed for the backend's Envoy: {} does not exist", file.display()),
                "Start the lab with `ztlab up` (it installs allow-frontend), or install one with \
                 `ztlab policy rbac allow-frontend`. The frontend looks under its state_dir (ZT_STATE_DIR).",
            )),
        ),
        Err(e) => (
            None,
            Some(Failure::new(
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
                        view.counters_error = Some(Failure::new(
                            "the backend's Envoy has no RBAC stats: its RBAC filter has not loaded a policy",
                            "Install a policy with `ztlab policy rbac allow-frontend` and check \
                             `ztlab logs envoy-backend` for a rejected config.",
                        ));
                    }
                }
                Some((code, body)) => {
                    view.counters_error = Some(Failure::new(
                        format!(
                            "the backend Envoy's admin {path} answered {code}: {}",
                            body.trim().chars().take(200).collect::<String>()
                        ),
                        "Check `ztlab logs envoy-backend`.",
                    ))
                }
                None => {
                    view.counters_error = Some(Failure::new(
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
fn backend_admin(state_dir: &Path) -> Result<u16, Failure> {
    let lab = zt_runtime::lab::Lab::open(state_dir)
        .map_err(|e| Failure::new(format!("cannot read the lab state: {e}"), crate::ui::STATE_TODO))?;
    let app = lab.spec().app.as_ref().ok_or_else(|| {
        Failure::new(
            "this lab runs no app chain (no [app] in its config), so there is no backend Envoy",
            "Bring the lab up with the app chain: `ztlab up` with the default lab.toml.",
        )
    })?;
    Ok(app.backend_envoy.admin)
}

/// Section 1: the RBAC mode, who may call the backend, the counters and the policy file.
pub fn rbac_section(v: &RbacView) -> Markup {
    let (cls, mode) = match v.mode.as_deref().map(|m| (m.parse::<RbacMode>(), m)) {
        Some((Ok(RbacMode::AllowFrontend), m)) => ("ok", m),
        Some((_, m)) => ("bad", m),
        None => ("warn", "none installed"),
    };
    let num = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "—".into());
    html! {
        section id="rbac" class="panel" aria-labelledby="rbac-h" {
            h2 id="rbac-h" { "1. Envoy RBAC: who may call the backend" }
            p class="explain" {
                "The backend never sees a request its Envoy has not checked. That Envoy terminates mTLS, so it knows \
                 the caller's SPIFFE ID from the caller's certificate, and its RBAC policy says which SPIFFE IDs may \
                 pass. Everyone else gets 403 before the backend app is reached."
            }
            p class="big" {
                "Installed now: " strong id="rbac-mode" class={ "badge " (cls) } { (mode) } " "
                span id="rbac-live" class="muted" role="status" aria-live="polite" {}
            }
            p id="rbac-who" class="big" { (v.who) }
            div id="rbac-error" { @if let Some(e) = &v.error { (e) } }
            h3 { "Live counters of the backend's Envoy" }
            p class="big" {
                "allowed " strong id="rbac-allowed" class="count ok" { (num(v.allowed)) }
                " · denied " strong id="rbac-denied" class="count bad" { (num(v.denied)) }
            }
            p class="muted" { "From " span id="rbac-counters-from" class="mono" { (v.counters_from.as_deref().unwrap_or("—")) } }
            div id="rbac-counters-error" { @if let Some(e) = &v.counters_error { (e) } }
            table aria-label="RBAC counters" {
                thead { tr { th scope="col" { "Envoy stat" } th scope="col" { "Value" } } }
                tbody id="rbac-counters" { @for c in &v.counters { tr { td class="mono" { (c.name) } td { (c.value) } } } }
            }
            h3 { "The installed policy file" }
            p class="muted mono" id="rbac-file" { (v.file) }
            pre class="code" id="rbac-policy" { (v.policy.as_deref().unwrap_or("(no policy file)")) }
            h3 { "Flip it" }
            p {
                "Run " span class="mono" { "ztlab policy rbac deny-frontend" } " or "
                span class="mono" { "ztlab policy rbac allow-frontend" } ", or play the "
                a href="/scenarios/envoy-rbac" { "Envoy RBAC scenario" }
                ". Envoy reloads the file in place, without a restart, and this section follows within about a second."
            }
        }
    }
}
