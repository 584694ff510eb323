//! Helpers for ztlab's end-to-end tests. Every test starts its own lab of real SPIRE servers,
//! agents and ztlab services through `zt-runtime` (the same code `ztlab up` uses), in a
//! temporary state dir with free ports, and stops it when the [`Lab`] is dropped.
//!
//! The service binaries must be built first (`cargo build --workspace`); `scripts/test.sh`
//! does that.

pub mod applab;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;
use zt_runtime::lab::{Lab, LabSpec, SiteSpec, WorkloadSpec};
use zt_runtime::ports::free_port;

pub use document::CheckReport;

/// Where cargo put the workspace binaries (`target/<profile>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // Tests run from target/<profile>/deps/<test>-<hash>, binaries from target/<profile>/<bin>.
    let dir = exe.parent().expect("exe dir");
    if dir.file_name().is_some_and(|n| n == "deps") { dir.parent().expect("target dir") } else { dir }.to_path_buf()
}

/// A workspace binary. Panics with what to run if it is missing.
pub fn bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(p.is_file(), "{} is not built: run `cargo build --workspace` first (scripts/test.sh does)", p.display());
    p
}

/// A short temporary state dir (unix socket paths must stay under 108 bytes).
pub fn state_dir() -> TempDir {
    tempfile::Builder::new().prefix("ztl").tempdir_in("/tmp").expect("temp dir")
}

/// A site of trust domain `td`.
pub fn site(name: &str, td: &str, shared_root: bool) -> SiteSpec {
    SiteSpec { name: name.into(), trust_domain: td.into(), shared_root, ..SiteSpec::named(name) }
}

/// A spec with these sites and no workloads, in `dir`.
pub fn spec(dir: &TempDir, sites: Vec<SiteSpec>) -> LabSpec {
    LabSpec { state_dir: dir.path().to_path_buf(), sites, ..LabSpec::default() }
}

/// A ztlab service (`opa` or `document`) as a workload of `site`, on free ports. Returns the
/// spec and its mTLS port.
pub fn service(binary: &str, name: &str, site: &str, spiffe_path: &str, x509_ttl: u64) -> (WorkloadSpec, u16) {
    let listen = free_port().expect("port");
    let ops = free_port().expect("port");
    let spec = WorkloadSpec {
        env: BTreeMap::from([("ZT_LISTEN_ADDR".to_owned(), format!("127.0.0.1:{listen}"))]),
        ops_port: ops,
        ports: BTreeMap::from([("listen".to_owned(), listen)]),
        x509_svid_ttl_secs: x509_ttl,
        ..WorkloadSpec::new(name, site, spiffe_path, bin(binary))
    };
    (spec, listen)
}

/// Starts a lab: the sites, then `opa` at site `a` (only `document` of `ztlab.test` may call
/// it). Returns the lab and opa's port.
pub async fn lab_with_opa(dir: &TempDir, sites: Vec<SiteSpec>, x509_ttl: u64) -> (Lab, u16) {
    let mut spec = spec(dir, sites);
    let (opa, port) = service("opa", "opa", "a", "/ns/demo/sa/opa", x509_ttl);
    spec.workloads.push(opa);
    let lab = Lab::up(spec, true).await.unwrap_or_else(|e| panic!("lab did not start: {e}"));
    (lab, port)
}

/// A run of `document check-opa` from its own binary copy.
#[derive(Debug, Clone)]
pub struct Probe<'a> {
    /// Binary copy name (its `unix:path` selector).
    pub name: &'a str,
    /// The site whose agent it asks for an SVID.
    pub site: &'a str,
    /// Register it with this SPIFFE ID path first (`None`: leave it unregistered).
    pub spiffe_path: Option<&'a str>,
    /// Its entry's X.509-SVID TTL (0: the site default).
    pub x509_ttl: u64,
    /// How long to keep calling.
    pub duration: Duration,
    /// How long to wait for an SVID at start.
    pub svid_wait_secs: u64,
}

