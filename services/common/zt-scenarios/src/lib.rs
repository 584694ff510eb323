//! The scenario catalogue (`demo/scenarios.toml`): every demo scenario described once, as data.
//! The end-to-end tests, `demo.sh` and the presenter UI all read it through this crate, so that a
//! scenario that is shown is a scenario that is tested.
//!
//! - [`Catalogue::builtin`] is the catalogue compiled in; [`Catalogue::parse`] checks any text.
//! - A [`Scenario`] has steps ([`Step`], an [`Action`] and what it must give) or, for the
//!   delegation matrix, [`Case`]s.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
pub use zt_identity::lab::RbacMode;

/// The catalogue in the repository.
pub const BUILTIN: &str = include_str!("../../../../demo/scenarios.toml");

/// What can go wrong reading a catalogue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogueError {
    /// Not TOML, or a field of the wrong shape (the message names it).
    #[error("invalid scenario catalogue: {0}")]
    Syntax(String),
    /// A value that parses but makes no sense; the field path names it.
    #[error("invalid scenario catalogue: {field}: {message}")]
    Invalid {
        /// For example `scenario[2].case[0].doc`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Scenarios, in the order they are presented.
    pub scenario: Vec<Scenario>,
}

/// One scenario.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Stable id (`run-demo`), used in URLs and `demo.sh --scenario`.
    pub id: String,
    /// Title.
    pub title: String,
    /// What the presenter says.
    pub narration: String,
    /// What to show.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The outcome, in one sentence.
    pub expected: String,
    /// Steps, run in order.
    #[serde(default)]
    pub step: Vec<Step>,
    /// Delegation cases.
    #[serde(default)]
    pub case: Vec<Case>,
}

/// One step: an action and what it must give.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What to do.
    pub action: Action,
    /// For `rbac`: the policy to install.
    pub mode: Option<String>,
    /// For `run-demo`: `ok`, or the reason the first failing hop must give (`rbac`, …). For
    /// `site-outage`: `retries` (entry sync fails and retries while the site is down) or
    /// `cached` (Run Demo stays green on cached SVIDs). For `github`: `fixture`. For
    /// `network-policy`: `pass`.
    pub expect: Option<String>,
    /// For `rotation`: how long to watch; for `openbao-lease`: the longest wait for the database
    /// user to rotate; for `site-outage` with `cached`: how long Run Demo must stay green; for
    /// `revoke-lease`: the longest Run Demo may take to be green again.
    pub seconds: Option<u64>,
    /// For `site-outage`: the site whose SPIRE server is stopped (`a`, `b`).
    pub site: Option<String>,
    /// For `github`: the seeded user who logs in (password `<user>99`).
    pub user: Option<String>,
}

/// The actions a step can take.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    /// `POST /api/run-demo` on the frontend.
    RunDemo,
    /// `ztlab policy rbac <mode>`.
    Rbac,
    /// Run Demo in a loop for `seconds`, counting failures, while watching the serials of both
    /// Envoys' SDS certificates, both spiffe-helpers' files and a native SVID.
    Rotation,
    /// The backend's OpenBao lease: the TTL counting down, then a rotation to a new database
    /// user (within `seconds`), and the old role gone from PostgreSQL.
    OpenbaoLease,
    /// `user` logs in, stores a fixture GitHub token, lists repositories.
    Github,
    /// An entry created through the entry API, synced to both sites, checked on both SPIRE
    /// servers, deleted, gone from both, with its audit trail.
    EntryLifecycle,
    /// `site`'s SPIRE server is stopped and restarted: `retries` or `cached` (see `expect`).
    SiteOutage,
    /// The backend's current database lease is revoked in OpenBao (with the lab's lease-revoker
    /// token); Run Demo must be green again within `seconds`, on a new lease, with the old
    /// PostgreSQL role gone.
    RevokeLease,
    /// The Cilium policies' reachability matrix (infrastructure/kind/check.py).
    NetworkPolicy,
}

