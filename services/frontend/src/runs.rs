//! Scenario runs started from the browser.
//!
//! There is one runner for scenarios: the `ztlab` library's ([`ztlab::demo::run_scenarios`]),
//! which `ztlab demo run`, `scripts/demo.sh` and the end-to-end tests use too. The frontend calls
//! it in process against the lab in its state dir and keeps what it reports: each event as the
//! text lines `ztlab demo run` prints ([`ztlab::demo::text::lines`], without colours), the
//! rotation drill's live load, and the [`Report`] with every check when it ends. The runner puts
//! back what a scenario changed (an RBAC swap, a stopped SPIRE server) before it returns, also
//! when a run is cancelled for taking too long.
//!
//! One run at a time for the whole lab: scenarios change shared things (the RBAC policy, SPIRE
//! servers). The frontend refuses a second run while one goes on; the runner's lock on the lab
//! makes a run wait for one started elsewhere (`ztlab demo run` in a terminal). Routes (behind
//! the login):
//! - `POST /api/scenarios/{id}/run` (optional JSON body `{"cases":[5]}`): 202 with the run;
//!   404 for an unknown scenario or case; 409 naming the scenario that is running and who started
//!   it.
//! - `GET /api/scenarios/{id}/run`: the latest run of that scenario (`{"state":"idle"}` if none).
//! - `GET /events/scenarios/{id}`: the same, pushed every 500 ms (SSE) while the page is open.
//!
//! A run's `state` is `running`, `passed`, `failed` (an expectation did not hold) or `error`
//! (the runner could not run it: `error` says why, `todo` what to do).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zt_scenarios::Scenario;
use ztlab::demo::text::{self, Style};
use ztlab::demo::{Event, LocalTarget, Report, Sink};

use crate::AppState;
use crate::auth::Session;
use crate::error::ApiError;

/// At most this many progress lines are kept per run (the oldest are dropped).
const MAX_LINES: usize = 2000;
/// A run that takes longer is cancelled (the runner puts back what it changed first).
const RUN_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The rotation drill's load so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Load {
    /// Run Demo calls made.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
}

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
    /// The runner's progress, as `ztlab demo run` prints it.
    pub lines: Vec<String>,
    /// The rotation drill's latest load, once it has reported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<Load>,
    /// The runner's report (`{"passed","scenarios":[{"checks":[…]}]}`), once it has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Report>,
    /// Why it could not run (state `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub todo: Option<String>,
}

impl Run {
    /// Run number `run` of `scenario` (only `cases`, if any), started now by `user`.
    pub(crate) fn running(run: u64, scenario: &str, cases: &[u32], user: &str) -> Self {
        Self {
            run,
            scenario: scenario.to_owned(),
            cases: cases.to_vec(),
            user: user.to_owned(),
            state: "running",
            started_at: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs(),
            took_ms: None,
            lines: Vec::new(),
            load: None,
            result: None,
            error: None,
            todo: None,
        }
    }

    /// Keeps what `event` says.
    pub(crate) fn record(&mut self, event: &Event) {
        let mut lines = text::lines(event, Style::plain());
        match event {
            Event::Load { requests, failures, .. } => {
                self.load = Some(Load { requests: *requests, failures: *failures });
            }
            Event::Warning { message } => lines.push(format!("warning: {message}")),
            _ => {}
        }
        for line in lines {
            if self.lines.len() >= MAX_LINES {
                self.lines.remove(0);
            }
            self.lines.push(line);
        }
    }
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
}

/// Why a run was not started: another scenario is running.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy {
    /// Its id.
    pub scenario: String,
    /// Who started it.
    pub user: String,
}