impl Probe<'_> {
    /// A one-shot probe registered as `spiffe_path` at `site`.
    pub fn new<'a>(name: &'a str, site: &'a str, spiffe_path: Option<&'a str>) -> Probe<'a> {
        Probe { name, site, spiffe_path, x509_ttl: 0, duration: Duration::ZERO, svid_wait_secs: 20 }
    }

    /// Installs the document binary as `name`, registers it, and runs `document check-opa`
    /// against opa at `opa_port`. Returns the report, stderr and the exit code.
    pub async fn run(&self, lab: &Lab, opa_port: u16) -> (CheckReport, String, i32) {
        let exe = lab.install_binary(self.name, &bin("document")).expect("install");
        if let Some(path) = self.spiffe_path {
            lab.register(self.site, self.name, path, &exe, self.x509_ttl).await.expect("register");
        }
        let td = lab.site_spec(self.site).expect("site").trust_domain.clone();
        let out = tokio::process::Command::new(&exe)
            .args(["check-opa", "--duration", &format!("{}ms", self.duration.as_millis()), "--interval", "100ms"])
            .env(
                "SPIFFE_ENDPOINT_SOCKET",
                format!("unix://{}", lab.workload_socket(self.site).expect("socket").display()),
            )
            .env("ZT_TRUST_DOMAIN", td)
            .env("ZT_OPA_URL", format!("https://127.0.0.1:{opa_port}"))
            .env("ZT_SVID_WAIT_SECS", self.svid_wait_secs.to_string())
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("run document check-opa");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = serde_json::from_str(stdout.trim()).unwrap_or_default();
        (report, stderr, out.status.code().unwrap_or(-1))
    }
}

/// A lab with entry management: the mgmt PostgreSQL, sites `a` and `b` (one trust domain,
/// shared root), entry-manager (at `a`) and a site agent per site.
#[derive(Debug)]
pub struct EntryLab {
    /// The lab (stops everything when dropped).
    pub lab: Lab,
    /// An Admin client (the bootstrap admin API key) on the operator listener.
    pub admin: zt_entry_api::client::Client,
    /// The operator listener, `127.0.0.1:<port>`.
    pub operator_addr: String,
    /// The mTLS listener, `127.0.0.1:<port>`.
    pub mtls_addr: String,
    /// Site a's trust bundle (PEM).
    pub bundle: Vec<u8>,
}

/// Starts an [`EntryLab`] in `dir`; site agents resync fully every `full_resync_secs`.
pub async fn entry_lab(dir: &TempDir, full_resync_secs: u64) -> EntryLab {
    entry_lab_with(dir, full_resync_secs, false).await
}

/// Like [`entry_lab`]; with `oidc`, OpenBao runs as the OIDC provider for the lab users
/// (admin, operator, developer, viewer), and entry-manager accepts their tokens.
pub async fn entry_lab_with(dir: &TempDir, full_resync_secs: u64, oidc: bool) -> EntryLab {
    use zt_runtime::entrymgmt::{self, EntryMgmtSpec};
    let mut spec = spec(dir, vec![site("a", "ztlab.test", true), site("b", "ztlab.test", true)]);
    spec.mgmt_db = true;
    let port = || free_port().expect("port");
    let bao_port = port();
    if oidc {
        spec.openbao = Some(zt_runtime::lab::OpenBaoSpec { port: bao_port, users: entrymgmt::lab_users() });
    }
    let em = EntryMgmtSpec {
        site: "a".into(),
        entry_manager: bin("entry-manager"),
        site_agent: bin("site-agent"),
        listen_port: port(),
        operator_port: port(),
        ops_port: port(),
        agent_ops_ports: BTreeMap::from([("a".to_owned(), port()), ("b".to_owned(), port())]),
        full_resync_secs,
        oidc: oidc.then(|| entrymgmt::lab_oidc(bao_port)),
    };
    spec.workloads = entrymgmt::workloads(&spec, &em);
    let lab = Lab::up(spec, true).await.unwrap_or_else(|e| panic!("entry lab did not start: {e}"));
    let bundle = std::fs::read(lab.site_paths("a").expect("site").bundle()).expect("bundle");
    let key = std::fs::read_to_string(entrymgmt::admin_key_file(dir.path())).expect("admin key");
    let operator_addr = format!("127.0.0.1:{}", em.operator_port);
    let admin = zt_entry_api::client::Client::operator(&bundle, "entry-manager.ztlab.test", &operator_addr, Some(&key))
        .expect("client");
    EntryLab { lab, admin, operator_addr, mtls_addr: format!("127.0.0.1:{}", em.listen_port), bundle }
}

impl EntryLab {
    /// A client on the operator listener with another token.
    pub fn client(&self, token: Option<&str>) -> zt_entry_api::client::Client {
        zt_entry_api::client::Client::operator(&self.bundle, "entry-manager.ztlab.test", &self.operator_addr, token)
            .expect("client")
    }

