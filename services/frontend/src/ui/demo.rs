//! The Run Demo page (`GET /`): a "Run Demo" button posts `/api/run-demo`, and `demo.js` renders
//! each hop with PASS/FAIL/SKIPPED (colour and text), its reason and error, and its evidence.

use maud::html;

use crate::assets;

/// `GET /`.
pub fn index(user: Option<&str>) -> String {
    let body = html! {
        h1 { "ztlab: zero-trust demo" }
        p class="lead" {
            "One request from the frontend to the backend, then to PostgreSQL and OpenBao. Each hop shows what proves it."
        }
        div class="controls" {
            button id="run" type="button" aria-describedby="run-help" { "Run Demo" }
            span id="run-help" class="via" { "Sends one request through the frontend's Envoy (SDS mTLS + RBAC)." }
        }
        p id="summary" role="status" aria-live="polite" {}
        ol id="hops" class="hops" aria-label="Hops of the last run" {}
        (assets::script("demo.js"))
    };
    super::layout("Run Demo", "demo", user, &["demo.css"], body)
}
