//! `bench-mtls`: what native mTLS (SVIDs from a real SPIRE agent, `zt-tls` on both sides) costs
//! against plain TCP, on loopback, in one run, comparing like with like:
//!
//! 1. HTTP/1.1 keep-alive: `--concurrency` workers, each with its own connection, plain and
//!    mTLS (ALPN `http/1.1`): the same number of connections on both paths.
//! 2. HTTP/2 keep-alive: the same workers share one connection per path, h2c (prior knowledge)
//!    against mTLS with ALPN `h2`.
//! 3. New connections: each call opens a TCP connection, on the mTLS path runs a full TLS 1.3
//!    handshake with client certificate (no resumption: zt-tls disables it), sends one
//!    HTTP/1.1 request, reads the answer and closes.
//!
//! Both paths use the same client code (hyper's connection API over a `TcpStream` or a
//! `zt_tls` TLS stream) and the same server stack (hyper-util's auto builder; the mTLS listener
//! is `zt_tls::MtlsServer::serve`, as services use it). Plain and mTLS alternate in time slots
//! (`--slot-ms`, default 500) within each test, so both see the same machine state when other
//! processes use the CPU; each path's rate is its calls over the time of its own slots.
//!
//! Run through `scripts/bench-mtls.sh`. Prints a table and ends with `BENCH` lines.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use e2e::bench::{Stats, ms, stats};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper::rt::{Read, Write};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use zt_identity::Rule;
use zt_runtime::lab::{Lab, LabSpec, SiteSpec};
use zt_tls::connect::{ClientTlsStream, MtlsConnector};

const PATH: &str = "/ns/bench/sa/client";
const TIMEOUT: Duration = Duration::from_secs(10);

type Result<T = (), E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

/// Where the two listeners are and how to reach the mTLS one.
#[derive(Clone)]
struct Ends {
    plain: SocketAddr,
    mtls: SocketAddr,
    /// ALPN `http/1.1`.
    tls_h1: MtlsConnector,
    /// ALPN `h2`.
    tls_h2: MtlsConnector,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Test {
    H1,
    H2,
    NewConnection,
}

/// One worker's way to call one path.
enum Caller {
    /// Its own HTTP/1.1 connection.
    H1(http1::SendRequest<Empty<Bytes>>),
    /// A handle on the path's one HTTP/2 connection.
    H2(http2::SendRequest<Empty<Bytes>>),
    /// A new connection (and handshake, when `tls` is set) per call.
    New { addr: SocketAddr, tls: Option<MtlsConnector> },
}

fn request() -> hyper::Request<Empty<Bytes>> {
    // Host (HTTP/1.1) or :authority (HTTP/2) is the same on both paths.
    hyper::Request::get("http://bench.local/bench").body(Empty::new()).expect("static request")
}

async fn tcp(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// An HTTP/1.1 connection on `io`, its driver spawned.
async fn h1<T: Read + Write + Unpin + Send + 'static>(
    io: T,
) -> Result<(http1::SendRequest<Empty<Bytes>>, tokio::task::JoinHandle<()>)> {
    let (send, conn) = http1::handshake(io).await?;
    Ok((send, tokio::spawn(async move { drop(conn.await) })))
}

/// An HTTP/2 connection on `io`, its driver spawned.
async fn h2<T: Read + Write + Unpin + Send + 'static>(io: T) -> Result<http2::SendRequest<Empty<Bytes>>> {
    let (send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
    tokio::spawn(async move { drop(conn.await) });
    Ok(send)
}

/// Checks that the server chose `want` by ALPN (so that a test measures the protocol it names).
fn check_alpn(tls: &ClientTlsStream, want: &[u8]) -> Result {
    match MtlsConnector::negotiated_alpn(tls) {
        Some(p) if p == want => Ok(()),
        other => Err(format!(
            "the mTLS server chose ALPN {:?}, not {:?}",
            other.map(String::from_utf8_lossy),
            String::from_utf8_lossy(want)
        )
        .into()),
    }
}

impl Caller {
    /// The caller for `test` on the plain (`tls == false`) or mTLS path.
    async fn open(
        test: Test,
        ends: &Ends,
        tls: bool,
        shared_h2: Option<&http2::SendRequest<Empty<Bytes>>>,
    ) -> Result<Self> {
        Ok(match (test, tls) {
            (Test::H1, false) => Self::H1(h1(TokioIo::new(tcp(ends.plain).await?)).await?.0),
            (Test::H1, true) => {
                let stream = ends.tls_h1.connect(tcp(ends.mtls).await?).await?;
                check_alpn(&stream, b"http/1.1")?;
                Self::H1(h1(TokioIo::new(stream)).await?.0)
            }
            (Test::H2, false) => match shared_h2 {
                Some(s) => Self::H2(s.clone()),
                None => Self::H2(h2(TokioIo::new(tcp(ends.plain).await?)).await?),
            },
            (Test::H2, true) => match shared_h2 {
                Some(s) => Self::H2(s.clone()),
                None => {
                    let stream = ends.tls_h2.connect(tcp(ends.mtls).await?).await?;
                    check_alpn(&stream, b"h2")?;
                    Self::H2(h2(TokioIo::new(stream)).await?)
                }
            },
            (Test::NewConnection, false) => Self::New { addr: ends.plain, tls: None },
            (Test::NewConnection, true) => Self::New { addr: ends.mtls, tls: Some(ends.tls_h1.clone()) },
        })
    }

