//! Validated domain types for the entry-management API.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use zt_identity::{SpiffeId, TrustDomain};

use crate::pb;

pub use zt_identity::MAX_SPIFFE_ID_LEN;
/// SVID TTL bounds in seconds (0 means the SPIRE server's default).
pub const MIN_TTL: i32 = 10;
/// At most 30 days.
pub const MAX_TTL: i32 = 30 * 24 * 3600;
/// The most selectors one entry may have.
pub const MAX_SELECTORS: usize = 32;

/// An invalid input: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, such as `entry.selectors[1]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

impl FieldError {
    /// This error as a gRPC status with `code`: the message is `field: message` (what the CLI
    /// prints), and the details carry a `google.rpc.BadRequest` field violation with the field
    /// path, so that a client reads the field from the details, never from the text.
    pub fn into_status(self, code: tonic::Code) -> tonic::Status {
        use tonic_types::{ErrorDetails, StatusExt as _};
        let text = self.to_string();
        tonic::Status::with_error_details(
            code,
            text,
            ErrorDetails::with_bad_request_violation(self.field, self.message),
        )
    }

    /// The first field violation of `status`'s `BadRequest` details, if it has any.
    pub fn from_status(status: &tonic::Status) -> Option<Self> {
        use tonic_types::StatusExt as _;
        let violation = status.get_details_bad_request()?.field_violations.into_iter().next()?;
        Some(Self { field: violation.field, message: violation.description })
    }
}

impl From<FieldError> for tonic::Status {
    fn from(e: FieldError) -> Self {
        e.into_status(tonic::Code::InvalidArgument)
    }
}

/// Parses a SPIFFE ID per the SPIFFE spec: `spiffe://` scheme, a trust domain of lower-case
/// letters, digits, `.`, `-` and `_`, a path without empty, `.` or `..` segments, no query or
/// fragment, at most 2048 bytes.
pub fn spiffe_id(field: &str, value: &str) -> Result<SpiffeId, FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    zt_identity::parse_id(field, value).map_err(|e| match e {
        zt_identity::Error::InvalidSpiffeId { reason, .. } => {
            let shown: String = value.chars().take(80).collect();
            FieldError::new(field, format!("{shown:?} is not a valid SPIFFE ID: {reason}"))
        }
        other => FieldError::new(field, other.to_string()),
    })
}

/// A trust domain name.
pub fn trust_domain(field: &str, value: &str) -> Result<TrustDomain, FieldError> {
    zt_identity::parse_trust_domain(field, value).map_err(|e| FieldError::new(field, e.to_string()))
}

/// A site ID: 1-63 of lower-case letters, digits and `-`, starting with a letter or digit.
pub fn site_id(field: &str, value: &str) -> Result<String, FieldError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(FieldError::new(field, format!("{value:?}: use 1-63 of a-z, 0-9 and -, not starting with -")))
    }
}

/// A selector: non-empty `type` (letters, digits, `_`, `-`) and non-empty `value`.
pub fn selector(field: &str, s: &pb::Selector) -> Result<pb::Selector, FieldError> {
    if s.r#type.is_empty() {
        return Err(FieldError::new(format!("{field}.type"), "is required (for example unix, k8s)"));
    }
    if !s.r#type.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(FieldError::new(format!("{field}.type"), format!("{:?}: only letters, digits, _ and -", s.r#type)));
    }
    if s.value.is_empty() {
        return Err(FieldError::new(format!("{field}.value"), "is required (for example path:/usr/bin/app)"));
    }
    if s.value.len() > 1024 || s.value.chars().any(char::is_control) {
        return Err(FieldError::new(format!("{field}.value"), "must be at most 1024 printable characters"));
    }
    Ok(s.clone())
}

