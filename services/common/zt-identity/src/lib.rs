//! SPIFFE identities and who may talk to whom.
//!
//! This crate knows identities and authorization rules. It does not know TLS: there is no
//! rustls here. `zt-tls` authenticates a peer and hands its SPIFFE ID to an [`Authorizer`]
//! from this crate.
//!
//! - [`Rule`]: the three rules ztlab uses: one exact ID, an allow-list of IDs, or membership
//!   of a trust domain. Trust-domain membership is never a default; it must be asked for.
//! - [`Authorizer`]: the trait services use, so a rule can be swapped for a policy engine.
//! - [`lab`]: the SPIFFE ID paths of ztlab's own workloads (see DESIGN.md).
//!
//! ```
//! use zt_identity::{Authorizer, Rule, SpiffeId};
//! let rule = Rule::exact("spiffe://ztlab.test/ns/demo/sa/document").unwrap();
//! let doc = SpiffeId::new("spiffe://ztlab.test/ns/demo/sa/document").unwrap();
//! let other = SpiffeId::new("spiffe://ztlab.test/ns/demo/sa/intruder").unwrap();
//! assert!(rule.authorize(&doc).is_ok());
//! assert!(rule.authorize(&other).is_err());
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

pub use spiffe::{SpiffeId, TrustDomain};

/// Errors from building identities and rules.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A SPIFFE ID (in the named field) is not valid per the SPIFFE spec.
    #[error("{field}: invalid SPIFFE ID {value:?}: {reason}")]
    InvalidSpiffeId {
        /// The configuration field or argument that held the value.
        field: String,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A trust domain name (in the named field) is not valid.
    #[error("{field}: invalid trust domain {value:?}: {reason}")]
    InvalidTrustDomain {
        /// The configuration field or argument that held the value.
        field: String,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An allow-list was empty: it would refuse everyone, which is never what was meant.
    #[error("{field}: the allow-list is empty; list at least one SPIFFE ID")]
    EmptyAllowList {
        /// The configuration field or argument that held the list.
        field: String,
    },
}

/// The longest SPIFFE ID accepted (the SPIFFE spec's URI limit).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// Parses a SPIFFE ID strictly per the SPIFFE spec, naming `field` in the error: `spiffe://`
/// scheme, a trust domain of lower-case letters, digits, `.`, `-` and `_` (never normalized), a
/// path without empty, `.` or `..` segments, no query or fragment, at most 2048 bytes.
pub fn parse_id(field: &str, value: &str) -> Result<SpiffeId, Error> {
    let bad = |reason: String| Error::InvalidSpiffeId { field: field.to_owned(), value: value.to_owned(), reason };
    if value.len() > MAX_SPIFFE_ID_LEN {
        return Err(bad(format!("it is {} bytes; the limit is {MAX_SPIFFE_ID_LEN}", value.len())));
    }
    if value.contains('?') || value.contains('#') {
        return Err(bad("a SPIFFE ID has no query or fragment".into()));
    }
    if let Some(td) = value.strip_prefix("spiffe://").map(|rest| rest.split('/').next().unwrap_or(""))
        && !td.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
    {
        return Err(bad("the trust domain may only have lower-case letters, digits, '.', '-' and '_'".into()));
    }
    SpiffeId::new(value).map_err(|e| bad(e.to_string()))
}

/// Parses a trust domain name (`example.org`, not `spiffe://example.org`), naming `field`.
pub fn parse_trust_domain(field: &str, value: &str) -> Result<TrustDomain, Error> {
    if value.contains("://") {
        return Err(Error::InvalidTrustDomain {
            field: field.to_owned(),
            value: value.to_owned(),
            reason: "give the trust domain name only, without spiffe://".to_owned(),
        });
    }
    TrustDomain::new(value).map_err(|e| Error::InvalidTrustDomain {
        field: field.to_owned(),
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

/// Why a peer was refused. Its `Display` is meant to be shown to the caller as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The peer's SPIFFE ID.
    pub peer: String,
    /// The rule that refused it, in words.
    pub rule: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SPIFFE ID {} is not authorized: {}", self.peer, self.rule)
    }
}

impl std::error::Error for Denied {}

/// Decides whether an authenticated peer may proceed.
///
/// Authentication (the certificate chains to the trust bundle) happens before this, in
/// `zt-tls`. Implementations must be cheap: they run on every new connection.
pub trait Authorizer: Send + Sync + fmt::Debug + 'static {
    /// `Ok(())` if `peer` may proceed, else why not.
    fn authorize(&self, peer: &SpiffeId) -> Result<(), Denied>;
}

impl<A: Authorizer + ?Sized> Authorizer for Arc<A> {
    fn authorize(&self, peer: &SpiffeId) -> Result<(), Denied> {
        (**self).authorize(peer)
    }
}

impl<A: Authorizer + ?Sized> Authorizer for Box<A> {
    fn authorize(&self, peer: &SpiffeId) -> Result<(), Denied> {
        (**self).authorize(peer)
    }
}

/// An authorization rule. Build it with [`Rule::exact`], [`Rule::allow_list`] or
/// [`Rule::member_of`]; there is no default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// Exactly this ID.
    Exact(SpiffeId),
    /// Any ID in this set.
    AllowList(BTreeSet<SpiffeId>),
    /// Any ID in this trust domain. Asked for explicitly, never a default.
    MemberOf(TrustDomain),
}