impl Runs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest run of `scenario`, if any.
    pub fn latest(&self, scenario: &str) -> Option<Run> {
        self.lock().latest.get(scenario).cloned()
    }

    /// Starts `scenario` (only `cases`, if any) against the lab in `state_dir`, unless a run is
    /// going on.
    pub fn start(&self, state_dir: &Path, scenario: &Scenario, cases: &[u32], user: &str) -> Result<Run, Busy> {
        let run = {
            let mut inner = self.lock();
            if let Some(active) = &inner.active {
                let user = inner.latest.get(active).map(|r| r.user.clone()).unwrap_or_default();
                return Err(Busy { scenario: active.clone(), user });
            }
            inner.seq += 1;
            let run = Run::running(inner.seq, &scenario.id, cases, user);
            inner.active = Some(scenario.id.clone());
            inner.latest.insert(scenario.id.clone(), run.clone());
            run
        };
        tracing::info!(scenario = scenario.id, ?cases, user, run = run.run, "scenario run started from the UI");
        let this = self.clone();
        let (state_dir, scenario, cases) = (state_dir.to_path_buf(), scenario.clone(), cases.to_vec());
        tokio::spawn(async move { this.supervise(state_dir, scenario, cases).await });
        Ok(run)
    }

    /// Marks `scenario` as running for `user` (tests of the one-at-a-time rule).
    #[cfg(test)]
    pub(crate) fn hold_for_test(&self, scenario: &str, user: &str) {
        let mut inner = self.lock();
        inner.active = Some(scenario.to_owned());
        let run = Run::running(0, scenario, &[], user);
        inner.latest.insert(scenario.to_owned(), run);
    }

    fn update(&self, scenario: &str, f: impl FnOnce(&mut Run)) {
        if let Some(r) = self.lock().latest.get_mut(scenario) {
            f(r);
        }
    }

    /// Runs the scenario to its end (or past [`RUN_LIMIT`], cancelled) and records how it went.
    async fn supervise(&self, state_dir: PathBuf, scenario: Scenario, cases: Vec<u32>) {
        let start = Instant::now();
        let id = scenario.id.clone();
        let this = self.clone();
        let sink = Sink::new(move |e| this.update(&id, |r| r.record(&e)));
        let timed_out = AtomicBool::new(false);
        let limit = async {
            tokio::time::sleep(RUN_LIMIT).await;
            timed_out.store(true, Ordering::Relaxed);
        };
        let outcome = match LocalTarget::open(&state_dir) {
            Ok(target) => ztlab::demo::run_scenarios(&target, &[&scenario], &cases, &sink, limit).await,
            Err(e) => Err(e),
        };
        let took = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut inner = self.lock();
        inner.active = None;
        if let Some(r) = inner.latest.get_mut(&scenario.id) {
            r.took_ms = Some(took);
            match outcome {
                Ok(report) => {
                    r.state = if report.passed { "passed" } else { "failed" };
                    r.result = Some(report);
                }
                Err(_) if timed_out.load(Ordering::Relaxed) => {
                    r.state = "error";
                    r.error = Some(format!(
                        "the run took more than {} and was stopped",
                        humantime::format_duration(RUN_LIMIT)
                    ));
                    r.todo = Some("Run it from a terminal with `ztlab demo run` to see more.".into());
                }
                Err(e) => {
                    r.state = "error";
                    r.error = Some(format!("{e:#}"));
                    r.todo = Some(
                        "Check that the lab is up (`ztlab status`, or the Dashboard), then run it again. \
                         The lines above are what the runner printed."
                            .into(),
                    );
                }
            }
            tracing::info!(scenario = scenario.id, run = r.run, state = r.state, took_ms = took, "scenario run ended");
        }
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

async fn start(
    State(state): State<AppState>,
    session: Session,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: RunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("the body is not {{\"cases\":[n,…]}}: {e}")).field("cases")
        })?
    };
    let catalogue = zt_scenarios::Catalogue::builtin().map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the scenario catalogue does not load: {e}"))
            .todo("Fix demo/scenarios.toml and rebuild.")
    })?;
    let Some(s) = catalogue.get(&id) else {
        let known: Vec<&str> = catalogue.scenario.iter().map(|s| s.id.as_str()).collect();
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("there is no scenario {id:?}"))
            .todo(format!("Use one of: {}.", known.join(", "))));
    };
    if let Some(n) = req.cases.iter().find(|n| !s.case.iter().any(|c| c.n == **n)) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("scenario {id} has no case {n}")).field("cases"));
    }
    match state.runs.start(&state.state_dir, s, &req.cases, &session.user) {
        Ok(run) => Ok((StatusCode::ACCEPTED, Json(run)).into_response()),
        Err(Busy { scenario, user }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("scenario {scenario} is running (started by {user}); one scenario runs at a time"),
        )
        .todo(format!("Wait for it to end (see /scenarios/{scenario}), then start this one."))),
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
