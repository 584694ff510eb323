//! `network-policy`: who may reach whom, derived from the CiliumNetworkPolicy objects in
//! `infrastructure/kind/policies` by `infrastructure/kind/check.py` and compared with
//! `reachability.toml`. It reads the checkout, not the running lab.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use zt_scenarios::Drill;

use super::{Live, millis, step_check};
use crate::demo::event::{Check, Sink};

/// The Python with kubernetes-validate that scripts/validate-kind.sh installs, else `python3`.
fn kind_python(root: &Path) -> PathBuf {
    let versions = std::fs::read_to_string(root.join("infrastructure/versions.env")).unwrap_or_default();
    let version = versions
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VALIDATE_VERSION="))
        .map(|v| v.trim().trim_matches('"').to_owned());
    let cache = std::env::var_os("ZT_CACHE").map(PathBuf::from).or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("ztlab"))
    });
    match (cache, version) {
        (Some(c), Some(v)) if c.join(format!("kubernetes-validate-{v}/bin/python3")).exists() => {
            c.join(format!("kubernetes-validate-{v}/bin/python3"))
        }
        _ => PathBuf::from("python3"),
    }
}

pub async fn network_policy_step(n: u32, st: &Drill, sink: &Sink) -> anyhow::Result<Check> {
    let mut check = step_check(n, st, "pass: the policies allow exactly reachability.toml");
    let root = zt_runtime::repo_root();
    let script = root.join("infrastructure/kind/check.py");
    anyhow::ensure!(script.exists(), "step {n}: no {} (set ZT_ROOT to the checkout)", script.display());
    let python = kind_python(&root);
    let start = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&python).arg(&script).arg("--root").arg(&root).kill_on_drop(true).output(),
    )
    .await
    .context("infrastructure/kind/check.py took more than 120 s")?
    .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut live = Live::new(sink);
    live.say("who may reach whom (derived from the CiliumNetworkPolicy objects in infrastructure/kind/policies):");
    let matrix = stdout.lines().skip_while(|l| !l.starts_with("==> reachability")).skip(1);
    for l in matrix.filter(|l| !l.contains("allowed flows, derived")) {
        live.say(l.trim_end());
    }
    live.say(
        "live enforcement exists only on kind (Cilium); the local runtime shows the policy, it does not enforce it",
    );
    let passed = out.status.success() && stdout.contains("allowed flows equal reachability.toml's");
    check.details = live.lines;
    check.passed = passed;
    check.observed = if passed { "pass".into() } else { "fail".into() };
    check.reason = if passed {
        "infrastructure/kind/check.py: the derived flows equal infrastructure/kind/reachability.toml".into()
    } else {
        let why: String = stderr.trim().lines().take(5).collect::<Vec<_>>().join("; ");
        format!("infrastructure/kind/check.py failed (run ./scripts/validate-kind.sh): {why}")
    };
    check.took_ms = millis(start);
    Ok(check)
}