impl Rule {
    /// Allows exactly one SPIFFE ID.
    pub fn exact(id: &str) -> Result<Self, Error> {
        Ok(Self::Exact(parse_id("allowed SPIFFE ID", id)?))
    }

    /// Allows the listed SPIFFE IDs. `field` names the setting, for errors.
    pub fn allow_list<I, S>(field: &str, ids: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = BTreeSet::new();
        for (i, id) in ids.into_iter().enumerate() {
            set.insert(parse_id(&format!("{field}[{i}]"), id.as_ref())?);
        }
        if set.is_empty() {
            return Err(Error::EmptyAllowList { field: field.to_owned() });
        }
        Ok(Self::AllowList(set))
    }

    /// Allows every ID of a trust domain. Only use this when that is really meant.
    pub fn member_of(trust_domain: &str) -> Result<Self, Error> {
        Ok(Self::MemberOf(parse_trust_domain("trust domain", trust_domain)?))
    }

    fn describe(&self) -> String {
        match self {
            Rule::Exact(id) => format!("only {id} is allowed"),
            Rule::AllowList(ids) => {
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                format!("allowed: {}", ids.join(", "))
            }
            Rule::MemberOf(td) => format!("only members of trust domain {td} are allowed"),
        }
    }
}

impl Authorizer for Rule {
    fn authorize(&self, peer: &SpiffeId) -> Result<(), Denied> {
        let ok = match self {
            Rule::Exact(id) => id == peer,
            Rule::AllowList(ids) => ids.contains(peer),
            Rule::MemberOf(td) => peer.is_member_of(td),
        };
        if ok { Ok(()) } else { Err(Denied { peer: peer.to_string(), rule: self.describe() }) }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The SPIFFE ID paths of ztlab's workloads. The trust domain comes from configuration.
pub mod lab {
    use super::{Error, SpiffeId, parse_id};

    /// The document service.
    pub const DOCUMENT: &str = "/ns/demo/sa/document";
    /// The OPA policy service.
    pub const OPA: &str = "/ns/demo/sa/opa";
    /// The frontend.
    pub const FRONTEND: &str = "/ns/demo/sa/frontend";
    /// The backend.
    pub const BACKEND: &str = "/ns/demo/sa/backend";
    /// The central entry manager.
    pub const ENTRY_MANAGER: &str = "/ns/ztlab-system/sa/entry-manager";

    /// `spiffe://<trust_domain><path>`, validated.
    pub fn id(trust_domain: &str, path: &str) -> Result<SpiffeId, Error> {
        parse_id("SPIFFE ID", &format!("spiffe://{trust_domain}{path}"))
    }

    /// The backend Envoy's two RBAC policies: who may call the backend. One string mapping,
    /// [`RbacMode::as_str`], which is also its serde form and what [`std::str::FromStr`] takes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum RbacMode {
        /// Only the frontend's SPIFFE ID may call the backend (the normal policy).
        AllowFrontend,
        /// Nobody may (the demo's deny step).
        DenyFrontend,
    }

    impl RbacMode {
        /// Every mode.
        pub const ALL: [RbacMode; 2] = [RbacMode::AllowFrontend, RbacMode::DenyFrontend];

        /// `allow-frontend` or `deny-frontend`.
        pub fn as_str(self) -> &'static str {
            match self {
                RbacMode::AllowFrontend => "allow-frontend",
                RbacMode::DenyFrontend => "deny-frontend",
            }
        }
    }

