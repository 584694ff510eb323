//! One status task for every tab.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::status::{LabSource, Published};

/// A lab whose status counts how often it is computed.
#[derive(Debug, Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl LabSource for Counting {
    async fn status(&self) -> Result<Vec<ComponentStatus>, String> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(vec![component("backend", "workload", "healthy", None, Some(i64::try_from(n).unwrap_or(0)))])
    }
}

/// Reads one event of each stream in `streams`, in turn.
async fn one_event_each(streams: &mut [axum::body::Body]) {
    for body in streams.iter_mut() {
        let frame = tokio::time::timeout(Duration::from_secs(3), body.frame()).await.expect("an event in time");
        let data = frame.expect("frame").expect("ok").into_data().expect("data");
        assert!(String::from_utf8_lossy(&data).contains("\"name\":\"backend\""), "the published status");
    }
}

#[tokio::test]
async fn many_tabs_cost_what_one_does() {
    let (mut state, _dir) = no_lab_state().await;
    let count = Counting::default();
    state.status = Published::new(count.clone(), None, Duration::from_millis(100));
    assert_eq!(count.0.load(Ordering::SeqCst), 0, "nothing runs before anyone watches");

    // Twenty open dashboards, each following /events, and twenty page loads.
    let start = std::time::Instant::now();
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut tab = state.clone();
        let req = signed_get(&mut tab, "/events");
        let resp = router(tab).oneshot(req).await.expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        streams.push(resp.into_body());
    }
    for _ in 0..20 {
        let (status, html) = get_page(state.clone(), "/dashboard").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(r#"<tr data-name="backend">"#), "{html}");
    }
    for _ in 0..5 {
        one_event_each(&mut streams).await;
    }
    let ticks = start.elapsed().as_millis() / 100 + 1;
    let computed = count.0.load(Ordering::SeqCst);
    // Each round of events is one computation shared by all twenty streams (and the pages),
    // not one per tab: per tab it would be at least 20 x 5 = 100.
    assert!(
        (5..=usize::try_from(ticks).unwrap_or(usize::MAX) + 3).contains(&computed),
        "{computed} computations in {ticks} periods for 20 streams and 20 pages"
    );

    // Every tab closed: the task stops computing.
    drop(streams);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let idle = count.0.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(count.0.load(Ordering::SeqCst), idle, "nobody watches: no computation");
}
