#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Benchmarks the kind runtime on a cluster of its own (`ztlab-bench`, in a temp state dir): the
# warm setup (toolchain and node image already cached), split into cluster, images and deploy
# (apply + ready), then the cluster's memory with the lab running, read from the node
# container's cgroup. Deletes the cluster at the end. Needs ./scripts/install-kind.sh first and
# root (rootful podman). What runs on kind today is SPIRE's two sites (docs/kind.md), so the
# figures cover that; Run Demo on kind does not exist yet and is not measured.
#
#   ./scripts/bench-kind.sh
#
# Ends with:  BENCH kind_setup_warm_seconds <s>   BENCH kind_memory_mib <MiB>
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=../infrastructure/kind/kind.env
. "$ZT_ROOT/infrastructure/kind/kind.env"

for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

ztlab="$(zt_target_dir)/debug/ztlab"
[ -x "$ztlab" ] || die "$ztlab is not built (cargo build -p ztlab)"
state=$(mktemp -d /tmp/ztlab-bench-kind.XXXXXX)
export ZT_STATE_DIR="$state" ZT_KIND_CLUSTER=ztlab-bench
ZT_KIND_UI_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export ZT_KIND_UI_PORT
cleanup() { "$ZT_ROOT/scripts/kind-cluster.sh" down >/dev/null 2>&1 || true; rm -rf "$state"; }
trap cleanup EXIT

now() { date +%s.%N; }
t0=$(now)
"$ZT_ROOT/scripts/kind-cluster.sh" up >/dev/null
t1=$(now)
"$ZT_ROOT/scripts/kind-images.sh" >/dev/null
t2=$(now)
"$ztlab" kind up >/dev/null 2>&1
t3=$(now)

kind_env
node="$ZT_KIND_CLUSTER-control-plane"
# The node container's memory cgroup: everything the cluster runs is inside it (its systemd
# sits in init.scope below it).
pid=$(kind_engine_cmd inspect --format '{{.State.Pid}}' "$node")
mem_path=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' "/proc/$pid/cgroup")
mem_path=${mem_path%/init.scope}
bytes=$(cat "/sys/fs/cgroup/memory$mem_path/memory.usage_in_bytes" 2>/dev/null \
  || cat "/sys/fs/cgroup$mem_path/memory.current")
cache=$(awk '$1 == "total_inactive_file" {print $2}' "/sys/fs/cgroup/memory$mem_path/memory.stat" 2>/dev/null || echo 0)

secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }
echo "kind setup (warm), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores:"
echo "  cluster  $(secs "$t0" "$t1") s   (kind create cluster, node image cached)"
echo "  images   $(secs "$t1" "$t2") s   (archives cached; kind load)"
echo "  deploy   $(secs "$t2" "$t3") s   (ztlab kind up: apply both SPIRE sites, wait until ready)"
echo "  memory   $(( (bytes - cache) / 1048576 )) MiB in the node container (usage minus inactive file cache)"
echo "BENCH kind_setup_warm_seconds $(secs "$t0" "$t3")"
echo "BENCH kind_memory_mib $(( (bytes - cache) / 1048576 ))"
