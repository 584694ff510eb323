#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# One command for a fresh machine: installs what is missing, builds ztlab, starts the lab
# (two SPIRE sites and the ztlab services) and prints `ztlab status`. Run it again and it
# changes nothing.
#
#   ./scripts/setup.sh          # local runtime: real processes, no Docker, no Kubernetes
#   ./scripts/setup.sh --kind   # kind runtime: a kind cluster `ztlab` (podman or Docker) with
#                               # the lab's SPIRE sites; the rest of the lab follows (docs/kind.md)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

runtime=local
for arg in "$@"; do
  case "$arg" in
    --kind) runtime=kind ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

need cargo "Install Rust 1.92 or newer with rustup: https://rustup.rs"

"$ZT_ROOT/scripts/install-infra.sh"

step "Building ztlab (cargo build --workspace --bins)"
(cd "$ZT_ROOT" && cargo build --workspace --bins --locked)
ok "built into $(zt_target_dir)/debug"

if [ "$runtime" = kind ]; then
  "$ZT_ROOT/scripts/install-kind.sh"
  step "The kind cluster"
  "$ZT_ROOT/scripts/kind-cluster.sh" up
  "$ZT_ROOT/scripts/kind-images.sh"
  step "Putting the lab on the cluster"
  "$(zt_target_dir)/debug/ztlab" kind up
  "$(zt_target_dir)/debug/ztlab" kind status
  ok "the kind runtime runs SPIRE (sites a and b); kubectl: KUBECONFIG=$(zt_state_dir)/kind/kubeconfig"
  exit 0
fi

step "Starting the lab"
"$(zt_target_dir)/debug/ztlab" up
ok "open http://127.0.0.1:8080, sign in (jake / jake99) and press Run Demo (or: curl -s -X POST http://127.0.0.1:8080/api/run-demo)"
