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