impl Action {
    /// The name used in the catalogue (`run-demo`, …).
    pub fn name(self) -> &'static str {
        match self {
            Action::RunDemo => "run-demo",
            Action::Rbac => "rbac",
            Action::Rotation => "rotation",
            Action::OpenbaoLease => "openbao-lease",
            Action::Github => "github",
            Action::EntryLifecycle => "entry-lifecycle",
            Action::SiteOutage => "site-outage",
            Action::RevokeLease => "revoke-lease",
            Action::NetworkPolicy => "network-policy",
        }
    }

    /// The step fields this action reads (besides `action`).
    fn fields(self) -> &'static [&'static str] {
        match self {
            Action::RunDemo => &["expect"],
            Action::Rbac => &["mode"],
            Action::Rotation => &["seconds"],
            Action::OpenbaoLease => &["seconds"],
            Action::Github => &["user", "expect"],
            Action::EntryLifecycle => &[],
            Action::SiteOutage => &["site", "expect", "seconds"],
            Action::RevokeLease => &["seconds"],
            Action::NetworkPolicy => &["expect"],
        }
    }
}

/// The longest a step may wait or watch, seconds.
pub const MAX_SECONDS: u64 = 600;

/// A step, typed: each action with exactly the fields it takes, already checked. Its serde form
/// is the catalogue's (`action = "rbac"`, `mode = "deny-frontend"`). The runner works on these;
/// [`Step`] is the catalogue's flat record of the same, which [`Step::drill`] checks and
/// converts, naming the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Drill {
    /// `POST /api/run-demo` on the frontend, until it gives `expect`: `ok`, or the reason the
    /// first failing hop must give (`rbac`, …).
    RunDemo {
        /// `ok` or the failing hop's reason.
        expect: String,
    },
    /// `ztlab policy rbac <mode>`.
    Rbac {
        /// The policy to install.
        mode: RbacMode,
    },
    /// Run Demo in a loop for `seconds`, counting failures, while watching the serials of both
    /// Envoys' SDS certificates, both spiffe-helpers' files and a native SVID.
    Rotation {
        /// How long to watch.
        seconds: u64,
    },
    /// The backend's OpenBao lease: the TTL counting down, then a rotation to a new database
    /// user (within `seconds`), and the old role gone from PostgreSQL.
    OpenbaoLease {
        /// The longest wait for the rotation.
        seconds: u64,
    },
    /// `user` logs in, stores a fixture GitHub token, lists repositories.
    Github {
        /// The seeded user (password `<user>99`).
        user: String,
        /// Always the fixture.
        expect: GithubExpect,
    },
    /// An entry created through the entry API, synced to both sites, checked on both SPIRE
    /// servers, deleted, gone from both, with its audit trail.
    EntryLifecycle,
    /// `site`'s SPIRE server is stopped and restarted.
    SiteOutage {
        /// The site whose SPIRE server is stopped.
        site: String,
        /// What must hold meanwhile.
        expect: OutageExpect,
        /// With `cached`: how long Run Demo must stay green.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<u64>,
    },
    /// The backend's current database lease is revoked; Run Demo must be green again within
    /// `seconds`, on a new lease, with the old PostgreSQL role gone.
    RevokeLease {
        /// The longest Run Demo may take to be green again.
        seconds: u64,
    },
    /// The Cilium policies' reachability matrix (infrastructure/kind/check.py).
    NetworkPolicy {
        /// Always `pass`.
        expect: NetworkExpect,
    },
}

/// What a `github` step expects: the lab's fixture, never the real GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GithubExpect {
    /// The answers come from the lab's GitHub fixture.
    Fixture,
}

/// What a `site-outage` step expects while the site's server is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutageExpect {
    /// Entry sync to that site fails and retries, then recovers.
    Retries,
    /// Run Demo stays green on the SVIDs the agent cached.
    Cached,
}

/// What a `network-policy` step expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkExpect {
    /// The policies allow exactly the reachability matrix.
    Pass,
}

impl Drill {
    /// How long it watches or waits, for the actions that say (`rotation`, `openbao-lease`,
    /// `revoke-lease`, `site-outage` with `cached`).
    pub fn seconds(&self) -> Option<u64> {
        match self {
            Drill::Rotation { seconds } | Drill::OpenbaoLease { seconds } | Drill::RevokeLease { seconds } => {
                Some(*seconds)
            }
            Drill::SiteOutage { seconds, .. } => *seconds,
            _ => None,
        }
    }

    /// Its action.
    pub fn action(&self) -> Action {
        match self {
            Drill::RunDemo { .. } => Action::RunDemo,
            Drill::Rbac { .. } => Action::Rbac,
            Drill::Rotation { .. } => Action::Rotation,
            Drill::OpenbaoLease { .. } => Action::OpenbaoLease,
            Drill::Github { .. } => Action::Github,
            Drill::EntryLifecycle => Action::EntryLifecycle,
            Drill::SiteOutage { .. } => Action::SiteOutage,
            Drill::RevokeLease { .. } => Action::RevokeLease,
            Drill::NetworkPolicy { .. } => Action::NetworkPolicy,
        }
    }
}

