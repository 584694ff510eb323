#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Benchmark: requests/s and p50/p99 latency of one handler over native mTLS (real SPIRE SVIDs,
# zt-tls on both sides) against plain HTTP on loopback, in one run, release build.
#
#   ./scripts/bench-mtls.sh [--seconds=10] [--concurrency=16]
#
# Ends with `BENCH mtls_vs_plain_rps_ratio <x>` and `BENCH mtls_p99_ms <x>`; record them in
# docs/perf.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
"$ZT_ROOT/scripts/install-infra.sh" >/dev/null
step "Building bench-mtls (release)"
(cd "$ZT_ROOT" && cargo build --release --locked -p e2e --bin bench-mtls)
step "Running (machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB)"
"$(zt_target_dir)/release/bench-mtls" "$@"
