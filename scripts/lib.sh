#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Shared helpers for ztlab's scripts. Source it; do not run it.
# shellcheck disable=SC2034  # variables here are used by the scripts that source this file

# Pinned infrastructure versions. The Rust runtime crate (zt-runtime) reads the same pins from
# infrastructure/versions.env, so there is one list.
ZT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../infrastructure/versions.env
. "$ZT_ROOT/infrastructure/versions.env"

ZT_CACHE="${ZT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ztlab}"

if [ -t 1 ]; then
  _zt_bold=$'\e[1m'; _zt_red=$'\e[31m'; _zt_green=$'\e[32m'; _zt_dim=$'\e[2m'; _zt_off=$'\e[0m'
else
  _zt_bold=''; _zt_red=''; _zt_green=''; _zt_dim=''; _zt_off=''
fi

step() { printf '%s==>%s %s\n' "$_zt_bold" "$_zt_off" "$*"; }
ok()   { printf '    %sok%s %s\n' "$_zt_green" "$_zt_off" "$*"; }
note() { printf '    %s%s%s\n' "$_zt_dim" "$*" "$_zt_off"; }
die()  { printf '%serror:%s %s\n' "$_zt_red" "$_zt_off" "$*" >&2; exit 1; }

# need CMD HOW: fail with a message naming the missing prerequisite and how to get it.
need() {
  command -v "$1" >/dev/null 2>&1 || die "missing prerequisite '$1'. $2"
}

# as_root CMD...: run a command as root (directly, or through sudo when available).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "'$*' needs root and sudo is not installed; run it as root"
  fi
}

_zt_apt_updated=0
# apt_install PKG...: install Debian packages that are not installed yet.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  need apt-get "ztlab installs ${missing[*]} from Debian packages; on another distribution install them by hand."
  if [ "$_zt_apt_updated" -eq 0 ]; then
    note "apt-get update"
    as_root apt-get update -qq >/dev/null
    _zt_apt_updated=1
  fi
  note "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Where each pinned component lives in the cache.
spire_dir()   { echo "$ZT_CACHE/spire-$SPIRE_VERSION"; }
helper_dir()  { echo "$ZT_CACHE/spiffe-helper-$SPIFFE_HELPER_VERSION"; }
envoy_dir()   { echo "$ZT_CACHE/envoy-$ENVOY_VERSION"; }
openbao_dir() { echo "$ZT_CACHE/openbao-$OPENBAO_VERSION"; }
opa_dir()     { echo "$ZT_CACHE/opa-$OPA_VERSION"; }

# Where cargo puts build output for this checkout.
zt_target_dir() { echo "${CARGO_TARGET_DIR:-$ZT_ROOT/target}"; }

# usage: print the calling script's header comment.
usage() { sed -n '2,/^[^#]/p' "$0" | grep '^#' | grep -v '^# shellcheck' | sed 's/^# \{0,1\}//'; }

# The kind runtime's toolchain in the cache (scripts/install-kind.sh; pins in
# infrastructure/kind/kind.env, which the caller sources).
kind_k8s_dir()  { echo "$ZT_CACHE/kubernetes-$KIND_KUBERNETES_VERSION"; }
kind_tool_dir() { echo "$ZT_CACHE/$1-$2/bin"; }

# The lab's state dir, as ztlab resolves it: $ZT_STATE_DIR, else /var/lib/ztlab as root, else
# $XDG_STATE_HOME/ztlab or ~/.local/state/ztlab.
zt_state_dir() {
  if [ -n "${ZT_STATE_DIR:-}" ]; then echo "$ZT_STATE_DIR"
  elif [ "$(id -u)" -eq 0 ]; then echo /var/lib/ztlab
  else echo "${XDG_STATE_HOME:-$HOME/.local/state}/ztlab"
  fi
}

# kind_engine: the container engine kind drives: docker when a Docker engine answers, else podman
# (the path CI takes; KIND_EXPERIMENTAL_PROVIDER=podman).
kind_engine() {
  if [ -n "${ZT_KIND_ENGINE:-}" ]; then echo "$ZT_KIND_ENGINE"
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker
  else echo podman
  fi
}
kind_engine_cmd() { "$(kind_engine)" "$@"; }

# kind_engine_install: podman from Debian when neither engine is present.
kind_engine_install() {
  if [ "$(kind_engine)" = podman ] && ! command -v podman >/dev/null 2>&1; then
    apt_install podman runc containernetworking-plugins
  fi
}

# kind_env: exports what podman, kind and kubectl need so that their state stays in the lab's
# cache and state dirs (nothing in /etc/containers, /var/lib/containers or ~/.kube):
# podman's image store in the cache (it holds the node image), its run state, network configs
# and the kubeconfig in <state>/kind. Writes podman's config files when they are missing.
kind_env() {
  KIND_STATE="$(zt_state_dir)/kind"
  mkdir -p "$KIND_STATE"
  export KUBECONFIG="$KIND_STATE/kubeconfig"
  PATH="$(kind_k8s_dir)/bin:$(kind_tool_dir kind "$KIND_VERSION"):$PATH"
  export PATH
  [ "$(kind_engine)" = podman ] || return 0
  export KIND_EXPERIMENTAL_PROVIDER=podman
  export CONTAINERS_CONF="$KIND_STATE/containers.conf" CONTAINERS_STORAGE_CONF="$KIND_STATE/storage.conf"
  mkdir -p "$KIND_STATE/podman/run" "$KIND_STATE/podman/tmp" "$KIND_STATE/podman/networks" "$ZT_CACHE/podman/storage"
  # The sandbox has no CAP_SYS_RESOURCE, so containers may not get higher limits than these
  # (runc: "error setting rlimit ... operation not permitted"); crun fails on cgroup v1 hybrid.
  cat >"$CONTAINERS_CONF.tmp" <<CONF
# Written by ztlab (scripts/lib.sh kind_env) for the kind runtime's podman.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[network]
network_config_dir = "$KIND_STATE/podman/networks"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$KIND_STATE/podman/tmp"
CONF
  mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
  cat >"$CONTAINERS_STORAGE_CONF.tmp" <<CONF
# Written by ztlab (scripts/lib.sh kind_env): podman's image store for the kind runtime.
[storage]
driver = "overlay"
graphroot = "$ZT_CACHE/podman/storage"
runroot = "$KIND_STATE/podman/run"
CONF
  mv "$CONTAINERS_STORAGE_CONF.tmp" "$CONTAINERS_STORAGE_CONF"
}

# kind_node_image: the node image's tag, which changes with the files that go into it and the
# pins (a change to how install-kind.sh assembles it bumps KIND_NODE_REVISION in kind.env).
kind_node_image() {
  local sum
  sum=$( { cat "$ZT_ROOT/infrastructure/kind/kind.env" "$ZT_ROOT/infrastructure/kind/mkimage.py" \
             "$ZT_ROOT"/infrastructure/kind/pause/*
           find "$ZT_ROOT/infrastructure/kind/node" -type f | sort | xargs cat; } | sha256sum | cut -c1-10)
  echo "localhost/ztlab/kind-node:$KIND_KUBERNETES_VERSION-$sum"
}
kind_image_exists() { kind_engine_cmd image exists "$1" 2>/dev/null || kind_engine_cmd image inspect "$1" >/dev/null 2>&1; }
