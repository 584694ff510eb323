#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Creates or deletes the lab's kind cluster `ztlab` (kind-config.yaml) with
# the node image that scripts/install-kind.sh builds. The cluster's kubeconfig, podman's state and
# network configs live in <state>/kind; nothing goes to ~/.kube, /etc/containers or
# /var/lib/containers. The host's kernel settings are recorded before and checked after.
#
#   ./scripts/kind-cluster.sh up       # create the cluster (nothing to do if it runs)
#   ./scripts/kind-cluster.sh down     # delete it and undo what creating it changed on the host
#   ./scripts/kind-cluster.sh sysctls  # print the host kernel settings this lab watches
#
# Environment: ZT_STATE_DIR (the lab's state dir), ZT_KIND_CLUSTER (default ztlab),
# ZT_KIND_UI_PORT (the host port of the UI, default 8080).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=../infrastructure/kind/kind.env
. "$ZT_ROOT/infrastructure/kind/kind.env"

# The cluster's name and the laptop port of the UI; tests set their own.
CLUSTER=${ZT_KIND_CLUSTER:-ztlab}
UI_PORT=${ZT_KIND_UI_PORT:-8080}
# Host kernel settings a kind node could change (KUBERNETES.md): the kubelet's, systemd-sysctl's,
# and IP forwarding, which the container engine turns on for the cluster's network.
WATCHED_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes fs.file-max fs.protected_fifos
  fs.protected_hardlinks fs.protected_regular fs.protected_symlinks net.ipv4.ip_forward)

sysctls() {
  local k
  for k in "${WATCHED_SYSCTLS[@]}"; do printf '%s=%s\n' "$k" "$(cat "/proc/sys/${k//.//}" 2>/dev/null || echo '?')"; done
}

cluster_exists() { kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; }

up() {
  [ "$(id -u)" -eq 0 ] || die "the kind runtime runs rootful podman; run as root"
  kind_env
  command -v kind >/dev/null 2>&1 || die "kind is not installed; run ./scripts/install-kind.sh"
  kind_image_exists "$(kind_node_image)" || die "the node image $(kind_node_image) is not built; run ./scripts/install-kind.sh"
  if cluster_exists; then
    ok "cluster $CLUSTER runs (kubeconfig $KUBECONFIG)"
    return 0
  fi
  # What creating the cluster changes on the host, recorded so that `down` can undo it.
  [ -f "$KIND_STATE/host-sysctls.before" ] || sysctls >"$KIND_STATE/host-sysctls.before"
  if [ ! -e /lib/modules ]; then
    # kind always mounts /lib/modules into the node; this machine has none.
    mkdir /lib/modules && touch "$KIND_STATE/created-lib-modules"
  fi
  case "$UI_PORT" in ''|*[!0-9]*) die "ZT_KIND_UI_PORT '$UI_PORT' is not a port number" ;; esac
  sed "s/hostPort: 8080/hostPort: $UI_PORT/" "$ZT_ROOT/kind-config.yaml" >"$KIND_STATE/kind-config.yaml"
  note "kind create cluster --name $CLUSTER (about a minute)"
  local t0=$SECONDS
  if ! kind create cluster --name "$CLUSTER" --image "$(kind_node_image)" \
      --config "$KIND_STATE/kind-config.yaml" --kubeconfig "$KUBECONFIG" \
      --wait 120s >"$KIND_STATE/create.log" 2>&1; then
    tail -20 "$KIND_STATE/create.log" >&2
    die "kind create cluster failed; see $KIND_STATE/create.log (./scripts/kind-cluster.sh down cleans up)"
  fi
  check_sysctls
  ok "cluster $CLUSTER in $((SECONDS - t0)) s (kubeconfig $KUBECONFIG)"
}

# check_sysctls: the host's watched settings are as recorded before the cluster (IP forwarding
# excepted while the cluster's network exists: the container engine needs it and `down` restores it).
check_sysctls() {
  local before=$KIND_STATE/host-sysctls.before changed
  [ -f "$before" ] || return 0
  changed=$(diff <(grep -v '^net.ipv4.ip_forward=' "$before") <(sysctls | grep -v '^net.ipv4.ip_forward=') | grep '^[<>]' || true)
  [ -z "$changed" ] || die "the host's kernel settings changed (before < > now):
$changed"
}

down() {
  kind_env
  if command -v kind >/dev/null 2>&1 && cluster_exists; then
    note "kind delete cluster --name $CLUSTER"
    kind delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >/dev/null 2>&1 || die "kind delete cluster failed"
  fi
  # kind's network is shared by every kind cluster: only the last one out removes it, and only
  # then may IP forwarding go back to what it was.
  local others=""
  command -v kind >/dev/null 2>&1 && others=$(kind get clusters 2>/dev/null | grep -v "^No kind clusters" || true)
  if [ -z "$others" ] && [ "$(kind_engine)" = podman ] && command -v podman >/dev/null 2>&1 \
      && podman network exists kind 2>/dev/null; then
    podman network rm kind >/dev/null
  fi
  # /lib/modules goes when this lab created it and no other kind node still mounts it.
  if [ -f "$KIND_STATE/created-lib-modules" ] && [ -z "$others" ]; then
    rmdir /lib/modules 2>/dev/null || true
    rm -f "$KIND_STATE/created-lib-modules"
  fi
  local before=$KIND_STATE/host-sysctls.before
  if [ -f "$before" ]; then
    local fwd
    fwd=$(sed -n 's/^net.ipv4.ip_forward=//p' "$before")
    if [ -z "$others" ] && [ -n "$fwd" ] && [ "$(cat /proc/sys/net/ipv4/ip_forward)" != "$fwd" ]; then
      echo "$fwd" >/proc/sys/net/ipv4/ip_forward
    fi
    check_sysctls
    rm -f "$before"
  fi
  rm -f "$KUBECONFIG"
  ok "no kind cluster; the host's watched kernel settings are as before"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  sysctls) sysctls ;;
  -h|--help|'') usage; [ -n "${1:-}" ] ;;
  *) die "unknown command '$1' (try --help)" ;;
esac