    /// A name that is not an [`RbacMode`].
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("{0:?} is not allow-frontend or deny-frontend")]
    pub struct UnknownRbacMode(pub String);

    impl std::str::FromStr for RbacMode {
        type Err = UnknownRbacMode;
        fn from_str(s: &str) -> Result<Self, Self::Err> {
            Self::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| UnknownRbacMode(s.to_owned()))
        }
    }

    impl std::fmt::Display for RbacMode {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::new(s).expect("valid test ID")
    }

    #[test]
    fn rbac_modes_have_one_name_and_it_is_their_json() {
        for m in lab::RbacMode::ALL {
            assert_eq!(m.as_str().parse::<lab::RbacMode>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert!("sideways".parse::<lab::RbacMode>().is_err());
    }

    #[test]
    fn exact_allows_only_that_id() {
        let rule = Rule::exact("spiffe://ztlab.test/ns/demo/sa/document").expect("rule");
        assert!(rule.authorize(&id("spiffe://ztlab.test/ns/demo/sa/document")).is_ok());
        let denied =
            rule.authorize(&id("spiffe://ztlab.test/ns/demo/sa/documentx")).expect_err("prefix must not match");
        assert_eq!(denied.peer, "spiffe://ztlab.test/ns/demo/sa/documentx");
        assert!(denied.to_string().contains("only spiffe://ztlab.test/ns/demo/sa/document is allowed"));
        // Same path, other trust domain.
        assert!(rule.authorize(&id("spiffe://other.test/ns/demo/sa/document")).is_err());
    }

    #[test]
    fn allow_list_allows_members_only() {
        let rule = Rule::allow_list("allow", ["spiffe://ztlab.test/agent/gpt4", "spiffe://ztlab.test/agent/claude"])
            .expect("rule");
        assert!(rule.authorize(&id("spiffe://ztlab.test/agent/gpt4")).is_ok());
        assert!(rule.authorize(&id("spiffe://ztlab.test/agent/claude")).is_ok());
        let denied = rule.authorize(&id("spiffe://ztlab.test/agent/summarizer")).expect_err("not listed");
        assert!(denied.rule.contains("spiffe://ztlab.test/agent/claude"));
    }

    #[test]
    fn member_of_checks_trust_domain_exactly() {
        let rule = Rule::member_of("ztlab.test").expect("rule");
        assert!(rule.authorize(&id("spiffe://ztlab.test/anything")).is_ok());
        assert!(rule.authorize(&id("spiffe://ztlab.test.evil/anything")).is_err());
        assert!(rule.authorize(&id("spiffe://other.test/anything")).is_err());
    }

    #[test]
    fn bad_input_names_the_field() {
        let err =
            Rule::allow_list("opa.allowed_clients", ["spiffe://ztlab.test/ok", "http://x/y"]).expect_err("bad scheme");
        assert!(err.to_string().starts_with("opa.allowed_clients[1]: invalid SPIFFE ID"), "{err}");
        let err = Rule::allow_list::<_, &str>("opa.allowed_clients", []).expect_err("empty");
        assert!(matches!(err, Error::EmptyAllowList { .. }));
        let err = Rule::member_of("spiffe://ztlab.test").expect_err("scheme given");
        assert!(err.to_string().contains("without spiffe://"), "{err}");
        assert!(Rule::exact("spiffe://ztlab.test/a/../b").is_err());
        assert!(Rule::exact("spiffe://Bad_TD/x").is_err());
    }

    #[test]
    fn lab_ids_are_valid() {
        let doc = lab::id("ztlab.test", lab::DOCUMENT).expect("id");
        assert_eq!(doc.to_string(), "spiffe://ztlab.test/ns/demo/sa/document");
        assert!(lab::id("bad td", lab::OPA).is_err());
    }
}
