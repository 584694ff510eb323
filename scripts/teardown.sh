#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stops every process the lab started (by pid, as recorded in the lab's state dir).
#
#   ./scripts/teardown.sh           # stop; keep SPIRE data and logs for the next setup
#   ./scripts/teardown.sh --purge   # stop and delete the state dir
#   ./scripts/teardown.sh --kind    # delete the kind cluster and undo what it changed on the host
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

args=()
for arg in "$@"; do
  case "$arg" in
    --purge) args+=(--purge) ;;
    --kind) exec "$ZT_ROOT/scripts/kind-cluster.sh" down ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

ztlab="$(zt_target_dir)/debug/ztlab"
[ -x "$ztlab" ] || die "$ztlab is not built; nothing was started by this checkout (run ./scripts/setup.sh)"
"$ztlab" down "${args[@]}"
