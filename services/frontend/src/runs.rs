//! Scenario runs started from the browser.
//!
//! There is one runner for scenarios: `ztlab demo run` (the same one `scripts/demo.sh` and the
//! end-to-end tests use). The frontend starts it as a child process, `ztlab --state-dir <lab>
//! -o json demo run <id> [--case N]`, streams its progress (stderr, one line at a time) to the
//! page, and reads the checks from its JSON result (stdout) when it ends. Running it apart keeps
//! the runner's effects (an RBAC swap, a stopped SPIRE server) and their clean-up in one place,
//! and a runner that crashes cannot take the UI down.
//!
//! One run at a time for the whole lab: scenarios change shared things (the RBAC policy, SPIRE
//! servers). Routes (behind the login):
//! - `POST /api/scenarios/{id}/run` (optional JSON body `{"cases":[5]}`): 202 with the run;
//!   404 for an unknown scenario or case; 409 naming the scenario that is running and who started
//!   it; 503 when there is no `ztlab` binary to run (`ztlab_bin`, `ZT_ZTLAB_BIN`, which `ztlab up`
//!   sets).
//! - `GET /api/scenarios/{id}/run`: the latest run of that scenario (`{"state":"idle"}` if none).
//! - `GET /events/scenarios/{id}`: the same, pushed every 500 ms (SSE) while the page is open.
//!
//! A run's `state` is `running`, `passed`, `failed` (an expectation did not hold) or `error`
//! (the runner could not run it: `error` says why, `todo` what to do).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};

use crate::AppState;
use crate::auth::Session;

/// At most this many progress lines are kept per run (the oldest are dropped).
const MAX_LINES: usize = 2000;
/// A run that takes longer is stopped (SIGINT, so that the runner restores what it changed).
const RUN_LIMIT: Duration = Duration::from_secs(15 * 60);

/// One run of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// A number for this run, unique while the frontend runs.
    pub run: u64,
    /// The scenario's id.
    pub scenario: String,
    /// The cases asked for (empty: the whole scenario).
    pub cases: Vec<u32>,
    /// Who started it.
    pub user: String,
    /// `running`, `passed`, `failed` or `error`.
    pub state: &'static str,
    /// When it started (seconds since the Unix epoch).
    pub started_at: u64,
    /// How long it took, once it has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
    /// The runner's progress, as it printed it.
    pub lines: Vec<String>,
    /// The runner's JSON result (`{"passed","scenarios":[{"checks":[…]}]}`), once it has ended.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub result: Value,
    /// Why it could not run (state `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub todo: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    seq: u64,
    /// The scenario being run, if any.
    active: Option<String>,
    /// The latest run of each scenario.
    latest: HashMap<String, Run>,
}

/// The runs started from this frontend, and how to start one.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    inner: Arc<Mutex<Inner>>,
    /// The `ztlab` binary, if this lab has one.
    bin: Option<PathBuf>,
}

/// Why a run was not started.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Another scenario is running.
    Busy {
        /// Its id.
        scenario: String,
        /// Who started it.
        user: String,
    },
    /// No `ztlab` binary is configured or it does not exist.
    NoRunner(String),
}

