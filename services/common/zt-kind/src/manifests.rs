//! The lab's objects on kind, rendered from the templates under `infrastructure/kind/` and the
//! SPIRE configs the local runtime renders too.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DynamicObject, ObjectMeta};
use sha2::{Digest as _, Sha256};
use zt_runtime::lab::SiteSpec;
use zt_runtime::spire::{Attestation, SiteConfigPaths, SiteConfigValues, render_configs};

use crate::Result;
use crate::apply::parse_documents;

const SITE_TEMPLATE: &str = include_str!("../../../../infrastructure/kind/spire/site.yaml.tmpl");
const KIND_ENV: &str = include_str!("../../../../infrastructure/kind/kind.env");

/// The cluster's name, as kind and the SPIRE attestors know it.
pub const CLUSTER: &str = "ztlab";

/// Where SPIRE's files are inside its containers (the volumes of `site.yaml.tmpl`).
const SERVER_DATA: &str = "/run/spire/data";
/// The server's admin socket, shared with the site agent in the server's pod.
pub const ADMIN_SOCKET: &str = "/run/spire/admin/api.sock";
const AGENT_DATA: &str = "/run/spire/data";
const AGENT_SOCKET: &str = "/run/spire/agent-sockets/spire-agent.sock";
const TRUST_BUNDLE: &str = "/run/spire/bundle/root.crt";
const UPSTREAM_CERT: &str = "/run/spire/upstream/root.crt";
const UPSTREAM_KEY: &str = "/run/spire/upstream/root.key";

/// The images the lab's objects run, as `scripts/kind-images.sh` tags and loads them.
#[derive(Debug, Clone)]
pub struct Images {
    /// SPIRE server.
    pub spire_server: String,
    /// SPIRE agent.
    pub spire_agent: String,
    /// The SPIFFE CSI driver.
    pub csi_driver: String,
    /// The lab's CSI plugin registrar.
    pub csi_registrar: String,
}

impl Images {
    /// The tags `scripts/kind-images.sh` gives at the pinned versions (`SPIRE_VERSION` in
    /// infrastructure/versions.env, `KIND_SPIFFE_CSI_VERSION` in infrastructure/kind/kind.env).
    pub fn pinned() -> Result<Self> {
        let spire = zt_runtime::binaries::versions().remove("SPIRE_VERSION");
        let csi = zt_runtime::binaries::parse_env(KIND_ENV).remove("KIND_SPIFFE_CSI_VERSION");
        match (spire, csi) {
            (Some(spire), Some(csi)) => Ok(Self::lab(&spire, &csi)),
            _ => anyhow::bail!("SPIRE_VERSION or KIND_SPIFFE_CSI_VERSION is not pinned in the built-in version files"),
        }
    }

    /// The tags `scripts/kind-images.sh` gives, for SPIRE `spire_version` (infrastructure/versions.env).
    pub fn lab(spire_version: &str, csi_version: &str) -> Self {
        let v = spire_version.trim_start_matches('v');
        Self {
            spire_server: format!("localhost/ztlab/spire-server:{v}"),
            spire_agent: format!("localhost/ztlab/spire-agent:{v}"),
            csi_driver: format!("localhost/ztlab/spiffe-csi-driver:{}", csi_version.trim_start_matches('v')),
            csi_registrar: "localhost/ztlab/csi-registrar:dev".into(),
        }
    }
}

/// The namespace of site `site`'s SPIRE server and agent.
pub fn site_namespace(site: &str) -> String {
    format!("spire-{site}")
}

/// The CSI driver that hands out the Workload API socket of site number `index` (in the lab's
/// order): the first site, where the app runs, has the usual `csi.spiffe.io`.
pub fn csi_driver(index: usize, site: &str) -> String {
    if index == 0 { "csi.spiffe.io".into() } else { format!("{site}.csi.spiffe.io") }
}

/// One site's objects: those of the template, then its ConfigMaps and its Secret.
#[derive(Debug, Clone)]
pub struct SiteObjects {
    /// From `site.yaml.tmpl`, in order (the Namespace first).
    pub objects: Vec<DynamicObject>,
    /// `spire-server`, `spire-agent` (the rendered configs) and `ztlab-trust-bundle`.
    pub config_maps: Vec<ConfigMap>,
    /// `ztlab-upstream-root`: the lab's shared root (ADR 0001), which signs the site's CA.
    pub upstream: Secret,
}

fn hash(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn config_map(namespace: &str, name: &str, files: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([("app.kubernetes.io/part-of".into(), "ztlab".into())])),
            ..Default::default()
        },
        data: Some(files.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
        ..Default::default()
    }
}

