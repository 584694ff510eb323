#!/usr/bin/env python3
"""Offline checks of the kind runtime's manifests (infrastructure/kind/), run by
scripts/validate-kind.sh. There is no Docker, Kubernetes or Cilium on the development machines,
so this is what stands in for `kubectl apply` until a laptop with kind runs the lab:

1. schemas: every Kubernetes object validates against the Kubernetes JSON schemas that the PyPI
   package kubernetes-validate ships (strict: unknown fields are errors), for the Kubernetes
   version pinned in kind.env. CiliumNetworkPolicy is a CRD with no schema there; it validates
   against schemas/ciliumnetworkpolicy.schema.json, the subset of fields this checker models.
   Any other kind is an error.
2. coherence: names (Deployment = ServiceAccount = container = image), Services and their target
   ports, mounted ConfigMaps and Secrets (defined here or listed in generated.toml with an
   existing source), image pins (versions.env), the SPIFFE CSI socket, the restricted Pod
   Security basics, the trust domain, the NodePort that kind-config.yaml maps, the Cilium Helm
   values (mutual authentication on, a version that still has it).
3. identities: every entry of infrastructure/catalogue/workloads.toml maps to a ServiceAccount,
   every policy selector selects by ServiceAccount (the SPIFFE identity), and selects something.
4. reachability: the allowed flows are derived from the CiliumNetworkPolicy objects (Cilium's
   default enforcement mode: an endpoint selected by a policy with an ingress/egress section
   denies what no rule allows; a flow needs the caller's egress and the callee's ingress) and
   must equal reachability.toml, mutual authentication included.

`--self-test` copies the tree, breaks it in several ways, and fails unless every broken copy
is rejected for the expected reason and the intact copy passes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils

KIND_DIR = Path("infrastructure/kind")
SA_KEY = "io.cilium.k8s.policy.serviceaccount"
NS_KEY = "io.kubernetes.pod.namespace"
CSI_DRIVER = "csi.spiffe.io"


# --- small helpers ------------------------------------------------------------------------------


class Checks:
    """Collects failures per section; prints what was checked."""

    def __init__(self, quiet: bool = False):
        self.errors: list[str] = []
        self.quiet = quiet
        self.section = ""

    def start(self, section: str) -> None:
        self.section = section
        self.say(f"==> {section}")

    def fail(self, msg: str) -> None:
        self.errors.append(f"[{self.section.split(' (')[0]}] {msg}")
        if not self.quiet:
            print(f"    FAIL {msg}")

    def ok(self, msg: str) -> None:
        self.say(f"    ok {msg}")

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg)


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip().strip('"')
    return env


@dataclass
class Doc:
    file: str
    obj: dict

    @property
    def kind(self) -> str:
        return self.obj.get("kind", "?")

    @property
    def name(self) -> str:
        return (self.obj.get("metadata") or {}).get("name", "?")

    @property
    def ns(self) -> str:
        return (self.obj.get("metadata") or {}).get("namespace", "")

    def ref(self) -> str:
        ns = f"{self.ns}/" if self.ns else ""
        return f"{self.kind} {ns}{self.name} ({self.file})"


def load_docs(root: Path, checks: Checks) -> list[Doc]:
    docs = []
    for sub in ("manifests", "policies"):
        for path in sorted((root / KIND_DIR / sub).glob("*.yaml")):
            rel = str(path.relative_to(root))
            try:
                for obj in yaml.safe_load_all(path.read_text()):
                    if obj is None:
                        continue
                    if not isinstance(obj, dict):
                        checks.fail(f"{rel}: a document is not a mapping")
                        continue
                    docs.append(Doc(rel, obj))
            except yaml.YAMLError as e:
                checks.fail(f"{rel}: not valid YAML: {e}")
    return docs


def pod_spec(doc: Doc) -> dict | None:
    if doc.kind in ("Deployment", "StatefulSet", "DaemonSet"):
        return ((doc.obj.get("spec") or {}).get("template") or {}).get("spec")
    return None


def pod_labels(doc: Doc) -> dict:
    return (((doc.obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def all_containers(spec: dict) -> list[dict]:
    """Containers, and init containers that are native sidecars (restartPolicy: Always)."""
    out = list(spec.get("containers") or [])
    out += [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    return out


def every_container(spec: dict) -> list[dict]:
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


# --- 1. schemas -----------------------------------------------------------------------------------


_schema_cache: dict = {}
_orig_schema_contents = kv_utils.schema_contents


def _cached_schema_contents(filename, desired_version):
    # kubernetes-validate re-reads its (large) definitions file for every object.
    key = (filename, desired_version)
    if key not in _schema_cache:
        _schema_cache[key] = _orig_schema_contents(filename, desired_version)
    return _schema_cache[key]


kv_utils.schema_contents = _cached_schema_contents


def check_schemas(root: Path, docs: list[Doc], k8s_version: str, checks: Checks) -> None:
    checks.start(f"schemas (Kubernetes {k8s_version}, kubernetes-validate {kubernetes_validate.version.__version__}, strict)")
    cnp_schema = json.loads((root / KIND_DIR / "schemas/ciliumnetworkpolicy.schema.json").read_text())
    cnp_validator = jsonschema.Draft202012Validator(cnp_schema)
    counts: dict[str, int] = {}
    bad = 0
    for d in docs:
        if "apiVersion" not in d.obj or "kind" not in d.obj:
            checks.fail(f"{d.file}: an object without apiVersion or kind")
            bad += 1
            continue
        if d.kind == "CiliumNetworkPolicy":
            errs = sorted(cnp_validator.iter_errors(d.obj), key=lambda e: list(e.absolute_path))
            for e in errs:
                path = "/".join(str(p) for p in e.absolute_path) or "(root)"
                checks.fail(f"{d.ref()}: {path}: {e.message} (schemas/ciliumnetworkpolicy.schema.json)")
            bad += bool(errs)
        else:
            try:
                kubernetes_validate.validate(d.obj, k8s_version, strict=True)
            except kubernetes_validate.SchemaNotFoundError as e:
                checks.fail(f"{d.ref()}: no schema for {d.kind} {d.obj.get('apiVersion')} in Kubernetes "
                            f"{k8s_version}, and no ztlab schema for it either: {e.message}")
                bad += 1
                continue
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.absolute_path) or "(root)"
                checks.fail(f"{d.ref()}: {path}: {e.message}")
                bad += 1
                continue
        counts[d.kind] = counts.get(d.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    if not bad:
        checks.ok(f"{len(docs)} objects valid: {summary}")


# --- 2. coherence ---------------------------------------------------------------------------------


def check_coherence(root: Path, docs: list[Doc], kind_env: dict, versions: dict, checks: Checks) -> None:
    checks.start("coherence (names, Services, ConfigMaps and Secrets, images, SPIFFE socket, pod security)")
    n0 = len(checks.errors)
    namespaces = {d.name for d in docs if d.kind == "Namespace"}
    sas = {(d.ns, d.name) for d in docs if d.kind == "ServiceAccount"}
    workloads = [d for d in docs if pod_spec(d) is not None]
    configmaps = {(d.ns, d.name) for d in docs if d.kind == "ConfigMap"}
    secrets = {(d.ns, d.name) for d in docs if d.kind == "Secret"}
    generated = tomllib.loads((root / KIND_DIR / "generated.toml").read_text())
    gen_cm = {(g["namespace"], g["name"]): g for g in generated.get("configmap", [])}
    gen_secret = {(g["namespace"], g["name"]): g for g in generated.get("secret", [])}
    used_gen: set = set()
    td = kind_env.get("TRUST_DOMAIN", "")

    for d in docs:
        if d.kind != "Namespace" and d.ns and d.ns not in namespaces:
            checks.fail(f"{d.ref()}: namespace {d.ns!r} is not defined in manifests/")
        if d.kind not in ("Namespace",) and not d.ns:
            checks.fail(f"{d.ref()}: has no namespace")

    for key, g in itertools.chain(gen_cm.items(), gen_secret.items()):
        if key[0] not in namespaces:
            checks.fail(f"generated.toml: {key[1]} is in unknown namespace {key[0]!r}")
    for key, g in gen_cm.items():
        if not (root / g["source"]).exists():
            checks.fail(f"generated.toml: ConfigMap {key[0]}/{key[1]}: source {g['source']} does not exist")

    envoy_image = f"envoyproxy/envoy:v{versions['ENVOY_VERSION'].lstrip('v')}"
    helper_image = f"ghcr.io/spiffe/spiffe-helper:{versions['SPIFFE_HELPER_VERSION'].lstrip('v')}"

    for d in workloads:
        spec = pod_spec(d)
        ref = d.ref()
        sa = spec.get("serviceAccountName")
        if sa != d.name:
            checks.fail(f"{ref}: serviceAccountName {sa!r} differs from the workload's name (names are the same everywhere)")
        if (d.ns, sa) not in sas:
            checks.fail(f"{ref}: ServiceAccount {d.ns}/{sa} is not defined")
        labels = pod_labels(d)
        sel = ((d.obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            checks.fail(f"{ref}: spec.selector does not match the pod template's labels")
        if labels.get("app.kubernetes.io/name") != d.name:
            checks.fail(f"{ref}: pod label app.kubernetes.io/name must be {d.name!r}")
        if spec.get("automountServiceAccountToken") is not False:
            checks.fail(f"{ref}: automountServiceAccountToken must be false (no workload uses the Kubernetes API)")
        names = [c.get("name") for c in every_container(spec)]
        if d.name not in names:
            checks.fail(f"{ref}: no container named {d.name!r}")
        # Pod security (restricted), the parts that matter here.
        psc = spec.get("securityContext") or {}
        for bad in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(bad):
                checks.fail(f"{ref}: {bad} is not allowed")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            checks.fail(f"{ref}: pod securityContext.seccompProfile.type must be RuntimeDefault")
        for c in every_container(spec):
            cref = f"{ref} container {c.get('name')}"
            csc = c.get("securityContext") or {}
            if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                checks.fail(f"{cref}: must run as non-root (runAsNonRoot: true)")
            if csc.get("allowPrivilegeEscalation") is not False:
                checks.fail(f"{cref}: allowPrivilegeEscalation must be false")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                checks.fail(f"{cref}: capabilities.drop must contain ALL")
            if csc.get("privileged"):
                checks.fail(f"{cref}: privileged is not allowed")
            if csc.get("readOnlyRootFilesystem") is not True:
                checks.fail(f"{cref}: readOnlyRootFilesystem must be true (writable paths are volumes)")
            image = c.get("image", "")
            if image.startswith("ztlab/"):
                if image != f"ztlab/{c.get('name')}:dev" or c.get("name") != d.name:
                    checks.fail(f"{cref}: a ztlab image must be ztlab/<workload>:dev in the workload's "
                                f"own container (got {image!r})")
            elif image.startswith("envoyproxy/envoy:"):
                if image != envoy_image:
                    checks.fail(f"{cref}: image {image!r} is not the pinned Envoy {envoy_image!r} (infrastructure/versions.env)")
            elif image.startswith("ghcr.io/spiffe/spiffe-helper:"):
                if image != helper_image:
                    checks.fail(f"{cref}: image {image!r} is not the pinned spiffe-helper {helper_image!r} (infrastructure/versions.env)")
            elif not re.fullmatch(r"[a-z0-9./-]+:[A-Za-z0-9._-]+", image) or image.endswith(":latest"):
                checks.fail(f"{cref}: image {image!r} must carry an explicit version tag")
            for e in c.get("env") or []:
                if e.get("name") == "ZT_TRUST_DOMAIN" and e.get("value") != td:
                    checks.fail(f"{cref}: ZT_TRUST_DOMAIN is {e.get('value')!r}, not the lab's {td!r} (kind.env)")
        # Volumes: hostPath is out; ConfigMaps and Secrets must exist or be generated.
        vols = {v.get("name"): v for v in spec.get("volumes") or []}
        csi_vols = {n for n, v in vols.items() if (v.get("csi") or {}).get("driver") == CSI_DRIVER}
        for n, v in vols.items():
            if "hostPath" in v:
                checks.fail(f"{ref}: volume {n} is a hostPath (the SPIRE socket comes from the SPIFFE CSI driver)")
            if n in csi_vols and (v.get("csi") or {}).get("readOnly") is not True:
                checks.fail(f"{ref}: the SPIFFE CSI volume {n} must be readOnly")
            if "configMap" in v:
                key = (d.ns, v["configMap"].get("name"))
                if key in gen_cm:
                    used_gen.add(("cm",) + key)
                elif key not in configmaps:
                    checks.fail(f"{ref}: ConfigMap {key[0]}/{key[1]} is neither in manifests/ nor in generated.toml")
            if "secret" in v:
                key = (d.ns, v["secret"].get("secretName"))
                if key in gen_secret:
                    used_gen.add(("secret",) + key)
                elif key not in secrets:
                    checks.fail(f"{ref}: Secret {key[0]}/{key[1]} is neither in manifests/ nor in generated.toml")
        if not csi_vols:
            checks.fail(f"{ref}: no SPIFFE CSI volume (driver {CSI_DRIVER}): every demo workload gets an SVID")
        for c in every_container(spec):
            cref = f"{ref} container {c.get('name')}"
            mounts = {m.get("name"): m for m in c.get("volumeMounts") or []}
            for m in mounts:
                if m not in vols:
                    checks.fail(f"{cref}: mounts undefined volume {m!r}")
            for e in c.get("env") or []:
                ref_ = ((e.get("valueFrom") or {}).get("secretKeyRef")) or None
                if ref_:
                    key = (d.ns, ref_.get("name"))
                    g = gen_secret.get(key)
                    if g is not None:
                        used_gen.add(("secret",) + key)
                        if ref_.get("key") not in g.get("keys", []):
                            checks.fail(f"{cref}: Secret {key[1]} has no key {ref_.get('key')!r} in generated.toml")
                    elif key not in secrets:
                        checks.fail(f"{cref}: Secret {key[0]}/{key[1]} is neither in manifests/ nor in generated.toml")
            sock = next((e.get("value") for e in c.get("env") or [] if e.get("name") == "ZT_SPIFFE_ENDPOINT_SOCKET"), None)
            needs_socket = sock is not None or "envoy" in c.get("image", "") or "spiffe-helper" in c.get("image", "")
            if needs_socket:
                csi_mounts = [m for n, m in mounts.items() if n in csi_vols]
                if not csi_mounts:
                    checks.fail(f"{cref}: does not mount the SPIFFE CSI volume (SPIRE agent socket)")
                elif sock is not None:
                    path = sock.removeprefix("unix://")
                    if not any(os.path.dirname(path) == m.get("mountPath").rstrip("/") for m in csi_mounts):
                        checks.fail(f"{cref}: ZT_SPIFFE_ENDPOINT_SOCKET {sock} is not under the CSI mount")
                if any(m.get("readOnly") is not True for m in csi_mounts):
                    checks.fail(f"{cref}: the SPIFFE CSI mount must be readOnly")

    for key in gen_cm:
        if ("cm",) + key not in used_gen:
            checks.fail(f"generated.toml: ConfigMap {key[0]}/{key[1]} is not used by any pod")
    for key in gen_secret:
        if ("secret",) + key not in used_gen:
            checks.fail(f"generated.toml: Secret {key[0]}/{key[1]} is not used by any pod")

    # Services: one workload each, target ports that exist.
    node_ports = set()
    for d in docs:
        if d.kind != "Service":
            continue
        spec = d.obj.get("spec") or {}
        sel = spec.get("selector") or {}
        targets = [w for w in workloads if w.ns == d.ns and sel and all(pod_labels(w).get(k) == v for k, v in sel.items())]
        if len(targets) != 1:
            checks.fail(f"{d.ref()}: selects {len(targets)} workloads (want exactly one)")
            continue
        if d.name != targets[0].name:
            checks.fail(f"{d.ref()}: a Service is named like its workload ({targets[0].name!r})")
        cports = [p for c in all_containers(pod_spec(targets[0])) for p in c.get("ports") or []]
        for p in spec.get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            proto = p.get("protocol", "TCP")
            hit = [c for c in cports if (c.get("name") == tp if isinstance(tp, str) else c.get("containerPort") == tp)
                   and c.get("protocol", "TCP") == proto]
            if not hit:
                checks.fail(f"{d.ref()}: targetPort {tp!r}/{proto} is no container port of {targets[0].name}")
            if "nodePort" in p:
                node_ports.add(p["nodePort"])
    kind_cfg = yaml.safe_load((root / "kind-config.yaml").read_text())
    mapped = {m.get("containerPort") for n in kind_cfg.get("nodes") or [] for m in n.get("extraPortMappings") or []}
    if node_ports != mapped:
        checks.fail(f"NodePorts {sorted(node_ports)} differ from the ports kind-config.yaml maps {sorted(mapped)}")

    # Trust domain: the same as the local runtime's.
    lab = tomllib.loads((root / "infrastructure/local/lab.toml").read_text())
    tds = {s.get("trust_domain") for s in lab.get("sites", [])}
    if tds != {td}:
        checks.fail(f"kind.env TRUST_DOMAIN {td!r} differs from infrastructure/local/lab.toml's {sorted(tds)}")

    if len(checks.errors) == n0:
        checks.ok(f"{len(workloads)} workloads, {sum(1 for d in docs if d.kind == 'Service')} Services, "
                  f"{len(gen_cm)} generated ConfigMaps and {len(gen_secret)} generated Secrets, "
                  f"images {envoy_image} and {helper_image}, trust domain {td}")


def check_cilium(root: Path, kind_env: dict, checks: Checks) -> None:
    checks.start("Cilium (Helm values, pinned version)")
    n0 = len(checks.errors)
    version = kind_env.get("CILIUM_VERSION", "")
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        checks.fail(f"kind.env CILIUM_VERSION {version!r} is not an exact x.y.z version")
    else:
        major, minor = int(m.group(1)), int(m.group(2))
        if not (major == 1 and 14 <= minor < 20):
            checks.fail(f"Cilium {version}: mutual authentication exists from 1.14 and is deprecated from 1.20; "
                        f"pin a 1.14 to 1.19 release")
    path = root / KIND_DIR / "cilium/values.yaml"
    text = path.read_text()
    if f"--version {version}" not in text:
        checks.fail(f"cilium/values.yaml: its install command does not say --version {version} (kind.env)")
    v = yaml.safe_load(text) or {}

    def get(*keys):
        cur = v
        for k in keys:
            if not isinstance(cur, dict) or k not in cur:
                return None
            cur = cur[k]
        return cur

    want = {
        ("authentication", "enabled"): True,
        ("authentication", "mutual", "spire", "enabled"): True,
        ("authentication", "mutual", "spire", "install", "enabled"): True,
        ("kubeProxyReplacement",): True,
        ("policyEnforcementMode",): "default",
    }
    for keys, value in want.items():
        if get(*keys) != value:
            checks.fail(f"cilium/values.yaml: {'.'.join(keys)} must be {json.dumps(value)} (is {json.dumps(get(*keys))})")
    kind_cfg = yaml.safe_load((root / KIND_DIR / "cilium" / "kind-config.yaml").read_text())
    if kind_cfg.get("networking", {}).get("kubeProxyMode") != "none" or not kind_cfg.get("networking", {}).get("disableDefaultCNI"):
        checks.fail("cilium/kind-config.yaml must disable the default CNI and kube-proxy (Cilium replaces both)")
    host = f"{kind_cfg.get('name')}-control-plane"
    if get("k8sServiceHost") != host:
        checks.fail(f"cilium/values.yaml: k8sServiceHost must be {host!r} (kind cluster {kind_cfg.get('name')!r})")
    if len(checks.errors) == n0:
        checks.ok(f"Cilium {version}: authentication.mutual.spire enabled (Cilium-managed SPIRE), "
                  f"kube-proxy replacement, policy enforcement 'default'")


# --- 3. identities and 4. reachability ------------------------------------------------------------


@dataclass
class Endpoint:
    name: str
    namespace: str = ""
    sa: str = ""
    entity: str = ""  # "world" for outside the cluster
    labels: dict = field(default_factory=dict)
    ports: set = field(default_factory=set)  # {(port, proto)}
    spiffe_ids: list = field(default_factory=list)
    external: bool = False  # an [[endpoint]] of reachability.toml, outside the manifests

    def desc(self) -> str:
        if self.entity:
            return f"{self.name} (entity {self.entity})"
        ids = ", ".join(self.spiffe_ids) if self.spiffe_ids else f"ServiceAccount {self.namespace}/{self.sa}"
        return f"{self.name} ({ids})"


def norm_key(k: str) -> str:
    for prefix in ("k8s:", "any:"):
        if k.startswith(prefix):
            return k[len(prefix):]
    return k


def parse_port(s: str) -> tuple[int, str]:
    p, _, proto = s.partition("/")
    return int(p), (proto or "TCP").upper()


def build_endpoints(root: Path, docs: list[Doc], matrix: dict, kind_env: dict, checks: Checks) -> dict[str, Endpoint]:
    checks.start("identities (ServiceAccount -> SPIFFE IDs, infrastructure/catalogue/workloads.toml)")
    n0 = len(checks.errors)
    td = kind_env.get("TRUST_DOMAIN", "")
    eps: dict[str, Endpoint] = {}
    ns_labels = {d.name: (d.obj.get("metadata") or {}).get("labels") or {} for d in docs if d.kind == "Namespace"}
    for d in docs:
        if d.kind != "ServiceAccount":
            continue
        if d.name in eps:
            checks.fail(f"{d.ref()}: two ServiceAccounts named {d.name!r}; endpoint names must be unique")
        eps[d.name] = Endpoint(d.name, d.ns, d.name, labels={NS_KEY: d.ns, SA_KEY: d.name})
        for k, v in ns_labels.get(d.ns, {}).items():
            eps[d.name].labels[f"io.cilium.k8s.namespace.labels.{k}"] = v
    for d in docs:
        spec = pod_spec(d)
        if spec is None:
            continue
        ep = eps.get(spec.get("serviceAccountName", ""))
        if ep is None or ep.namespace != d.ns:
            continue
        ep.labels.update(pod_labels(d))
        for c in all_containers(spec):
            for p in c.get("ports") or []:
                ep.ports.add((p["containerPort"], p.get("protocol", "TCP")))
    for e in matrix.get("endpoint", []):
        name = e.get("name")
        if name in eps:
            checks.fail(f"reachability.toml: endpoint {name!r} clashes with a ServiceAccount")
            continue
        if e.get("entity"):
            if e["entity"] != "world":
                checks.fail(f"reachability.toml: endpoint {name!r}: only the entity 'world' is modelled")
            eps[name] = Endpoint(name, entity=e["entity"], external=True)
        else:
            ns, sa = e.get("namespace", ""), e.get("service_account", "")
            eps[name] = Endpoint(name, ns, sa, labels={NS_KEY: ns, SA_KEY: sa, **(e.get("labels") or {})},
                                 ports={parse_port(p) for p in e.get("ports", [])}, external=True)

    # SPIFFE IDs from the catalogue: /ns/<ns>/sa/<sa> paths belong to that ServiceAccount; other
    # paths (the agents) to the ServiceAccount named like the workload's binary.
    catalogue = tomllib.loads((root / "infrastructure/catalogue/workloads.toml").read_text())
    workload_names = {d.name for d in docs if pod_spec(d) is not None}
    for w in catalogue.get("workload", []):
        path = w.get("spiffe_path", "")
        m = re.fullmatch(r"/ns/([^/]+)/sa/([^/]+)", path)
        if m:
            ns, sa = m.groups()
            ep = eps.get(sa)
            if ep is None or ep.namespace != ns:
                checks.fail(f"catalogue workload {w.get('name')!r} ({path}): no ServiceAccount {ns}/{sa} in manifests/")
                continue
        else:
            binary = w.get("binary", w.get("name"))
            ep = eps.get(binary)
            if ep is None or binary not in workload_names:
                checks.fail(f"catalogue workload {w.get('name')!r} ({path}): no Deployment and ServiceAccount named {binary!r}")
                continue
        sid = f"spiffe://{td}{path}"
        if sid not in ep.spiffe_ids:
            ep.spiffe_ids.append(sid)
    for ep in eps.values():
        if ep.external:
            continue
        conv = f"spiffe://{td}/ns/{ep.namespace}/sa/{ep.sa}"
        if ep.name in workload_names and not ep.spiffe_ids:
            checks.fail(f"workload {ep.name}: no entry in infrastructure/catalogue/workloads.toml gives it an identity")
        if not ep.spiffe_ids:
            ep.spiffe_ids.append(conv)  # bootstrap entries (entry-manager, site agents)
    if len(checks.errors) == n0:
        for ep in eps.values():
            if not ep.external:
                checks.say(f"    {ep.namespace + '/' + ep.sa:<28} -> {', '.join(ep.spiffe_ids)}")
        checks.ok(f"{sum(1 for e in eps.values() if not e.external)} ServiceAccounts, "
                  f"each catalogue entry maps to one")
    return eps


@dataclass
class Rule:
    policy: str
    peers: list  # [("sel", ns, labels)] or [("entity", name)]
    ports: list | None  # [(port, proto)] or None for any
    auth: bool


@dataclass
class Policy:
    ref: str
    namespace: str
    selector: dict
    ingress: list[Rule] | None
    egress: list[Rule] | None


def selector_matches(sel_ns: str, labels: dict, ep: Endpoint) -> bool:
    if ep.entity:
        return False
    want = dict(labels)
    if NS_KEY not in want:
        want[NS_KEY] = sel_ns
    return all(ep.labels.get(k) == v for k, v in want.items())


def parse_policies(docs: list[Doc], eps: dict[str, Endpoint], checks: Checks) -> list[Policy]:
    checks.start("policies (CiliumNetworkPolicy selectors are SPIFFE identities)")
    n0 = len(checks.errors)
    out = []

    def sel_labels(sel: dict, where: str, allow_empty: bool) -> dict | None:
        raw = (sel or {}).get("matchLabels") or {}
        labels = {}
        for k, v in raw.items():
            nk = norm_key(k)
            if nk in labels:
                checks.fail(f"{where}: label {nk} given twice")
            labels[nk] = v
        if not labels:
            if not allow_empty:
                checks.fail(f"{where}: an empty selector")
            return labels
        if SA_KEY not in labels:
            checks.fail(f"{where}: selects by {sorted(labels)} instead of the ServiceAccount ({SA_KEY}), "
                        f"which is what the SPIFFE ID names")
        return labels

    for d in docs:
        if d.kind != "CiliumNetworkPolicy":
            continue
        spec = d.obj.get("spec") or {}
        ref = d.ref()
        selector = sel_labels(spec.get("endpointSelector"), f"{ref} endpointSelector", allow_empty=True)
        if selector is None:
            continue
        selected = [e for e in eps.values() if selector_matches(d.ns, selector, e) and e.namespace == d.ns]
        if not selected:
            checks.fail(f"{ref}: endpointSelector selects no endpoint")

        def rules(direction: str) -> list[Rule] | None:
            if direction not in spec:
                return None
            res = []
            for i, r in enumerate(spec[direction]):
                where = f"{ref} {direction}[{i}]"
                peers = []
                for j, s in enumerate(r.get("fromEndpoints" if direction == "ingress" else "toEndpoints") or []):
                    lab = sel_labels(s, f"{where} peer {j}", allow_empty=True)
                    if lab is None:
                        continue
                    if not any(selector_matches(d.ns, lab, e) for e in eps.values()):
                        checks.fail(f"{where}: peer selector {s.get('matchLabels')} selects no endpoint")
                    peers.append(("sel", d.ns, lab))
                for ent in r.get("fromEntities" if direction == "ingress" else "toEntities") or []:
                    peers.append(("entity", ent))
                ports = None
                if "toPorts" in r:
                    ports = [(int(p["port"]), p["protocol"]) for tp in r["toPorts"] for p in tp["ports"]]
                auth = (r.get("authentication") or {}).get("mode") == "required"
                res.append(Rule(d.name, peers, ports, auth))
            return res

        out.append(Policy(ref, d.ns, selector, rules("ingress"), rules("egress")))
    if len(checks.errors) == n0:
        checks.ok(f"{len(out)} policies; every selector names a ServiceAccount (or is a namespace-wide default) "
                  f"and selects at least one endpoint")
    return out


def peer_matches(rule: Rule, ep: Endpoint) -> bool:
    for p in rule.peers:
        if p[0] == "sel" and selector_matches(p[1], p[2], ep):
            return True
        if p[0] == "entity":
            if p[1] == "all" or (p[1] == "world" and ep.entity == "world") or (p[1] == "cluster" and not ep.entity):
                return True
    return False


def port_matches(rule: Rule, port: tuple[int, str]) -> bool:
    return rule.ports is None or port in rule.ports


def verdict(policies: list[Policy], direction: str, subject: Endpoint, peer: Endpoint, port) -> tuple[bool, bool]:
    """(allowed, mutual auth required) for one direction at one endpoint."""
    if subject.entity:
        return True, False
    mine = [p for p in policies if p.namespace == subject.namespace and selector_matches(p.namespace, p.selector, subject)]
    sections = [getattr(p, direction) for p in mine if getattr(p, direction) is not None]
    if not sections:
        return True, False  # not enforced in this direction
    hits = [r for rules in sections for r in rules if peer_matches(r, peer) and port_matches(r, port)]
    return bool(hits), any(r.auth for r in hits)


def pairs(eps: dict[str, Endpoint]):
    """Every (caller, callee) with at least one side in the manifests: flows between two outside
    endpoints are not the lab's policies' business."""
    return [(s, d) for s, d in itertools.product(eps.values(), eps.values()) if not (s.external and d.external)]


def derive(policies: list[Policy], eps: dict[str, Endpoint], ports: set) -> dict:
    allowed = {}
    for src, dst in pairs(eps):
        for port in sorted(ports):
            e_ok, e_auth = verdict(policies, "egress", src, dst, port)
            i_ok, i_auth = verdict(policies, "ingress", dst, src, port)
            if e_ok and i_ok:
                allowed[(src.name, dst.name, port[0], port[1])] = e_auth or i_auth
    return allowed


def expand_rows(matrix: dict, eps: dict, checks: Checks) -> tuple[dict, set]:
    allowed, denied = {}, set()
    for i, row in enumerate(matrix.get("flow", [])):
        where = f"reachability.toml flow {i + 1}"
        listify = lambda x: x if isinstance(x, list) else [x]  # noqa: E731
        missing = [k for k in ("from", "to", "port", "allowed") if k not in row]
        if missing:
            checks.fail(f"{where}: missing {', '.join(missing)}")
            continue
        unknown = set(row) - {"from", "to", "port", "protocol", "allowed", "mutual_auth"}
        if unknown:
            checks.fail(f"{where}: unknown fields {sorted(unknown)}")
        proto = row.get("protocol", "TCP")
        for a, b, port in itertools.product(listify(row["from"]), listify(row["to"]), listify(row["port"])):
            for n in (a, b):
                if n not in eps:
                    checks.fail(f"{where}: unknown endpoint {n!r} (not a ServiceAccount in manifests/ nor an [[endpoint]])")
            key = (a, b, int(port), proto)
            if key in allowed or key in denied:
                checks.fail(f"{where}: {a} -> {b}:{port}/{proto} is listed twice")
            if row["allowed"]:
                if "mutual_auth" not in row:
                    checks.fail(f"{where}: an allowed flow must say mutual_auth = true or false")
                allowed[key] = bool(row.get("mutual_auth"))
            else:
                if "mutual_auth" in row:
                    checks.fail(f"{where}: mutual_auth means nothing on a denied flow")
                denied.add(key)
    return allowed, denied


def check_reachability(root: Path, docs: list[Doc], policies: list[Policy], eps: dict, matrix: dict, checks: Checks) -> None:
    checks.start("reachability (the policies' allow-matrix = infrastructure/kind/reachability.toml)")
    n0 = len(checks.errors)
    expected, denied = expand_rows(matrix, eps, checks)
    ports = set()
    for ep in eps.values():
        ports |= ep.ports
    for p in policies:
        for rules in (p.ingress or [], p.egress or []):
            for r in rules:
                ports |= set(r.ports or [])
    ports |= {(k[2], k[3]) for k in itertools.chain(expected, denied)}
    derived = derive(policies, eps, ports)

    def fmt(k):
        return f"{k[0]} -> {k[1]}:{k[2]}/{k[3]}"

    for k in sorted(set(derived) - set(expected)):
        why = "reachability.toml says it is denied" if k in denied else "reachability.toml does not list it as allowed"
        checks.fail(f"the policies allow {fmt(k)} (mutual auth: {'required' if derived[k] else 'no'}), but {why}")
    for k in sorted(set(expected) - set(derived)):
        checks.fail(f"reachability.toml allows {fmt(k)}, but the policies deny it")
    for k in sorted(set(expected) & set(derived)):
        if expected[k] != derived[k]:
            checks.fail(f"{fmt(k)}: reachability.toml says mutual_auth = {str(expected[k]).lower()}, "
                        f"the policies {'require' if derived[k] else 'do not require'} it")
    evaluated = len(pairs(eps)) * len(ports)
    if len(checks.errors) == n0:
        checks.say("    allowed flows, derived from the policies (callers grouped):")
        groups: dict = {}
        for k, auth in derived.items():
            groups.setdefault((k[1], k[2], k[3], auth), []).append(k[0])
        for (dst, port, proto, auth), srcs in sorted(groups.items(), key=lambda g: (g[0][0] == "kube-dns", g[0])):
            checks.say(f"      {', '.join(sorted(srcs)):<52} -> {dst}:{port}/{proto}{'  [mutual auth]' if auth else ''}")
        checks.ok(f"{len(derived)} allowed flows equal reachability.toml's; {evaluated - len(derived)} other "
                  f"(endpoint, endpoint, port) combinations denied, {len(denied)} of them asserted explicitly; "
                  f"{len(eps)} endpoints x {len(ports)} ports evaluated")


# --- the whole check, and the self-test -----------------------------------------------------------


def run(root: Path, quiet: bool = False) -> list[str]:
    checks = Checks(quiet)
    kind_env = read_env(root / KIND_DIR / "kind.env")
    versions = read_env(root / "infrastructure/versions.env")
    docs = load_docs(root, checks)
    check_schemas(root, docs, kind_env["KUBERNETES_VERSION"], checks)
    check_coherence(root, docs, kind_env, versions, checks)
    check_cilium(root, kind_env, checks)
    matrix = tomllib.loads((root / KIND_DIR / "reachability.toml").read_text())
    eps = build_endpoints(root, docs, matrix, kind_env, checks)
    policies = parse_policies(docs, eps, checks)
    check_reachability(root, docs, policies, eps, matrix, checks)
    return checks.errors


# Each case breaks a copy of the tree with one or more edits (file under infrastructure/kind,
# text or regex to find, replacement; None deletes the file); the check must then fail with a
# message that contains `expect`.
SELF_TESTS = [
    ("the backend's policy lets the frontend in on the app's plain-HTTP port instead of Envoy's",
     [("policies/11-backend.yaml", 'port: "10443"', 'port: "8090"')],
     "reachability.toml allows frontend -> backend:10443/TCP, but the policies deny it"),
    ("both ends opened to the backend's plain-HTTP port",
     [("policies/10-frontend.yaml", '            - {port: "10443", protocol: TCP}',
       '            - {port: "10443", protocol: TCP}\n            - {port: "8090", protocol: TCP}'),
      ("policies/11-backend.yaml", '            - {port: "10443", protocol: TCP}',
       '            - {port: "10443", protocol: TCP}\n            - {port: "8090", protocol: TCP}')],
     "the policies allow frontend -> backend:8090/TCP (mutual auth: required), but reachability.toml says it is denied"),
    ("mutual authentication dropped from backend -> postgres",
     [("policies/15-postgres.yaml", "      authentication:\n        mode: required\n", "")],
     "backend -> postgres:5432/TCP: reachability.toml says mutual_auth = true"),
    ("the demo namespace's default deny removed",
     [("policies/00-demo-default-deny.yaml", None, None)], "but reachability.toml does not list it"),
    ("the agents may call opa directly",
     [("policies/14-agents.yaml", "  egress:\n", "  egress:\n    - toEndpoints:\n        - matchLabels:\n"
       "            k8s:io.cilium.k8s.policy.serviceaccount: opa\n"),
      ("policies/13-opa.yaml", "  ingress:\n", "  ingress:\n    - fromEndpoints:\n        - matchLabels:\n"
       "            k8s:io.cilium.k8s.policy.serviceaccount: agents\n")],
     "the policies allow agents -> opa:8181/TCP (mutual auth: no), but reachability.toml says it is denied"),
    ("opa opened to the whole cluster (its callers' egress still holds, CoreDNS's does not)",
     [("policies/13-opa.yaml", "    - fromEndpoints:\n", "    - fromEntities: [cluster]\n    - fromEndpoints:\n")],
     "the policies allow kube-dns -> opa:8181/TCP"),
    ("a policy selects by app label instead of ServiceAccount",
     [("policies/15-postgres.yaml", "            k8s:io.cilium.k8s.policy.serviceaccount: backend",
       "            k8s:app.kubernetes.io/name: backend")], "instead of the ServiceAccount"),
    ("a typo in a policy's peer",
     [("policies/13-opa.yaml", "serviceaccount: document", "serviceaccount: documnet")], "selects no endpoint"),
    ("a field the offline model does not understand (deny rules)",
     [("policies/13-opa.yaml", "  ingress:\n", "  ingressDeny:\n    - fromEntities: [world]\n  ingress:\n")],
     "schemas/ciliumnetworkpolicy.schema.json"),
    ("a kind the checker has no schema for",
     [("policies/13-opa.yaml", "kind: CiliumNetworkPolicy", "kind: CiliumClusterwideNetworkPolicy")], "no schema for"),
    ("a misspelt Deployment field",
     [("manifests/13-opa.yaml", "      serviceAccountName: opa\n",
       "      serviceAccountName: opa\n      restartPolicyy: Always\n")], "restartPolicyy"),
    ("a wrong type in a Service",
     [("manifests/12-document.yaml", "port: 8085, targetPort: https", 'port: "eighty", targetPort: https')], "eighty"),
    ("the matrix allows what the policies deny",
     [("reachability.toml", 'port = [8085, 8181, 10443, 5432]\nallowed = false',
       'port = [8085, 8181, 10443, 5432]\nallowed = true\nmutual_auth = true')],
     "reachability.toml allows entry-manager -> document:8085/TCP, but the policies deny it"),
    ("the matrix forgets an allowed flow",
     [("reachability.toml", re.compile(r'\[\[flow\]\]\nfrom = "document"\nto = "opa"\n[^\[]*'), "")],
     "the policies allow document -> opa:8181/TCP (mutual auth: required), but reachability.toml does not list it"),
    ("an Envoy image that is not the pinned version",
     [("manifests/10-frontend.yaml", "envoyproxy/envoy:v", "envoyproxy/envoy:v9")], "is not the pinned Envoy"),
    ("a Cilium version without mutual authentication",
     [("kind.env", re.compile(r"CILIUM_VERSION=\S+"), "CILIUM_VERSION=1.20.0")], "deprecated from 1.20"),
    ("mutual authentication turned off in the Helm values",
     [("cilium/values.yaml", "    spire:\n      enabled: true", "    spire:\n      enabled: false")],
     "authentication.mutual.spire.enabled"),
    ("a pod mounts a ConfigMap that nothing creates",
     [("manifests/13-opa.yaml", "configMap: {name: opa-rego}", "configMap: {name: opa-rego-old}")],
     "neither in manifests/ nor in generated.toml"),
    ("a sidecar without the SPIRE agent socket",
     [("manifests/11-backend.yaml",
       "            - {name: envoy-rbac, mountPath: /etc/envoy-rbac, readOnly: true}\n"
       "            - {name: spiffe-workload-api, mountPath: /spiffe-workload-api, readOnly: true}\n",
       "            - {name: envoy-rbac, mountPath: /etc/envoy-rbac, readOnly: true}\n")],
     "does not mount the SPIFFE CSI volume"),
    ("a container that may escalate privileges",
     [("manifests/14-agents.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true")],
     "allowPrivilegeEscalation must be false"),
]


def apply_edit(path: Path, old, new) -> bool:
    if old is None:
        path.unlink()
        return True
    text = path.read_text()
    if isinstance(old, re.Pattern):
        changed, n = old.subn(new, text, count=1)
    else:
        n = text.count(old)
        changed = text.replace(old, new, 1)
    if not n:
        return False
    path.write_text(changed)
    return True


def self_test(root: Path) -> int:
    print("==> self-test: broken copies of infrastructure/kind must be rejected")
    failures = 0
    with tempfile.TemporaryDirectory(prefix="ztlab-kind-selftest-") as tmp:
        base = Path(tmp) / "repo"
        for rel in ("infrastructure", "policies"):
            shutil.copytree(root / rel, base / rel)
        shutil.copy(root / "kind-config.yaml", base / "kind-config.yaml")
        errs = run(base, quiet=True)
        if errs:
            print(f"    FAIL the intact copy does not pass ({len(errs)} errors; first: {errs[0]})")
            return 1
        print("    ok the intact copy passes")
        for i, (what, edits, expect) in enumerate(SELF_TESTS):
            case = Path(tmp) / f"case{i}"
            shutil.copytree(base, case)
            stale = [rel for rel, old, new in edits if not apply_edit(case / KIND_DIR / rel, old, new)]
            if stale:
                print(f"    FAIL self-test {what!r}: the text to break is no longer in {', '.join(stale)}; update the case")
                failures += 1
                shutil.rmtree(case)
                continue
            errs = run(case, quiet=True)
            hit = [e for e in errs if expect in e]
            if hit:
                print(f"    ok rejected: {what}:\n         {hit[0]}")
            else:
                print(f"    FAIL not rejected as expected: {what} (want an error containing {expect!r}; got "
                      f"{errs[:3] if errs else 'no error'})")
                failures += 1
            shutil.rmtree(case)
    n = len(SELF_TESTS)
    print(f"    self-test: {n - failures}/{n} broken copies rejected for the expected reason")
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help="the repository")
    ap.add_argument("--self-test", action="store_true", help="also check that broken copies are rejected")
    args = ap.parse_args()
    errs = run(args.root)
    if errs:
        print(f"\nkind manifests: {len(errs)} problem(s):", file=sys.stderr)
        for e in errs:
            print(f"  {e}", file=sys.stderr)
        return 1
    if args.self_test and self_test(args.root):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
