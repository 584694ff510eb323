//! Whether each site's agent is connected, from its long-poll (`PollEntries`).
//!
//! An agent always holds a long-poll open, except while it reconciles between two polls. So:
//! - a poll that is open now means the agent is connected;
//! - a poll that ends without an answer (the agent's process died, its connection closed, or
//!   it cancelled the call) is a disconnect, recorded at that moment by [`PollGuard`]'s drop;
//! - with neither (between polls, or after an entry-manager restart), the last contact decides:
//!   an agent not heard from for [`SILENT_AFTER`] is disconnected since its last contact.
//!
//! Presence is kept in this process (one entry-manager instance, as the hub's wake-ups).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

/// How long an agent that holds no poll may stay silent and still count as connected (its
/// reconciliation rounds between polls can take tens of seconds with 10,000 entries).
pub const SILENT_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, Copy)]
struct Link {
    /// Long-polls open now.
    open: usize,
    /// When the last poll broke off with none left open; cleared by the next poll.
    broken_at: Option<OffsetDateTime>,
}

/// The open long-polls and broken-off polls of every site.
#[derive(Debug, Clone, Default)]
pub struct Presence(Arc<Mutex<HashMap<String, Link>>>);

impl Presence {
    /// A poll of `site` starts; it counts as open until the guard is finished or dropped.
    pub fn poll_started(&self, site: &str) -> PollGuard {
        self.with(site, |l| {
            l.open += 1;
            l.broken_at = None;
        });
        PollGuard { presence: self.clone(), site: site.to_owned(), answered: false }
    }

    /// `(connected, disconnected since)` of `site`'s agent, whose last recorded contact is
    /// `last_contact`, at `now`.
    pub fn agent_link(
        &self,
        site: &str,
        last_contact: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> (bool, Option<OffsetDateTime>) {
        let link = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(site).copied().unwrap_or_default();
        link_state(link, last_contact, now)
    }

    fn with(&self, site: &str, f: impl FnOnce(&mut Link)) {
        f(self.0.lock().unwrap_or_else(PoisonError::into_inner).entry(site.to_owned()).or_default());
    }
}

fn link_state(link: Link, last_contact: Option<OffsetDateTime>, now: OffsetDateTime) -> (bool, Option<OffsetDateTime>) {
    if link.open > 0 {
        return (true, None);
    }
    if let Some(at) = link.broken_at {
        return (false, Some(at));
    }
    match last_contact {
        Some(t) if now - t < SILENT_AFTER => (true, None),
        last => (false, last),
    }
}

/// One open long-poll. Call [`PollGuard::answered`] when the poll returns (with an answer or an
/// error); dropping it unanswered records a disconnect.
#[derive(Debug)]
pub struct PollGuard {
    presence: Presence,
    site: String,
    answered: bool,
}

impl PollGuard {
    /// The poll returned to the agent.
    pub fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        let broken = !self.answered;
        self.presence.with(&self.site, |l| {
            l.open = l.open.saturating_sub(1);
            if broken && l.open == 0 {
                l.broken_at = Some(OffsetDateTime::now_utc());
            }
        });
        if broken {
            tracing::warn!(site = %self.site, "the site agent's long-poll broke off: agent disconnected");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs_ago(now: OffsetDateTime, s: i64) -> Option<OffsetDateTime> {
        Some(now - time::Duration::seconds(s))
    }

    #[test]
    fn an_open_poll_is_connected_whatever_the_last_contact() {
        let p = Presence::default();
        let now = OffsetDateTime::now_utc();
        let _poll = p.poll_started("a");
        assert_eq!(p.agent_link("a", secs_ago(now, 3600), now), (true, None));
        assert_eq!(p.agent_link("a", None, now), (true, None));
    }

    #[test]
    fn a_poll_dropped_unanswered_is_a_disconnect_at_once() {
        let p = Presence::default();
        let before = OffsetDateTime::now_utc();
        drop(p.poll_started("a"));
        let now = OffsetDateTime::now_utc();
        let (connected, since) = p.agent_link("a", secs_ago(now, 1), now);
        assert!(!connected);
        let since = since.expect("since");
        assert!(since >= before && since <= now, "{since} not in [{before}, {now}]");
        // The next poll connects again.
        let _again = p.poll_started("a");
        assert_eq!(p.agent_link("a", secs_ago(now, 1), now), (true, None));
    }

    #[test]
    fn an_answered_poll_is_no_disconnect_and_the_last_contact_decides_between_polls() {
        let p = Presence::default();
        p.poll_started("a").answered();
        let now = OffsetDateTime::now_utc();
        assert_eq!(p.agent_link("a", secs_ago(now, 5), now), (true, None));
        assert_eq!(p.agent_link("a", secs_ago(now, 61), now), (false, secs_ago(now, 61)));
        assert_eq!(p.agent_link("a", None, now), (false, None));
    }

    #[test]
    fn a_broken_poll_with_another_still_open_stays_connected() {
        let p = Presence::default();
        let now = OffsetDateTime::now_utc();
        let old = p.poll_started("a");
        let _new = p.poll_started("a");
        drop(old);
        assert_eq!(p.agent_link("a", secs_ago(now, 1), now), (true, None));
        // Sites are apart.
        drop(p.poll_started("b"));
        assert!(!p.agent_link("b", secs_ago(now, 1), now).0);
        assert!(p.agent_link("a", secs_ago(now, 1), now).0);
    }
}
