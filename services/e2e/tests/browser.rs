//! The presenter's UI in a real browser: headless Chromium driven by Debian's `chromedriver` over
//! plain WebDriver HTTP calls, against a lab started with `ztlab up`. Checks the dashboard (and
//! that a stopped Envoy turns red within 2 s without a reload), the scenario pages, the entries
//! page (the frontend's entry SYNCED at sites a and b; an entry created with the CLI shows up
//! SYNCED within 5 s without a reload), the sites page, and Run Demo pressed with the keyboard. Saves a screenshot of each page under `target/screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (scripts/test.sh installs them); fails if they are
//! missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use e2e::applab::{AppLab, AppLabOptions, http_json};
use serde_json::{Value, json};
use zt_runtime::app as appchain;
use zt_runtime::ports::free_port;

/// The first of `names` found on `PATH` (or as an absolute path).
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|n| {
        std::env::split_paths(&path).map(|d| d.join(n)).chain([PathBuf::from("/usr/bin").join(n)]).find(|p| p.is_file())
    })
}

/// Kills chromedriver (and with it the browser) when dropped.
struct Driver {
    child: Child,
    base: String,
    chromium: PathBuf,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver call: the `value` of the answer; panics with the answer if it is not 200.
async fn wd(method: &str, url: &str, body: Option<Value>) -> Value {
    let (status, answer) = http_json(method, url, body, None).await;
    assert_eq!(status, 200, "WebDriver {method} {url}: {answer}");
    answer["value"].clone()
}

struct Browser {
    session: String,
    base: String,
    shots: PathBuf,
}

impl Browser {
    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    async fn open(&self, url: &str) {
        wd("POST", &self.url("/url"), Some(json!({ "url": url }))).await;
    }

    async fn js(&self, script: &str) -> Value {
        wd("POST", &self.url("/execute/sync"), Some(json!({ "script": script, "args": [] }))).await
    }

    async fn text(&self, script: &str) -> String {
        self.js(script).await.as_str().unwrap_or_default().to_owned()
    }

    async fn body_text(&self) -> String {
        self.text("return document.body.innerText;").await
    }

    /// Polls `script` (returning a string) until `ok` holds or `within` passes; the last value.
    async fn wait_for(&self, script: &str, within: Duration, ok: impl Fn(&str) -> bool) -> (bool, String) {
        let start = Instant::now();
        loop {
            let v = self.text(script).await;
            if ok(&v) {
                return (true, v);
            }
            if start.elapsed() >= within {
                return (false, v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn key(&self, key: char) {
        let k = key.to_string();
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": k}, {"type": "keyUp", "value": k}
        ]}]});
        wd("POST", &self.url("/actions"), Some(actions)).await;
    }

    async fn screenshot(&self, name: &str) {
        let data = wd("GET", &self.url("/screenshot"), None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap_or_default()).expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
        std::fs::create_dir_all(&self.shots).expect("screenshot dir");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

async fn start_driver() -> Driver {
    let missing = "headless Chromium and chromedriver are needed for this test: \
                   apt-get install -y chromium chromium-driver (scripts/test.sh installs them)";
    let chromedriver = find_program(&["chromedriver"]).unwrap_or_else(|| panic!("chromedriver not found; {missing}"));
    let chromium =
        find_program(&["chromium", "chromium-browser"]).unwrap_or_else(|| panic!("chromium not found; {missing}"));
    let port = free_port().expect("free port");
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; {missing}", chromedriver.display()));
    let driver = Driver { child, base: format!("http://127.0.0.1:{port}"), chromium, profile: e2e::state_dir() };
    let start = Instant::now();
    loop {
        let (status, v) = http_json("GET", &format!("{}/status", driver.base), None, None).await;
        if status == 200 && v["value"]["ready"] == true {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not get ready in 20 s: {status} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    driver
}

async fn new_session(driver: &Driver, shots: PathBuf) -> Browser {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1600,1200",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([format!("--user-data-dir={}", driver.profile.path().display())])
    .collect::<Vec<_>>();
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": driver.chromium.display().to_string(), "args": args}
    }}});
    let v = wd("POST", &format!("{}/session", driver.base), Some(caps)).await;
    let session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session id: {v}")).to_owned();
    Browser { session, base: driver.base.clone(), shots }
}

