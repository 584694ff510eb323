//! Who may write which entries: the rule entry-manager enforces on every write, shared so that a
//! client (the presenter UI) can leave out the actions its caller may not take. entry-manager
//! stays the authority; a client that gets this wrong only shows a button that is refused.

use crate::pb;

/// Whether SPIFFE ID path `path` is `prefix` or lies below it, by whole segments: `/demo`
/// covers `/demo` and `/demo/x`, not `/demox`. An empty prefix covers nothing.
pub fn path_within(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    !prefix.is_empty() && (path == prefix || path.starts_with(&format!("{prefix}/")))
}

/// Whether a caller with `role` (and, for a Developer, `prefixes`) may create, update or delete
/// the entry of `spiffe_id`: Admins and Operators any, a Developer those under its prefixes,
/// nobody else.
pub fn may_write(role: pb::Role, prefixes: &[String], spiffe_id: &str) -> bool {
    match role {
        pb::Role::Admin | pb::Role::Operator => true,
        pb::Role::Developer => {
            let path = zt_identity::SpiffeId::new(spiffe_id).map(|id| id.path().to_owned()).unwrap_or_default();
            prefixes.iter().any(|p| path_within(&path, p))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments_and_roles_decide_the_rest() {
        assert!(path_within("/ns/dev/sa/x", "/ns/dev") && path_within("/ns/dev", "/ns/dev/"));
        assert!(!path_within("/ns/devil/sa/x", "/ns/dev") && !path_within("/x", ""));
        let demo = ["/demo".to_owned()];
        assert!(may_write(pb::Role::Developer, &demo, "spiffe://ztlab.test/demo/app"));
        assert!(!may_write(pb::Role::Developer, &demo, "spiffe://ztlab.test/ns/demo/sa/opa"));
        assert!(!may_write(pb::Role::Developer, &demo, "not a spiffe id"));
        assert!(may_write(pb::Role::Operator, &[], "spiffe://ztlab.test/ns/demo/sa/opa"));
        assert!(!may_write(pb::Role::Viewer, &demo, "spiffe://ztlab.test/demo/app"));
    }
}
