//! An entry's sync state at a site, with one name each ([`SyncState::as_str`]: `PENDING`,
//! `SYNCED`, …), which is also its serde form, the store's column value and the metrics label;
//! [`SyncState::from_name`] reads it back.

use serde::{Deserialize, Serialize};

use crate::pb;

/// Where an entry stands at one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    /// Not yet on that site's SPIRE server as it should be.
    Pending,
    /// Present and equal on that SPIRE server.
    Synced,
    /// The last attempt failed; it is retried.
    Failed,
    /// Being removed from that SPIRE server.
    Deleting,
}

impl SyncState {
    /// Every state.
    pub const ALL: [SyncState; 4] = [SyncState::Pending, SyncState::Synced, SyncState::Failed, SyncState::Deleting];

    /// `PENDING`, `SYNCED`, `FAILED` or `DELETING`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Pending => "PENDING",
            SyncState::Synced => "SYNCED",
            SyncState::Failed => "FAILED",
            SyncState::Deleting => "DELETING",
        }
    }

    /// The state named `name` ([`SyncState::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The state of a wire value; none for `UNSPECIFIED` or an unknown number.
    pub fn from_pb(value: i32) -> Option<Self> {
        match pb::SyncState::try_from(value).ok()? {
            pb::SyncState::Pending => Some(SyncState::Pending),
            pb::SyncState::Synced => Some(SyncState::Synced),
            pb::SyncState::Failed => Some(SyncState::Failed),
            pb::SyncState::Deleting => Some(SyncState::Deleting),
            pb::SyncState::Unspecified => None,
        }
    }

    /// Its wire value.
    pub fn to_pb(self) -> pb::SyncState {
        match self {
            SyncState::Pending => pb::SyncState::Pending,
            SyncState::Synced => pb::SyncState::Synced,
            SyncState::Failed => pb::SyncState::Failed,
            SyncState::Deleting => pb::SyncState::Deleting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_has_one_name_its_json_and_its_wire_value() {
        for s in SyncState::ALL {
            assert_eq!(SyncState::from_name(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).expect("json"), serde_json::json!(s.as_str()));
            assert_eq!(SyncState::from_pb(s.to_pb() as i32), Some(s));
        }
        assert_eq!(SyncState::from_pb(pb::SyncState::Unspecified as i32), None);
        assert_eq!(SyncState::from_name("synced"), None);
    }
}
