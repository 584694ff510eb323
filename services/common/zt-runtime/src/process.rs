//! One started process: a log file, its pid and start time, and stop by pid only.
//!
//! A process is identified by pid *and* its start time (from `/proc/<pid>/stat`), so a pid that
//! the kernel has reused for another program is never signalled. Nothing here kills by name.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A process the lab started, as recorded in `lab.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// The executable.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// The log file; appended to.
    pub log: PathBuf,
    /// Run as this (uid, gid) instead of the caller (for programs that refuse root).
    pub user: Option<(u32, u32)>,
}

/// Starts `launch` in its own process group (so a Ctrl-C at the terminal that ran `ztlab up`
/// does not reach it), with stdin closed and stdout and stderr appended to its log.
pub fn spawn(launch: &Launch) -> Result<ProcessRecord> {
    if let Some(dir) = launch.log.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .map_err(Error::io(format!("opening {}", launch.log.display())))?;
    let err = log.try_clone().map_err(Error::io("duplicating the log handle"))?;
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0);
    if let Some(cwd) = &launch.cwd {
        cmd.current_dir(cwd);
    }
    if let Some((uid, gid)) = launch.user {
        cmd.uid(uid).gid(gid);
    }
    let child = cmd.spawn().map_err(Error::io(format!("starting {}", launch.program.display())))?;
    let pid = child.id();
    // The child is reaped by `wait_gone` (tests) or by init once `ztlab` exits (CLI).
    std::mem::forget(child);
    let start_time = start_time(pid).unwrap_or(0);
    Ok(ProcessRecord { pid, start_time, log: launch.log.clone() })
}

/// The start time of `pid`, if it exists and is not a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).filter(|(state, _)| state != "Z").map(|(_, t)| t)
}

/// The start time of `pid`, zombie or not.
fn stat_start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, t)| t)
}

/// `(state, start time)` of `pid` from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); start time is field 22.
    Some(((*fields.first()?).to_owned(), fields.get(19)?.parse().ok()?))
}

impl ProcessRecord {
    /// Whether this very process (same pid, same start time) is still running.
    pub fn is_alive(&self) -> bool {
        start_time(self.pid).is_some_and(|t| t == self.start_time)
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`. Only if it is still the process
    /// that was started (pid and start time match).
    pub async fn stop(&self, grace: Duration) {
        self.stop_with(Signal::SIGTERM, grace).await;
    }

    /// Like [`ProcessRecord::stop`] with another first signal (PostgreSQL's fast shutdown is
    /// SIGINT; its SIGTERM waits for every client to disconnect).
    pub async fn stop_with(&self, signal: Signal, grace: Duration) {
        if !self.signal(signal) {
            return;
        }
        if !self.wait_gone(grace).await {
            tracing::warn!(pid = self.pid, ?signal, "did not stop; sending SIGKILL");
            self.signal(Signal::SIGKILL);
            self.wait_gone(Duration::from_secs(5)).await;
        }
    }

    /// [`ProcessRecord::stop_with`] for code that cannot await (a `Drop`): the same steps, on
    /// this thread. Never call it from async code.
    pub fn stop_blocking(&self, signal: Signal, grace: Duration) {
        if !self.signal(signal) {
            return;
        }
        let gone = |timeout: Duration| {
            let deadline = Instant::now() + timeout;
            while !self.is_gone() {
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(GONE_POLL);
            }
            true
        };
        if !gone(grace) {
            tracing::warn!(pid = self.pid, ?signal, "did not stop; sending SIGKILL");
            self.signal(Signal::SIGKILL);
            gone(Duration::from_secs(5));
        }
    }

    /// Sends SIGKILL now (used by tests to simulate a crash) and waits until it is gone.
    pub async fn kill_hard(&self) {
        if self.signal(Signal::SIGKILL) {
            self.wait_gone(Duration::from_secs(5)).await;
        }
    }

    /// Sends `signal` if this is still the process that was started: false (and nothing sent)
    /// when it is gone or its pid now belongs to another process.
    fn signal(&self, signal: Signal) -> bool {
        if !self.is_alive() {
            reap(self.pid);
            return false;
        }
        let _ = kill(Pid::from_raw(self.pid as i32), signal);
        true
    }

    /// Waits until the process has exited, with every one of its threads (so that its files and
    /// listening sockets are closed); `false` on timeout.
    pub async fn wait_gone(&self, timeout: Duration) -> bool {
        crate::wait::poll_until(timeout, GONE_POLL, || async { if self.is_gone() { Ok(()) } else { Err(()) }.into() })
            .await
            .is_ok()
    }

    /// Reaps it if it is our exited child, then: whether it is gone with all its threads.
    fn is_gone(&self) -> bool {
        reap(self.pid);
        !self.is_alive() && !self.threads_exiting()
    }

    /// Whether this process's main thread is a zombie while other threads are still exiting.
    /// A killed multi-threaded process shows `Z` as soon as its main thread is done, but its
    /// files (listening sockets among them) are closed only when its last thread exits.
    fn threads_exiting(&self) -> bool {
        stat_start_time(self.pid).is_some_and(|t| t == self.start_time)
            && std::fs::read_dir(format!("/proc/{}/task", self.pid)).is_ok_and(|d| d.count() > 1)
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }
}

/// How often a stopping process is checked.
const GONE_POLL: Duration = Duration::from_millis(25);

/// Reaps `pid` if it is our exited child; does nothing otherwise.
fn reap(pid: u32) {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
}

/// The last `n` lines of a file, indented, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n  last log lines:");
    for l in &lines[start..] {
        out.push_str("\n    ");
        out.push_str(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawn_and_stop_by_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = spawn(&Launch {
            program: "/bin/sleep".into(),
            args: vec!["30".into()],
            env: vec![],
            log: dir.path().join("sleep.log"),
            ..Launch::default()
        })
        .expect("spawn");
        assert!(rec.is_alive());
        // A record with the right pid but another start time is not "alive": never signalled.
        let impostor = ProcessRecord { start_time: rec.start_time + 1, ..rec.clone() };
        assert!(!impostor.is_alive());
        impostor.stop(Duration::from_millis(100)).await;
        assert!(rec.is_alive(), "stopping an impostor record must not touch the process");
        rec.stop(Duration::from_secs(5)).await;
        assert!(!rec.is_alive());
        // The blocking form (for Drop) does the same.
        let rec = spawn(&Launch {
            program: "/bin/sleep".into(),
            args: vec!["30".into()],
            log: dir.path().join("sleep2.log"),
            ..Launch::default()
        })
        .expect("spawn");
        rec.stop_blocking(Signal::SIGTERM, Duration::from_secs(5));
        assert!(!rec.is_alive());
    }
}
