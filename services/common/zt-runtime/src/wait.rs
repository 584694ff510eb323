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

/// Polls `check` every `every` until it is [`Check::Done`] or [`Check::Failed`], at most for
/// `timeout` (the check runs at least once). After the deadline, the last reason it gave for
/// [`Check::NotYet`] is the error.
pub async fn poll_until<T, E>(
    timeout: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> Check<T, E>,
) -> std::result::Result<T, E> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Check::Done(v) => return Ok(v),
            Check::Failed(e) => return Err(e),
            Check::NotYet(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until `probe` says `component` is ready (`Ok`), or says why not (`Err(reason)`). Fails
/// at once if the process exits, and after `timeout` with the probe's last reason, the log file
/// and the log's last lines.
pub async fn wait_ready(
    component: &str,
    rec: &ProcessRecord,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> std::result::Result<(), String>,
) -> Result<()> {
    const EXITED: &str = "the process exited";
    let outcome = poll_until(timeout, POLL_EVERY, async || {
        if !rec.is_alive() {
            return Check::Failed(EXITED.to_owned());
        }
        match probe().await {
            Ok(()) => Check::Done(()),
            // A process may exit while it is probed; say so rather than what the probe saw.
            Err(_) if !rec.is_alive() => Check::Failed(EXITED.to_owned()),
            Err(why) => Check::NotYet(why),
        }
    })
    .await;
    outcome.map_err(|why| not_ready(component, rec, timeout, &why))
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
        let got = poll_until(Duration::from_secs(5), Duration::from_millis(1), async || {
            n += 1;
            if n == 3 { Check::Done(n) } else { Check::NotYet(format!("try {n}")) }
        })
        .await;
        assert_eq!(got, Ok(3));
        let start = std::time::Instant::now();
        let got: std::result::Result<(), String> =
            poll_until(Duration::from_millis(50), Duration::from_millis(10), async || Err("never".to_owned()).into())
                .await;
        assert_eq!(got, Err("never".to_owned()));
        assert!(start.elapsed() >= Duration::from_millis(50));
        let got: std::result::Result<(), &str> =
            poll_until(Duration::from_secs(30), Duration::from_millis(10), async || Check::Failed("gone")).await;
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
        let err = wait_ready("quitter", &rec, Duration::from_secs(30), async || Err("not yet".to_owned()))
            .await
            .expect_err("exited");
        assert!(start.elapsed() < Duration::from_secs(10), "failed early");
        let text = err.to_string();
        assert!(text.contains("quitter") && text.contains("the process exited"), "{text}");
        assert!(text.contains(&log.display().to_string()), "{text}");
    }
}
