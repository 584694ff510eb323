#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Benchmark: the app chain, in one lab started with `ztlab up` (real SPIRE, Envoy, OpenBao,
# PostgreSQL), release build, keep-alive connections:
#   - Run Demo (POST /api/run-demo on the frontend): p50/p99 and the share of `ok` runs;
#   - GET /api/orders through both Envoys (plain HTTP into the frontend's outbound Envoy, mTLS
#     and RBAC to the backend's Envoy) against the same call straight to the backend's plain
#     listener, alternating in time slots in the same run: req/s, p50/p99.
#
#   ./scripts/bench-app.sh [--seconds=10] [--concurrency=1] [--slot-ms=500] [--rust-log=info]
#
# Ends with `BENCH run_demo_p99_ms <x>` and `BENCH envoy_chain_p99_overhead_ms <x>` (chain p99
# minus direct p99); record them in docs/perf.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
"$ZT_ROOT/scripts/install-infra.sh" >/dev/null
step "Building the lab's binaries and bench-app (release)"
(cd "$ZT_ROOT" && cargo build --release --locked --workspace --bins)
step "Running (machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB)"
cd "$ZT_ROOT"
"$(zt_target_dir)/release/bench-app" "$@"
