//! Scenarios and run events as text: what `ztlab demo show` prints, and the lines `ztlab demo
//! run` prints for each [`Event`] (the UI shows the same lines, without colours, as the run's
//! log).

use std::io::IsTerminal as _;

use serde_json::Value;
use zt_scenarios::Scenario;

use super::drills::{case_expectation, step_label};
use super::event::{Check, CheckKind, Event};

/// Terminal colours, or none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Colours only when stdout is a terminal (and `NO_COLOR` is not set).
    pub fn detect() -> Self {
        Self { on: crate::colour(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR")) }
    }
    /// No colours.
    pub fn plain() -> Self {
        Self { on: false }
    }
    fn paint(self, code: &str, text: &str) -> String {
        if self.on { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }
    fn bold(self, t: &str) -> String {
        self.paint("1", t)
    }
    fn dim(self, t: &str) -> String {
        self.paint("2", t)
    }
    fn verdict(self, passed: bool) -> String {
        if passed { self.paint("1;32", "PASS") } else { self.paint("1;31", "FAIL") }
    }
}

/// `ztlab demo show`, as text.
pub fn show(s: &Scenario, style: Style) -> String {
    let mut t = format!("{}  {}\n\n", style.bold(&s.title), style.dim(&format!("({})", s.id)));
    for line in s.narration.trim().lines() {
        t.push_str(&format!("  {line}\n"));
    }
    if !s.evidence.is_empty() {
        t.push_str(&format!("\n{}\n", style.bold("Evidence")));
        for e in &s.evidence {
            t.push_str(&format!("  - {e}\n"));
        }
    }
    t.push_str(&format!("\n{} {}\n", style.bold("Expected:"), s.expected.trim()));
    if !s.step.is_empty() {
        t.push_str(&format!("\n{}\n", style.bold("Steps")));
        for (i, st) in s.step.iter().enumerate() {
            // The catalogue was checked when it was read; a step that is not is shown as it is.
            let label = st.drill(&format!("step[{i}]")).map_or_else(|e| e.to_string(), |d| step_label(&d));
            t.push_str(&format!("  {}. {label}\n", i + 1));
        }
    }
    if !s.case.is_empty() {
        t.push_str(&format!("\n{}\n", style.bold("Cases")));
        let w = s.case.iter().map(|c| c.label().chars().count()).max().unwrap_or(0);
        for c in &s.case {
            let label = c.label();
            let pad = w.saturating_sub(label.chars().count());
            t.push_str(&format!("  {:>2}. {label}{}  {}\n", c.n, " ".repeat(pad), case_expectation(c)));
        }
    }
    t
}

/// The lines that show `event` (none for a warning: the CLI prints those on stderr).
pub fn lines(event: &Event, style: Style) -> Vec<String> {
    match event {
        Event::Waiting { holder } => {
            vec![format!("  {}", style.dim(&format!("waiting for the run that holds the lab to end: {holder}")))]
        }
        Event::Started { scenario, title } => {
            vec![format!("{} {}  {title}", style.bold("▶"), style.bold(scenario))]
        }
        Event::Progress { line } => vec![format!("        {}", style.dim(line))],
        Event::Load { secs, requests, failures, rotations } => {
            let kinds: Vec<String> = rotations.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let text =
                format!("{secs:>3} s  requests {requests:>4}  failures {failures}  rotations: {}", kinds.join("  "));
            vec![format!("        {}", style.dim(&text))]
        }
        Event::Check { check, details_shown } => check_lines(check, *details_shown, style),
        Event::Cleanup { line } => vec![format!("  {}", style.dim(line))],
        Event::Warning { .. } => Vec::new(),
        Event::Finished { run } => {
            let n = run.checks.iter().filter(|c| c.passed).count();
            vec![format!("{} {}  ({n}/{} checks)", style.verdict(run.passed), run.id, run.checks.len())]
        }
    }
}

fn check_lines(c: &Check, details_shown: bool, style: Style) -> Vec<String> {
    let mut out = Vec::new();
    let head = match c.kind {
        CheckKind::Case => format!("case {}", c.n),
        CheckKind::Step => format!("step {}", c.n),
    };
    // How long a step took to give its outcome (a policy swap must show within 2 s).
    let took = match c.took_ms {
        Some(ms) if c.kind == CheckKind::Step && ms < 1000 => format!(" in {ms} ms"),
        Some(ms) if c.kind == CheckKind::Step => format!(" in {:.1} s", ms as f64 / 1000.0),
        _ => String::new(),
    };
    let status = c.status.map(|s| format!(" ({s})")).unwrap_or_default();
    out.push(format!("  {}  {head:<7} {}", style.verdict(c.passed), c.label));
    out.push(format!("        expected {}, got {}{status}{took}", c.expected, style.bold(&c.observed)));
    if let Some(id) = &c.caller_spiffe_id {
        out.push(format!("        {}", style.dim(&format!("caller: {id}"))));
    }
    if !c.reason.is_empty() {
        out.push(format!("        {}", style.dim(&format!("reason: {}", c.reason))));
    }
    for d in c.details.iter().filter(|_| !details_shown) {
        out.push(format!("        {}", style.dim(d)));
    }
    if let Some(hops) = c.evidence.as_array() {
        for h in hops {
            let ok = h["ok"] == true;
            let what = format!("{} → {}", h["from"].as_str().unwrap_or("?"), h["to"].as_str().unwrap_or("?"));
            let mut line = format!("{what:<22} {}", if ok { "ok" } else { h["reason"].as_str().unwrap_or("failed") });
            if let Some(ev) = h["evidence"].as_object() {
                for (k, v) in ev.iter().filter(|(k, _)| k.as_str() != "xfcc") {
                    match v {
                        Value::Null | Value::Object(_) | Value::Array(_) => {}
                        Value::String(s) => line.push_str(&format!("  {k}={s}")),
                        other => line.push_str(&format!("  {k}={other}")),
                    }
                }
            }
            out.push(format!("        {}", style.dim(&line)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::event::ScenarioRun;
    use zt_scenarios::Catalogue;

    #[test]
    fn show_lists_narration_steps_and_cases() {
        let c = Catalogue::builtin().expect("builtin");
        let text = show(c.get("envoy-rbac").expect("envoy-rbac"), Style::plain());
        assert!(
            text.contains("Envoy RBAC") && text.contains("Steps") && text.contains("1. rbac deny-frontend"),
            "{text}"
        );
        assert!(text.contains("2. run-demo, expect rbac"), "{text}");
        let text = show(c.get("delegation").expect("delegation"), Style::plain());
        assert!(text.contains("Bob → Gpt4 → DOC-003") && text.contains("denied (gpt4 lacks admin)"), "{text}");
        assert!(!text.contains('\x1b'), "no colours when asked for none");
    }

    #[test]
    fn show_names_the_drills_parameters() {
        let c = Catalogue::builtin().expect("builtin");
        let text = show(c.get("rotation").expect("rotation"), Style::plain());
        assert!(text.contains("1. rotation, watch for 35 s"), "{text}");
        let text = show(c.get("failure-drills").expect("failure-drills"), Style::plain());
        assert!(text.contains("1. site-outage: stop spire-server-b, entry sync retries"), "{text}");
        assert!(text.contains("2. site-outage: stop spire-server-a, Run Demo green for 5 s on cached SVIDs"), "{text}");
        let text = show(c.get("github").expect("github"), Style::plain());
        assert!(text.contains("1. github as jake, expect fixture"), "{text}");
    }

    #[test]
    fn events_render_as_the_walkthrough_prints_them() {
        let plain = Style::plain();
        let started = Event::Started { scenario: "envoy-rbac".into(), title: "Envoy RBAC".into() };
        assert_eq!(lines(&started, plain), ["▶ envoy-rbac  Envoy RBAC"]);
        let load = Event::Load {
            secs: 5,
            requests: 95,
            failures: 0,
            rotations: vec![("envoy-frontend".into(), 1), ("opa".into(), 0)],
        };
        assert_eq!(
            lines(&load, plain),
            ["          5 s  requests   95  failures 0  rotations: envoy-frontend 1  opa 0"]
        );
        let mut check = Check::new(CheckKind::Step, 2, "run-demo, expect rbac".into(), "rbac".into());
        check.observed = "rbac".into();
        check.passed = true;
        check.took_ms = Some(1500);
        check.details = vec!["seen".into()];
        let shown = lines(&Event::Check { check: check.clone(), details_shown: false }, plain);
        assert_eq!(shown[0], "  PASS  step 2  run-demo, expect rbac");
        assert_eq!(shown[1], "        expected rbac, got rbac in 1.5 s");
        assert_eq!(shown[2], "        seen");
        assert_eq!(lines(&Event::Check { check: check.clone(), details_shown: true }, plain).len(), 2);
        let run = ScenarioRun {
            id: "envoy-rbac".into(),
            title: "t".into(),
            passed: false,
            checks: vec![check],
            rbac_restored: None,
        };
        assert_eq!(lines(&Event::Finished { run }, plain), ["FAIL envoy-rbac  (1/1 checks)"]);
    }

    #[test]
    fn events_are_tagged_json() {
        let e = Event::Progress { line: "x".into() };
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(v, serde_json::json!({"event": "progress", "line": "x"}));
        let back: Event = serde_json::from_value(v).expect("back");
        assert_eq!(back, e);
    }
}
