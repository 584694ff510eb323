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
//!
//! Modules: [`rbac`], [`rego`] and [`cilium`], one per section (data and template).

pub mod cilium;
pub mod rbac;
pub mod rego;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::html;

pub use rbac::{Counter, RbacView, principals, rbac_counters, rbac_view};

use crate::auth::Session;
use crate::{AppState, assets, ui};

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

/// The policies page for the lab in `state_dir` and the repository checkout `root`.
pub async fn page(user: Option<&str>, state_dir: &Path, root: &Path) -> String {
    let rbac = rbac_view(state_dir).await;
    let body = html! {
        h1 { "Policies" }
        p class="lead" {
            "Three layers decide who may talk to whom. Each is a file in the repository, shown here as it is \
             enforced: " a href="#rbac" { "Envoy RBAC" } " · " a href="#rego" { "Rego (OPA)" } " · "
            a href="#cilium" { "Cilium" } "."
        }
        (rbac::rbac_section(&rbac))
        (rego::rego_section(root))
        (cilium::cilium_section(root))
        (assets::script("policies.js"))
    };
    ui::layout("Policies", "policies", user, &["policies.css"], body)
}

async fn policies_page(State(state): State<AppState>, session: Session) -> Response {
    ui::html(StatusCode::OK, page(Some(&session.user), &state.state_dir, &zt_runtime::repo_root()).await)
}

/// `GET /events/policies`: the [`RbacView`] as JSON, once a second.
async fn rbac_events(State(state): State<AppState>) -> Response {
    crate::live(Duration::from_secs(1), state.state_dir, |dir| async move {
        let view = rbac_view(&dir).await;
        serde_json::to_string(&view).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
    })
}
