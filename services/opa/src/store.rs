//! The current policy, and reloading it when its files change.
//!
//! [`PolicyStore::check`] compares the directory's fingerprint (paths, mtimes and sizes) with
//! the loaded one and reloads on a difference. A new set serves only if it loads, compiles, and
//! evaluates without error the last [`REPLAYED_INPUTS`] requests the store answered (regorus
//! finds some mistakes, such as a call to an unknown function, only when it evaluates them).
//! Otherwise the error is logged once and the previous good set keeps serving.
//! [`PolicyStore::watch`] runs `check` every interval.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::policy::{DataPath, Fingerprint, Policy, PolicyError, scan};

/// How many recent requests a new policy set must evaluate without error before it serves.
pub const REPLAYED_INPUTS: usize = 32;

/// What a [`PolicyStore::check`] did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// Nothing changed (or it changed into a set that already failed and was reported).
    Unchanged,
    /// The new files were loaded and now serve.
    Reloaded {
        /// The files now loaded.
        files: Vec<String>,
    },
    /// The files changed but do not load; the previous set keeps serving.
    Failed(PolicyError),
}

/// The policy being served, swapped atomically on reload.
#[derive(Debug)]
pub struct PolicyStore {
    dir: PathBuf,
    current: RwLock<Arc<Policy>>,
    /// The fingerprint (or error text) of the last failed attempt, so that it is logged once.
    last_failure: Mutex<Option<Result<Fingerprint, String>>>,
    /// Recent distinct requests, replayed against a new set before it serves.
    recent: Mutex<VecDeque<(DataPath, Option<serde_json::Value>)>>,
}

impl PolicyStore {
    /// Loads `dir`; fails if it does not load.
    pub fn open(dir: &Path) -> Result<Self, PolicyError> {
        let policy = Policy::load(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            current: RwLock::new(Arc::new(policy)),
            last_failure: Mutex::new(None),
            recent: Mutex::new(VecDeque::with_capacity(REPLAYED_INPUTS)),
        })
    }

    /// The policy directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The policy serving now.
    pub fn current(&self) -> Arc<Policy> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Evaluates `path` with the current policy (see [`Policy::eval`]) and remembers the
    /// request for replay.
    pub fn eval(
        &self,
        path: &DataPath,
        input: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, PolicyError> {
        let result = self.current().eval(path, input.clone());
        if result.is_ok() {
            let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !recent.iter().any(|(p, i)| p == path && *i == input) {
                if recent.len() == REPLAYED_INPUTS {
                    recent.pop_front();
                }
                recent.push_back((path.clone(), input));
            }
        }
        result
    }

    /// Loads the changed files and replays the recent requests against them.
    fn next(&self, current: &Policy) -> Result<Policy, PolicyError> {
        let next = current.reload()?;
        let recent: Vec<_> =
            self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect();
        for (path, input) in recent {
            next.eval(&path, input)?;
        }
        Ok(next)
    }

    /// Reloads if the files changed since the current set was loaded. Blocking (file I/O and
    /// compilation); call it from a blocking context.
    pub fn check(&self) -> ReloadOutcome {
        let current = self.current();
        let fingerprint = match scan(&self.dir) {
            Ok(f) => f,
            Err(e) => return self.failed(Err(e.to_string()), e),
        };
        if &fingerprint == current.fingerprint() {
            *self.failures() = None;
            return ReloadOutcome::Unchanged;
        }
        if self.failures().as_ref() == Some(&Ok(fingerprint.clone())) {
            return ReloadOutcome::Unchanged;
        }
        match self.next(&current) {
            Ok(next) => {
                let files = next.files();
                *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
                *self.failures() = None;
                metrics::counter!("opa_policy_reloads_total", "result" => "ok").increment(1);
                tracing::info!(dir = %self.dir.display(), files = ?files, "policies reloaded");
                ReloadOutcome::Reloaded { files }
            }
            Err(e) => self.failed(Ok(fingerprint), e),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, Option<Result<Fingerprint, String>>> {
        self.last_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn failed(&self, key: Result<Fingerprint, String>, error: PolicyError) -> ReloadOutcome {
        let mut last = self.failures();
        if last.as_ref() == Some(&key) {
            return ReloadOutcome::Unchanged;
        }
        *last = Some(key);
        metrics::counter!("opa_policy_reloads_total", "result" => "error").increment(1);
        tracing::error!(
            dir = %self.dir.display(),
            error = %error,
            "policy reload failed; the previous policies keep serving"
        );
        ReloadOutcome::Failed(error)
    }

    /// Checks for changes every `interval` until the returned task is aborted or the store is
    /// dropped elsewhere and only this task holds it.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if Arc::strong_count(&store) == 1 {
                    return;
                }
                let s = Arc::clone(&store);
                if let Err(e) = tokio::task::spawn_blocking(move || s.check()).await {
                    tracing::error!(error = %e, "policy check panicked");
                }
            }
        })
    }
}
