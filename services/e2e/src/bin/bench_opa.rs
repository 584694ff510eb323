//! `bench-opa`: latency of the document decision (`data.ztlab.documents.decision`, the nine
//! scenarios of issue 5 in turn), p50/p99, three ways in one run:
//! 1. in process: the regorus engine as the opa service calls it (`PolicyStore::eval`);
//! 2. over mTLS: the `opa` service (real binary, SVID from a real SPIRE agent), called as the
//!    document service with `zt-tls`;
//! 3. a real `opa run --server` on the same policies and inputs, also over mTLS with SVIDs from
//!    the same agent (`--authentication=tls`), called with the same client.
//!
//! Every answer is checked against the expected decision. Run through `scripts/bench-opa.sh`.
//! Prints a table and ends with `BENCH` lines.

use e2e::bench::{Stats, ms, stats, us};
use e2e::pem;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opa::scenarios::{DECISION_PATH, NINE};
use opa::{DataPath, PolicyStore};
use serde_json::{Value, json};
use zt_identity::Rule;
use zt_runtime::lab::Lab;
use zt_tls::MtlsClient;
use zt_tls::client::ClientOptions;

const DOCUMENT: &str = "/ns/demo/sa/document";
const OPA: &str = "/ns/demo/sa/opa";
const REAL_OPA: &str = "/ns/bench/sa/opa-server";
const TD: &str = "ztlab.test";

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The nine scenarios' request bodies and expected answers, in turn.
fn cases() -> Vec<(Value, Value)> {
    NINE.iter().map(|s| (json!({"input": s.input(TD)}), json!({"result": s.expected()}))).collect()
}

/// The in-process engine, on this thread, for `duration`.
fn in_process(store: &PolicyStore, duration: Duration) -> Stats {
    let path = DataPath::parse(DECISION_PATH);
    let inputs: Vec<(Value, Value)> = NINE.iter().map(|s| (s.input(TD), s.expected())).collect();
    let (mut lat, mut errors) = (Vec::new(), 0);
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < duration {
        let (input, want) = &inputs[i % inputs.len()];
        i += 1;
        let t = Instant::now();
        let got = store.eval(&path, Some(input.clone()));
        let took = t.elapsed();
        match got {
            Ok(Some(v)) if &v == want => lat.push(took),
            _ => errors += 1,
        }
    }
    stats(lat, errors, start.elapsed())
}

/// `concurrency` workers POSTing the cases to `url` for `duration`.
async fn over_https(client: &MtlsClient, url: &str, concurrency: usize, duration: Duration) -> Stats {
    let cases = Arc::new(cases());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, url, cases) = (client.clone(), url.to_owned(), cases.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0, w);
            while start.elapsed() < duration {
                let (body, want) = &cases[i % cases.len()];
                i += 1;
                let t = Instant::now();
                let resp = client.request(hyper::Method::POST, &url, Some(body)).await;
                let took = t.elapsed();
                match resp {
                    Ok(r) if r.status.is_success() && r.json::<Value>().is_ok_and(|v| &v == want) => lat.push(took),
                    Ok(r) => {
                        if errors == 0 {
                            eprintln!(
                                "unexpected answer from {url}: {} {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            );
                        }
                        errors += 1;
                    }
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("request to {url} failed: {e}");
                        }
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap_or_default();
        all.extend(l);
        errors += e;
    }
    stats(all, errors, start.elapsed())
}

/// The `--write-svid=<dir>` mode: fetch this process's X.509-SVID from the Workload API and
/// write it as `svid.pem` and `svid.key` (for the real OPA server's TLS).
async fn write_svid(dir: &Path) -> Result {
    let endpoint = std::env::var("SPIFFE_ENDPOINT_SOCKET")?;
    let svid = zt_tls::source::check_identity(&endpoint, Duration::from_secs(30)).await?;
    let chain: String = svid.cert_chain().iter().map(|c| pem("CERTIFICATE", c.as_bytes())).collect();
    std::fs::write(dir.join("svid.pem"), chain)?;
    std::fs::write(dir.join("svid.key"), pem("PRIVATE KEY", svid.private_key().as_bytes()))?;
    Ok(())
}

/// Starts `opa run --server` over mTLS on the policies, with an SVID issued to a copy of this
/// binary registered as `REAL_OPA`. Returns the child (killed on drop) and its port.
async fn real_opa(lab: &Lab, policies: &Path, files: &Path) -> Result<(tokio::process::Child, u16)> {
    let opa_bin = zt_runtime::binaries::Tool::Opa
        .require()
        .map_err(|e| format!("{e}: run ./scripts/install-infra.sh --with-test-tools"))?;
    let me = std::env::current_exe()?;
    let exe = lab.install_binary("bench-opa-svid", &me)?;
    lab.register("a", "bench-opa-svid", REAL_OPA, &exe, 0).await?;
    let socket = format!("unix://{}", lab.workload_socket("a")?.display());
    let status = tokio::process::Command::new(&exe)
        .arg(format!("--write-svid={}", files.display()))
        .env("SPIFFE_ENDPOINT_SOCKET", &socket)
        .status()
        .await?;
    if !status.success() {
        return Err("could not fetch an SVID for the real OPA server".into());
    }
    std::fs::copy(lab.site_paths("a")?.bundle(), files.join("bundle.pem"))?;
    let port = zt_runtime::ports::free_port()?;
    let log = std::fs::File::create(files.join("opa-server.log"))?;
    let child = tokio::process::Command::new(opa_bin)
        .args(["run", "--server", "--log-level", "error", "--ignore", "*_test.rego"])
        .arg(format!("--addr=127.0.0.1:{port}"))
        .arg("--authentication=tls")
        .arg(format!("--tls-cert-file={}", files.join("svid.pem").display()))
        .arg(format!("--tls-private-key-file={}", files.join("svid.key").display()))
        .arg(format!("--tls-ca-cert-file={}", files.join("bundle.pem").display()))
        .arg(policies)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    Ok((child, port))
}