    /// Waits until `check` holds for the entry (polling `GetEntry` every 50 ms), or panics
    /// with the last state after `timeout`.
    pub async fn wait_entry<F>(&self, id: &str, timeout: Duration, check: F) -> zt_entry_api::pb::Entry
    where
        F: Fn(&zt_entry_api::pb::Entry) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.admin.entries().get_entry(zt_entry_api::pb::GetEntryRequest { id: id.to_owned() }).await;
            if let Ok(e) = &got
                && check(e.get_ref())
            {
                return e.get_ref().clone();
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("entry {id} did not reach the expected state in {timeout:?}; last: {got:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `spire-server entry show -entryID <id> -output json` at `site`: the entry, or `None`.
    pub async fn spire_entry(&self, site: &str, spire_id: &str) -> Option<serde_json::Value> {
        let paths = self.lab.site_paths(site).expect("site");
        let out = zt_runtime::spire::server_cli(&paths, &["entry", "show", "-entryID", spire_id, "-output", "json"])
            .await
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v["entries"].as_array().and_then(|a| a.first().cloned())
    }

    /// Every entry on `site`'s SPIRE server (`spire-server entry show -output json`).
    pub async fn spire_entries(&self, site: &str) -> Vec<serde_json::Value> {
        let paths = self.lab.site_paths(site).expect("site");
        let out =
            zt_runtime::spire::server_cli(&paths, &["entry", "show", "-output", "json"]).await.expect("entry show");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v["entries"].as_array().cloned().unwrap_or_default()
    }
}

/// The lines of a ztlab service's log file, each a flat JSON object (zt-service's log format).
/// Panics unless every line is one whose `component` is `component`.
pub fn service_log(path: &std::path::Path, component: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let line: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            assert!(line.is_object(), "{}:{}: not a JSON object: {l}", path.display(), i + 1);
            assert_eq!(line["component"], component, "{}:{}: {l}", path.display(), i + 1);
            line
        })
        .collect()
}

/// A log line logged while serving a request: it carries a non-empty `trace_id` and `actor`.
/// Returns them.
pub fn request_fields(line: &serde_json::Value) -> (&str, &str) {
    let field = |k: &str| line[k].as_str().filter(|v| !v.is_empty());
    match (field("trace_id"), field("actor")) {
        (Some(t), Some(a)) => (t, a),
        _ => panic!("a request line without trace_id and actor: {line}"),
    }
}

/// Fetches a value every `every` ([`zt_runtime::wait::poll_until`]) until `done` holds for it,
/// and returns it; panics after `timeout` saying `what` did not happen and the last value.
pub async fn wait_or_panic<T, Fut>(
    (timeout, every): (Duration, Duration),
    what: &str,
    mut fetch: impl FnMut() -> Fut,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: std::fmt::Debug,
    Fut: std::future::Future<Output = T>,
{
    use zt_runtime::wait::Check;
    let done = &done;
    let got = zt_runtime::wait::poll_until(timeout, every, || {
        let next = fetch();
        async move {
            let v = next.await;
            if done(&v) { Check::Done(v) } else { Check::NotYet(v) }
        }
    })
    .await;
    got.unwrap_or_else(|last| panic!("{what} within {timeout:?}; last: {last:?}"))
}

/// All sites of an entry in `state`.
pub fn all_sites(e: &zt_entry_api::pb::Entry, state: zt_entry_api::pb::SyncState) -> bool {
    !e.site_status.is_empty() && e.site_status.iter().all(|s| s.state == state as i32)
}

/// PEM text of one DER object (`CERTIFICATE`, `PRIVATE KEY`), for tools that read files (curl,
/// a real OPA server).
pub fn pem(tag: &str, der: &[u8]) -> String {
    zt_runtime::certs::pem_encode(tag, der)
}

/// Latency statistics for the bench binaries.
pub mod bench {
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// The `--name=value` arguments of a bench binary.
    pub fn args() -> BTreeMap<String, String> {
        std::env::args()
            .skip(1)
            .filter_map(|a| {
                a.strip_prefix("--").and_then(|a| a.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }

    /// What a load run measured.
    #[derive(Debug)]
    pub struct Stats {
        /// Successful requests.
        pub requests: usize,
        /// Failed requests.
        pub errors: usize,
        /// Successful requests per second.
        pub rps: f64,
        /// Median latency.
        pub p50: Duration,
        /// 99th percentile latency.
        pub p99: Duration,
    }

    /// The `p` quantile (0..=1) of sorted latencies, nearest-rank; zero when empty.
    pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
    }

    /// Statistics of one run: latencies of the successes, the error count, the wall time.
    pub fn stats(mut lat: Vec<Duration>, errors: usize, elapsed: Duration) -> Stats {
        lat.sort();
        Stats {
            requests: lat.len(),
            errors,
            rps: lat.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&lat, 0.50),
            p99: percentile(&lat, 0.99),
        }
    }

    /// Milliseconds.
    pub fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1e3
    }

    /// Microseconds.
    pub fn us(d: Duration) -> f64 {
        d.as_secs_f64() * 1e6
    }
}