/// Renders site number `index` of the lab: `root_cert` and `root_key` are the shared root's PEM.
pub fn site(
    site: &SiteSpec,
    index: usize,
    log_level: &str,
    images: &Images,
    root_cert: &str,
    root_key: &str,
) -> Result<SiteObjects> {
    let namespace = site_namespace(&site.name);
    let values = SiteConfigValues {
        trust_domain: site.trust_domain.clone(),
        server_port: 8081,
        server_health_port: 8080,
        agent_health_port: 8080,
        x509_svid_ttl: Duration::from_secs(site.x509_svid_ttl_secs),
        jwt_svid_ttl: Duration::from_secs(site.jwt_svid_ttl_secs),
        upstream: None,
        log_level: log_level.into(),
    };
    let paths = SiteConfigPaths {
        server_data: SERVER_DATA.into(),
        admin_socket: ADMIN_SOCKET.into(),
        agent_data: AGENT_DATA.into(),
        workload_socket: AGENT_SOCKET.into(),
        trust_bundle: TRUST_BUNDLE.into(),
        upstream: site.shared_root.then(|| (UPSTREAM_CERT.into(), UPSTREAM_KEY.into())),
    };
    let attestation = Attestation::Kubernetes {
        cluster: CLUSTER.into(),
        agent_service_account: format!("{namespace}:spire-agent"),
        server_address: format!("spire-server.{namespace}.svc"),
    };
    let configs = render_configs(&values, &paths, &attestation)?;
    let yaml = zt_runtime::render(
        "infrastructure/kind/spire/site.yaml.tmpl",
        SITE_TEMPLATE,
        &[
            ("namespace", namespace.clone()),
            ("site", site.name.clone()),
            ("spire_server_image", images.spire_server.clone()),
            ("spire_agent_image", images.spire_agent.clone()),
            ("csi_driver_image", images.csi_driver.clone()),
            ("csi_registrar_image", images.csi_registrar.clone()),
            ("csi_driver", csi_driver(index, &site.name)),
            ("server_config_hash", hash(&format!("{}{root_cert}", configs.server))),
            ("agent_config_hash", hash(&format!("{}{root_cert}", configs.agent))),
        ],
    )?;
    let objects = parse_documents("infrastructure/kind/spire/site.yaml.tmpl", &yaml)?;
    let config_maps = vec![
        config_map(&namespace, "spire-server", &[("server.conf", &configs.server)]),
        config_map(&namespace, "spire-agent", &[("agent.conf", &configs.agent)]),
        config_map(&namespace, "ztlab-trust-bundle", &[("root.crt", root_cert)]),
    ];
    let upstream = Secret {
        metadata: ObjectMeta {
            name: Some("ztlab-upstream-root".into()),
            namespace: Some(namespace),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("root.crt".into(), ByteString(root_cert.as_bytes().to_vec())),
            ("root.key".into(), ByteString(root_key.as_bytes().to_vec())),
        ])),
        ..Default::default()
    };
    Ok(SiteObjects { objects, config_maps, upstream })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_renders_with_k8s_attestation_and_its_own_names() {
        let images = Images::lab("v1.15.3", "v0.2.6");
        let mut b = SiteSpec::named("b");
        b.x509_svid_ttl_secs = 60;
        let objs = site(&b, 1, "INFO", &images, "CERT", "KEY").expect("test value");
        let names: Vec<String> = objs.objects.iter().map(crate::apply::describe).collect();
        assert_eq!(names[0], "Namespace/spire-b");
        assert!(names.contains(&"StatefulSet/spire-server in spire-b".to_owned()), "{names:?}");
        assert!(names.contains(&"DaemonSet/spire-agent in spire-b".to_owned()));
        assert!(names.contains(&"CSIDriver/b.csi.spiffe.io".to_owned()), "{names:?}");
        let server = objs.config_maps[0].data.as_ref().expect("test value")["server.conf"].clone();
        assert!(server.contains("service_account_allow_list = [\"spire-b:spire-agent\"]"), "{server}");
        assert!(server.contains("default_x509_svid_ttl = \"60s\""));
        assert!(server.contains("cert_file_path = \"/run/spire/upstream/root.crt\""));
        let agent = objs.config_maps[1].data.as_ref().expect("test value")["agent.conf"].clone();
        assert!(agent.contains("server_address = \"spire-server.spire-b.svc\""), "{agent}");
        assert!(agent.contains("socket_path = \"/run/spire/agent-sockets/spire-agent.sock\""));
        let yaml = serde_json::to_string(&objs.objects).expect("test value");
        assert!(yaml.contains("localhost/ztlab/spire-server:1.15.3"));
        assert!(!yaml.contains("{{"));
        assert_eq!(csi_driver(0, "a"), "csi.spiffe.io");
        let pinned = Images::pinned().expect("the built-in pins");
        assert!(
            pinned.spire_server.starts_with("localhost/ztlab/spire-server:") && !pinned.spire_server.contains(":v")
        );
        assert!(pinned.csi_driver.starts_with("localhost/ztlab/spiffe-csi-driver:"));
    }
}