/// Waits until `url` answers 200.
async fn wait_ready(client: &MtlsClient, url: &str, timeout: Duration) -> Result {
    let deadline = Instant::now() + timeout;
    loop {
        match client.get(url).await {
            Ok(r) if r.status.is_success() => return Ok(()),
            other if Instant::now() >= deadline => return Err(format!("{url} not ready: {other:?}").into()),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::main]
async fn main() -> Result {
    zt_tls::install_crypto_provider();
    let args = e2e::bench::args();
    if let Some(dir) = args.get("write-svid") {
        return write_svid(Path::new(dir)).await;
    }
    let secs: u64 = args.get("seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrency: usize = args.get("concurrency").and_then(|s| s.parse().ok()).unwrap_or(1);
    let duration = Duration::from_secs(secs);
    let policies: PathBuf = match args.get("policies") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/rego"),
    }
    .canonicalize()?;

    // 1. In process.
    eprintln!("in process: regorus on {} ...", policies.display());
    let store = PolicyStore::open(&policies)?;
    in_process(&store, Duration::from_secs(1));
    let inproc = in_process(&store, duration);

    // 2. The opa service over mTLS.
    eprintln!("starting a SPIRE site and the opa service in a temp dir ...");
    let dir = e2e::state_dir();
    let mut spec = e2e::spec(&dir, vec![e2e::site("a", TD, true)]);
    let (mut opa_spec, opa_port) = e2e::service("opa", "opa", "a", OPA, 0);
    opa_spec.env.insert("ZT_POLICY_DIR".into(), policies.display().to_string());
    spec.workloads.push(opa_spec);
    let lab = Lab::up(spec, true).await.map_err(|e| format!("lab: {e}"))?;
    let me = std::env::current_exe()?;
    lab.register("a", "bench-opa", DOCUMENT, &me, 0).await?;
    let endpoint = format!("unix://{}", lab.workload_socket("a")?.display());
    let source = zt_tls::source::connect(&endpoint, Duration::from_secs(30)).await?;
    let td = zt_identity::parse_trust_domain("td", TD)?;
    let client_for = |path: &str| -> Result<MtlsClient> {
        let rule = Arc::new(Rule::exact(&format!("spiffe://{TD}{path}"))?);
        Ok(MtlsClient::new(&source, &td, rule, ClientOptions::default())?)
    };
    let ours = client_for(OPA)?;
    let ours_url = format!("https://127.0.0.1:{opa_port}/v1/data/{DECISION_PATH}");
    eprintln!("over mTLS: the opa service ...");
    over_https(&ours, &ours_url, concurrency, Duration::from_secs(1)).await;
    let mtls = over_https(&ours, &ours_url, concurrency, duration).await;

    // 3. A real OPA server.
    let files = tempfile::tempdir()?;
    let (mut child, port) = real_opa(&lab, &policies, files.path()).await?;
    let theirs = client_for(REAL_OPA)?;
    let ready = wait_ready(&theirs, &format!("https://127.0.0.1:{port}/health"), Duration::from_secs(20)).await;
    if let Err(e) = ready {
        let log = std::fs::read_to_string(files.path().join("opa-server.log")).unwrap_or_default();
        return Err(format!("{e}\nopa server log:\n{log}").into());
    }
    let theirs_url = format!("https://127.0.0.1:{port}/v1/data/{DECISION_PATH}");
    eprintln!("over mTLS: opa run --server ...");
    over_https(&theirs, &theirs_url, concurrency, Duration::from_secs(1)).await;
    let real = over_https(&theirs, &theirs_url, concurrency, duration).await;
    let _ = child.kill().await;

    println!("decision latency, {secs} s each, {concurrency} concurrent client(s) over keep-alive mTLS connections");
    println!("{:<28} {:>10} {:>7} {:>10} {:>11} {:>11}", "path", "requests", "errors", "req/s", "p50", "p99");
    let row = |name: &str, s: &Stats, unit: &str, f: fn(Duration) -> f64| {
        println!(
            "{name:<28} {:>10} {:>7} {:>10.0} {:>8.3} {unit} {:>8.3} {unit}",
            s.requests,
            s.errors,
            s.rps,
            f(s.p50),
            f(s.p99)
        );
    };
    row("in process (regorus)", &inproc, "us", us);
    row("opa service over mTLS", &mtls, "ms", ms);
    row("opa run --server over mTLS", &real, "ms", ms);
    println!("BENCH decision_p50_us_in_process {:.1}", us(inproc.p50));
    println!("BENCH decision_p50_ms_over_mtls {:.3}", ms(mtls.p50));
    println!("BENCH decision_p50_ms_opa_server {:.3}", ms(real.p50));
    println!("BENCH decision_p99_ms_opa_server {:.3}", ms(real.p99));
    println!("BENCH decision_p99_us_in_process {:.1}", us(inproc.p99));
    println!("BENCH decision_p99_ms_over_mtls {:.3}", ms(mtls.p99));
    println!("BENCH decision_vs_opa_server_ratio {:.3}", mtls.p99.as_secs_f64() / real.p99.as_secs_f64());
    let errors = inproc.errors + mtls.errors + real.errors;
    drop(lab);
    if errors > 0 {
        return Err(format!("{errors} decisions failed or were wrong").into());
    }
    Ok(())
}