impl Runs {
    /// Runs started with `bin` (none: runs are refused with a clear reason).
    pub fn new(bin: Option<PathBuf>) -> Self {
        Self { inner: Arc::default(), bin }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest run of `scenario`, if any.
    pub fn latest(&self, scenario: &str) -> Option<Run> {
        self.lock().latest.get(scenario).cloned()
    }

    /// Starts `ztlab demo run <scenario>` for the lab in `state_dir`, unless a run is going on.
    pub fn start(&self, state_dir: &Path, scenario: &str, cases: &[u32], user: &str) -> Result<Run, Refused> {
        let bin = match &self.bin {
            Some(b) if b.is_file() => b.clone(),
            Some(b) => return Err(Refused::NoRunner(format!("the ztlab binary {} does not exist", b.display()))),
            None => return Err(Refused::NoRunner("no ztlab binary is configured (ztlab_bin, ZT_ZTLAB_BIN)".into())),
        };
        let run = {
            let mut inner = self.lock();
            if let Some(active) = &inner.active {
                let user = inner.latest.get(active).map(|r| r.user.clone()).unwrap_or_default();
                return Err(Refused::Busy { scenario: active.clone(), user });
            }
            inner.seq += 1;
            let run = Run {
                run: inner.seq,
                scenario: scenario.to_owned(),
                cases: cases.to_vec(),
                user: user.to_owned(),
                state: "running",
                started_at: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs(),
                took_ms: None,
                lines: Vec::new(),
                result: Value::Null,
                error: None,
                todo: None,
            };
            inner.active = Some(scenario.to_owned());
            inner.latest.insert(scenario.to_owned(), run.clone());
            run
        };
        let state_dir = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
        let mut args: Vec<String> = vec![
            "--state-dir".into(),
            state_dir.display().to_string(),
            "-o".into(),
            "json".into(),
            "demo".into(),
            "run".into(),
            scenario.to_owned(),
        ];
        for n in cases {
            args.push("--case".into());
            args.push(n.to_string());
        }
        tracing::info!(scenario, ?cases, user, run = run.run, "scenario run started from the UI");
        let this = self.clone();
        let id = scenario.to_owned();
        tokio::spawn(async move { this.supervise(&bin, &args, &id).await });
        Ok(run)
    }

    fn update(&self, scenario: &str, f: impl FnOnce(&mut Run)) {
        if let Some(r) = self.lock().latest.get_mut(scenario) {
            f(r);
        }
    }

    async fn supervise(&self, bin: &Path, args: &[String], scenario: &str) {
        let start = Instant::now();
        let outcome = self.child(bin, args, scenario).await;
        let took = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut inner = self.lock();
        inner.active = None;
        if let Some(r) = inner.latest.get_mut(scenario) {
            r.took_ms = Some(took);
            match outcome {
                Ok((code, result)) => {
                    let passed = result["passed"] == true;
                    r.state = match code {
                        Some(0) if passed => "passed",
                        Some(1) => "failed",
                        _ => "error",
                    };
                    if r.state == "error" {
                        let said = r.lines.iter().rev().find_map(|l| l.strip_prefix("error: ")).map(str::to_owned);
                        r.error = Some(said.unwrap_or_else(|| match code {
                            Some(c) => format!("the runner exited with code {c}"),
                            None => "the runner was stopped by a signal".into(),
                        }));
                        r.todo = Some(
                            "Check that the lab is up (`ztlab status`, or the Dashboard), then run it again. \
                             The lines above are what the runner printed."
                                .into(),
                        );
                    }
                    r.result = result;
                }
                Err(e) => {
                    r.state = "error";
                    r.error = Some(e);
                    r.todo = Some("Run it from a terminal with `ztlab demo run` to see more.".into());
                }
            }
            tracing::info!(scenario, run = r.run, state = r.state, took_ms = took, "scenario run ended");
        }
    }

    /// Runs the child: its exit code and the JSON on its stdout (`Null` if there was none).
    async fn child(&self, bin: &Path, args: &[String], scenario: &str) -> Result<(Option<i32>, Value), String> {
        let mut child = tokio::process::Command::new(bin)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let read_out = async move {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf).await;
            buf
        };
        let follow_err = async {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                self.update(scenario, |r| {
                    if r.lines.len() >= MAX_LINES {
                        r.lines.remove(0);
                    }
                    r.lines.push(line);
                });
            }
        };
        let pid = child.id();
        let work = async {
            let (out, ()) = tokio::join!(read_out, follow_err);
            let status = child.wait().await;
            (out, status)
        };
        let (out, status) = match tokio::time::timeout(RUN_LIMIT, work).await {
            Ok(done) => done,
            Err(_) => {
                // SIGINT: the runner puts back what it changed before it exits.
                if let Some(pid) = pid {
                    let _ = tokio::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().await;
                }
                return Err(format!(
                    "the run took more than {} and was stopped",
                    humantime::format_duration(RUN_LIMIT)
                ));
            }
        };
        let status = status.map_err(|e| format!("waiting for the runner: {e}"))?;
        let result = serde_json::from_slice(&out).unwrap_or(Value::Null);
        Ok((status.code(), result))
    }
}

/// `POST /api/scenarios/{id}/run`'s optional body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Only these cases of the scenario.
    #[serde(default)]
    pub cases: Vec<u32>,
}

fn problem(status: StatusCode, error: String, todo: &str) -> Response {
    (status, Json(json!({"error": error, "todo": todo}))).into_response()
}

async fn start(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: RunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": format!("the body is not {{\"cases\":[n,…]}}: {e}"), "field": "cases"})),
                )
                    .into_response();
            }
        }
    };
    let catalogue = match zt_scenarios::Catalogue::builtin() {
        Ok(c) => c,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the scenario catalogue does not load: {e}"),
                "Fix demo/scenarios.toml and rebuild.",
            );
        }
    };
    let Some(s) = catalogue.get(&id) else {
        let known: Vec<&str> = catalogue.scenario.iter().map(|s| s.id.as_str()).collect();
        return problem(
            StatusCode::NOT_FOUND,
            format!("there is no scenario {id:?}"),
            &format!("Use one of: {}.", known.join(", ")),
        );
    };
    if let Some(n) = req.cases.iter().find(|n| !s.case.iter().any(|c| c.n == **n)) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("scenario {id} has no case {n}"), "field": "cases"})),
        )
            .into_response();
    }
    match state.runs.start(&state.state_dir, &id, &req.cases, &session.user) {
        Ok(run) => (StatusCode::ACCEPTED, Json(run)).into_response(),
        Err(Refused::Busy { scenario, user }) => problem(
            StatusCode::CONFLICT,
            format!("scenario {scenario} is running (started by {user}); one scenario runs at a time"),
            &format!("Wait for it to end (see /scenarios/{scenario}), then start this one."),
        ),
        Err(Refused::NoRunner(why)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("scenarios cannot be run from this frontend: {why}"),
            "Start the lab with `ztlab up` (it tells the frontend where ztlab is), or run \
             `scripts/demo.sh --scenario <id>` in a terminal.",
        ),
    }
}

fn snapshot(state: &AppState, id: &str) -> Value {
    match state.runs.latest(id) {
        Some(run) => serde_json::to_value(run).unwrap_or(Value::Null),
        None => json!({"scenario": id, "state": "idle"}),
    }
}

async fn latest(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Json<Value> {
    Json(snapshot(&state, &id))
}

async fn events(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Response {
    crate::live(Duration::from_millis(500), (state, id), |(state, id)| async move { snapshot(&state, &id).to_string() })
}

/// The runs' routes (the UI router puts them behind the login).
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/scenarios/{id}/run", get(latest).post(start)).route("/events/scenarios/{id}", get(events))
}