impl Step {
    /// Checks this step (its fields at `field`, such as `scenario[2].step[0]`) and returns it
    /// typed. An error names the field that is wrong.
    pub fn drill(&self, field: &str) -> Result<Drill, CatalogueError> {
        let sf = |name: &str| format!("{field}.{name}");
        let set = [
            ("mode", self.mode.is_some()),
            ("expect", self.expect.is_some()),
            ("seconds", self.seconds.is_some()),
            ("site", self.site.is_some()),
            ("user", self.user.is_some()),
        ];
        for (name, present) in set {
            if present && !self.action.fields().contains(&name) {
                return Err(invalid(sf(name), format!("not used by {}", self.action.name())));
            }
        }
        let expect = self.expect.as_deref();
        let seconds = |need: bool| -> Result<Option<u64>, CatalogueError> {
            match self.seconds {
                None if need => Err(invalid(sf("seconds"), format!("{} needs seconds", self.action.name()))),
                Some(n) if n == 0 || n > MAX_SECONDS => {
                    Err(invalid(sf("seconds"), format!("{n}: between 1 and {MAX_SECONDS}")))
                }
                other => Ok(other),
            }
        };
        let needed = |need: bool| -> Result<u64, CatalogueError> { Ok(seconds(need)?.unwrap_or_default()) };
        Ok(match self.action {
            Action::Rbac => {
                let mode = self.mode.as_deref().and_then(|m| m.parse().ok());
                let mode = mode
                    .ok_or_else(|| invalid(sf("mode"), format!("{:?}: allow-frontend or deny-frontend", self.mode)))?;
                Drill::Rbac { mode }
            }
            Action::RunDemo => match expect {
                Some(e) if !e.is_empty() => Drill::RunDemo { expect: e.to_owned() },
                _ => return Err(invalid(sf("expect"), "ok, or the reason of the failing hop")),
            },
            Action::Rotation => Drill::Rotation { seconds: needed(true)? },
            Action::OpenbaoLease => Drill::OpenbaoLease { seconds: needed(true)? },
            Action::RevokeLease => Drill::RevokeLease { seconds: needed(true)? },
            Action::EntryLifecycle => Drill::EntryLifecycle,
            Action::Github => {
                let user = match self.user.as_deref() {
                    Some(u) if !u.is_empty() && u.chars().all(|c| c.is_ascii_lowercase()) => u.to_owned(),
                    _ => return Err(invalid(sf("user"), format!("{:?}: a seeded user (lower-case)", self.user))),
                };
                if expect != Some("fixture") {
                    return Err(invalid(sf("expect"), format!("{expect:?}: fixture")));
                }
                Drill::Github { user, expect: GithubExpect::Fixture }
            }
            Action::SiteOutage => {
                let site = match self.site.as_deref() {
                    Some(s) if !s.is_empty() => s.to_owned(),
                    _ => return Err(invalid(sf("site"), "the site whose SPIRE server is stopped")),
                };
                let (expect, seconds) = match expect {
                    Some("retries") => (OutageExpect::Retries, seconds(false)?),
                    Some("cached") => (OutageExpect::Cached, seconds(true)?),
                    other => return Err(invalid(sf("expect"), format!("{other:?}: retries or cached"))),
                };
                Drill::SiteOutage { site, expect, seconds }
            }
            Action::NetworkPolicy => {
                if expect != Some("pass") {
                    return Err(invalid(sf("expect"), format!("{expect:?}: pass")));
                }
                Drill::NetworkPolicy { expect: NetworkExpect::Pass }
            }
        })
    }
}

impl Scenario {
    /// Its steps, typed ([`Step::drill`]); checked when the catalogue was parsed.
    pub fn drills(&self) -> Result<Vec<Drill>, CatalogueError> {
        self.step.iter().enumerate().map(|(j, st)| st.drill(&format!("scenario {:?}.step[{j}]", self.id))).collect()
    }
}

/// One delegation case: who asks for which document, and the decision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Its number in the matrix.
    pub n: u32,
    /// The user, or none.
    pub user: Option<String>,
    /// The agent acting for the user, or none (the user reads directly).
    pub agent: Option<String>,
    /// The document.
    pub doc: String,
    /// The decision.
    pub expect: Decision,
    /// A part of the policy's reason.
    pub because: Option<String>,
}

