//! `GET /dashboard`: every lab component with its SPIFFE ID, how it gets its SVID, health and
//! SVID expiry, updated in place from `GET /events` by `dashboard.js`.

use maud::{Markup, html};
use serde::Serialize;
use zt_runtime::component::{Health, Kind};
use zt_runtime::lab::ComponentStatus;

use super::{STATE_TODO, error_box, layout, live_lead, or_dash};
use crate::assets;

/// A component as the dashboard shows it: the status plus how it gets its SVID.
#[derive(Debug, Clone, Serialize)]
pub struct Row<'a> {
    /// The status line.
    #[serde(flatten)]
    pub status: &'a ComponentStatus,
    /// How it gets its SVID ([`svid_via`]).
    pub via: &'static str,
}

/// How a component gets its SVID: SDS for Envoys, files from spiffe-helper, the Workload API
/// for the ztlab services, `—` for infrastructure.
pub fn svid_via(c: &ComponentStatus) -> &'static str {
    match c.kind {
        Kind::Envoy => "SDS",
        Kind::SpiffeHelper => "helper",
        Kind::Workload => "native",
        _ => "—",
    }
}

/// The rows of `status`, for `GET /events`.
pub fn rows(status: &[ComponentStatus]) -> Vec<Row<'_>> {
    status.iter().map(|s| Row { status: s, via: svid_via(s) }).collect()
}

fn health_badge(health: Health) -> (&'static str, &'static str) {
    match health {
        Health::Healthy => ("ok", "✓ healthy"),
        Health::Stopped => ("bad", "■ stopped"),
        Health::Unhealthy => ("bad", "✗ unhealthy"),
    }
}

fn component_row(c: &ComponentStatus) -> Markup {
    let (cls, label) = health_badge(c.health);
    html! {
        tr data-name=(c.name) {
            td class="name" { strong { (c.name) } }
            td class="kind" { (c.kind.as_str()) }
            td class="spiffe mono" { (or_dash(c.spiffe_id.as_deref())) }
            td class="via" { (svid_via(c)) }
            td class="health" { span class={ "badge " (cls) } { (label) } }
            td class="serial mono" { (or_dash(c.svid_serial.as_deref())) }
            td class="expiry" {
                @match c.svid_seconds_left {
                    Some(n) => span class="ttl" data-left=(n) { (n) " s" },
                    None => span class="ttl" { "—" },
                }
            }
            td class="detail" { (or_dash(c.detail.as_deref())) }
        }
    }
}

/// `GET /dashboard`: the components from `status`, or the error box when `status` is `Err`.
pub fn dashboard(user: Option<&str>, status: Result<&[ComponentStatus], &str>) -> String {
    let body = html! {
        h1 { "Lab dashboard" }
        (live_lead("Every component of the lab, its SPIFFE ID, how it gets its SVID, its health, and its SVID's \
                    serial and time left (the serial changes at every rotation)."))
        div id="error" {
            @if let Err(e) = status { (error_box(&format!("cannot read the lab state: {e}"), STATE_TODO)) }
        }
        table aria-label="Lab components" {
            thead {
                tr {
                    @for h in ["Component", "Kind", "SPIFFE ID", "SVID via", "Health", "Serial", "SVID expires in", "Detail"] {
                        th scope="col" { (h) }
                    }
                }
            }
            tbody id="components" {
                @if let Ok(list) = status { @for c in list { (component_row(c)) } }
            }
        }
        (assets::script("dashboard.js"))
    };
    layout("Dashboard", "dashboard", user, &[], body)
}
