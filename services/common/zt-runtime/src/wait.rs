//! The one way the lab waits: [`poll_until`] polls a check until it holds or a deadline
//! passes; [`wait_ready`] is that loop for a started process, which also fails early when the
//! process exits and names its log when it times out.

use std::time::Duration;

use crate::process::ProcessRecord;
use crate::{Error, Result};

/// How often readiness checks poll.
pub const POLL_EVERY: Duration = Duration::from_millis(100);

/// One look of [`poll_until`]'s check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T, E> {
    /// It holds: stop with this value.
    Done(T),
    /// Not yet, and why: look again.
    NotYet(E),
    /// It never will (the process exited): stop with this error.
    Failed(E),
}

impl<T, E> From<std::result::Result<T, E>> for Check<T, E> {
    fn from(r: std::result::Result<T, E>) -> Self {
        match r {
            Ok(v) => Check::Done(v),
            Err(e) => Check::NotYet(e),
        }
    }
}

/// The deadline of a wait and the pace of its attempts: the one loop shape every wait uses.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: tokio::time::Instant,
    every: Duration,
}

impl Deadline {
    /// `timeout` from now, with an attempt every `every`.
    pub fn new(timeout: Duration, every: Duration) -> Self {
        Self { at: tokio::time::Instant::now() + timeout, every }
    }

    /// Sleeps until the next attempt; false (at once) when the deadline has passed.
    pub async fn next(&self) -> bool {
        if tokio::time::Instant::now() >= self.at {
            return false;
        }
        tokio::time::sleep(self.every).await;
        true
    }
}

/// Polls `check` every `every` until it is [`Check::Done`] or [`Check::Failed`], at most for
/// `timeout` (the check runs at least once). After the deadline, the last reason it gave for
/// [`Check::NotYet`] is the error.
pub async fn poll_until<T, E, Fut>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Fut,
) -> std::result::Result<T, E>
where
    Fut: Future<Output = Check<T, E>>,
{
    let deadline = Deadline::new(timeout, every);
    loop {
        match check().await {
            Check::Done(v) => return Ok(v),
            Check::Failed(e) => return Err(e),
            Check::NotYet(e) if !deadline.next().await => return Err(e),
            Check::NotYet(_) => {}
        }
    }
}

/// Waits until `probe` says `component` is ready (`Ok`), or says why not (`Err(reason)`). Fails
/// at once if the process exits, and after `timeout` with the probe's last reason, the log file
/// and the log's last lines.
pub async fn wait_ready<Fut>(
    component: &str,
    rec: &ProcessRecord,
    timeout: Duration,
    mut probe: impl FnMut() -> Fut,
) -> Result<()>
where
    Fut: Future<Output = std::result::Result<(), String>>,
{
    const EXITED: &str = "the process exited";
    let deadline = Deadline::new(timeout, POLL_EVERY);
    loop {
        if !rec.is_alive() {
            return Err(not_ready(component, rec, timeout, EXITED));
        }
        match probe().await {
            Ok(()) => return Ok(()),
            // A process may exit while it is probed; say so rather than what the probe saw.
            Err(_) if !rec.is_alive() => return Err(not_ready(component, rec, timeout, EXITED)),
            Err(why) if !deadline.next().await => return Err(not_ready(component, rec, timeout, &why)),
            Err(_) => {}
        }
    }
}

/// The error for `component` that did not become ready within `timeout`.
pub(crate) fn not_ready(component: &str, record: &ProcessRecord, timeout: Duration, reason: &str) -> Error {
    Error::NotReady {
        component: component.to_owned(),
        seconds: timeout.as_secs(),
        reason: reason.to_owned(),
        log: record.log.clone(),
        tail: record.log_tail(8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polls_until_the_check_holds_and_gives_the_last_reason_on_timeout() {
        let mut n = 0;
        let got = poll_until(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            let n = n;
            async move { if n == 3 { Check::Done(n) } else { Check::NotYet(format!("try {n}")) } }
        })
        .await;
        assert_eq!(got, Ok(3));
        let start = std::time::Instant::now();
        let got: std::result::Result<(), String> =
            poll_until(Duration::from_millis(50), Duration::from_millis(10), || async {
                Err("never".to_owned()).into()
            })
            .await;
        assert_eq!(got, Err("never".to_owned()));
        assert!(start.elapsed() >= Duration::from_millis(50));
        let got: std::result::Result<(), &str> =
            poll_until(Duration::from_secs(30), Duration::from_millis(10), || async { Check::Failed("gone") }).await;
        assert_eq!(got, Err("gone"), "a failed check stops at once");
    }

    #[tokio::test]
    async fn a_process_that_exits_fails_at_once_naming_its_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("x.log");
        let rec = crate::process::spawn(&crate::process::Launch {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo bye; exit 3".into()],
            log: log.clone(),
            ..Default::default()
        })
        .expect("spawn");
        let start = std::time::Instant::now();
        let err = wait_ready("quitter", &rec, Duration::from_secs(30), || async { Err("not yet".to_owned()) })
            .await
            .expect_err("exited");
        assert!(start.elapsed() < Duration::from_secs(10), "failed early");
        let text = err.to_string();
        assert!(text.contains("quitter") && text.contains("the process exited"), "{text}");
        assert!(text.contains(&log.display().to_string()), "{text}");
    }
}
