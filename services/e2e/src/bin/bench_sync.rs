//! `bench-sync`: how fast the central entry manager gets entries onto two real SPIRE servers.
//!
//! 1. Create→SYNCED latency at both sites, one entry at a time: p50/p99 over `--latency-entries`
//!    (default 200), measured from the `CreateEntry` call to the second site's SYNCED update on
//!    `StreamSyncUpdates`.
//! 2. `--bulk-entries` (default 10,000) entries through `BatchCreateEntries` until every one is
//!    SYNCED at both sites, against the time `spire-server entry create -data` takes to load the
//!    same entries straight into one fresh SPIRE server (the floor), in the same run.
//!
//! Run through `scripts/bench-sync.sh`; it ends with `BENCH` lines.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::bench::{ms, percentile};
use e2e::{EntryLab, entry_lab, site, spec, state_dir};
use zt_entry_api::pb;
use zt_runtime::lab::Lab;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn entry(i: usize, prefix: &str) -> pb::EntrySpec {
    pb::EntrySpec {
        spiffe_id: format!("spiffe://ztlab.test/ns/{prefix}/sa/w{i}"),
        parent_id: "spiffe://ztlab.test/ztlab/nodes/local".into(),
        selectors: vec![pb::Selector { r#type: "unix".into(), value: format!("uid:{}", 100_000 + i) }],
        site_ids: vec!["a".into(), "b".into()],
        ..Default::default()
    }
}

async fn latency(lab: &EntryLab, n: usize) -> Res<Vec<Duration>> {
    let mut stream = lab.admin.sync().stream_sync_updates(pb::StreamSyncUpdatesRequest::default()).await?.into_inner();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let e = lab
            .admin
            .entries()
            .create_entry(pb::CreateEntryRequest { entry: Some(entry(i, "lat")) })
            .await?
            .into_inner();
        let mut synced = std::collections::BTreeSet::new();
        while synced.len() < 2 {
            let u = tokio::time::timeout(Duration::from_secs(30), stream.message()).await??.ok_or("stream ended")?;
            if u.entry_id == e.id && u.state == pb::SyncState::Synced as i32 {
                synced.insert(u.site_id);
            }
        }
        out.push(t.elapsed());
    }
    out.sort();
    Ok(out)
}

async fn bulk_central(lab: &EntryLab, n: usize) -> Res<Duration> {
    let entries: Vec<pb::EntrySpec> = (0..n).map(|i| entry(i, "bulk")).collect();
    let t = Instant::now();
    lab.admin.entries().batch_create_entries(pb::BatchCreateEntriesRequest { entries }).await?;
    eprintln!("    central store accepted {n} entries in {:.2} s", t.elapsed().as_secs_f64());
    let deadline = t + Duration::from_secs(900);
    let mut last: HashMap<String, u32> = HashMap::new();
    loop {
        let mut done = true;
        for s in ["a", "b"] {
            let h = lab.admin.sites().get_site_health(pb::GetSiteHealthRequest { id: s.into() }).await?.into_inner();
            if last.get(s) != Some(&h.synced) {
                eprintln!(
                    "    site {s}: {} synced, {} pending, {} failed ({:.1} s)",
                    h.synced,
                    h.pending,
                    h.failed,
                    t.elapsed().as_secs_f64()
                );
                last.insert(s.into(), h.synced);
            }
            // The latency phase left its entries behind; count only these.
            done &= h.pending == 0 && h.failed == 0 && h.synced as usize >= n;
        }
        if done {
            return Ok(t.elapsed());
        }
        if Instant::now() > deadline {
            return Err("bulk sync did not finish in 15 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn bulk_floor(n: usize) -> Res<Duration> {
    let dir = state_dir();
    let lab = Lab::up(spec(&dir, vec![site("floor", "ztlab.test", true)]), true).await?;
    let paths = lab.site_paths("floor")?;
    let data: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let e = entry(i, "bulk");
            serde_json::json!({
                "spiffe_id": e.spiffe_id,
                "parent_id": e.parent_id,
                "selectors": [{"type": "unix", "value": format!("uid:{}", 100_000 + i)}],
            })
        })
        .collect();
    let file = dir.path().join("entries.json");
    std::fs::write(&file, serde_json::json!({ "entries": data }).to_string())?;
    let t = Instant::now();
    zt_runtime::spire::server_cli(&paths, &["entry", "create", "-data", &file.display().to_string()]).await?;
    let took = t.elapsed();
    let count = zt_runtime::spire::server_cli(&paths, &["entry", "count"]).await?;
    eprintln!("    spire-server entry create -data: {n} entries in {:.2} s ({})", took.as_secs_f64(), count.trim());
    Ok(took)
}

#[tokio::main]
async fn main() -> Res<()> {
    zt_tls::install_crypto_provider();
    let arg = |name: &str, default: usize| {
        std::env::args()
            .filter_map(|a| a.strip_prefix(&format!("--{name}=")).and_then(|v| v.parse().ok()))
            .next()
            .unwrap_or(default)
    };
    let lat_n = arg("latency-entries", 200);
    let bulk_n = arg("bulk-entries", 10_000);

    eprintln!("starting the lab: mgmt PostgreSQL, SPIRE sites a and b, entry-manager, two site agents ...");
    let dir = state_dir();
    let lab = entry_lab(&dir, 30).await;

    eprintln!("1. create -> SYNCED at both sites, {lat_n} entries one at a time ...");
    let lat = latency(&lab, lat_n).await?;
    eprintln!("2. floor: {bulk_n} entries straight into one fresh SPIRE server ...");
    let floor = bulk_floor(bulk_n).await?;
    eprintln!("3. {bulk_n} entries through BatchCreateEntries until SYNCED at both sites ...");
    let central = bulk_central(&lab, bulk_n).await?;

    println!(
        "create->SYNCED (both sites), {} entries: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default())
    );
    println!(
        "{bulk_n} entries: central to both sites {:.2} s; spire-server entry create -data into one server {:.2} s",
        central.as_secs_f64(),
        floor.as_secs_f64()
    );
    println!("BENCH sync_create_to_synced_p50_ms {:.1}", ms(percentile(&lat, 0.5)));
    println!("BENCH sync_create_to_synced_p99_ms {:.1}", ms(percentile(&lat, 0.99)));
    println!("BENCH sync_10k_central_seconds {:.2}", central.as_secs_f64());
    println!("BENCH sync_10k_spire_direct_seconds {:.2}", floor.as_secs_f64());
    println!("BENCH sync_10k_vs_spire_direct_ratio {:.3}", central.as_secs_f64() / floor.as_secs_f64());
    drop(lab);
    Ok(())
}
