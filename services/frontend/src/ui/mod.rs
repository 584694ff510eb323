//! The presenter's pages, as maud templates (every value is escaped unless marked otherwise):
//! one shared [`layout`] (header with navigation and the signed-in user, large type, the
//! stylesheets and scripts of [`crate::assets`], no CDN), the Run Demo page ([`demo`]), the
//! [`dashboard`] of every lab component and the scenario pages ([`scenarios`]). The entry and
//! policy pages are in their own modules and use the same layout.

pub mod dashboard;
pub mod demo;
pub mod scenarios;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse as _, Response};
use maud::{DOCTYPE, Markup, html};

use crate::assets;

pub use dashboard::{Row, dashboard, rows, svid_via};
pub use scenarios::{catalogue_error, scenario_list, scenario_page, unknown_scenario};

/// `html` as a page that is never cached.
pub fn html(status: StatusCode, html: String) -> Response {
    (status, [(axum::http::header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// The navigation: (key, href, label).
const NAV: [(&str, &str, &str); 6] = [
    ("dashboard", "/dashboard", "Dashboard"),
    ("entries", "/entries", "Entries"),
    ("sites", "/sites", "Sites"),
    ("scenarios", "/scenarios", "Scenarios"),
    ("policies", "/policies", "Policies"),
    ("demo", "/", "Run Demo"),
];

/// A page in the shared layout. `active` is the nav entry to mark (`dashboard`, `entries`,
/// `sites`, `scenarios`, `policies`, `demo`); `user` is the signed-in user, named in the header
/// with a "Sign out" button; `styles` are the page's own stylesheets (assets).
pub fn layout(title: &str, active: &str, user: Option<&str>, styles: &[&str], body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ztlab" }
                (assets::icon())
                (assets::stylesheet("ztlab.css"))
                @for s in styles { (assets::stylesheet(s)) }
                (assets::script("zt.js"))
            }
            body {
                a class="skip" href="#main" { "Skip to the content" }
                header {
                    div class="bar" {
                        span class="brand" { "ztlab" }
                        nav aria-label="Main" {
                            ul {
                                @for (key, href, label) in NAV {
                                    li { a href=(href) aria-current=[(key == active).then_some("page")] { (label) } }
                                }
                            }
                        }
                        @if let Some(user) = user {
                            div class="who" {
                                span { "Signed in as " strong id="whoami" { (user) } }
                                form method="post" action="/logout" { button type="submit" { "Sign out" } }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    }
    .into_string()
}

/// The error box: what failed and what to do.
pub fn error_box(what: &str, todo: &str) -> Markup {
    html! {
        div class="error-box" role="alert" {
            p { strong { "What failed:" } " " (what) }
            p { strong { "What to do:" } " " (todo) }
        }
    }
}

/// The lead paragraph of a live page, ending in the `#live` status ("Connecting…").
pub fn live_lead(lead: &str) -> Markup {
    html! {
        p class="lead" {
            (lead) " "
            span id="live" class="muted" role="status" aria-live="polite" { "Connecting…" }
        }
    }
}

/// `v`, or `—` when it is missing or empty.
pub fn or_dash(v: Option<&str>) -> &str {
    v.filter(|s| !s.is_empty()).unwrap_or("—")
}

/// What to do when the lab state cannot be read.
pub const STATE_TODO: &str = "Start the lab with `ztlab up`. The frontend reads the lab state (lab.json) from \
                              its state_dir setting (ZT_STATE_DIR, default: its working directory, which \
                              `ztlab up` sets to the lab's state dir).";

/// `s` percent-encoded for a query value (unreserved characters and `/` stay as they are).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
