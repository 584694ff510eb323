//! The lab's kind cluster: connecting with the lab's kubeconfig, putting SPIRE on it, waiting
//! for readiness, and the SPIRE CLI calls made in the server's pod.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use zt_runtime::lab::SiteSpec;
use zt_runtime::wait::{Check, poll_until};

use crate::Result;
use crate::apply::{FIELD_MANAGER, apply_all};
use crate::manifests::{self, ADMIN_SOCKET, CLUSTER, Images};

/// Where the kind runtime keeps its files: `<state>/kind`.
#[derive(Debug, Clone)]
pub struct KindPaths {
    /// `<state>/kind`.
    pub root: PathBuf,
}

impl KindPaths {
    /// The kind runtime's dir under the lab's state dir.
    pub fn new(state_dir: &Path) -> Self {
        Self { root: state_dir.join("kind") }
    }
    /// The cluster's kubeconfig, written by `scripts/kind-cluster.sh up` (never `~/.kube`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    /// The lab's shared root CA for the cluster's sites.
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }
}

/// A connection to the lab's cluster.
#[derive(Clone)]
pub struct Kind {
    /// The API client.
    pub client: Client,
    /// The runtime's files.
    pub paths: KindPaths,
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kind").field("paths", &self.paths).finish_non_exhaustive()
    }
}

/// How long a site gets to become ready (its pods start from images already on the node).
const SITE_READY: Duration = Duration::from_secs(180);

impl Kind {
    /// Connects with `<state>/kind/kubeconfig`; an error says how to create the cluster.
    pub async fn connect(paths: KindPaths) -> Result<Self> {
        let path = paths.kubeconfig();
        if !path.exists() {
            bail!("no kind cluster: {} does not exist; run ./scripts/setup.sh --kind", path.display());
        }
        let kubeconfig = Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading {}", path.display()))?;
        let client = Client::try_from(config).context("building the Kubernetes client")?;
        client
            .apiserver_version()
            .await
            .with_context(|| format!("the cluster of {} does not answer", path.display()))?;
        Ok(Self { client, paths })
    }

