//! `bench-mtls`: requests/s and p50/p99 latency of one handler over native mTLS (SVIDs from a
//! real SPIRE agent, `zt-tls` on both sides) against plain HTTP, on loopback, in one run.
//!
//! Run through `scripts/bench-mtls.sh`. Prints a table and ends with `BENCH` lines.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use e2e::bench::{Stats, ms, stats};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use zt_identity::Rule;
use zt_runtime::lab::{Lab, LabSpec, SiteSpec};
use zt_tls::client::ClientOptions;

const PATH: &str = "/ns/bench/sa/client";

/// Runs `concurrency` workers calling `call` for `duration`.
async fn load<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Stats
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0);
            while start.elapsed() < duration {
                let t = Instant::now();
                if call().await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.expect("worker");
        all.extend(l);
        errors += e;
    }
    stats(all, errors, start.elapsed())
}

#[tokio::main]
async fn main() -> anyhow_free::Result {
    zt_tls::install_crypto_provider();
    let args: BTreeMap<String, String> = std::env::args()
        .skip(1)
        .filter_map(|a| a.strip_prefix("--").and_then(|a| a.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let secs: u64 = args.get("seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get("concurrency").and_then(|s| s.parse().ok()).unwrap_or(16);
    let duration = Duration::from_secs(secs);

    eprintln!("starting a SPIRE site (server + agent) in a temp dir ...");
    let dir = e2e::state_dir();
    let spec = LabSpec { state_dir: dir.path().to_path_buf(), sites: vec![SiteSpec::named("a")], ..LabSpec::default() };
    let lab = Lab::up(spec, true).await.map_err(|e| format!("lab: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    lab.register("a", "bench", PATH, &exe, 0).await.map_err(|e| e.to_string())?;
    let endpoint = format!("unix://{}", lab.workload_socket("a").map_err(|e| e.to_string())?.display());
    let source = zt_tls::source::connect(&endpoint, Duration::from_secs(30)).await.map_err(|e| e.to_string())?;
    let td = zt_identity::parse_trust_domain("td", "ztlab.test").map_err(|e| e.to_string())?;
    let me = Arc::new(Rule::exact(&format!("spiffe://ztlab.test{PATH}")).map_err(|e| e.to_string())?);

    // The same handler behind both listeners.
    let router = Router::new().route("/bench", get(|| async { r#"{"ok":true}"# }));
    let plain_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let mtls_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let (plain_port, mtls_port) = (
        plain_l.local_addr().map_err(|e| e.to_string())?.port(),
        mtls_l.local_addr().map_err(|e| e.to_string())?.port(),
    );
    tokio::spawn(axum::serve(plain_l, router.clone()).into_future());
    let server = zt_tls::MtlsServer::new(&source, &td, me.clone()).map_err(|e| e.to_string())?;
    tokio::spawn(server.serve(mtls_l, router, std::future::pending()));

    let plain = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mtls = zt_tls::MtlsClient::new(&source, &td, me, ClientOptions::default()).map_err(|e| e.to_string())?;
    let plain_url: hyper::Uri = format!("http://127.0.0.1:{plain_port}/bench").parse().map_err(|e| format!("{e}"))?;
    let mtls_url = format!("https://127.0.0.1:{mtls_port}/bench");

    let plain_call = {
        let (c, u) = (plain.clone(), plain_url.clone());
        move || {
            let (c, u) = (c.clone(), u.clone());
            async move {
                match c.get(u).await {
                    Ok(r) => r.status().is_success() && r.into_body().collect().await.is_ok(),
                    Err(_) => false,
                }
            }
        }
    };
    let mtls_call = {
        let (c, u) = (mtls.clone(), mtls_url.clone());
        move || {
            let (c, u) = (c.clone(), u.clone());
            async move { c.get(&u).await.is_ok_and(|r| r.status.is_success()) }
        }
    };
    eprintln!("warming up ...");
    load(concurrency, Duration::from_secs(1), plain_call.clone()).await;
    load(concurrency, Duration::from_secs(1), mtls_call.clone()).await;
    eprintln!("measuring: {concurrency} concurrent clients, {secs} s each, keep-alive connections ...");
    let p = load(concurrency, duration, plain_call).await;
    let m = load(concurrency, duration, mtls_call).await;

    println!("{:<8} {:>10} {:>8} {:>10} {:>9} {:>9}", "path", "requests", "errors", "req/s", "p50 ms", "p99 ms");
    for (name, s) in [("plain", &p), ("mtls", &m)] {
        println!("{name:<8} {:>10} {:>8} {:>10.0} {:>9.3} {:>9.3}", s.requests, s.errors, s.rps, ms(s.p50), ms(s.p99));
    }
    println!("BENCH plain_rps {:.0}", p.rps);
    println!("BENCH mtls_rps {:.0}", m.rps);
    println!("BENCH plain_p99_ms {:.3}", ms(p.p99));
    println!("BENCH mtls_vs_plain_rps_ratio {:.3}", m.rps / p.rps);
    println!("BENCH mtls_p99_ms {:.3}", ms(m.p99));
    if p.errors + m.errors > 0 {
        return Err(format!("{} requests failed", p.errors + m.errors).into());
    }
    drop(lab);
    Ok(())
}

/// A tiny `Result` for `main` that prints the error without a backtrace.
mod anyhow_free {
    pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;
}
