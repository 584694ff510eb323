//! The scenario pages, from the one catalogue ([`zt_scenarios`]): the list, one scenario with
//! its run panel (`scenario.js`), and the 404 page naming the known ids.

use maud::{Markup, html};
use zt_scenarios::{Catalogue, Decision, Scenario, Step};

use super::{error_box, layout, or_dash};
use crate::assets;

fn step_line(s: &Step) -> Markup {
    let mut parts: Vec<Markup> = Vec::new();
    for (what, value) in [("mode", &s.mode), ("user", &s.user), ("site", &s.site)] {
        if let Some(v) = value {
            parts.push(html! { (what) " " strong { (v) } });
        }
    }
    if let Some(n) = s.seconds {
        parts.push(html! { (n) " s" });
    }
    if let Some(e) = &s.expect {
        parts.push(html! { "expect " strong { (e) } });
    }
    html! {
        li {
            span class="mono" { (s.action.name()) }
            @for (i, p) in parts.iter().enumerate() { (if i == 0 { ": " } else { ", " }) (p) }
        }
    }
}

/// `GET /scenarios`.
pub fn scenario_list(user: Option<&str>, c: &Catalogue) -> String {
    let body = html! {
        h1 { "Scenarios" }
        p class="lead" { "Every demo scenario, from the one catalogue the tests also run." }
        ul class="cards" {
            @for s in &c.scenario {
                li class="panel" {
                    a href={ "/scenarios/" (s.id) } { (s.title) }
                    p class="muted" { (s.expected) }
                }
            }
        }
    };
    layout("Scenarios", "scenarios", user, &[], body)
}

fn cases(s: &Scenario) -> Markup {
    let heads = ["#", "Request", "User", "Agent", "Document", "Expected", "Because", "Run", "Result"];
    html! {
        h2 { "Cases" }
        table aria-label="Delegation cases" {
            thead { tr { @for h in heads { th scope="col" { (h) } } } }
            tbody {
                @for c in &s.case {
                    @let (cls, label) = match c.expect {
                        Decision::Granted => ("ok", "✓ granted"),
                        Decision::Denied => ("bad", "✗ denied"),
                    };
                    tr data-case=(c.n) {
                        td { (c.n) }
                        td { (c.label()) }
                        td { (or_dash(c.user.as_deref())) }
                        td { (or_dash(c.agent.as_deref())) }
                        td class="mono" { (c.doc) }
                        td { span class={ "badge " (cls) } { (label) } }
                        td { (or_dash(c.because.as_deref())) }
                        td {
                            button type="button" class="secondary run-case" data-case=(c.n)
                                aria-label={ "Run case " (c.n) } { "Run" }
                        }
                        td class="case-result" id={ "case-" (c.n) "-result" } aria-live="polite" { "—" }
                    }
                }
            }
        }
    }
}

/// `GET /scenarios/{id}`.
pub fn scenario_page(user: Option<&str>, s: &Scenario) -> String {
    let what = if s.case.is_empty() { "this scenario" } else { "every case" };
    let body = html! {
        p { a href="/scenarios" { "← All scenarios" } }
        h1 { (s.title) }
        section aria-label="Narration" class="panel narration" { (s.narration.trim()) }
        @if !s.evidence.is_empty() {
            h2 { "Evidence to show" }
            ul class="panel evidence" { @for e in &s.evidence { li { (e) } } }
        }
        h2 { "Expected outcome" }
        p class="panel expected" { (s.expected) }
        @if !s.step.is_empty() {
            h2 { "Steps" }
            ol class="panel steps" { @for st in &s.step { (step_line(st)) } }
        }
        @if !s.case.is_empty() { (cases(s)) }
        section class="panel run" aria-labelledby="run-heading" data-scenario=(s.id) {
            h2 id="run-heading" { "Run it against the live lab" }
            p class="muted" {
                "The same runner as " code { "scripts/demo.sh" } " and the tests (" code { "ztlab demo run " (s.id) }
                "); what it changes, it puts back."
            }
            p {
                button type="button" class="primary" id="run-scenario" { "Run " (what) } " "
                span id="run-state" class="badge" role="status" aria-live="polite" { "not run yet" }
            }
            div id="run-error" {}
            div id="run-counters" class="counters" hidden {
                span { "requests " strong id="live-requests" { "0" } } " "
                span { "failures " strong id="live-failures" { "0" } }
            }
            ol id="run-result" class="checks" aria-label="Checks" {}
            details open {
                summary { "Runner output" }
                pre id="run-log" class="log" tabindex="0" aria-label="Runner output" {}
            }
        }
        (assets::script("scenario.js"))
        @if s.step.iter().any(|st| st.action == zt_scenarios::Action::RunDemo) {
            p { "Or " a href="/" { "open Run Demo" } " and press its button." }
        }
    };
    layout(&s.title, "scenarios", user, &[], body)
}

/// The 404 page for an unknown scenario id, naming the known ones.
pub fn unknown_scenario(user: Option<&str>, id: &str, c: &Catalogue) -> String {
    let body = html! {
        h1 { "No such scenario" }
        (error_box(
            &format!("there is no scenario with id {id:?}"),
            "Pick one of the known scenarios below (ids come from demo/scenarios.toml).",
        ))
        h2 { "Known ids" }
        ul class="panel" {
            @for s in &c.scenario {
                li { a href={ "/scenarios/" (s.id) } class="mono" { (s.id) } ": " (s.title) }
            }
        }
    };
    layout("No such scenario", "scenarios", user, &[], body)
}

/// A page for an error that keeps the catalogue from loading.
pub fn catalogue_error(user: Option<&str>, e: &str) -> String {
    let body = html! {
        h1 { "Scenarios" }
        (error_box(
            &format!("the scenario catalogue does not load: {e}"),
            "Fix demo/scenarios.toml (the message names the field) and rebuild the frontend.",
        ))
    };
    layout("Scenarios", "scenarios", user, &[], body)
}