/// Parses `type:value` (the CLI and list-filter form).
pub fn selector_str(field: &str, s: &str) -> Result<pb::Selector, FieldError> {
    let (t, v) = s
        .split_once(':')
        .ok_or_else(|| FieldError::new(field, format!("{s:?}: expected type:value, for example unix:uid:1000")))?;
    selector(field, &pb::Selector { r#type: t.to_owned(), value: v.to_owned() })
}

fn ttl(field: &str, v: i32) -> Result<i32, FieldError> {
    if v == 0 || (MIN_TTL..=MAX_TTL).contains(&v) {
        Ok(v)
    } else {
        Err(FieldError::new(field, format!("{v} s is out of range: use 0 (server default) or {MIN_TTL}..={MAX_TTL}")))
    }
}

/// A DNS name (RFC 1123), optionally with a leading `*.` label.
pub fn dns_name(field: &str, v: &str) -> Result<String, FieldError> {
    let bad = |why: &str| FieldError::new(field, format!("{v:?} is not a valid DNS name: {why}"));
    let name = v.strip_prefix("*.").unwrap_or(v);
    if name.is_empty() || v.len() > 253 {
        return Err(bad("empty or longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("labels must be 1-63 characters"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(bad("only letters, digits and - are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label may not start or end with -"));
        }
    }
    Ok(v.to_ascii_lowercase())
}

/// An entry whose every field is valid. The site list is sorted and free of duplicates; the
/// selectors are sorted (SPIRE treats them as a set), and a repeated one is refused. The parent
/// is never the entry itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEntry {
    spec: pb::EntrySpec,
    spiffe_id: SpiffeId,
}

impl ValidEntry {
    /// Validates `spec`; `field` prefixes every error (`entry`, `entries[3]`).
    pub fn parse(field: &str, spec: &pb::EntrySpec) -> Result<Self, FieldError> {
        let id = spiffe_id(&format!("{field}.spiffe_id"), &spec.spiffe_id)?;
        let parent = spiffe_id(&format!("{field}.parent_id"), &spec.parent_id)?;
        if parent.trust_domain_name() != id.trust_domain_name() {
            return Err(FieldError::new(
                format!("{field}.parent_id"),
                format!("{parent} is not in the entry's trust domain {}", id.trust_domain_name()),
            ));
        }
        if parent == id {
            return Err(FieldError::new(
                format!("{field}.parent_id"),
                format!("{parent} is the entry's own SPIFFE ID: an entry cannot be its own parent"),
            ));
        }
        if spec.selectors.is_empty() {
            return Err(FieldError::new(format!("{field}.selectors"), "at least one selector is required"));
        }
        if spec.selectors.len() > MAX_SELECTORS {
            return Err(FieldError::new(format!("{field}.selectors"), format!("at most {MAX_SELECTORS} selectors")));
        }
        // SPIRE treats selectors as a set: a repeated one is a mistake to report, not to drop.
        let mut selectors = BTreeMap::new();
        for (i, s) in spec.selectors.iter().enumerate() {
            let s = selector(&format!("{field}.selectors[{i}]"), s)?;
            if let Some(first) = selectors.insert((s.r#type, s.value), i) {
                return Err(FieldError::new(
                    format!("{field}.selectors[{i}]"),
                    format!("duplicate of selectors[{first}]"),
                ));
            }
        }
        let x509 = ttl(&format!("{field}.x509_svid_ttl"), spec.x509_svid_ttl)?;
        let jwt = ttl(&format!("{field}.jwt_svid_ttl"), spec.jwt_svid_ttl)?;
        let mut dns = Vec::new();
        for (i, d) in spec.dns_names.iter().enumerate() {
            let d = dns_name(&format!("{field}.dns_names[{i}]"), d)?;
            if !dns.contains(&d) {
                dns.push(d);
            }
        }
        if spec.hint.len() > 1024 || spec.hint.chars().any(char::is_control) {
            return Err(FieldError::new(format!("{field}.hint"), "must be at most 1024 printable characters"));
        }
        if spec.site_ids.is_empty() {
            return Err(FieldError::new(format!("{field}.site_ids"), "at least one site is required"));
        }
        let mut sites = BTreeSet::new();
        for (i, s) in spec.site_ids.iter().enumerate() {
            sites.insert(site_id(&format!("{field}.site_ids[{i}]"), s)?);
        }
        let spec = pb::EntrySpec {
            spiffe_id: id.to_string(),
            parent_id: parent.to_string(),
            selectors: selectors.into_keys().map(|(t, v)| pb::Selector { r#type: t, value: v }).collect(),
            x509_svid_ttl: x509,
            jwt_svid_ttl: jwt,
            dns_names: dns,
            admin: spec.admin,
            downstream: spec.downstream,
            hint: spec.hint.clone(),
            site_ids: sites.into_iter().collect(),
        };
        Ok(Self { spec, spiffe_id: id })
    }

    /// The normalized spec.
    pub fn spec(&self) -> &pb::EntrySpec {
        &self.spec
    }

    /// The SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The entry's trust domain name.
    pub fn trust_domain(&self) -> &str {
        self.spiffe_id.trust_domain_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_travel_as_bad_request_details() {
        let status = tonic::Status::from(FieldError::new("entry.selectors[1].type", "is required"));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "entry.selectors[1].type: is required", "the text stays the same");
        let back = FieldError::from_status(&status).expect("a field violation");
        assert_eq!(back, FieldError::new("entry.selectors[1].type", "is required"));
        let denied = FieldError::new("id", "may not").into_status(tonic::Code::PermissionDenied);
        assert_eq!((denied.code(), denied.message()), (tonic::Code::PermissionDenied, "id: may not"));
        assert_eq!(FieldError::from_status(&denied).map(|f| f.field).as_deref(), Some("id"));
        // A message that merely looks like one names no field.
        assert_eq!(FieldError::from_status(&tonic::Status::invalid_argument("entry.hint: bad")), None);
    }

    fn spec() -> pb::EntrySpec {
        pb::EntrySpec {
            spiffe_id: "spiffe://ztlab.test/ns/demo/sa/app".into(),
            parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
            selectors: vec![pb::Selector { r#type: "unix".into(), value: "uid:1000".into() }],
            x509_svid_ttl: 300,
            jwt_svid_ttl: 0,
            dns_names: vec!["App.ztlab.test".into()],
            admin: false,
            downstream: false,
            hint: "app".into(),
            site_ids: vec!["b".into(), "a".into(), "a".into()],
        }
    }

    #[test]
    fn valid_entry_is_normalized() {
        let v = ValidEntry::parse("entry", &spec()).expect("valid");
        assert_eq!(v.spec().site_ids, ["a", "b"]);
        assert_eq!(v.spec().dns_names, ["app.ztlab.test"]);
        assert_eq!(v.trust_domain(), "ztlab.test");
    }

    /// Each bad input names its field.
    #[test]
    fn bad_inputs_name_their_field() {
        let long = format!("spiffe://ztlab.test/{}", "a".repeat(2100));
        type Mutate = Box<dyn Fn(&mut pb::EntrySpec)>;
        let cases: Vec<(&str, Mutate)> = vec![
            ("entry.spiffe_id", Box::new(|s| s.spiffe_id = String::new())),
            ("entry.spiffe_id", Box::new(|s| s.spiffe_id = "http://ztlab.test/x".into())),
            ("entry.spiffe_id", Box::new(|s| s.spiffe_id = "spiffe://ZTLAB.test/x".into())),
            ("entry.spiffe_id", Box::new(|s| s.spiffe_id = "spiffe://ztlab.test/a//b".into())),
            ("entry.spiffe_id", Box::new(|s| s.spiffe_id = "spiffe://ztlab.test/a/./b".into())),
            ("entry.spiffe_id", Box::new(|s| s.spiffe_id = "spiffe://ztlab.test/a/../b".into())),
            ("entry.spiffe_id", Box::new(|s| s.spiffe_id = "spiffe://ztlab.test/a?x=1".into())),
            ("entry.spiffe_id", Box::new(|s| s.spiffe_id = "spiffe://ztlab.test/a#f".into())),
            ("entry.spiffe_id", Box::new(|s| s.spiffe_id = "spiffe://ztlab.test/a/".into())),
            ("entry.spiffe_id", Box::new(move |s| s.spiffe_id = long.clone())),
            ("entry.parent_id", Box::new(|s| s.parent_id = "spiffe://other.test/agent".into())),
            ("entry.selectors", Box::new(|s| s.selectors.clear())),
            ("entry.selectors[0].type", Box::new(|s| s.selectors[0].r#type = String::new())),
            ("entry.selectors[0].value", Box::new(|s| s.selectors[0].value = String::new())),
            ("entry.parent_id", Box::new(|s| s.parent_id = s.spiffe_id.clone())),
            ("entry.selectors[1]", Box::new(|s| s.selectors.push(s.selectors[0].clone()))),
            ("entry.x509_svid_ttl", Box::new(|s| s.x509_svid_ttl = 5)),
            ("entry.jwt_svid_ttl", Box::new(|s| s.jwt_svid_ttl = -1)),
            ("entry.dns_names[0]", Box::new(|s| s.dns_names = vec!["bad_name".into()])),
            ("entry.dns_names[0]", Box::new(|s| s.dns_names = vec!["-x.test".into()])),
            ("entry.site_ids", Box::new(|s| s.site_ids.clear())),
            ("entry.site_ids[0]", Box::new(|s| s.site_ids = vec!["Site A".into()])),
            ("entry.hint", Box::new(|s| s.hint = "a\nb".into())),
        ];
        for (field, mutate) in cases {
            let mut s = spec();
            mutate(&mut s);
            let err = ValidEntry::parse("entry", &s).expect_err(field);
            assert_eq!(err.field, field, "{err}");
            assert_eq!(tonic::Status::from(err).code(), tonic::Code::InvalidArgument);
        }
    }

    /// An entry cannot be its own parent (SPIRE would accept it, and no agent could ever serve it).
    #[test]
    fn an_entry_is_not_its_own_parent() {
        let mut s = spec();
        s.parent_id = s.spiffe_id.clone();
        let err = ValidEntry::parse("entry", &s).expect_err("own parent");
        assert_eq!(err.field, "entry.parent_id", "{err}");
        assert!(err.message.contains("own parent"), "{err}");
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::InvalidArgument);
        let err = ValidEntry::parse("entries[3]", &s).expect_err("own parent in a batch");
        assert_eq!(err.field, "entries[3].parent_id");
    }

    /// A selector given twice is refused, naming the second and the first; not silently dropped.
    #[test]
    fn a_repeated_selector_is_refused_naming_both() {
        let sel = |t: &str, v: &str| pb::Selector { r#type: t.into(), value: v.into() };
        let mut s = spec();
        s.selectors = vec![sel("unix", "uid:1000"), sel("unix", "uid:1000")];
        let err = ValidEntry::parse("entry", &s).expect_err("duplicate");
        assert_eq!(err.to_string(), "entry.selectors[1]: duplicate of selectors[0]");
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::InvalidArgument);
        s.selectors = vec![sel("unix", "uid:1"), sel("unix", "gid:2"), sel("k8s", "ns:x"), sel("unix", "gid:2")];
        let err = ValidEntry::parse("entries[2]", &s).expect_err("duplicate");
        assert_eq!(err.to_string(), "entries[2].selectors[3]: duplicate of selectors[1]");
        // Same type or same value alone is not a duplicate; the valid set comes back sorted.
        s.selectors = vec![sel("unix", "uid:1"), sel("unix", "gid:1"), sel("k8s", "uid:1")];
        let v = ValidEntry::parse("entry", &s).expect("distinct selectors");
        assert_eq!(v.spec().selectors, [sel("k8s", "uid:1"), sel("unix", "gid:1"), sel("unix", "uid:1")]);
    }

    #[test]
    fn selector_strings() {
        let s = selector_str("filter.selector", "unix:path:/bin/x").expect("ok");
        assert_eq!((s.r#type.as_str(), s.value.as_str()), ("unix", "path:/bin/x"));
        assert!(selector_str("filter.selector", "nocolon").is_err());
        assert!(selector_str("filter.selector", ":x").is_err());
        assert!(selector_str("filter.selector", "unix:").is_err());
    }
}
