#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the images the lab runs on kind and loads them into the cluster `ztlab`. Every image is
# written by infrastructure/kind/mkimage.py from the same pinned binaries the local runtime runs
# (infrastructure/versions.env), plus the SPIFFE CSI driver and the lab's CSI registrar, built
# from the Go module proxy. No Docker daemon and no base image: each image holds its program, the
# shared libraries it needs, and a passwd file; it runs as non-root where the component allows.
# Archives are cached in ~/.cache/ztlab/kind/images/ by their inputs.
#
#   ./scripts/kind-images.sh           # build what is missing, load into the cluster
#   ./scripts/kind-images.sh --build   # only build the archives (no cluster needed)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=../infrastructure/kind/kind.env
. "$ZT_ROOT/infrastructure/kind/kind.env"

load=1
for arg in "$@"; do
  case "$arg" in
    --build) load=0 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

out="$ZT_CACHE/kind/images"
mkdir -p "$out"
built=()

# image NAME TAG MKIMAGE-ARGS...: writes $out/NAME-TAG.tar unless its inputs are unchanged.
image() {
  local name=$1 tag=$2; shift 2
  local archive="$out/$name-$tag.tar" stamp
  stamp=$(printf '%s\n' "$@" | cat - "$ZT_ROOT/infrastructure/kind/mkimage.py" | sha256sum | cut -c1-16)
  if [ -f "$archive" ] && [ "$(cat "$archive.inputs" 2>/dev/null)" = "$stamp" ] && [ "$archive" -nt "$archive.inputs" ]; then
    ok "localhost/ztlab/$name:$tag (cached)"
  else
    python3 "$ZT_ROOT/infrastructure/kind/mkimage.py" --tag "localhost/ztlab/$name:$tag" --out "$archive" "$@" >/dev/null \
      || die "building the image $name failed"
    echo "$stamp" >"$archive.inputs"
    touch -d '-1 second' "$archive.inputs"
    ok "localhost/ztlab/$name:$tag ($(($(stat -c %s "$archive") / 1048576)) MiB)"
  fi
  built+=("$archive")
}

# go_image_bin NAME DIR: builds the Go program in DIR (a module of this repository) into the cache.
go_image_bin() {
  local name=$1 dir=$2 bin="$ZT_CACHE/kind/bin/$1"
  mkdir -p "$ZT_CACHE/kind/bin"
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags '-s -w' -o "$bin.tmp" .) \
    >"$ZT_CACHE/kind/go-build-$name.log" 2>&1 || die "go build of $name failed; see $ZT_CACHE/kind/go-build-$name.log"
  mv "$bin.tmp" "$bin"
}

step "Images for the kind runtime (written by infrastructure/kind/mkimage.py)"
spire_bin="$(spire_dir)/bin"
[ -x "$spire_bin/spire-server" ] || die "SPIRE is not installed; run ./scripts/install-infra.sh"
image spire-server "${SPIRE_VERSION#v}" --strip --bin "$spire_bin/spire-server:/usr/local/bin/spire-server" \
  --entrypoint /usr/local/bin/spire-server
image spire-agent "${SPIRE_VERSION#v}" --strip --bin "$spire_bin/spire-agent:/usr/local/bin/spire-agent" \
  --entrypoint /usr/local/bin/spire-agent

# The SPIFFE CSI driver, from the Go module proxy, in a wrapper module like install-kind.sh's.
csi_src="$ZT_CACHE/src/spiffe-csi-$KIND_SPIFFE_CSI_VERSION"
if [ ! -x "$ZT_CACHE/kind/bin/spiffe-csi-driver-$KIND_SPIFFE_CSI_VERSION" ]; then
  note "building the SPIFFE CSI driver $KIND_SPIFFE_CSI_VERSION"
  mkdir -p "$csi_src"
  printf 'module ztlab.local/build\n\ngo 1.24.0\n\nrequire github.com/spiffe/spiffe-csi %s\n' "$KIND_SPIFFE_CSI_VERSION" >"$csi_src/go.mod"
  (cd "$csi_src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags '-s -w' \
    -o "$ZT_CACHE/kind/bin/spiffe-csi-driver-$KIND_SPIFFE_CSI_VERSION" github.com/spiffe/spiffe-csi/cmd/spiffe-csi-driver) \
    >"$ZT_CACHE/kind/go-build-spiffe-csi.log" 2>&1 || die "go build of the SPIFFE CSI driver failed; see $ZT_CACHE/kind/go-build-spiffe-csi.log"
fi
image spiffe-csi-driver "${KIND_SPIFFE_CSI_VERSION#v}" \
  --bin "$ZT_CACHE/kind/bin/spiffe-csi-driver-$KIND_SPIFFE_CSI_VERSION:/usr/local/bin/spiffe-csi-driver" \
  --entrypoint /usr/local/bin/spiffe-csi-driver --user 0
go_image_bin csi-registrar "$ZT_ROOT/infrastructure/kind/csi-registrar"
image csi-registrar dev --bin "$ZT_CACHE/kind/bin/csi-registrar:/usr/local/bin/csi-registrar" \
  --entrypoint /usr/local/bin/csi-registrar --user 0

[ "$load" -eq 1 ] || exit 0

step "Loading the images into the cluster"
kind_env
command -v kind >/dev/null 2>&1 || die "kind is not installed; run ./scripts/install-kind.sh"
cluster=${ZT_KIND_CLUSTER:-ztlab}
kind get clusters 2>/dev/null | grep -qx "$cluster" || die "no kind cluster $cluster; run ./scripts/kind-cluster.sh up"
for archive in "${built[@]}"; do
  # A load takes about half a second; containerd keeps an image it already has.
  kind load image-archive "$archive" --name "$cluster" >/dev/null 2>&1 || die "kind load image-archive $archive failed"
done
ok "${#built[@]} images loaded into the node"