/// A decision.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Access granted.
    Granted,
    /// Access denied.
    Denied,
}

impl Case {
    /// `Alice → GPT4 → DOC-001`.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        parts.extend(self.user.as_deref().map(capitalise));
        parts.extend(self.agent.as_deref().map(capitalise));
        parts.push(self.doc.clone());
        let mut label = parts.join(" → ");
        if self.user.is_none() {
            label.push_str(", no user");
        }
        label
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn invalid(field: String, message: impl Into<String>) -> CatalogueError {
    CatalogueError::Invalid { field, message: message.into() }
}

impl Catalogue {
    /// The catalogue compiled in.
    pub fn builtin() -> Result<Self, CatalogueError> {
        Self::parse(BUILTIN)
    }

    /// Parses and checks a catalogue.
    pub fn parse(text: &str) -> Result<Self, CatalogueError> {
        let c: Catalogue = toml::from_str(text).map_err(|e| CatalogueError::Syntax(e.to_string()))?;
        c.check()?;
        Ok(c)
    }

    /// The scenario `id`.
    pub fn get(&self, id: &str) -> Option<&Scenario> {
        self.scenario.iter().find(|s| s.id == id)
    }

    fn check(&self) -> Result<(), CatalogueError> {
        let mut ids = BTreeSet::new();
        for (i, s) in self.scenario.iter().enumerate() {
            let f = |name: &str| format!("scenario[{i}].{name}");
            let id_ok =
                !s.id.is_empty() && s.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !id_ok {
                return Err(invalid(f("id"), format!("{:?} is not lower-case letters, digits and -", s.id)));
            }
            if !ids.insert(s.id.clone()) {
                return Err(invalid(f("id"), format!("{:?} appears twice", s.id)));
            }
            for (name, v) in [("title", &s.title), ("narration", &s.narration), ("expected", &s.expected)] {
                if v.trim().is_empty() {
                    return Err(invalid(f(name), "must not be empty"));
                }
            }
            if s.step.is_empty() && s.case.is_empty() {
                return Err(invalid(f("step"), "a scenario needs steps or cases"));
            }
            for (j, st) in s.step.iter().enumerate() {
                st.drill(&format!("scenario[{i}].step[{j}]"))?;
            }
            let mut numbers = BTreeSet::new();
            for (j, c) in s.case.iter().enumerate() {
                let cf = |name: &str| format!("scenario[{i}].case[{j}].{name}");
                if !numbers.insert(c.n) {
                    return Err(invalid(cf("n"), format!("case {} appears twice", c.n)));
                }
                if c.user.is_none() && c.agent.is_none() {
                    return Err(invalid(cf("user"), "a case needs a user, an agent, or both"));
                }
                if !c.doc.starts_with("DOC-") {
                    return Err(invalid(cf("doc"), format!("{:?} is not a document id (DOC-…)", c.doc)));
                }
                if c.expect == Decision::Denied && c.because.is_none() {
                    return Err(invalid(cf("because"), "a denial names its reason"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_holds_the_nine_delegation_cases() {
        let c = Catalogue::builtin().expect("builtin");
        let d = c.get("delegation").expect("delegation");
        let got: Vec<(u32, String, Decision)> = d.case.iter().map(|c| (c.n, c.label(), c.expect)).collect();
        use Decision::*;
        let want = [
            (1, "Alice → DOC-001", Granted),
            (2, "Bob → DOC-001", Denied),
            (3, "Carol → DOC-002", Denied),
            (4, "Alice → DOC-003", Denied),
            (5, "Alice → Gpt4 → DOC-001", Granted),
            (6, "Bob → Claude → DOC-003", Granted),
            (7, "Gpt4 → DOC-001, no user", Denied),
            (8, "Alice → Summarizer → DOC-001", Denied),
            (9, "Bob → Gpt4 → DOC-003", Denied),
        ];
        let want: Vec<(u32, String, Decision)> = want.iter().map(|(n, l, d)| (*n, (*l).to_owned(), *d)).collect();
        assert_eq!(got, want);
        for id in [
            "run-demo",
            "envoy-rbac",
            "rotation",
            "openbao",
            "github",
            "entries",
            "failure-drills",
            "revoke-credentials",
            "network-policy",
        ] {
            assert!(c.get(id).is_some(), "{id} is in the catalogue");
        }
    }

    /// Every step of the catalogue, typed, has the same TOML as the step in the file.
    #[test]
    fn drills_are_the_steps_typed_in_the_same_shape() {
        let c = Catalogue::builtin().expect("builtin");
        let mut n = 0;
        for s in &c.scenario {
            for (st, d) in s.step.iter().zip(s.drills().expect("drills")) {
                let flat = toml::Value::try_from(st).expect("step");
                let typed = toml::Value::try_from(&d).expect("drill");
                assert_eq!(flat, typed, "{st:?}");
                assert_eq!(d.action(), st.action);
                let back: Drill = typed.try_into().expect("parses back");
                assert_eq!(back, d);
                n += 1;
            }
        }
        assert!(n >= 10, "{n} steps");
        let d: Result<Drill, _> = toml::from_str("action = \"rbac\"\nmode = \"deny-frontend\"\nuser = \"x\"\n");
        assert!(d.is_err_and(|e| e.to_string().contains("user")), "unknown fields are refused by name");
    }

    #[test]
    fn bad_catalogues_name_the_field() {
        let base = "[[scenario]]\nid = \"x\"\ntitle = \"t\"\nnarration = \"n\"\nexpected = \"e\"\n";
        for (extra, field) in [
            ("", "scenario[0].step"),
            ("[[scenario.step]]\naction = \"rbac\"\nmode = \"sideways\"\n", "scenario[0].step[0].mode"),
            ("[[scenario.step]]\naction = \"run-demo\"\n", "scenario[0].step[0].expect"),
            ("[[scenario.case]]\nn = 1\ndoc = \"DOC-001\"\nexpect = \"granted\"\n", "scenario[0].case[0].user"),
            ("[[scenario.case]]\nn = 1\nuser = \"a\"\ndoc = \"X\"\nexpect = \"granted\"\n", "scenario[0].case[0].doc"),
            (
                "[[scenario.case]]\nn = 1\nuser = \"a\"\ndoc = \"DOC-1\"\nexpect = \"denied\"\n",
                "scenario[0].case[0].because",
            ),
            ("[[scenario.step]]\naction = \"rotation\"\n", "scenario[0].step[0].seconds"),
            ("[[scenario.step]]\naction = \"rotation\"\nseconds = 0\n", "scenario[0].step[0].seconds"),
            ("[[scenario.step]]\naction = \"openbao-lease\"\nseconds = 9999\n", "scenario[0].step[0].seconds"),
            ("[[scenario.step]]\naction = \"rotation\"\nseconds = 5\nsite = \"a\"\n", "scenario[0].step[0].site"),
            (
                "[[scenario.step]]\naction = \"rbac\"\nmode = \"deny-frontend\"\nseconds = 3\n",
                "scenario[0].step[0].seconds",
            ),
            ("[[scenario.step]]\naction = \"github\"\nexpect = \"fixture\"\n", "scenario[0].step[0].user"),
            (
                "[[scenario.step]]\naction = \"github\"\nuser = \"jake\"\nexpect = \"real\"\n",
                "scenario[0].step[0].expect",
            ),
            ("[[scenario.step]]\naction = \"entry-lifecycle\"\nuser = \"jake\"\n", "scenario[0].step[0].user"),
            ("[[scenario.step]]\naction = \"site-outage\"\nexpect = \"retries\"\n", "scenario[0].step[0].site"),
            (
                "[[scenario.step]]\naction = \"site-outage\"\nsite = \"b\"\nexpect = \"gone\"\n",
                "scenario[0].step[0].expect",
            ),
            (
                "[[scenario.step]]\naction = \"site-outage\"\nsite = \"a\"\nexpect = \"cached\"\n",
                "scenario[0].step[0].seconds",
            ),
            ("[[scenario.step]]\naction = \"network-policy\"\n", "scenario[0].step[0].expect"),
        ] {
            let err = Catalogue::parse(&format!("{base}{extra}")).expect_err(field);
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let err = Catalogue::parse(&format!("{base}[[scenario.step]]\naction = \"explode\"\nexpect = \"ok\"\n"))
            .expect_err("unknown action");
        assert!(err.to_string().contains("explode"), "{err}");
        let twice = format!("{base}[[scenario.step]]\naction = \"run-demo\"\nexpect = \"ok\"\n");
        let err = Catalogue::parse(&format!("{twice}{twice}")).expect_err("duplicate id");
        assert!(err.to_string().contains("appears twice"), "{err}");
    }
}
