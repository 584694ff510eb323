#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Benchmark: document decision latency (data.ztlab.documents.decision, issue 5's nine scenarios),
# p50/p99, in one run, release build:
#   - in process (the regorus engine the opa service uses);
#   - over mTLS (the opa service, real SPIRE SVIDs, zt-tls on both sides);
#   - against a real `opa run --server` on the same policies and inputs, also over mTLS.
#
#   ./scripts/bench-opa.sh [--seconds=10] [--concurrency=1] [--policies=policies/rego]
#
# Needs the test tools (the real opa): ./scripts/install-infra.sh --with-test-tools.
# Ends with `BENCH decision_p99_us_in_process <x>`, `BENCH decision_p99_ms_over_mtls <x>` and
# `BENCH decision_vs_opa_server_ratio <x>`; record them in docs/perf.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
"$ZT_ROOT/scripts/install-infra.sh" --with-test-tools >/dev/null
step "Building opa and bench-opa (release)"
(cd "$ZT_ROOT" && cargo build --release --locked -p opa --bin opa -p e2e --bin bench-opa)
step "Running (machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB)"
cd "$ZT_ROOT"
"$(zt_target_dir)/release/bench-opa" "$@"
