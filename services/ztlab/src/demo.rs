//! `ztlab demo`: the scenario catalogue (`demo/scenarios.toml`, read through `zt-scenarios`),
//! shown and run against the running lab. `scripts/demo.sh`, the guided walkthrough, drives it.
//!
//! - `list`, `show <id>`: the catalogue (built in, or `--catalogue <file>`).
//! - `run <id>|--all`: every step or case of the scenario against the lab in the state dir,
//!   each with PASS/FAIL, what was observed and why. Exit 0 when every expectation holds, 1 when
//!   one does not, 2 on errors (no lab, a component that does not answer).
//! - `facts`: where the lab's evidence is (SPIFFE IDs, ports, files), as `key=value` lines.
//!
//! The runners, one per kind of step:
//! - `run-demo`: `POST /api/run-demo` on the frontend; `ok`, or the reason of the first failing
//!   hop. Polled for up to 2 s until it gives the expected outcome (a policy swap takes effect
//!   within 2 s).
//! - `rbac`: writes the backend Envoy's policy with [`zt_runtime::app::write_rbac`], as
//!   `ztlab policy rbac` does. A scenario that changed the policy leaves `allow-frontend`
//!   installed when it ends, passed, failed, errored or interrupted.
//! - a delegation case: the user logs in through the frontend (`POST /api/login`, seeded password
//!   `<user>99`); without an agent the frontend reads the document for them (the document service
//!   sees the frontend's SPIFFE ID), with one `<state>/bin/agents act` reads it with the agent's
//!   SVID. The decision, the policy's reason and the caller's SPIFFE ID are reported.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt as _, Full};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use zt_runtime::app::{AppPaths, RbacMode, current_rbac, write_rbac};
use zt_runtime::lab::{Lab, WorkloadSpec};
use zt_scenarios::{Action, Case, Catalogue, Decision, Scenario, Step};

use crate::Output;

/// How long a `run-demo` step waits for its expected outcome.
const SWAP_WAIT: Duration = Duration::from_secs(2);
/// Per-request timeout.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `agents act` may take (it waits for the agent's SVID first).
const ACT_TIMEOUT: Duration = Duration::from_secs(30);

/// `ztlab demo …`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Scenario catalogue (TOML); default: demo/scenarios.toml as built in.
    #[arg(long, global = true)]
    catalogue: Option<PathBuf>,
    #[command(subcommand)]
    cmd: DemoCmd,
}

#[derive(Debug, Subcommand)]
enum DemoCmd {
    /// The scenarios: id and title, one a line (`-o json`: the whole catalogue).
    List,
    /// One scenario: title, narration, evidence, expected outcome, steps or cases.
    Show {
        /// The scenario's id (see `ztlab demo list`).
        id: String,
    },
    /// Run a scenario (or all) against the running lab: PASS/FAIL for each step or case, with
    /// what was observed and why. Exits 1 if an expectation fails, 2 on errors.
    Run {
        /// The scenario's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every scenario, in catalogue order.
        #[arg(long)]
        all: bool,
    },
    /// Where the running lab's evidence is: SPIFFE IDs, ports, sockets and files, as
    /// `key=value` lines (read by scripts/demo.sh).
    Facts,
}

