//! SPIRE on a real kind cluster: two sites, agents attested with `k8s_psat`, workloads given
//! SVIDs by namespace and ServiceAccount through the SPIFFE CSI driver, and none for a pod that
//! has no entry or sits in another namespace. The cluster is created in a temp state dir (its
//! kubeconfig included), torn down at the end, and the host's watched kernel settings must be
//! as they were.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use zt_kind::manifests::Images;
use zt_kind::{Kind, KindPaths};
use zt_runtime::lab::SiteSpec;
use zt_runtime::wait::{Check, poll_until};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a lab script with the test's state dir, cluster name and UI port: its output, or an
/// error with it.
fn script(state: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("bash")
        .arg(repo().join("scripts").join(args[0]))
        .args(&args[1..])
        .env("ZT_STATE_DIR", state)
        .env("ZT_KIND_CLUSTER", "ztlab-e2e")
        .env("ZT_KIND_UI_PORT", free_port()?.to_string())
        .output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "{} failed:\n{text}", args.join(" "));
    Ok(text)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Deletes the cluster when the test ends, however it ends.
struct Teardown(PathBuf);
impl Drop for Teardown {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/kind-cluster.sh"))
            .arg("down")
            .env("ZT_STATE_DIR", &self.0)
            .env("ZT_KIND_CLUSTER", "ztlab-e2e")
            .status();
    }
}

/// A pod that asks its Workload API for an X.509-SVID once (the SPIRE agent's own CLI, from the
/// lab's spire-agent image) and exits.
fn fetch_pod(name: &str, sa: &str, image: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": sa,
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "fetch",
                "image": image,
                "args": ["api", "fetch", "x509", "-socketPath", "/spiffe-workload-api/spire-agent.sock", "-timeout", "10s"],
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "spiffe", "mountPath": "/spiffe-workload-api", "readOnly": true}]
            }],
            "volumes": [{"name": "spiffe", "csi": {"driver": "csi.spiffe.io", "readOnly": true}}]
        }
    }))?)
}

/// Runs `fetch_pod` in `ns` until it ends: (succeeded, its log).
async fn fetch(kind: &Kind, ns: &str, name: &str, sa: &str, image: &str) -> anyhow::Result<(bool, String)> {
    let pods: Api<Pod> = Api::namespaced(kind.client.clone(), ns);
    let _ = pods.delete(name, &DeleteParams::default().grace_period(0)).await;
    poll_until(Duration::from_secs(30), Duration::from_millis(500), || async {
        match pods.get_opt(name).await {
            Ok(None) => Check::Done(()),
            other => Check::NotYet(anyhow::anyhow!("pod {ns}/{name} still there: {other:?}")),
        }
    })
    .await?;
    pods.create(&PostParams::default(), &fetch_pod(name, sa, image)?).await?;
    let phase = poll_until(Duration::from_secs(90), Duration::from_millis(500), || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string());
        match pod.map(|p| p.status.and_then(|s| s.phase).unwrap_or_default()) {
            Ok(p) if p == "Succeeded" || p == "Failed" => Check::Done(p),
            Ok(p) => Check::NotYet(anyhow::anyhow!("pod {ns}/{name} is {p}")),
            Err(e) => Check::NotYet(anyhow::anyhow!(e)),
        }
    })
    .await?;
    let log = pods.logs(name, &LogParams::default()).await.unwrap_or_default();
    Ok((phase == "Succeeded", log))
}

async fn namespace_with_accounts(kind: &Kind, ns: &str, accounts: &[&str]) -> anyhow::Result<()> {
    let nss: Api<Namespace> = Api::all(kind.client.clone());
    let n: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?;
    nss.create(&PostParams::default(), &n).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(kind.client.clone(), ns);
    for sa in accounts {
        let s: ServiceAccount = serde_json::from_value(serde_json::json!({"metadata": {"name": sa}}))?;
        sas.create(&PostParams::default(), &s).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn spire_sites_on_kind_issue_svids_by_namespace_and_service_account() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let before = script(state.path(), &["kind-cluster.sh", "sysctls"])?;
    let teardown = Teardown(state.path().to_owned());
    script(state.path(), &["kind-cluster.sh", "up"])?;
    script(state.path(), &["kind-images.sh"])?;

    let kind = Kind::connect(KindPaths::new(state.path())).await?;
    let images = Images::pinned()?;
    let mut a = SiteSpec::named("a");
    a.x509_svid_ttl_secs = 60;
    let sites = [a.clone(), SiteSpec::named("b")];
    let mut steps = Vec::new();
    kind.up_sites(&sites, "INFO", &images, &mut |s| steps.push(s.to_owned())).await?;
    assert_eq!(steps.len(), 4, "{steps:?}");
    // A second `up` changes nothing and still succeeds.
    kind.up_sites(&sites, "INFO", &images, &mut |_| {}).await?;

    // Both agents attested with k8s_psat.
    for site in ["a", "b"] {
        let agents = kind.spire_server(site, &["agent", "list"]).await?;
        assert!(agents.contains("spiffe://ztlab.test/spire/agent/k8s_psat/ztlab/"), "site {site}: {agents}");
    }

    // One workload entry at site a: namespace demo, ServiceAccount opa.
    namespace_with_accounts(&kind, "demo", &["opa", "nobody"]).await?;
    namespace_with_accounts(&kind, "elsewhere", &["opa"]).await?;
    kind.spire_server(
        "a",
        &[
            "entry",
            "create",
            "-parentID",
            &a.node_alias(),
            "-spiffeID",
            "spiffe://ztlab.test/ns/demo/sa/opa",
            "-selector",
            "k8s:ns:demo",
            "-selector",
            "k8s:sa:opa",
        ],
    )
    .await?;

    // The entry reaches the agent within seconds; until then the pod is refused like any other.
    let log = poll_until(Duration::from_secs(60), Duration::from_secs(1), || async {
        match fetch(&kind, "demo", "fetch-opa", "opa", &images.spire_agent).await {
            Ok((true, log)) => Check::Done(log),
            Ok((false, log)) => Check::NotYet(anyhow::anyhow!("the opa pod got no SVID: {log}")),
            Err(e) => Check::NotYet(e),
        }
    })
    .await?;
    assert!(log.contains("spiffe://ztlab.test/ns/demo/sa/opa"), "{log}");

    // No entry for the ServiceAccount: no SVID, and the agent says why.
    let (ok, log) = fetch(&kind, "demo", "fetch-nobody", "nobody", &images.spire_agent).await?;
    assert!(!ok, "a pod without an entry got an SVID: {log}");
    assert!(log.contains("no identity issued"), "{log}");
    // The same ServiceAccount name in another namespace: no identity either.
    let (ok, log) = fetch(&kind, "elsewhere", "fetch-opa", "opa", &images.spire_agent).await?;
    assert!(!ok, "a pod in another namespace got the opa SVID: {log}");
    assert!(log.contains("no identity issued"), "{log}");

    drop(teardown);
    let after = script(state.path(), &["kind-cluster.sh", "sysctls"])?;
    assert_eq!(before, after, "the host's kernel settings changed");
    Ok(())
}
