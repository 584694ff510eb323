#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The test command: installs what the tests need, lints, builds, and runs every test against
# real SPIRE (each end-to-end test starts its own lab in a temp dir, on free ports).
#
#   ./scripts/test.sh                 # everything
#   ./scripts/test.sh -- <filter>     # pass a test-name filter to cargo test
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

filter=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; filter=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done

need cargo "Install Rust 1.92 or newer with rustup: https://rustup.rs"
"$ZT_ROOT/scripts/install-infra.sh" --with-test-tools
# The kind runtime's toolchain and node image (Kubernetes compiled from the Go module proxy; about
# 15 minutes on a new machine, seconds with its cache).
"$ZT_ROOT/scripts/install-kind.sh"

cd "$ZT_ROOT"
step "Lint: shellcheck"
shellcheck -x scripts/*.sh .ci/run
ok "scripts are shellcheck-clean"

step "kind runtime: manifests and Cilium policies, checked offline (docs/kind.md)"
"$ZT_ROOT/scripts/validate-kind.sh"

step "Lint: rustfmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Build (the end-to-end tests run the built binaries)"
cargo build --workspace --all-targets --locked

step "Tests"
# End-to-end tests mostly wait on real processes, so run more of them than there are cores.
# The kind tests create a real cluster; they run alone, after the others.
rc=0
cargo test --workspace --exclude e2e-kind --locked --no-fail-fast -- --test-threads=8 "${filter[@]}" || rc=$?

step "kind runtime: a real cluster (services/e2e-kind; docs/kind.md)"
# `--workspace --test kind` rather than `-p e2e-kind`: the same features as the build above, so
# nothing is compiled again.
cargo test --workspace --locked --no-fail-fast --test kind -- --test-threads=1 "${filter[@]}" || rc=$?
exit "$rc"
