//! The lab's status and entry-manager's entries, computed by one task and published on a
//! `tokio::sync::watch` channel.
//!
//! Every page, JSON endpoint and event stream that shows them reads the latest [`LabView`]
//! from [`Published`]: the dashboard and `GET /events`, the entry pages and
//! `GET /events/entries`. So N open tabs cost what one does: one `Lab::status` (psql runs and
//! HTTP probes) and one entry-manager snapshot per period, not one per tab.
//!
//! The task starts with the first subscriber and idles while nobody subscribes. A page that
//! finds the latest view older than two periods (nobody was watching) waits for a fresh one.
//! Where the status comes from is a [`LabSource`]: [`LocalLab`] reads the local runtime's
//! `lab.json`; another runtime (Kubernetes) implements the same trait and feeds the same channel.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use zt_runtime::lab::ComponentStatus;

use crate::entries::{EntryManager, Snapshot};
use crate::error::Failure;

/// How often the status is computed while someone watches.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Where the lab's status comes from.
pub trait LabSource: Send + Sync + 'static {
    /// The lab's components, or what kept them from being read.
    fn status(&self) -> impl Future<Output = Result<Vec<ComponentStatus>, String>> + Send;
}

/// The local runtime's lab, from `lab.json` in its state dir.
#[derive(Debug, Clone)]
pub struct LocalLab {
    state_dir: PathBuf,
}

impl LocalLab {
    /// The lab whose state dir is `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self { state_dir: state_dir.to_path_buf() }
    }
}

impl LabSource for LocalLab {
    async fn status(&self) -> Result<Vec<ComponentStatus>, String> {
        let lab = zt_runtime::lab::Lab::open(&self.state_dir).map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(5), lab.status())
            .await
            .map_err(|_| format!("the lab status took more than 5 s (state dir {})", self.state_dir.display()))
    }
}

/// What the pages show of the lab, as of `at`.
#[derive(Debug, Clone)]
pub struct LabView {
    /// The lab's components, or what kept them from being read.
    pub lab: Result<Vec<ComponentStatus>, String>,
    /// Every entry and site from entry-manager, or what kept them from being read.
    pub entries: Result<Snapshot, Failure>,
    /// When it was computed (`None`: not yet).
    pub at: Option<Instant>,
}

type Compute = dyn Fn() -> Pin<Box<dyn Future<Output = LabView> + Send>> + Send + Sync;

struct Inner {
    tx: watch::Sender<Arc<LabView>>,
    wake: Notify,
    started: AtomicBool,
    period: Duration,
    compute: Box<Compute>,
}

/// The published [`LabView`]: subscribe to follow it, or read the current one.
#[derive(Clone)]
pub struct Published {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published").field("period", &self.inner.period).finish_non_exhaustive()
    }
}

impl Published {
    /// The status of `lab` and the entries of `entry_manager` (none: the frontend has no SVID
    /// yet), computed every `period` while someone subscribes. Nothing runs until then.
    pub fn new<S: LabSource>(lab: S, entry_manager: Option<Arc<EntryManager>>, period: Duration) -> Self {
        let lab = Arc::new(lab);
        let compute = move || -> Pin<Box<dyn Future<Output = LabView> + Send>> {
            let (lab, em) = (lab.clone(), entry_manager.clone());
            Box::pin(async move {
                let entries = async {
                    match &em {
                        Some(em) => em.snapshot().await,
                        None => Err(Failure::no_svid()),
                    }
                };
                let (lab, entries) = tokio::join!(lab.status(), entries);
                LabView { lab, entries, at: Some(Instant::now()) }
            })
        };
        let first = LabView { lab: Err("not read yet".into()), entries: Err(Failure::no_svid()), at: None };
        let (tx, _) = watch::channel(Arc::new(first));
        let inner =
            Inner { tx, wake: Notify::new(), started: AtomicBool::new(false), period, compute: Box::new(compute) };
        Self { inner: Arc::new(inner) }
    }

    /// A receiver of every new view; the current one counts as new if it is fresh.
    pub fn subscribe(&self) -> watch::Receiver<Arc<LabView>> {
        let mut rx = self.inner.tx.subscribe();
        if self.is_fresh(&rx.borrow()) {
            rx.mark_changed();
        }
        if !self.inner.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(self.inner.clone()));
        }
        self.inner.wake.notify_one();
        rx
    }

    /// The current view: the latest if it is fresh, else the next one.
    pub async fn current(&self) -> Arc<LabView> {
        let mut rx = self.subscribe();
        // The sender lives as long as `self`, so `changed` only fails if the task is gone.
        let _ = rx.changed().await;
        rx.borrow_and_update().clone()
    }

    fn is_fresh(&self, v: &LabView) -> bool {
        v.at.is_some_and(|at| at.elapsed() < 2 * self.inner.period)
    }
}

/// The one task: computes a view every period while anyone subscribes, else waits for one.
async fn run(inner: Arc<Inner>) {
    loop {
        while inner.tx.receiver_count() == 0 {
            inner.wake.notified().await;
        }
        let view = (inner.compute)().await;
        inner.tx.send_replace(Arc::new(view));
        tokio::time::sleep(inner.period).await;
    }
}

impl Published {
    /// A server-sent event stream of `render(view)` for each new view, for as long as the page
    /// listens.
    pub fn events(&self, render: fn(&LabView) -> String) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        use axum::response::sse::{Event, KeepAlive, Sse};
        let stream = futures_util::stream::unfold(self.subscribe(), move |mut rx| async move {
            rx.changed().await.ok()?;
            let data = render(&rx.borrow_and_update());
            Some((Ok::<_, std::convert::Infallible>(Event::default().data(data)), rx))
        });
        Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
    }
}
