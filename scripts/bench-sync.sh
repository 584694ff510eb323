#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Benchmark: central entry management against real SPIRE (release build).
#   1. create -> SYNCED at both sites, p50/p99 over 200 entries created one at a time;
#   2. 10,000 entries through BatchCreateEntries until SYNCED at both sites, against
#      `spire-server entry create -data` loading the same entries into one server.
#
#   ./scripts/bench-sync.sh [--latency-entries=200] [--bulk-entries=10000]
#
# Ends with `BENCH sync_create_to_synced_p99_ms <x>` and `BENCH sync_10k_vs_spire_direct_ratio <x>`;
# record them in docs/perf.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
"$ZT_ROOT/scripts/install-infra.sh" >/dev/null
step "Building entry-manager, site-agent and bench-sync (release)"
(cd "$ZT_ROOT" && cargo build --release --locked -p entry-manager -p site-agent -p e2e --bin entry-manager --bin site-agent --bin bench-sync)
step "Running (machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB)"
"$(zt_target_dir)/release/bench-sync" "$@"