    /// One request; Ok when it answered 200 with a body.
    async fn call(&mut self) -> Result {
        match self {
            Self::H1(send) => {
                send.ready().await?;
                answer(send.send_request(request()).await?).await
            }
            Self::H2(send) => {
                send.ready().await?;
                answer(send.send_request(request()).await?).await
            }
            Self::New { addr, tls } => {
                let tcp = tcp(*addr).await?;
                let (mut send, driver) = match tls {
                    Some(c) => h1(TokioIo::new(c.connect(tcp).await?)).await?,
                    None => h1(TokioIo::new(tcp)).await?,
                };
                answer(send.send_request(request()).await?).await?;
                // Dropping the sender closes the connection (close_notify on mTLS); wait for it.
                drop(send);
                driver.await?;
                Ok(())
            }
        }
    }
}

/// CPU time this process has used so far, all threads, user and system (which includes the
/// kernel's loopback TCP work done on their behalf), from `/proc/self/stat`; `None` off Linux.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ, 100 on every Linux architecture ztlab runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// What one path did in one test: request statistics, and CPU time per call when known.
struct Figures {
    stats: Stats,
    cpu_per_call: Option<Duration>,
}

async fn answer(resp: hyper::Response<hyper::body::Incoming>) -> Result {
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status.is_success() && !body.is_empty() { Ok(()) } else { Err(format!("answer {status}").into()) }
}

/// `concurrency` workers run `test` for `duration`, on the plain path in even time slots and on
/// the mTLS path in odd ones. Per path: statistics over the time of its own slots, and the
/// process's CPU time in its slots per call (client and server together).
async fn run(test: Test, ends: &Ends, concurrency: usize, duration: Duration, slot: Duration) -> Result<[Figures; 2]> {
    // HTTP/2: one connection per path, shared by the workers.
    let (shared_plain, shared_mtls) = if test == Test::H2 {
        let Caller::H2(p) = Caller::open(test, ends, false, None).await? else { unreachable!() };
        let Caller::H2(m) = Caller::open(test, ends, true, None).await? else { unreachable!() };
        (Some(p), Some(m))
    } else {
        (None, None)
    };
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        workers.push([
            Caller::open(test, ends, false, shared_plain.as_ref()).await?,
            Caller::open(test, ends, true, shared_mtls.as_ref()).await?,
        ]);
    }
    let start = Instant::now();
    // CPU time, read at each slot boundary and added to that slot's path.
    let monitor = tokio::spawn(async move {
        let (mut cpu, mut last) = ([Some(Duration::ZERO); 2], cpu_time());
        let mut k = 0u32;
        while slot * k < duration {
            let end = (slot * (k + 1)).min(duration);
            tokio::time::sleep_until((start + end).into()).await;
            let now = cpu_time();
            let i = k as usize % 2;
            cpu[i] = match (cpu[i], last, now) {
                (Some(acc), Some(a), Some(b)) => Some(acc + b.saturating_sub(a)),
                _ => None,
            };
            last = now;
            k += 1;
        }
        cpu
    });
    let mut tasks = Vec::new();
    for mut callers in workers {
        tasks.push(tokio::spawn(async move {
            let mut lat = [Vec::new(), Vec::new()];
            let mut errors = [(0usize, None::<String>), (0, None)];
            loop {
                let at = start.elapsed();
                if at >= duration {
                    break;
                }
                let i = (at.as_nanos() / slot.as_nanos()) as usize % 2;
                let t = Instant::now();
                match tokio::time::timeout(TIMEOUT, callers[i].call()).await {
                    Ok(Ok(())) => lat[i].push(t.elapsed()),
                    Ok(Err(e)) => {
                        errors[i].0 += 1;
                        errors[i].1.get_or_insert_with(|| e.to_string());
                    }
                    Err(_) => {
                        errors[i].0 += 1;
                        errors[i].1.get_or_insert_with(|| format!("no answer in {TIMEOUT:?}"));
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = [Vec::new(), Vec::new()];
    let mut errors = [(0usize, None::<String>), (0, None)];
    for task in tasks {
        let (l, e) = task.await?;
        for i in 0..2 {
            lat[i].extend_from_slice(&l[i]);
            errors[i].0 += e[i].0;
            if errors[i].1.is_none() {
                errors[i].1.clone_from(&e[i].1);
            }
        }
    }
    let elapsed = start.elapsed();
    let mut own = [Duration::ZERO; 2];
    let mut k = 0u32;
    while slot * k < elapsed {
        let from = slot * k;
        own[k as usize % 2] += (from + slot).min(elapsed) - from;
        k += 1;
    }
    for (i, path) in ["plain", "mTLS"].iter().enumerate() {
        if let (n, Some(first)) = &errors[i] {
            return Err(format!("{test:?} {path}: {n} calls failed, the first with: {first}").into());
        }
    }
    let cpu = monitor.await?;
    let [lp, lm] = lat;
    let figures = |i: usize, l: Vec<Duration>| {
        let stats = stats(l, 0, own[i].max(Duration::from_millis(1)));
        let cpu_per_call = cpu[i].filter(|_| stats.requests > 0).map(|c| c.div_f64(stats.requests as f64));
        Figures { stats, cpu_per_call }
    };
    Ok([figures(0, lp), figures(1, lm)])
}

/// The plain listener: the server stack of `zt_tls::MtlsServer::serve` without TLS (hyper-util's
/// auto builder, HTTP/1.1 or h2c by prior knowledge, `TCP_NODELAY`).
async fn serve_plain(listener: TcpListener, router: Router) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(router))
                .await;
        });
    }
}

fn arg<T: std::str::FromStr>(args: &BTreeMap<String, String>, name: &str, default: T) -> T {
    args.get(name).and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result {
    zt_tls::install_crypto_provider();
    let args = e2e::bench::args();
    let secs: u64 = arg(&args, "seconds", 10);
    let concurrency: usize = arg(&args, "concurrency", 16).max(1);
    let slot = Duration::from_millis(arg(&args, "slot-ms", 500u64).max(1));
    let only: Option<String> = args.get("only").cloned();
    let duration = Duration::from_secs(secs);

    eprintln!("starting a SPIRE site (server + agent) in a temp dir ...");
    let dir = e2e::state_dir();
    let spec = LabSpec { state_dir: dir.path().to_path_buf(), sites: vec![SiteSpec::named("a")], ..LabSpec::default() };
    let lab = Lab::up(spec, true).await.map_err(|e| format!("lab: {e}"))?;
    let exe = std::env::current_exe()?;
    lab.register("a", "bench", PATH, &exe, 0).await.map_err(|e| e.to_string())?;
    let endpoint = format!("unix://{}", lab.workload_socket("a").map_err(|e| e.to_string())?.display());
    let source = zt_tls::source::connect(&endpoint, Duration::from_secs(30)).await?;
    let td = zt_identity::parse_trust_domain("td", "ztlab.test")?;
    let me = Arc::new(Rule::exact(&format!("spiffe://ztlab.test{PATH}"))?);

    // The same handler behind both listeners.
    let router = Router::new().route("/bench", get(|| async { r#"{"ok":true}"# }));
    let plain_l = TcpListener::bind("127.0.0.1:0").await?;
    let mtls_l = TcpListener::bind("127.0.0.1:0").await?;
    let ends = Ends {
        plain: plain_l.local_addr()?,
        mtls: mtls_l.local_addr()?,
        tls_h1: MtlsConnector::new(&source, &td, me.clone(), &[b"http/1.1"])?,
        tls_h2: MtlsConnector::new(&source, &td, me.clone(), &[b"h2"])?,
    };
    tokio::spawn(serve_plain(plain_l, router.clone()));
    let server = zt_tls::MtlsServer::new(&source, &td, me)?;
    tokio::spawn(server.serve(mtls_l, router, std::future::pending()));

    let tests = [
        (Test::H1, "h1", "HTTP/1.1 keep-alive"),
        (Test::H2, "h2", "HTTP/2 keep-alive"),
        (Test::NewConnection, "conn", "new connection"),
    ];
    let mut results = Vec::new();
    for (test, key, name) in tests {
        if only.as_deref().is_some_and(|o| o != key) {
            continue;
        }
        eprintln!("{name}: warming up ...");
        run(test, &ends, concurrency, Duration::from_secs(1), slot).await?;
        eprintln!(
            "{name}: {concurrency} concurrent clients, plain and mTLS alternating every {} ms, {secs} s each ...",
            slot.as_millis()
        );
        let figures = run(test, &ends, concurrency, duration * 2, slot).await?;
        results.push((key, name, figures));
    }

    println!(
        "{:<20} {:<6} {:>10} {:>10} {:>9} {:>9} {:>12}",
        "test", "path", "calls", "calls/s", "p50 ms", "p99 ms", "cpu us/call"
    );
    let us = |f: &Figures| f.cpu_per_call.map_or(f64::NAN, e2e::bench::us);
    for (_, name, [p, m]) in &results {
        for (path, f) in [("plain", p), ("mtls", m)] {
            let s = &f.stats;
            println!(
                "{name:<20} {path:<6} {:>10} {:>10.0} {:>9.3} {:>9.3} {:>12.1}",
                s.requests,
                s.rps,
                ms(s.p50),
                ms(s.p99),
                us(f)
            );
        }
    }
    let get = |k: &str| results.iter().find(|r| r.0 == k).map(|r| &r.2);
    for what in ["h1", "h2"] {
        if let Some([p, m]) = get(what) {
            println!("BENCH {what}_plain_rps {:.0}", p.stats.rps);
            println!("BENCH {what}_mtls_rps {:.0}", m.stats.rps);
            println!("BENCH {what}_plain_p99_ms {:.3}", ms(p.stats.p99));
            println!("BENCH {what}_mtls_p99_ms {:.3}", ms(m.stats.p99));
            println!("BENCH {what}_plain_cpu_us_per_req {:.1}", us(p));
            println!("BENCH {what}_mtls_cpu_us_per_req {:.1}", us(m));
            println!("BENCH mtls_vs_plain_cpu_ratio_{what} {:.3}", us(p) / us(m));
        }
    }
    if let Some([p, m]) = get("conn") {
        println!("BENCH plain_connections_per_s {:.0}", p.stats.rps);
        println!("BENCH plain_connection_cpu_us {:.1}", us(p));
        println!("BENCH mtls_handshake_cpu_us {:.1}", us(m));
        println!("BENCH mtls_handshake_p99_ms {:.3}", ms(m.stats.p99));
    }
    if let Some([p, m]) = get("h1") {
        println!("BENCH mtls_vs_plain_rps_ratio_h1 {:.3}", m.stats.rps / p.stats.rps);
    }
    if let Some([p, m]) = get("h2") {
        println!("BENCH mtls_vs_plain_rps_ratio_h2 {:.3}", m.stats.rps / p.stats.rps);
    }
    if let Some([_, m]) = get("conn") {
        println!("BENCH mtls_handshakes_per_s {:.0}", m.stats.rps);
    }
    if let Some([p, m]) = get("h1") {
        println!("BENCH mtls_vs_plain_rps_ratio {:.3}", m.stats.rps / p.stats.rps);
    }
    drop(lab);
    Ok(())
}
