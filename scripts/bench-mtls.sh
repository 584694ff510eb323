#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Benchmark: what native mTLS (real SPIRE SVIDs, zt-tls on both sides) costs against plain TCP on
# loopback, like with like, in one run, release build:
#   - HTTP/1.1 keep-alive, one connection per client on both paths;
#   - HTTP/2 keep-alive, one shared connection per path (h2c against ALPN h2);
#   - new connections per second: TCP connect + one request, against TCP connect + full TLS 1.3
#     handshake with client certificate + one request.
# Plain and mTLS alternate in time slots within each test, so both see the same machine.
#
#   ./scripts/bench-mtls.sh [--seconds=10] [--concurrency=16] [--slot-ms=500] [--only=h1|h2|conn]
#
# Ends with `BENCH mtls_vs_plain_rps_ratio_h1`, `_h2`, `BENCH mtls_handshakes_per_s` and
# `BENCH mtls_vs_plain_rps_ratio` (the HTTP/1.1 figure); record them in docs/perf.md.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
"$ZT_ROOT/scripts/install-infra.sh" >/dev/null
step "Building bench-mtls (release)"
(cd "$ZT_ROOT" && cargo build --release --locked -p e2e --bin bench-mtls)
step "Running (machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB; load average $(cut -d' ' -f1-3 /proc/loadavg))"
"$(zt_target_dir)/release/bench-mtls" "$@"
