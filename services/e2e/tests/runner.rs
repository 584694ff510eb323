//! The scenario runner as a library, on a real lab: a run cancelled half-way puts back what it
//! changed (the RBAC policy, a stopped SPIRE server) before the next run may start, and the next
//! run waits for it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::applab::{AppLab, AppLabOptions};
use tokio::sync::oneshot;
use zt_runtime::app::RbacMode;
use zt_scenarios::Catalogue;
use ztlab::demo::{Event, LocalTarget, Sink, Target as _};

/// Denies the frontend, stops site b's SPIRE server, then presses Run Demo for two minutes.
const DENY_AND_STOP: &str = r#"
[[scenario]]
id = "deny-and-stop"
title = "Deny the frontend, stop site b, and wait"
narration = "Changes two things, then takes long enough to be cancelled."
expected = "Cancelled half-way; both put back."

[[scenario.step]]
action = "rbac"
mode = "deny-frontend"

[[scenario.step]]
action = "site-outage"
site = "b"
expect = "cached"
seconds = 120
"#;

/// What a run sent, with which run sent it, in one order.
type Log = Arc<Mutex<Vec<(&'static str, Event)>>>;

/// What the lab looked like when a run started: the RBAC policy, and whether spire-server-b ran.
type Seen = Arc<Mutex<Option<(Option<RbacMode>, bool)>>>;

fn sink(log: &Log, who: &'static str, on_start: impl Fn() + Send + Sync + 'static) -> Sink {
    let log = log.clone();
    Sink::new(move |e| {
        if matches!(e, Event::Started { .. }) {
            on_start();
        }
        log.lock().expect("log").push((who, e));
    })
}

async fn wait_for(log: &Log, within: Duration, what: impl Fn(&(&'static str, Event)) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if log.lock().expect("log").iter().any(&what) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_restores_the_lab_before_the_next_run_starts() {
    zt_tls::install_crypto_provider();
    let lab = tokio::task::spawn_blocking(|| AppLab::start(AppLabOptions::default())).await.expect("start");
    let state = lab.state().to_path_buf();
    let custom = Catalogue::parse(DENY_AND_STOP).expect("catalogue");
    let builtin = Catalogue::builtin().expect("builtin");
    let log: Log = Arc::default();

    // The first run: cancelled once site b's SPIRE server is down (and the frontend denied).
    let (cancel, cancelled) = oneshot::channel::<()>();
    let first = {
        let (state, log, custom) = (state.clone(), log.clone(), custom.clone());
        tokio::spawn(async move {
            let target = LocalTarget::open(&state).expect("target");
            let s = custom.get("deny-and-stop").expect("scenario");
            let sink = sink(&log, "first", || {});
            let cancel = async {
                let _ = cancelled.await;
            };
            ztlab::demo::run_scenarios(&target, &[s], &[], &sink, cancel).await
        })
    };
    let down = wait_for(
        &log,
        Duration::from_secs(60),
        |(_, e)| matches!(e, Event::Progress { line } if line == "spire-server-b: down"),
    )
    .await;
    assert!(down, "the first run stopped spire-server-b: {:#?}", log.lock().expect("log"));
    let target = LocalTarget::open(&state).expect("target");
    assert_eq!(target.current_rbac(), Some(RbacMode::DenyFrontend), "the first run denied the frontend");

    // The second run starts while the first holds the lab: it waits. At its start, the lab must
    // be as it was: allow-frontend installed, spire-server-b running.
    let seen_at_start: Seen = Arc::default();
    let second = {
        let (state, log, builtin, seen) = (state.clone(), log.clone(), builtin.clone(), seen_at_start.clone());
        tokio::spawn(async move {
            let target = Arc::new(LocalTarget::open(&state).expect("target"));
            let s = builtin.get("run-demo").expect("run-demo");
            let probe = target.clone();
            let sink = sink(&log, "second", move || {
                *seen.lock().expect("seen") = Some((probe.current_rbac(), probe.is_running("spire-server-b")));
            });
            ztlab::demo::run_scenarios(target.as_ref(), &[s], &[], &sink, std::future::pending()).await
        })
    };
    let waiting = wait_for(&log, Duration::from_secs(10), |(who, e)| {
        *who == "second" && matches!(e, Event::Waiting { holder } if holder.contains("deny-and-stop"))
    })
    .await;
    assert!(waiting, "the second run waits for the first: {:#?}", log.lock().expect("log"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !log.lock().expect("log").iter().any(|(who, e)| *who == "second" && matches!(e, Event::Started { .. })),
        "the second run does not start while the first holds the lab"
    );

    cancel.send(()).expect("cancel");
    let err = first.await.expect("first run").expect_err("a cancelled run fails");
    assert!(format!("{err:#}").contains("scenario deny-and-stop: interrupted"), "{err:#}");
    let report = tokio::time::timeout(Duration::from_secs(120), second).await.expect("second ends").expect("join");
    let report = report.expect("the second run runs");
    assert!(report.passed, "Run Demo is green again after the clean-up: {report:#?}");
    assert_eq!(
        *seen_at_start.lock().expect("seen"),
        Some((Some(RbacMode::AllowFrontend), true)),
        "at the second run's start, allow-frontend was back and spire-server-b running"
    );

    // In order: the first run's clean-up, then the second run's start.
    let log = log.lock().expect("log");
    let pos = |f: &dyn Fn(&(&'static str, Event)) -> bool| log.iter().position(f);
    let restored = pos(&|(who, e)| {
        *who == "first" && matches!(e, Event::Cleanup { line } if line.starts_with("put allow-frontend back in "))
    });
    let restarted =
        pos(&|(who, e)| *who == "first" && matches!(e, Event::Cleanup { line } if line == "restarted spire-server-b"));
    let started = pos(&|(who, e)| *who == "second" && matches!(e, Event::Started { .. }));
    assert!(restored.is_some() && restarted.is_some() && started.is_some(), "{log:#?}");
    assert!(restored < started && restarted < started, "clean-up before the next run: {log:#?}");
    assert!(target.is_running("spire-server-b"));
}