fn screenshots_dir() -> PathBuf {
    let target = e2e::target_dir();
    target.parent().map(Path::to_path_buf).unwrap_or(target).join("screenshots")
}

const ENVOY_HEALTH: &str = r#"var r = document.querySelector('tr[data-name="envoy-frontend"] .health');
return r ? r.innerText : "";"#;

const ERROR_TEXT: &str = "var e = document.querySelector('#error .error-box'); return e ? e.innerText : '';";

const SITE_ROWS: &str = "return Array.from(document.querySelectorAll('#rows tr')).map(function (tr) { return tr.getAttribute('data-site'); }).sort().join(',');";

/// A script returning the texts of the site badges of the entries for `spiffe_id`, `|`-separated.
fn badges_of(spiffe_id: &str) -> String {
    format!(
        "var out = []; document.querySelectorAll('#rows tr').forEach(function (tr) {{ \
         if (tr.querySelector('.spiffe').innerText.trim() === {spiffe_id:?}) {{ \
         tr.querySelectorAll('.badge').forEach(function (b) {{ out.push(b.innerText); }}); }} }}); \
         return out.join('|');"
    )
}

/// Like [`badges_of`], the badges' CSS classes.
fn badge_classes_of(spiffe_id: &str) -> String {
    badges_of(spiffe_id).replace("b.innerText", "b.className")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presenter_ui_in_headless_chromium() {
    let driver = start_driver().await;
    let lab = tokio::task::spawn_blocking(|| AppLab::start(AppLabOptions::default())).await.expect("start");
    let browser = new_session(&driver, screenshots_dir()).await;
    let td = "spiffe://ztlab.test";

    // The dashboard: every component, the SPIFFE IDs, healthy.
    browser.open(&lab.frontend("/dashboard")).await;
    let text = browser.body_text().await;
    for id in [format!("{td}/ns/demo/sa/frontend"), format!("{td}/ns/demo/sa/backend")] {
        assert!(text.contains(&id), "the dashboard shows {id}:\n{text}");
    }
    assert!(text.contains("healthy"), "{text}");
    let (ok, health) = browser.wait_for(ENVOY_HEALTH, Duration::from_secs(10), |h| h.contains("healthy")).await;
    assert!(ok, "envoy-frontend is healthy at first: {health:?}");
    let (ok, live) = browser
        .wait_for("return document.getElementById('live').innerText;", Duration::from_secs(5), |t| {
            t.starts_with("Live")
        })
        .await;
    assert!(ok, "the event stream is connected: {live:?}");
    browser.screenshot("dashboard").await;

    // A stopped Envoy shows red within 2 s, without a reload.
    browser.js("window.__not_reloaded = true; return null;").await;
    let mut l = lab.lab();
    l.stop_component(appchain::ENVOY_FRONTEND_NAME);
    let (ok, health) = browser
        .wait_for(ENVOY_HEALTH, Duration::from_secs(2), |h| h.contains("stopped") || h.contains("unhealthy"))
        .await;
    assert!(ok, "envoy-frontend's row shows it stopped within 2 s: {health:?}");
    let class =
        browser.text(r#"return document.querySelector('tr[data-name="envoy-frontend"] .badge').className;"#).await;
    assert!(class.contains("bad"), "red badge: {class:?}");
    assert_eq!(browser.js("return window.__not_reloaded === true;").await, true, "updated in place, no reload");
    browser.js(r#"document.querySelector('tr[data-name="envoy-frontend"]').scrollIntoView(); return null;"#).await;
    browser.screenshot("dashboard-envoy-stopped").await;
    l.restart_stopped().await.expect("restart envoy-frontend");
    let (ok, health) = browser.wait_for(ENVOY_HEALTH, Duration::from_secs(30), |h| h.contains("healthy")).await;
    assert!(ok, "envoy-frontend is healthy again: {health:?}");

    // The scenarios.
    browser.open(&lab.frontend("/scenarios")).await;
    let text = browser.body_text().await;
    assert!(text.contains("Scenarios") && text.contains("Run Demo: frontend"), "{text}");
    browser.screenshot("scenarios").await;
    browser.open(&lab.frontend("/scenarios/delegation")).await;
    let text = browser.body_text().await;
    assert!(text.contains("Expected outcome") && text.contains("Alice → Gpt4 → DOC-001"), "{text}");
    browser.screenshot("scenario-delegation").await;

    // Entries and sites, read live from entry-manager with the frontend's own SVID.
    let frontend_id = format!("{td}/ns/demo/sa/frontend");
    browser.open(&lab.frontend("/entries")).await;
    let (ok, badges) = browser
        .wait_for(&badges_of(&frontend_id), Duration::from_secs(30), |b| {
            b.contains("a: ✓ SYNCED") && b.contains("b: ✓ SYNCED")
        })
        .await;
    let error = browser.text(ERROR_TEXT).await;
    assert!(ok, "the frontend's entry is SYNCED at sites a and b: {badges:?} (error box: {error:?})");
    assert!(error.is_empty(), "no error box: {error}");
    let classes = browser.text(&badge_classes_of(&frontend_id)).await;
    assert!(classes.split('|').all(|c| c.contains("ok")), "green SYNCED badges: {classes:?}");
    browser.screenshot("entries").await;

    // A new entry through the CLI (the lab's admin key) shows up SYNCED without a reload.
    browser.js("window.__not_reloaded = true; return null;").await;
    let new_id = format!("{td}/ns/demo/sa/browser-check");
    let (ok, out) = lab.ztlab(&[
        "entries",
        "create",
        "--spiffe-id",
        &new_id,
        "--parent-id",
        "spiffe://ztlab.test/ztlab/nodes/local",
        "--selector",
        "unix:uid:4343",
        "--site",
        "a",
        "--site",
        "b",
    ]);
    assert!(ok, "ztlab entries create:\n{out}");
    let (ok, badges) = browser
        .wait_for(&badges_of(&new_id), Duration::from_secs(5), |b| {
            b.contains("a: ✓ SYNCED") && b.contains("b: ✓ SYNCED")
        })
        .await;
    assert!(ok, "the new entry shows SYNCED at a and b within 5 s: {badges:?}");
    assert_eq!(browser.js("return window.__not_reloaded === true;").await, true, "updated in place, no reload");
    browser.screenshot("entries-new").await;

    browser.open(&lab.frontend("/sites")).await;
    let (ok, sites) = browser.wait_for(SITE_ROWS, Duration::from_secs(10), |s| s == "a,b").await;
    assert!(ok, "the sites page shows sites a and b: {sites:?} (error box: {:?})", browser.text(ERROR_TEXT).await);
    let text = browser.body_text().await;
    assert!(text.contains("connected") && text.contains("Unmanaged"), "{text}");
    browser.screenshot("sites").await;

    // Run Demo with the keyboard: Tab to the button, then Enter.
    browser.open(&lab.frontend("/")).await;
    let mut focused = String::new();
    for _ in 0..20 {
        browser.key('\u{E004}').await;
        focused = browser.text("return document.activeElement ? document.activeElement.id : '';").await;
        if focused == "run" {
            break;
        }
    }
    assert_eq!(focused, "run", "the Run Demo button is reachable with Tab");
    browser.key('\u{E007}').await;
    let (ok, hops) = browser
        .wait_for("return document.getElementById('hops').innerText;", Duration::from_secs(30), |t| {
            t.matches("PASS").count() >= 3
        })
        .await;
    assert!(ok, "every hop passes:\n{hops}");
    assert!(!hops.contains("FAIL"), "{hops}");
    browser.screenshot("run-demo").await;

    wd("DELETE", &browser.url(""), None).await;
    drop(driver);
}