/// Runs `ztlab demo …`.
pub async fn run(state_dir: &Path, out: Output, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let catalogue = load_catalogue(args.catalogue.as_deref())?;
    let style = Style::detect();
    match args.cmd {
        DemoCmd::List => {
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&catalogue)?),
                Output::Table => {
                    let w = catalogue.scenario.iter().map(|s| s.id.len()).max().unwrap_or(0);
                    for s in &catalogue.scenario {
                        println!("{:<w$}  {}", s.id, s.title);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DemoCmd::Show { id } => {
            let s = scenario(&catalogue, &id)?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(s)?),
                Output::Table => print!("{}", show(s, style)),
            }
            Ok(ExitCode::SUCCESS)
        }
        DemoCmd::Run { id, all } => {
            let chosen: Vec<&Scenario> = match (&id, all) {
                (Some(id), _) => vec![scenario(&catalogue, id)?],
                (None, _) => catalogue.scenario.iter().collect(),
            };
            let target = Target::open(state_dir)?;
            target.check_running().await?;
            let mut runs = Vec::new();
            for (i, s) in chosen.into_iter().enumerate() {
                if i > 0 && matches!(out, Output::Table) {
                    println!();
                }
                runs.push(run_scenario(&target, s, out, style).await?);
            }
            let passed = runs.iter().all(|r| r.passed);
            match out {
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&json!({"passed": passed, "scenarios": runs}))?)
                }
                Output::Table if runs.len() > 1 => {
                    let n = runs.iter().filter(|r| r.passed).count();
                    println!("\n{} of {} scenarios passed", n, runs.len());
                }
                Output::Table => {}
            }
            Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        DemoCmd::Facts => {
            let target = Target::open(state_dir)?;
            let facts = target.facts(&catalogue)?;
            match out {
                Output::Json => {
                    let map: serde_json::Map<String, Value> =
                        facts.into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect();
                    println!("{}", serde_json::to_string_pretty(&map)?);
                }
                Output::Table => {
                    for (k, v) in facts {
                        println!("{k}={v}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_catalogue(file: Option<&Path>) -> anyhow::Result<Catalogue> {
    match file {
        None => Ok(Catalogue::builtin()?),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Catalogue::parse(&text).with_context(|| p.display().to_string())
        }
    }
}

fn scenario<'a>(catalogue: &'a Catalogue, id: &str) -> anyhow::Result<&'a Scenario> {
    catalogue.get(id).with_context(|| {
        let known: Vec<&str> = catalogue.scenario.iter().map(|s| s.id.as_str()).collect();
        format!("no scenario {id:?}; known: {}", known.join(", "))
    })
}

/// Terminal colours, only when stdout is a terminal (and `NO_COLOR` is not set).
#[derive(Debug, Clone, Copy)]
struct Style {
    on: bool,
}

impl Style {
    fn detect() -> Self {
        Self { on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
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

fn step_label(st: &Step) -> String {
    match st.action {
        Action::Rbac => format!("rbac {}", st.mode.as_deref().unwrap_or("?")),
        Action::RunDemo => format!("run-demo, expect {}", st.expect.as_deref().unwrap_or("ok")),
        other => format!("{other:?}"),
    }
}

fn case_expectation(c: &Case) -> String {
    match (&c.expect, &c.because) {
        (d, Some(b)) => format!("{} ({b})", decision_word(*d)),
        (d, None) => decision_word(*d).to_owned(),
    }
}

fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Granted => "granted",
        Decision::Denied => "denied",
    }
}

/// `ztlab demo show`, as text.
fn show(s: &Scenario, style: Style) -> String {
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
            t.push_str(&format!("  {}. {}\n", i + 1, step_label(st)));
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

/// The running lab, as its recorded spec describes it.
#[derive(Debug)]
struct Target {
    lab: Lab,
    trust_domain: String,
    frontend_port: u16,
    frontend_id: String,
    document_port: u16,
    agents_site: String,
    paths: AppPaths,
}

fn listen_port(w: &WorkloadSpec) -> anyhow::Result<u16> {
    w.ports.get("listen").copied().with_context(|| format!("the lab's {} has no listen port", w.name))
}

impl Target {
    fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let lab = Lab::open(state_dir)
            .map_err(|e| anyhow::anyhow!("no lab at {}: run ./scripts/setup.sh ({e})", state_dir.display()))?;
        let app = lab.spec().app.clone().with_context(|| {
            format!("the lab at {} runs no app chain (no [app] in its config); the demo needs it", state_dir.display())
        })?;
        let trust_domain = lab.site_spec(&app.site)?.trust_domain.clone();
        let workload = |name: &str| {
            lab.spec()
                .workloads
                .iter()
                .find(|w| w.name == name)
                .with_context(|| format!("the lab at {} runs no {name}; the demo needs it", state_dir.display()))
        };
        let frontend = workload("frontend")?;
        let frontend_port = listen_port(frontend)?;
        let frontend_id = format!("spiffe://{}{}", lab.site_spec(&frontend.site)?.trust_domain, frontend.spiffe_path);
        let document_port = listen_port(workload("document")?)?;
        let agents_site = workload("agents").map(|w| w.site.clone()).unwrap_or_else(|_| app.site.clone());
        let paths = AppPaths::new(lab.state_dir());
        Ok(Self { trust_domain, frontend_port, frontend_id, document_port, agents_site, paths, lab })
    }

    fn state_dir(&self) -> &Path {
        self.lab.state_dir()
    }

    fn frontend(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.frontend_port)
    }

    /// The lab was started and its frontend answers.
    async fn check_running(&self) -> anyhow::Result<()> {
        let dir = self.state_dir().display();
        let alive = self.lab.process("frontend").ok().flatten().is_some_and(|r| r.is_alive());
        if !alive {
            bail!("no lab at {dir}: its frontend is not running; run ./scripts/setup.sh (or ztlab up)");
        }
        let (status, body) = http("GET", &self.frontend("/readyz"), None, None).await;
        if status == 0 {
            bail!("no lab at {dir}: the frontend does not answer on 127.0.0.1:{} ({body})", self.frontend_port);
        }
        Ok(())
    }

    fn facts(&self, catalogue: &Catalogue) -> anyhow::Result<Vec<(&'static str, String)>> {
        let spec = self.lab.spec();
        let app = spec.app.clone().context("no app chain")?;
        let id_of = |name: &str| -> String {
            spec.workloads
                .iter()
                .find(|w| w.name == name)
                .map(|w| format!("spiffe://{}{}", self.trust_domain, w.spiffe_path))
                .unwrap_or_default()
        };
        let ops_of = |name: &str| spec.workloads.iter().find(|w| w.name == name).map(|w| w.ops_port).unwrap_or(0);
        let mut agents: Vec<&str> =
            catalogue.scenario.iter().flat_map(|s| &s.case).filter_map(|c| c.agent.as_deref()).collect();
        agents.sort_unstable();
        agents.dedup();
        let agent_ids: Vec<String> =
            agents.iter().map(|a| format!("spiffe://{}/agent/{a}", self.trust_domain)).collect();
        let dir = self.state_dir();
        let log = |name: &str| dir.join("logs").join(format!("{name}.log")).display().to_string();
        Ok(vec![
            ("state_dir", dir.display().to_string()),
            ("trust_domain", self.trust_domain.clone()),
            ("frontend_url", self.frontend("")),
            ("frontend_id", self.frontend_id.clone()),
            ("backend_id", id_of("backend")),
            ("document_id", id_of("document")),
            ("opa_id", id_of("opa")),
            ("agent_ids", agent_ids.join(" ")),
            ("spire_server", zt_runtime::binaries::Tool::SpireServer.path().display().to_string()),
            ("spire_socket", self.lab.site_paths(&app.site)?.admin_socket().display().to_string()),
            ("backend_svid", self.paths.backend_cert_dir().join("svid.pem").display().to_string()),
            ("backend_envoy_admin", format!("http://127.0.0.1:{}", app.backend_envoy.admin)),
            ("backend_lease_url", format!("http://127.0.0.1:{}/lease", ops_of("backend"))),
            ("rbac_file", self.paths.rbac_file().display().to_string()),
            ("postgres_log", log(zt_runtime::app::POSTGRES_APP)),
            ("document_log", log("document")),
        ])
    }
}

/// The outcome of one step or case.
#[derive(Debug, Clone, Serialize)]
struct Check {
    /// `step` or `case`.
    kind: &'static str,
    /// The step's position (from 1) or the case's number.
    n: u32,
    /// What was done.
    label: String,
    /// What the catalogue expects.
    expected: String,
    /// What happened.
    observed: String,
    passed: bool,
    /// Why: the policy's reason, the failing hop's error, where a policy was installed.
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_spiffe_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    took_ms: Option<u64>,
    /// The hops of a Run Demo, with their evidence.
    #[serde(skip_serializing_if = "Value::is_null")]
    evidence: Value,
}

/// The outcome of one scenario.
#[derive(Debug, Serialize)]
struct ScenarioRun {
    id: String,
    title: String,
    passed: bool,
    checks: Vec<Check>,
    /// Set when the scenario changed the RBAC policy and `allow-frontend` was put back after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    rbac_restored: Option<String>,
}

async fn run_scenario(target: &Target, s: &Scenario, out: Output, style: Style) -> anyhow::Result<ScenarioRun> {
    let table = matches!(out, Output::Table);
    if table {
        println!("{} {}  {}", style.bold("▶"), style.bold(&s.id), s.title);
    }
    let mut checks = Vec::new();
    let mut changed_rbac = false;
    let result = tokio::select! {
        r = run_checks(target, s, &mut checks, &mut changed_rbac, table, style) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // Leave the normal policy installed, whatever happened.
    let mut rbac_restored = None;
    if changed_rbac && current_rbac(&target.paths) != Some(RbacMode::AllowFrontend) {
        match write_rbac(&target.paths, &target.trust_domain, RbacMode::AllowFrontend) {
            Ok(file) => {
                let msg = format!("put allow-frontend back in {}", file.display());
                if table {
                    println!("  {}", style.dim(&msg));
                }
                rbac_restored = Some(msg);
            }
            Err(e) => eprintln!("warning: could not put the RBAC policy back to allow-frontend: {e}"),
        }
    }
    result.with_context(|| format!("scenario {}", s.id))?;
    let passed = checks.iter().all(|c| c.passed);
    if table {
        let n = checks.iter().filter(|c| c.passed).count();
        println!("{} {}  ({n}/{} checks)", style.verdict(passed), s.id, checks.len());
    }
    Ok(ScenarioRun { id: s.id.clone(), title: s.title.clone(), passed, checks, rbac_restored })
}

async fn run_checks(
    target: &Target,
    s: &Scenario,
    checks: &mut Vec<Check>,
    changed_rbac: &mut bool,
    table: bool,
    style: Style,
) -> anyhow::Result<()> {
    for (i, st) in s.step.iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let check = match st.action {
            Action::Rbac => {
                *changed_rbac = true;
                rbac_step(target, n, st)?
            }
            Action::RunDemo => run_demo_step(target, n, st).await?,
            other => bail!("step {n}: no runner for {other:?}"),
        };
        if table {
            print_check(&check, style);
        }
        checks.push(check);
    }
    for c in &s.case {
        let check = case(target, c).await?;
        if table {
            print_check(&check, style);
        }
        checks.push(check);
    }
    Ok(())
}

fn print_check(c: &Check, style: Style) {
    let head = match c.kind {
        "case" => format!("case {}", c.n),
        _ => format!("step {}", c.n),
    };
    // How long a step took to give its outcome (a policy swap must show within 2 s).
    let took = match c.took_ms {
        Some(ms) if c.kind == "step" && ms < 1000 => format!(" in {ms} ms"),
        Some(ms) if c.kind == "step" => format!(" in {:.1} s", ms as f64 / 1000.0),
        _ => String::new(),
    };
    let status = c.status.map(|s| format!(" ({s})")).unwrap_or_default();
    println!("  {}  {head:<7} {}", style.verdict(c.passed), c.label);
    println!("        expected {}, got {}{status}{took}", c.expected, style.bold(&c.observed));
    if let Some(id) = &c.caller_spiffe_id {
        println!("        {}", style.dim(&format!("caller: {id}")));
    }
    if !c.reason.is_empty() {
        println!("        {}", style.dim(&format!("reason: {}", c.reason)));
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
            println!("        {}", style.dim(&line));
        }
    }
}

