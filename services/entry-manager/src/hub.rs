//! In-process change notification: long-polls wake on changes, and status changes fan out to
//! `StreamSyncUpdates` subscribers. The store stays the source of truth; this only wakes
//! readers early.

use tokio::sync::{broadcast, watch};
use zt_entry_api::pb;

/// The hub.
#[derive(Debug, Clone)]
pub struct Hub {
    changes: watch::Sender<u64>,
    updates: broadcast::Sender<pb::SyncUpdate>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A new hub.
    pub fn new() -> Self {
        Self { changes: watch::channel(0).0, updates: broadcast::channel(4096).0 }
    }

    /// Something changed in the store: wake long-polls.
    pub fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    /// A receiver that sees every later change.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Publishes committed status changes and wakes long-polls.
    pub fn publish(&self, updates: Vec<pb::SyncUpdate>) {
        for u in updates {
            crate::metrics::record_update(&u);
            let _ = self.updates.send(u);
        }
        self.changed();
    }

    /// Subscribes to status changes.
    pub fn subscribe(&self) -> broadcast::Receiver<pb::SyncUpdate> {
        self.updates.subscribe()
    }
}
