//! `bench-app`: latency of the app chain, in one lab started through `ztlab up` (real SPIRE,
//! Envoy, OpenBao, PostgreSQL, spiffe-helper):
//! 1. Run Demo: `POST /api/run-demo` on the frontend (frontend → its Envoy → the backend's Envoy
//!    (mTLS, RBAC) → backend → PostgreSQL and OpenBao evidence), p50/p99 and the share of runs
//!    that answered `{"ok": true}`;
//! 2. through both Envoys: `GET /api/orders` sent as plain HTTP into the frontend's outbound
//!    Envoy, against the same request sent directly to the backend's plain listener. The two
//!    alternate in time slots (`--slot-ms`) over the same run, so both see the same machine
//!    state; each one's req/s is its requests over the time of its own slots.
//!
//! Keep-alive connections from one reused client, `--concurrency` sequential workers (1 by
//! default). Run through `scripts/bench-app.sh`. Prints a table and ends with
//! `BENCH run_demo_p99_ms <x>` and `BENCH envoy_chain_p99_overhead_ms <x>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::applab::{AppLab, AppLabOptions};
use e2e::bench::{Stats, ms, stats};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;
type Http = Client<HttpConnector, Full<Bytes>>;

/// How long one request may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One keep-alive client for every request of the bench (`TCP_NODELAY`, pooled connections).
fn client() -> Http {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(300)).build(connector)
}

/// A request and what a good answer looks like.
#[derive(Debug, Clone)]
struct Target {
    method: hyper::Method,
    url: String,
    check: fn(u16, &[u8]) -> std::result::Result<(), String>,
}

/// `GET /api/orders`: 200 with an `orders` array.
fn orders_ok(status: u16, body: &[u8]) -> std::result::Result<(), String> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if status == 200 && v["orders"].is_array() {
        Ok(())
    } else {
        Err(format!("{status} {}", String::from_utf8_lossy(body)))
    }
}

/// `POST /api/run-demo`: 200 with `"ok": true`.
fn demo_ok(status: u16, body: &[u8]) -> std::result::Result<(), String> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if status == 200 && v["ok"] == true { Ok(()) } else { Err(format!("{status} {}", String::from_utf8_lossy(body))) }
}