fn rbac_step(target: &Target, n: u32, st: &Step) -> anyhow::Result<Check> {
    let mode_text = st.mode.as_deref().unwrap_or_default();
    let mode: RbacMode = mode_text.parse()?;
    let file = write_rbac(&target.paths, &target.trust_domain, mode)?;
    let observed = current_rbac(&target.paths).map(|m| m.to_string()).unwrap_or_else(|| "none".into());
    Ok(Check {
        kind: "step",
        n,
        label: step_label(st),
        expected: mode.to_string(),
        passed: observed == mode.to_string(),
        observed,
        reason: format!("installed in {} (Envoy reloads it in place)", file.display()),
        status: None,
        caller_spiffe_id: None,
        took_ms: None,
        evidence: Value::Null,
    })
}

/// `ok`, or the reason of the first failing hop, with that hop's error.
fn demo_outcome(report: &Value) -> (String, String) {
    if report["ok"] == true {
        return ("ok".into(), "every hop green".into());
    }
    let failing = report["hops"].as_array().and_then(|h| h.iter().find(|x| x["ok"] == false));
    match failing {
        Some(h) => (
            h["reason"].as_str().unwrap_or("?").to_owned(),
            format!(
                "{} → {}: {}",
                h["from"].as_str().unwrap_or("?"),
                h["to"].as_str().unwrap_or("?"),
                h["error"].as_str().unwrap_or("failed")
            ),
        ),
        None => ("?".into(), format!("unexpected answer: {report}")),
    }
}

