//! The run loop: one run at a time per lab ([`RunLock`]), each scenario's steps and cases in
//! order, and, whatever happened (passed, failed, errored, cancelled), what a scenario changed
//! put back before the lock is released: the RBAC policy back to `allow-frontend`, stopped SPIRE
//! servers started again. The next run waits until then.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write as _;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use zt_runtime::app::RbacMode;
use zt_scenarios::{Drill, Scenario};

use super::drills;
use super::event::{Check, Event, Report, ScenarioRun, Sink};
use super::target::Target;

type Cancel<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs `scenarios` against `target` (only the cases numbered in `cases`, without the steps,
/// when it is not empty), sending events to `sink`. Waits first for any other run of the same
/// lab to end. When `cancel` completes, the run stops where it is, puts back what it changed,
/// and fails with "interrupted".
pub async fn run_scenarios(
    target: &dyn Target,
    scenarios: &[&Scenario],
    cases: &[u32],
    sink: &Sink,
    cancel: impl Future<Output = ()> + Send,
) -> anyhow::Result<Report> {
    let mut cancel: Cancel<'_> = Box::pin(cancel);
    let ids: Vec<&str> = scenarios.iter().map(|s| s.id.as_str()).collect();
    let holder = format!("ztlab demo run {} (pid {})", ids.join(" "), std::process::id());
    let lock_path = target.run_lock_path();
    let _lock = tokio::select! {
        lock = RunLock::acquire(&lock_path, &holder, sink) => lock?,
        () = &mut cancel => bail!("interrupted while waiting for the other run"),
    };
    target.check_running().await?;
    let mut runs = Vec::new();
    for s in scenarios {
        runs.push(run_scenario(target, s, cases, sink, &mut cancel).await?);
    }
    Ok(Report { passed: runs.iter().all(|r| r.passed), scenarios: runs })
}

/// Held while a run goes on: an exclusive lock on a file of the lab (other runs, in this process
/// or another, wait for it). Released when dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock in `path`, recording `holder` in it; while another run holds it, says so
    /// once ([`Event::Waiting`]) and waits.
    pub async fn acquire(path: &Path, holder: &str, sink: &Sink) -> anyhow::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening the run lock {}", path.display()))?;
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    file.set_len(0)?;
                    file.write_all(holder.as_bytes())?;
                    return Ok(Self { _file: file });
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !said {
                        let holder = std::fs::read_to_string(path).unwrap_or_default().trim().to_owned();
                        sink.send(Event::Waiting { holder });
                        said = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
        }
    }
}

/// Runs one scenario, then puts back what it changed.
async fn run_scenario(
    target: &dyn Target,
    s: &Scenario,
    cases: &[u32],
    sink: &Sink,
    cancel: &mut Cancel<'_>,
) -> anyhow::Result<ScenarioRun> {
    sink.send(Event::Started { scenario: s.id.clone(), title: s.title.clone() });
    let mut checks = Vec::new();
    let mut changed_rbac = false;
    let drills = s.drills()?;
    let stops_servers = drills.iter().any(|st| matches!(st, Drill::SiteOutage { .. }));
    let result = tokio::select! {
        r = run_checks(target, (s, &drills), cases, sink, &mut checks, &mut changed_rbac) => r,
        () = cancel => Err(anyhow!("interrupted")),
    };
    let rbac_restored = if changed_rbac { restore_rbac(target, sink).await } else { None };
    if stops_servers {
        restart_stopped_servers(target, sink).await;
    }
    result.with_context(|| format!("scenario {}", s.id))?;
    let run = ScenarioRun {
        id: s.id.clone(),
        title: s.title.clone(),
        passed: checks.iter().all(|c| c.passed),
        checks,
        rbac_restored,
    };
    sink.send(Event::Finished { run: run.clone() });
    Ok(run)
}

async fn run_checks(
    target: &dyn Target,
    (s, drills): (&Scenario, &[Drill]),
    cases: &[u32],
    sink: &Sink,
    checks: &mut Vec<Check>,
    changed_rbac: &mut bool,
) -> anyhow::Result<()> {
    let steps = if cases.is_empty() { drills } else { &[] };
    for (i, st) in steps.iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if matches!(st, Drill::Rbac { .. }) {
            *changed_rbac = true;
        }
        let (check, details_shown) = drills::step(target, n, st, sink).await?;
        sink.send(Event::Check { check: check.clone(), details_shown });
        checks.push(check);
    }
    for c in s.case.iter().filter(|c| cases.is_empty() || cases.contains(&c.n)) {
        let check = drills::case(target, c).await?;
        sink.send(Event::Check { check: check.clone(), details_shown: false });
        checks.push(check);
    }
    Ok(())
}

/// Puts `allow-frontend` back (and waits until Envoy has it) unless it is installed: what was
/// done, if anything.
async fn restore_rbac(target: &dyn Target, sink: &Sink) -> Option<String> {
    if target.current_rbac() == Some(RbacMode::AllowFrontend) {
        return None;
    }
    match target.install_rbac(RbacMode::AllowFrontend, drills::SWAP_WAIT).await {
        Ok((file, _)) => {
            let line = format!("put allow-frontend back in {file}");
            sink.send(Event::Cleanup { line: line.clone() });
            Some(line)
        }
        Err(e) => {
            sink.send(Event::Warning {
                message: format!("could not put the RBAC policy back to allow-frontend: {e:#}"),
            });
            None
        }
    }
}

/// Starts again any SPIRE server of the lab that is not running.
async fn restart_stopped_servers(target: &dyn Target, sink: &Sink) {
    let down: Vec<String> =
        target.sites().iter().map(|s| format!("spire-server-{s}")).filter(|name| !target.is_running(name)).collect();
    if down.is_empty() {
        return;
    }
    let line = match target.restart_stopped().await {
        Ok(()) => format!("restarted {}", down.join(", ")),
        Err(e) => {
            sink.send(Event::Warning { message: format!("could not restart {}: {e:#}", down.join(", ")) });
            format!("could not restart {}: {e:#}", down.join(", "))
        }
    };
    sink.send(Event::Cleanup { line });
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn a_second_run_waits_for_the_lock_and_says_who_holds_it() {
        let path = std::env::temp_dir().join(format!("ztlab-run-lock-test-{}", std::process::id()));
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let seen = events.clone();
        let sink = Sink::new(move |e| seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(e));
        let first = RunLock::acquire(&path, "ztlab demo run envoy-rbac (pid 1)", &sink).await.expect("first");
        let second = tokio::spawn({
            let (path, sink) = (path.clone(), sink.clone());
            async move { RunLock::acquire(&path, "the second", &sink).await }
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!second.is_finished(), "the second waits while the first holds the lock");
        let said = events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        assert_eq!(said, [Event::Waiting { holder: "ztlab demo run envoy-rbac (pid 1)".into() }]);
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), second).await.expect("taken").expect("join");
        let _second = second.expect("the second takes it once the first is released");
        assert_eq!(std::fs::read_to_string(&path).expect("holder"), "the second");
        let _ = std::fs::remove_file(&path);
    }
}