/// One request, timed: the latency, or what went wrong.
async fn call(client: &Http, t: &Target) -> std::result::Result<Duration, String> {
    let req = hyper::Request::builder()
        .method(t.method.clone())
        .uri(&t.url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let answer = tokio::time::timeout(TIMEOUT, async {
        let resp = client.request(req).await.map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
        Ok::<_, String>((status, body))
    })
    .await;
    let took = start.elapsed();
    let (status, body) = answer.map_err(|_| format!("no answer in {TIMEOUT:?}"))??;
    (t.check)(status, &body)?;
    Ok(took)
}

/// `concurrency` workers calling the targets for `duration`: target `i` in the time slots
/// `k` with `k % targets.len() == i`. Per target: its statistics, over the time of its slots,
/// and its first error.
async fn run(
    client: &Http,
    targets: &[Target],
    concurrency: usize,
    duration: Duration,
    slot: Duration,
) -> Vec<(Stats, Option<String>)> {
    let targets: Arc<[Target]> = targets.into();
    let n = targets.len();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, targets) = (client.clone(), targets.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![Vec::new(); n];
            let mut errors = vec![(0usize, None::<String>); n];
            loop {
                let at = start.elapsed();
                if at >= duration {
                    break;
                }
                let i = (at.as_nanos() / slot.as_nanos().max(1)) as usize % n;
                match call(&client, &targets[i]).await {
                    Ok(took) => lat[i].push(took),
                    Err(e) => {
                        errors[i].0 += 1;
                        if errors[i].1.is_none() {
                            errors[i].1 = Some(e);
                        }
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = vec![Vec::new(); n];
    let mut errors = vec![(0usize, None::<String>); n];
    for task in tasks {
        let Ok((l, e)) = task.await else { continue };
        for ((all, l), (acc, got)) in lat.iter_mut().zip(l).zip(errors.iter_mut().zip(e)) {
            all.extend(l);
            acc.0 += got.0;
            if acc.1.is_none() {
                acc.1 = got.1;
            }
        }
    }
    let elapsed = start.elapsed();
    // The time of each target's slots within the run.
    let mut own = vec![Duration::ZERO; n];
    let mut k = 0u32;
    while slot * k < elapsed {
        let from = slot * k;
        own[k as usize % n] += (from + slot).min(elapsed) - from;
        k += 1;
    }
    lat.into_iter()
        .zip(errors)
        .zip(own)
        .map(|((l, (count, first)), time)| (stats(l, count, time.max(Duration::from_millis(1))), first))
        .collect()
}

/// Waits until Run Demo answers `ok` (the chain is up end to end).
async fn wait_ready(client: &Http, demo: &Target, timeout: Duration) -> Result {
    let deadline = Instant::now() + timeout;
    loop {
        match call(client, demo).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(format!("Run Demo is not ok: {e}").into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[tokio::main]
async fn main() -> Result {
    let args: BTreeMap<String, String> = std::env::args()
        .skip(1)
        .filter_map(|a| a.strip_prefix("--").and_then(|a| a.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let secs: u64 = args.get("seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get("concurrency").and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let slot = Duration::from_millis(args.get("slot-ms").and_then(|s| s.parse().ok()).unwrap_or(500).max(1));
    let rust_log = args.get("rust-log").cloned().unwrap_or_else(|| "info".into());
    let duration = Duration::from_secs(secs);

    eprintln!("starting the lab (ztlab up, RUST_LOG={rust_log}) in a temp dir ...");
    let started = Instant::now();
    let lab =
        tokio::task::spawn_blocking(move || AppLab::start(AppLabOptions { rust_log, ..AppLabOptions::default() }))
            .await
            .map_err(|e| format!("the lab did not start: {e}"))?;
    eprintln!("lab up in {:.1} s", started.elapsed().as_secs_f64());

    let p = lab.ports;
    let demo = Target {
        method: hyper::Method::POST,
        url: format!("http://127.0.0.1:{}/api/run-demo", p.frontend),
        check: demo_ok,
    };
    let chain = Target {
        method: hyper::Method::GET,
        url: format!("http://127.0.0.1:{}/api/orders", p.frontend_envoy),
        check: orders_ok,
    };
    let direct = Target {
        method: hyper::Method::GET,
        url: format!("http://127.0.0.1:{}/api/orders", p.backend),
        check: orders_ok,
    };
    let client = client();
    wait_ready(&client, &demo, Duration::from_secs(60)).await?;

    eprintln!("warming up ...");
    let pair = [chain, direct];
    run(&client, &pair, concurrency, Duration::from_secs(2), slot).await;
    run(&client, std::slice::from_ref(&demo), concurrency, Duration::from_secs(1), slot).await;

    eprintln!("through both Envoys and direct, alternating every {} ms, {secs} s each ...", slot.as_millis());
    let mut measured = run(&client, &pair, concurrency, duration * 2, slot).await.into_iter();
    let (chain, chain_err) = measured.next().ok_or("no chain figures")?;
    let (direct, direct_err) = measured.next().ok_or("no direct figures")?;
    eprintln!("Run Demo, {secs} s ...");
    let (demo, demo_err) =
        run(&client, std::slice::from_ref(&demo), concurrency, duration, slot).await.pop().ok_or("no demo figures")?;
    drop(lab);

    println!("app chain, {secs} s per path, {concurrency} concurrent client(s) over keep-alive connections");
    println!("{:<40} {:>9} {:>7} {:>9} {:>9} {:>9}", "path", "requests", "errors", "req/s", "p50 ms", "p99 ms");
    let row = |name: &str, s: &Stats| {
        println!("{name:<40} {:>9} {:>7} {:>9.0} {:>9.3} {:>9.3}", s.requests, s.errors, s.rps, ms(s.p50), ms(s.p99));
    };
    row("run demo (POST /api/run-demo)", &demo);
    row("through both Envoys (GET /api/orders)", &chain);
    row("direct to backend (GET /api/orders)", &direct);
    for (name, err) in [("run demo", &demo_err), ("through both Envoys", &chain_err), ("direct", &direct_err)] {
        if let Some(e) = err {
            println!("first error, {name}: {e}");
        }
    }
    let ok_rate = demo.requests as f64 / (demo.requests + demo.errors).max(1) as f64;
    println!("BENCH run_demo_p50_ms {:.3}", ms(demo.p50));
    println!("BENCH run_demo_ok_rate {ok_rate:.4}");
    println!("BENCH run_demo_rps {:.1}", demo.rps);
    println!("BENCH envoy_chain_p50_ms {:.3}", ms(chain.p50));
    println!("BENCH envoy_chain_p99_ms {:.3}", ms(chain.p99));
    println!("BENCH envoy_chain_rps {:.0}", chain.rps);
    println!("BENCH direct_p50_ms {:.3}", ms(direct.p50));
    println!("BENCH direct_p99_ms {:.3}", ms(direct.p99));
    println!("BENCH direct_rps {:.0}", direct.rps);
    println!("BENCH envoy_chain_p50_overhead_ms {:.3}", ms(chain.p50) - ms(direct.p50));
    println!("BENCH run_demo_p99_ms {:.3}", ms(demo.p99));
    println!("BENCH envoy_chain_p99_overhead_ms {:.3}", ms(chain.p99) - ms(direct.p99));
    let errors = demo.errors + chain.errors + direct.errors;
    if errors > 0 {
        return Err(format!(
            "{errors} requests failed (run demo {}, chain {}, direct {})",
            demo.errors, chain.errors, direct.errors
        )
        .into());
    }
    Ok(())
}
