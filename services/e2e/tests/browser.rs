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

    /// The WebDriver id of the element matching `css`.
    async fn find(&self, css: &str) -> String {
        let v = wd("POST", &self.url("/element"), Some(json!({"using": "css selector", "value": css}))).await;
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_owned()
    }

    /// Types `text` into the element matching `css`, as keystrokes (`\u{E007}` is Enter).
    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        wd("POST", &self.url(&format!("/element/{id}/value")), Some(json!({"text": text}))).await;
    }

    /// Clears the field matching `css`.
    async fn clear(&self, css: &str) {
        let id = self.find(css).await;
        wd("POST", &self.url(&format!("/element/{id}/clear")), Some(json!({}))).await;
    }

    /// Presses Enter on the element matching `css` (what a keyboard user does on a focused
    /// control); the element must be able to take the focus.
    async fn press(&self, css: &str) {
        self.js(&format!("document.querySelector({css:?}).focus(); return null;")).await;
        let focused = self.text("return document.activeElement ? document.activeElement.outerHTML : '';").await;
        assert!(!focused.is_empty() && !focused.starts_with("<body"), "{css} takes the focus");
        self.type_into(css, "\u{E007}").await;
    }

    async fn current_url(&self) -> String {
        wd("GET", &self.url("/url"), None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Accessibility basics of the page: a language, one h1, a label for every field, a name
    /// for every button and link, and no control taken out of the tab order.
    async fn check_accessibility(&self, page: &str) {
        let problems = self.js(A11Y).await;
        let list: Vec<String> = problems
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        assert!(list.is_empty(), "{page}: accessibility problems:\n{}", list.join("\n"));
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
        "goog:loggingPrefs": {"browser": "ALL"},
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

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Returns a list of accessibility problems on the page (empty: none found).
const A11Y: &str = r#"
var out = [];
if (!document.documentElement.getAttribute("lang")) { out.push("html has no lang"); }
if (document.querySelectorAll("h1").length !== 1) { out.push("h1 count " + document.querySelectorAll("h1").length); }
document.querySelectorAll("input, select, textarea").forEach(function (f) {
  if (f.type === "hidden") { return; }
  var named = f.getAttribute("aria-label") || f.getAttribute("aria-labelledby") ||
    (f.id && document.querySelector('label[for="' + f.id + '"]')) || f.closest("label");
  if (!named) { out.push("field without a label: " + f.outerHTML.slice(0, 120)); }
});
document.querySelectorAll("button, a[href]").forEach(function (b) {
  var name = (b.innerText || "").trim() || b.getAttribute("aria-label") || b.getAttribute("title");
  if (!name) { out.push("control without a name: " + b.outerHTML.slice(0, 120)); }
  if (b.getAttribute("tabindex") === "-1") { out.push("control out of the tab order: " + b.outerHTML.slice(0, 120)); }
});
return out;
"#;

const RUN_STATE: &str =
    "var e = document.getElementById('run-state'); return e ? (e.getAttribute('data-state') || '') : '';";

const CHECKS: &str = "return Array.from(document.querySelectorAll('#run-result li.check')).map(function (li) { \
  return li.getAttribute('data-kind') + ' ' + li.getAttribute('data-n') + ' ' + li.getAttribute('data-passed'); }).join('|');";

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
    // Short TTLs, so that the rotation and OpenBao scenarios see rotations within their windows.
    let options = AppLabOptions { x509_ttl_secs: 20, db_ttl_secs: 20, db_rotate_at: 0.5, ..Default::default() };
    let lab = tokio::task::spawn_blocking(move || AppLab::start(options)).await.expect("start");
    let browser = new_session(&driver, screenshots_dir()).await;
    let td = "spiffe://ztlab.test";

    // The UI is behind a login: the dashboard sends the browser to the login form.
    browser.open(&lab.frontend("/dashboard")).await;
    let url = browser.current_url().await;
    assert!(url.ends_with("/login?next=/dashboard"), "redirected to the login: {url}");
    browser.check_accessibility("login").await;
    browser.screenshot("login").await;
    browser.type_into("#username", "jake").await;
    browser.type_into("#password", "not-the-password").await;
    browser.press("#login-submit").await;
    let (ok, error) = browser
        .wait_for(
            "var e = document.getElementById('password-error'); return e ? e.innerText : '';",
            Duration::from_secs(10),
            |t| !t.is_empty(),
        )
        .await;
    assert!(ok && error.contains("Wrong username or password"), "the error is next to the password: {error:?}");
    assert_eq!(browser.text("return document.getElementById('password').getAttribute('aria-invalid');").await, "true");
    browser.screenshot("login-wrong-password").await;
    browser.clear("#password").await;
    browser.type_into("#password", "jake99\u{E007}").await; // Enter submits the form
    let (ok, who) = browser
        .wait_for(
            "var e = document.getElementById('whoami'); return e ? e.innerText : '';",
            Duration::from_secs(10),
            |t| t == "jake",
        )
        .await;
    assert!(ok, "signed in as jake on the dashboard: {who:?} at {}", browser.current_url().await);
    assert!(browser.current_url().await.ends_with("/dashboard"));

    // The dashboard: every component, the SPIFFE IDs, healthy.
    browser.check_accessibility("dashboard").await;
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
    l.stop_component(appchain::ENVOY_FRONTEND_NAME).await;
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
    browser.check_accessibility("scenarios").await;
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
    browser.check_accessibility("entries").await;
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

    entry_form_delete_and_audit(&browser, &lab).await;
    policies_page(&browser, &lab).await;

    browser.open(&lab.frontend("/sites")).await;
    let (ok, sites) = browser.wait_for(SITE_ROWS, Duration::from_secs(10), |s| s == "a,b").await;
    assert!(ok, "the sites page shows sites a and b: {sites:?} (error box: {:?})", browser.text(ERROR_TEXT).await);
    let text = browser.body_text().await;
    assert!(text.contains("connected") && text.contains("Unmanaged"), "{text}");
    browser.check_accessibility("sites").await;
    browser.screenshot("sites").await;

    // Run Demo with the keyboard: Tab to the button, then Enter.
    browser.open(&lab.frontend("/")).await;
    browser.check_accessibility("run-demo").await;
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

    run_every_scenario_from_the_ui(&browser, &lab).await;

    // No script error on any page (the console since the last diagnostics read).
    let console = wd("POST", &browser.url("/se/log"), Some(json!({"type": "browser"}))).await;
    let errors: Vec<&Value> =
        console.as_array().map(|a| a.iter().filter(|e| e["source"] == "javascript").collect()).unwrap_or_default();
    assert!(errors.is_empty(), "script errors in the browser's console: {errors:?}");

    wd("DELETE", &browser.url(""), None).await;
    drop(driver);
}

/// Every scenario of the catalogue, started from its page with the keyboard, followed live to its
/// end; the visible outcome of each is checked, and a screenshot saved.
async fn run_every_scenario_from_the_ui(browser: &Browser, lab: &AppLab) {
    let catalogue = zt_scenarios::Catalogue::builtin().expect("catalogue");
    for s in &catalogue.scenario {
        browser.open(&lab.frontend(&format!("/scenarios/{}", s.id))).await;
        browser.check_accessibility(&s.id).await;
        let (ok, state) = browser.wait_for(RUN_STATE, Duration::from_secs(5), |t| t == "idle").await;
        assert!(ok, "{}: the page follows the run stream (idle first): {state:?}", s.id);
        browser.press("#run-scenario").await;
        // A short scenario may be over before the page's next update (every 500 ms).
        let (ok, state) = browser.wait_for(RUN_STATE, Duration::from_secs(5), |t| t != "idle").await;
        if !ok {
            // What the page, the frontend and the browser's console say.
            let error = browser.text("return document.getElementById('run-error').innerText;").await;
            let server = browser
                .text(&format!(
                    "var x = new XMLHttpRequest(); x.open('GET', '/api/scenarios/{}/run', false); x.send(); \
                     return x.status + ' ' + x.responseText;",
                    s.id
                ))
                .await;
            let console = wd("POST", &browser.url("/se/log"), Some(json!({"type": "browser"}))).await;
            panic!("{}: the run starts: {state:?}; error box {error:?}; server {server:?}; console {console}", s.id);
        }
        if s.id == "rotation" {
            // The live counter moves while the certificates rotate.
            let (ok, n) = browser
                .wait_for("return document.getElementById('live-requests').innerText;", Duration::from_secs(30), |t| {
                    t.parse::<u64>().is_ok_and(|n| n > 0)
                })
                .await;
            assert!(ok, "rotation: the request counter moves: {n:?}");
            browser.screenshot("scenario-rotation-running").await;
        }
        let (_, state) =
            browser.wait_for(RUN_STATE, Duration::from_secs(300), |t| matches!(t, "passed" | "failed" | "error")).await;
        let log = browser.text("return document.getElementById('run-log').innerText;").await;
        let result = browser.text("return document.getElementById('run-result').innerText;").await;
        assert_eq!(state, "passed", "{}: the run passes.\nchecks:\n{result}\nrunner output:\n{log}", s.id);
        let checks = browser.text(CHECKS).await;
        let expected = s.step.len() + s.case.len();
        assert_eq!(checks.split('|').filter(|c| !c.is_empty()).count(), expected, "{}: {checks}", s.id);
        assert!(checks.split('|').all(|c| c.ends_with(" true")), "{}: every check passes: {checks}", s.id);
        assert!(result.contains("✓ PASS") && !result.contains("✗ FAIL"), "{}: {result}", s.id);
        assert!(!log.is_empty(), "{}: the runner's output is shown", s.id);
        match s.id.as_str() {
            "run-demo" => {
                let hops = browser.text("return Array.from(document.querySelectorAll('#run-result .hops li')).map(function (l) { return l.className; }).join('|');").await;
                assert!(
                    hops.split('|').count() >= 3 && hops.split('|').all(|c| c.contains("hop-ok")),
                    "run-demo hops: {hops}"
                );
                assert!(result.contains("TLSv1.3"), "run-demo shows the evidence: {result}");
            }
            "envoy-rbac" => assert!(result.contains("RBAC: denied for"), "envoy-rbac shows the reason: {result}"),
            "rotation" => {
                let failures = browser.text("return document.getElementById('live-failures').innerText;").await;
                assert_eq!(failures, "0", "rotation: no failed request");
            }
            "delegation" => {
                for c in &s.case {
                    let cell = browser
                        .text(&format!("return document.getElementById('case-{}-result').innerText;", c.n))
                        .await;
                    let word = match c.expect {
                        zt_scenarios::Decision::Granted => "granted",
                        zt_scenarios::Decision::Denied => "denied",
                    };
                    assert!(cell.contains(word), "delegation case {}: {cell:?}", c.n);
                }
            }
            _ => {}
        }
        browser.js("window.scrollTo(0, document.body.scrollHeight); return null;").await;
        browser.screenshot(&format!("scenario-{}", s.id)).await;
    }

    // One delegation case on its own, from its row's button.
    browser.open(&lab.frontend("/scenarios/delegation")).await;
    browser.press(r#"button.run-case[data-case="2"]"#).await;
    let (ok, checks) = browser.wait_for(CHECKS, Duration::from_secs(60), |c| c == "case 2 true").await;
    assert!(ok, "case 2 alone passes: {checks:?}");
    let cell = browser.text("return document.getElementById('case-2-result').innerText;").await;
    assert!(cell.contains("denied") && cell.contains("bob lacks engineering"), "case 2: {cell:?}");
}

const SPIFFE_ERROR: &str = "return document.getElementById('entry-spiffe-id-error').innerText;";

/// The entry form: an error as you type, entry-manager's refusal next to the field (the UI may
/// write only under /demo), a created entry going SYNCED, its deletion after a confirmation,
/// and both in the audit history.
async fn entry_form_delete_and_audit(browser: &Browser, lab: &AppLab) {
    browser.open(&lab.frontend("/entries/new")).await;
    browser.check_accessibility("entries/new").await;
    browser.type_into("#entry-spiffe-id", "spiffe://ztlab.test/demo/bad path").await;
    let (ok, error) = browser.wait_for(SPIFFE_ERROR, Duration::from_secs(2), |t| !t.is_empty()).await;
    assert!(ok, "a malformed SPIFFE ID is flagged as it is typed: {error:?}");
    let invalid =
        browser.text("return document.getElementById('entry-spiffe-id').getAttribute('aria-invalid') || '';").await;
    assert_eq!(invalid, "true");
    browser.screenshot("entry-form-typing").await;

    // A selector given twice, and an entry that is its own parent, are flagged as they are typed.
    browser.clear("#entry-selectors").await;
    browser.type_into("#entry-selectors", "unix:uid:4545\u{E007}unix:uid:4545").await;
    let (ok, error) = browser
        .wait_for("return document.getElementById('entry-selectors-error').innerText;", Duration::from_secs(2), |t| {
            t.contains("Line 2: duplicate of line 1")
        })
        .await;
    assert!(ok, "a repeated selector is flagged as it is typed: {error:?}");
    let parent = browser.text("return document.getElementById('entry-parent-id').value;").await;
    let own = "spiffe://ztlab.test/demo/own-parent";
    browser.clear("#entry-spiffe-id").await;
    browser.type_into("#entry-spiffe-id", own).await;
    browser.clear("#entry-parent-id").await;
    browser.type_into("#entry-parent-id", own).await;
    let (ok, error) = browser
        .wait_for("return document.getElementById('entry-parent-id-error').innerText;", Duration::from_secs(2), |t| {
            t.contains("own parent")
        })
        .await;
    assert!(ok, "an entry as its own parent is flagged as it is typed: {error:?}");
    browser.clear("#entry-parent-id").await;
    browser.type_into("#entry-parent-id", &parent).await;

    // Outside /demo: the frontend's role refuses it at entry-manager; said next to the field.
    let outside = "spiffe://ztlab.test/ns/demo/sa/ui-not-allowed";
    browser.clear("#entry-spiffe-id").await;
    browser.type_into("#entry-spiffe-id", outside).await;
    browser.clear("#entry-selectors").await;
    browser.type_into("#entry-selectors", "unix:uid:4545").await;
    browser.press("#entry-create").await;
    let (ok, error) = browser.wait_for(SPIFFE_ERROR, Duration::from_secs(10), |t| t.contains("/demo")).await;
    assert!(ok, "entry-manager's refusal is shown next to the SPIFFE ID: {error:?}");
    browser.screenshot("entry-form-refused").await;
    let (listed, entries) = lab.ztlab(&["entries", "list"]);
    assert!(listed, "{entries}");
    assert!(!entries.contains(outside), "nothing was written for {outside}:\n{entries}");

    // Under /demo: created, then SYNCED at both sites, without a reload.
    let id = "spiffe://ztlab.test/demo/browser-ui";
    browser.clear("#entry-spiffe-id").await;
    browser.type_into("#entry-spiffe-id", id).await;
    browser.press("#entry-create").await;
    let (ok, status) = browser
        .wait_for("return document.getElementById('entry-form-status').innerText;", Duration::from_secs(10), |t| {
            t.contains("Created")
        })
        .await;
    assert!(ok, "the form says the entry was created: {status:?} (error: {:?})", browser.text(SPIFFE_ERROR).await);
    let (ok, badges) = browser
        .wait_for(&badges_of(id), Duration::from_secs(10), |b| b.contains("a: ✓ SYNCED") && b.contains("b: ✓ SYNCED"))
        .await;
    assert!(ok, "the new entry goes SYNCED at a and b: {badges:?}");
    browser.screenshot("entry-created").await;

    // Delete, after a confirmation.
    browser.open(&lab.frontend("/entries")).await;
    let row = format!("tr[data-spiffe-id=\"{id}\"] button.entry-delete");
    let (ok, _) = browser
        .wait_for(&format!("return document.querySelector({row:?}) ? 'y' : '';"), Duration::from_secs(10), |t| t == "y")
        .await;
    assert!(ok, "the entry has a Delete button");
    browser.press(&row).await;
    let open = browser.text("return document.getElementById('confirm-delete').open ? 'open' : '';").await;
    assert_eq!(open, "open", "Delete asks first");
    let dialog = browser.text("return document.getElementById('confirm-delete').innerText;").await;
    assert!(dialog.contains(id), "the confirmation names the entry: {dialog}");
    browser.screenshot("entry-delete-confirm").await;
    browser.press("#confirm-delete-yes").await;
    let (ok, left) = browser
        .wait_for(
            &format!(
                "return document.querySelector({:?}) ? 'still there' : '';",
                format!("tr[data-spiffe-id=\"{id}\"]")
            ),
            Duration::from_secs(30),
            |t| t.is_empty(),
        )
        .await;
    assert!(ok, "the deleted entry leaves the list once both sites removed it: {left:?}");

    // The audit history has both.
    browser.open(&lab.frontend("/entries/audit")).await;
    browser.check_accessibility("entries/audit").await;
    let (ok, actions) = browser
        .wait_for(
            &format!(
                "return Array.from(document.querySelectorAll('#audit tr[data-action]')).filter(function (tr) {{ \
                 return tr.innerText.indexOf({id:?}) >= 0; }}).map(function (tr) {{ return tr.getAttribute('data-action'); }}).join(',');"
            ),
            Duration::from_secs(10),
            |t| t.contains("create") && t.contains("delete"),
        )
        .await;
    assert!(ok, "the audit history shows the create and the delete of {id}: {actions:?}");
    browser.screenshot("entries-audit").await;
}

const RBAC_MODE: &str = "return document.getElementById('rbac-mode').innerText;";

/// The policies page: Envoy RBAC as installed (a swap shows within 2 s, no reload), the Rego
/// policy and data, the Cilium policies and their matrix.
async fn policies_page(browser: &Browser, lab: &AppLab) {
    browser.open(&lab.frontend("/policies")).await;
    browser.check_accessibility("policies").await;
    let (ok, mode) = browser.wait_for(RBAC_MODE, Duration::from_secs(5), |t| t.contains("allow-frontend")).await;
    assert!(ok, "allow-frontend is installed: {mode:?}");
    let rego = browser.text("return document.getElementById('rego').innerText;").await;
    assert!(rego.contains("engineering") && rego.contains("alice"), "the Rego data: {rego}");
    let cilium = browser.text("return document.getElementById('cilium').innerText;").await;
    assert!(cilium.contains("Enforced only on kind"), "{cilium}");
    let cells = browser.text("return String(document.querySelectorAll('#reachability td[data-from]').length);").await;
    assert!(cells.parse::<u32>().unwrap_or(0) > 0, "the reachability matrix has cells: {cells}");
    browser.screenshot("policies").await;
    browser.js("window.__not_reloaded = true; return null;").await;
    let (ok, out) = lab.ztlab(&["policy", "rbac", "deny-frontend"]);
    assert!(ok, "{out}");
    let (ok, mode) = browser.wait_for(RBAC_MODE, Duration::from_secs(2), |t| t.contains("deny-frontend")).await;
    let (back, out) = lab.ztlab(&["policy", "rbac", "allow-frontend"]);
    assert!(back, "{out}");
    assert!(ok, "the swap shows within 2 s: {mode:?}");
    assert_eq!(browser.js("return window.__not_reloaded === true;").await, true, "no reload");
    let (ok, mode) = browser.wait_for(RBAC_MODE, Duration::from_secs(2), |t| t.contains("allow-frontend")).await;
    assert!(ok, "and back: {mode:?}");
}