    /// Puts every site of `sites` on the cluster (server, agent, CSI driver), or updates it, and
    /// waits until each is ready and has its node alias entry. `progress` hears each step.
    pub async fn up_sites(
        &self,
        sites: &[SiteSpec],
        log_level: &str,
        images: &Images,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<()> {
        let (cert, key) = zt_runtime::spire::ensure_root_ca(&self.paths.ca_dir())?;
        let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
        let (root_cert, root_key) = (read(&cert)?, read(&key)?);
        for (i, site) in sites.iter().enumerate() {
            let objs = manifests::site(site, i, log_level, images, &root_cert, &root_key)?;
            let ns = manifests::site_namespace(&site.name);
            apply_all(&self.client, &objs.objects[..1]).await?;
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
            for cm in &objs.config_maps {
                let name = cm.metadata.name.clone().unwrap_or_default();
                cms.patch(&name, &params, &Patch::Apply(cm))
                    .await
                    .with_context(|| format!("applying ConfigMap/{name} in {ns}"))?;
            }
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
            secrets
                .patch("ztlab-upstream-root", &params, &Patch::Apply(&objs.upstream))
                .await
                .with_context(|| format!("applying Secret/ztlab-upstream-root in {ns}"))?;
            apply_all(&self.client, &objs.objects[1..]).await?;
            progress(&format!("site {}: applied {} objects in namespace {ns}", site.name, objs.objects.len() + 4));
        }
        for site in sites {
            let ns = manifests::site_namespace(&site.name);
            self.wait_site(&ns).await?;
            self.ensure_node_alias(site).await?;
            progress(&format!("site {}: server and agent ready, node alias {}", site.name, site.node_alias()));
        }
        Ok(())
    }

    /// Waits until the server's StatefulSet and the agent's DaemonSet in `ns` are ready.
    pub async fn wait_site(&self, ns: &str) -> Result<()> {
        let sts: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        let ds: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
        poll_until(SITE_READY, Duration::from_secs(1), || async {
            let server = match sts.get("spire-server").await {
                Ok(s) => s.status.and_then(|s| s.ready_replicas).unwrap_or(0),
                Err(e) => return Check::NotYet(anyhow!("reading StatefulSet/spire-server in {ns}: {e}")),
            };
            let agent = match ds.get("spire-agent").await {
                Ok(d) => d.status.map(|s| (s.number_ready, s.desired_number_scheduled)).unwrap_or((0, 0)),
                Err(e) => return Check::NotYet(anyhow!("reading DaemonSet/spire-agent in {ns}: {e}")),
            };
            if server >= 1 && agent.1 > 0 && agent.0 == agent.1 {
                Check::Done(())
            } else {
                Check::NotYet(anyhow!(
                    "not ready after {}s in {ns}: spire-server {server}/1, spire-agent {}/{} (kubectl -n {ns} get pods)",
                    SITE_READY.as_secs(),
                    agent.0,
                    agent.1
                ))
            }
        })
        .await
    }

    /// `kubectl exec` in `pod` of `ns` (container `container`): its standard output.
    pub async fn exec(&self, ns: &str, pod: &str, container: &str, args: &[&str]) -> Result<String> {
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.paths.kubeconfig())
            .args(["exec", "-n", ns, pod, "-c", container, "--"])
            .args(args)
            .output()
            .await
            .context("running kubectl (installed by ./scripts/install-kind.sh)")?;
        if !out.status.success() {
            bail!("kubectl exec -n {ns} {pod} -- {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `spire-server <args> -socketPath <admin socket>` in site `site`'s server pod.
    pub async fn spire_server(&self, site: &str, args: &[&str]) -> Result<String> {
        let mut all = vec!["spire-server"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-socketPath", ADMIN_SOCKET]);
        self.exec(&manifests::site_namespace(site), "spire-server-0", "spire-server", &all).await
    }

    /// Registers the site's node alias (entry ID `bootstrap.node-alias`): every agent of this
    /// cluster (`k8s_psat:cluster:ztlab`) also gets `site.node_alias()`, the parent of the
    /// catalogue's entries in both runtimes.
    pub async fn ensure_node_alias(&self, site: &SiteSpec) -> Result<()> {
        let shown = self.spire_server(&site.name, &["entry", "show", "-entryID", "bootstrap.node-alias"]).await;
        if shown.is_ok_and(|s| s.contains("bootstrap.node-alias")) {
            return Ok(());
        }
        let selector = format!("k8s_psat:cluster:{CLUSTER}");
        self.spire_server(
            &site.name,
            &[
                "entry",
                "create",
                "-entryID",
                "bootstrap.node-alias",
                "-node",
                "-spiffeID",
                &site.node_alias(),
                "-selector",
                &selector,
            ],
        )
        .await
        .map(|_| ())
    }
}

/// One of the lab's components on the cluster, as `ztlab kind status` shows it: the pod stands
/// where the local runtime shows a pid.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PodStatus {
    /// The component, as the local runtime names it (`spire-server-a`, `spire-agent-b`, ...).
    pub component: String,
    /// Its namespace.
    pub namespace: String,
    /// Its pod.
    pub pod: String,
    /// `healthy` when every container is ready, else `unhealthy`.
    pub health: zt_runtime::component::Health,
    /// The pod's phase and, when not ready, why.
    pub detail: String,
    /// Container restarts so far.
    pub restarts: i32,
}

impl Kind {
    /// The lab's pods in the sites' namespaces, in the lab's order.
    pub async fn status(&self, sites: &[SiteSpec]) -> Result<Vec<PodStatus>> {
        use k8s_openapi::api::core::v1::Pod;
        let mut out = Vec::new();
        for site in sites {
            let ns = manifests::site_namespace(&site.name);
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let mut list = pods.list(&Default::default()).await.with_context(|| format!("listing pods in {ns}"))?.items;
            list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            for pod in list {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let app = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app.kubernetes.io/name").cloned())
                    .unwrap_or_else(|| name.clone());
                let status = pod.status.unwrap_or_default();
                let containers = status.container_statuses.unwrap_or_default();
                let ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
                let waiting: Vec<String> = containers
                    .iter()
                    .filter_map(|c| {
                        let w = c.state.as_ref()?.waiting.as_ref()?;
                        Some(format!("{}: {}", c.name, w.reason.clone().unwrap_or_default()))
                    })
                    .collect();
                out.push(PodStatus {
                    component: format!("{app}-{}", site.name),
                    namespace: ns.clone(),
                    pod: name,
                    health: if ready {
                        zt_runtime::component::Health::Healthy
                    } else {
                        zt_runtime::component::Health::Unhealthy
                    },
                    detail: std::iter::once(status.phase.unwrap_or_default())
                        .chain(waiting)
                        .collect::<Vec<_>>()
                        .join("; "),
                    restarts: containers.iter().map(|c| c.restart_count).sum(),
                });
            }
        }
        Ok(out)
    }
}