async fn run_demo_step(target: &Target, n: u32, st: &Step) -> anyhow::Result<Check> {
    let want = st.expect.as_deref().unwrap_or("ok");
    let start = Instant::now();
    let url = target.frontend("/api/run-demo");
    loop {
        let (status, text) = http("POST", &url, None, None).await;
        if status == 0 {
            bail!("step {n}: the frontend does not answer at {url}: {text}");
        }
        let report: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let (got, reason) = if report.is_null() {
            (format!("http {status}"), text.chars().take(200).collect())
        } else {
            demo_outcome(&report)
        };
        let done = got == want;
        if done || start.elapsed() >= SWAP_WAIT {
            return Ok(Check {
                kind: "step",
                n,
                label: step_label(st),
                expected: want.to_owned(),
                passed: done,
                observed: got,
                reason,
                status: None,
                caller_spiffe_id: None,
                took_ms: Some(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)),
                evidence: report["hops"].clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The policy's reason in a document answer (a denial's `reason`, a grant's `decision.reason`),
/// else its error.
fn policy_reason(body: &Value) -> String {
    body["reason"]
        .as_str()
        .or_else(|| body["decision"]["reason"].as_str())
        .or_else(|| body["error"].as_str())
        .or_else(|| body.as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn case(target: &Target, c: &Case) -> anyhow::Result<Check> {
    let mut check = Check {
        kind: "case",
        n: c.n,
        label: c.label(),
        expected: case_expectation(c),
        observed: String::new(),
        passed: false,
        reason: String::new(),
        status: None,
        caller_spiffe_id: None,
        took_ms: None,
        evidence: Value::Null,
    };
    let start = Instant::now();
    let token = match &c.user {
        None => None,
        Some(user) => match login(target, user).await? {
            Ok(t) => Some(t),
            Err((status, why)) => {
                check.observed = format!("login refused for {user}");
                check.status = Some(status);
                check.reason = why;
                return Ok(check);
            }
        },
    };
    let (status, body, caller) = match &c.agent {
        Some(agent) => act(target, agent, token.as_deref(), &c.doc).await?,
        None => {
            let url = target.frontend(&format!("/api/documents/{}", c.doc));
            let (status, text) = http("GET", &url, None, token.as_deref()).await;
            if status == 0 {
                bail!("case {}: the frontend does not answer at {url}: {text}", c.n);
            }
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, body, target.frontend_id.clone())
        }
    };
    let reason = policy_reason(&body);
    let observed = match status {
        200 if body["id"] == c.doc.as_str() => Some(Decision::Granted),
        403 => Some(Decision::Denied),
        _ => None,
    };
    check.observed = observed.map(decision_word).unwrap_or("error").to_owned();
    check.passed = observed == Some(c.expect);
    if let Some(because) = &c.because
        && check.passed
        && !reason.contains(because.as_str())
    {
        check.passed = false;
        check.observed = format!("{} (the reason lacks {because:?})", check.observed);
    }
    check.status = Some(status);
    check.reason = reason;
    check.caller_spiffe_id = Some(caller);
    check.took_ms = Some(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
    Ok(check)
}

/// Logs `user` in through the frontend with the seeded password: the token, or (status, why).
async fn login(target: &Target, user: &str) -> anyhow::Result<Result<String, (u16, String)>> {
    let url = target.frontend("/api/login");
    let (status, text) =
        http("POST", &url, Some(json!({"username": user, "password": format!("{user}99")})), None).await;
    if status == 0 {
        bail!("the frontend does not answer at {url}: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match body["token"].as_str() {
        Some(t) if status == 200 => Ok(Ok(t.to_owned())),
        _ => Ok(Err((status, policy_reason(&body)))),
    }
}

/// Runs `<state>/bin/agents act` (its path is the agents' selector): (status, body, the agent's
/// SPIFFE ID). The user's token goes through stdin, not the command line.
async fn act(target: &Target, agent: &str, token: Option<&str>, doc: &str) -> anyhow::Result<(u16, Value, String)> {
    let program = target.state_dir().join("bin/agents");
    let socket = target.lab.workload_socket(&target.agents_site)?;
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(["act", "--agent", agent, "--doc", doc])
        .env("SPIFFE_ENDPOINT_SOCKET", format!("unix://{}", socket.display()))
        .env("ZT_TRUST_DOMAIN", &target.trust_domain)
        .env("ZT_DOCUMENT_URL", format!("https://127.0.0.1:{}", target.document_port))
        .env("ZT_OPS_ADDR", "127.0.0.1:0")
        .stdin(if token.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if token.is_some() {
        cmd.args(["--user-token", "-"]);
    }
    let mut child = cmd.spawn().with_context(|| format!("running {}", program.display()))?;
    if let (Some(t), Some(mut stdin)) = (token, child.stdin.take()) {
        stdin.write_all(t.as_bytes()).await.context("writing the user token to agents act")?;
    }
    let output = tokio::time::timeout(ACT_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("agents act --agent {agent} took more than {} s", ACT_TIMEOUT.as_secs()))??;
    let v: Value = serde_json::from_slice(&output.stdout).map_err(|_| {
        anyhow::anyhow!(
            "agents act --agent {agent} --doc {doc} gave no answer: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })?;
    let status = v["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
    let caller = v["spiffe_id"].as_str().unwrap_or_default().to_owned();
    Ok((status, v["body"].clone(), caller))
}

/// One plain HTTP request: (status, body). Status 0 when nothing answered.
async fn http(method: &str, url: &str, body: Option<Value>, token: Option<&str>) -> (u16, String) {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let Ok(req) = req.body(Full::new(Bytes::from(payload))) else { return (0, "bad request".into()) };
    match tokio::time::timeout(HTTP_TIMEOUT, client.request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
        Ok(Err(e)) => (0, e.to_string()),
        Err(_) => (0, "timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_lists_narration_steps_and_cases() {
        let c = Catalogue::builtin().expect("builtin");
        let text = show(c.get("envoy-rbac").expect("envoy-rbac"), Style { on: false });
        assert!(
            text.contains("Envoy RBAC") && text.contains("Steps") && text.contains("1. rbac deny-frontend"),
            "{text}"
        );
        assert!(text.contains("2. run-demo, expect rbac"), "{text}");
        let text = show(c.get("delegation").expect("delegation"), Style { on: false });
        assert!(text.contains("Bob → Gpt4 → DOC-003") && text.contains("denied (gpt4 lacks admin)"), "{text}");
        assert!(!text.contains('\x1b'), "no colours when asked for none");
    }

    #[test]
    fn unknown_ids_name_the_known_ones() {
        let c = Catalogue::builtin().expect("builtin");
        let err = scenario(&c, "nope").expect_err("unknown").to_string();
        assert!(err.contains("run-demo") && err.contains("delegation"), "{err}");
    }

    #[test]
    fn demo_outcome_names_the_failing_hop() {
        let ok = json!({"ok": true, "hops": []});
        assert_eq!(demo_outcome(&ok).0, "ok");
        let denied = json!({"ok": false, "hops": [
            {"from": "frontend", "to": "backend", "ok": false, "reason": "rbac", "error": "RBAC: denied for spiffe://x/y"},
            {"from": "backend", "to": "postgres", "ok": false, "reason": "skipped"},
        ]});
        let (got, why) = demo_outcome(&denied);
        assert_eq!(got, "rbac");
        assert!(why.contains("RBAC: denied for spiffe://x/y"), "{why}");
    }

    #[test]
    fn policy_reason_reads_denials_and_grants() {
        assert_eq!(policy_reason(&json!({"allow": false, "reason": "bob lacks engineering"})), "bob lacks engineering");
        assert_eq!(policy_reason(&json!({"id": "DOC-001", "decision": {"allow": true, "reason": "ok"}})), "ok");
    }
}
