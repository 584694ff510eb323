#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Installs what the kind runtime needs into the cache (default ~/.cache/ztlab/), building every
# binary and image here, because no container registry is reachable from the machines this lab
# is tested on (docs/kind.md):
#   - podman (Debian) when neither docker nor podman is present;
#   - Kubernetes (kubeadm, kubelet, kubectl and the control plane), etcd, CoreDNS, crictl and kind,
#     compiled from the Go module proxy at the versions pinned in infrastructure/kind/kind.env;
#   - the kind node image localhost/kindest/node:<version>, built from a Debian rootfs with those
#     binaries and the control-plane images preloaded.
# Everything is keyed by version and skipped when present; run it again and it changes nothing.
#
#   ./scripts/install-kind.sh            # everything above
#   ./scripts/install-kind.sh --binaries # only the Go binaries (no root, no podman)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=../infrastructure/kind/kind.env
. "$ZT_ROOT/infrastructure/kind/kind.env"

only_binaries=0
for arg in "$@"; do
  case "$arg" in
    --binaries) only_binaries=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

need go "Install Go 1.24 or newer (https://go.dev/doc/install, or Debian's golang-go) and re-run."
mkdir -p "$ZT_CACHE"

# go_wrapped NAME OUTDIR MODULE@VERSION PKG [REPLACES]: builds one static binary from the module
# proxy inside a small wrapper module that requires MODULE at VERSION (so the module's own
# replace directives, which point into its repository, do not apply; `-mod=mod` fills in go.sum
# from the module's own requirements). REPLACES is a file of `replace` lines for the wrapper's
# go.mod, LDFLAGS extra linker flags.
go_wrapped() {
  local name=$1 out=$2 modver=$3 pkg=$4 replaces=${5:-} ldflags=${6:-}
  local module=${modver%@*} version=${modver#*@}
  if [ -x "$out/$name" ]; then ok "$name ($out)"; return 0; fi
  local wrap="$ZT_CACHE/src/wrap-${module//\//_}@$version" log="$ZT_CACHE/go-build-$name.log"
  mkdir -p "$wrap" "$out"
  if [ ! -f "$wrap/go.sum" ]; then
    {
      echo "module ztlab.local/build"
      echo
      echo "go 1.24.0"
      echo
      [ "$module" = k8s.io/kubernetes ] && { echo "godebug default=go1.24"; echo; }
      echo "require $module $version"
      [ -n "$replaces" ] && cat "$replaces"
    } >"$wrap/go.mod"
    : >"$wrap/go.sum"
  fi
  note "building $name ($module@$version); a first build takes minutes, later ones seconds"
  local target="$module"
  [ "$pkg" != "." ] && target="$module/${pkg#./}"
  (cd "$wrap" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags selinux,notest,grpcnotrace \
    -ldflags "-s -w $ldflags" -o "$out/$name.tmp" "$target") >>"$log" 2>&1 \
    || die "go build of $target@$version failed; see $log"
  mv "$out/$name.tmp" "$out/$name"
  ok "$name ($out)"
}

k8s_bin="$(kind_k8s_dir)/bin"
step "Kubernetes $KIND_KUBERNETES_VERSION from the Go module proxy"
# The module zip of k8s.io/kubernetes has no staging/ tree; its go.mod points each staging module
# at ./staging/src/..., so the wrapper replaces each one with its published v0.x.y twin.
k8s_mod=$( (cd "$ZT_CACHE" && go mod download -json "k8s.io/kubernetes@$KIND_KUBERNETES_VERSION") \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$k8s_mod" ] || die "could not download k8s.io/kubernetes@$KIND_KUBERNETES_VERSION from the Go module proxy"
staging_version="v0.${KIND_KUBERNETES_VERSION#v1.}"
replaces="$ZT_CACHE/src/k8s-$KIND_KUBERNETES_VERSION.replaces"
mkdir -p "$ZT_CACHE/src"
sed -n "s#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 $staging_version#p" "$k8s_mod" >"$replaces"
[ "$(wc -l <"$replaces")" -gt 20 ] || die "found too few staging modules in $k8s_mod"
k8s_ldflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $p.gitVersion=$KIND_KUBERNETES_VERSION -X $p.gitMajor=1"
  k8s_ldflags+=" -X $p.gitMinor=$(echo "$KIND_KUBERNETES_VERSION" | cut -d. -f2) -X $p.gitTreeState=clean"
done
for c in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  go_wrapped "$c" "$k8s_bin" "k8s.io/kubernetes@$KIND_KUBERNETES_VERSION" "cmd/$c" "$replaces" "$k8s_ldflags"
done

step "etcd, CoreDNS, crictl and kind from the Go module proxy"
go_wrapped etcd "$(kind_tool_dir etcd "$KIND_ETCD_VERSION")" "go.etcd.io/etcd/server/v3@$KIND_ETCD_VERSION" .
go_wrapped coredns "$(kind_tool_dir coredns "$KIND_COREDNS_VERSION")" "github.com/coredns/coredns@$KIND_COREDNS_VERSION" .
go_wrapped crictl "$(kind_tool_dir crictl "$KIND_CRICTL_VERSION")" "sigs.k8s.io/cri-tools@$KIND_CRICTL_VERSION" cmd/crictl
go_wrapped kind "$(kind_tool_dir kind "$KIND_VERSION")" "sigs.k8s.io/kind@$KIND_VERSION" .

[ "$only_binaries" -eq 1 ] && exit 0

# --- the container engine ------------------------------------------------------------------
step "Container engine for kind"
kind_engine_install
kind_env
ok "$(kind_engine) ($([ "$(kind_engine)" = podman ] && echo "storage under $ZT_CACHE/podman" || echo "its own storage"))"

# --- the node image ---------------------------------------------------------------------------
step "kind node image $(kind_node_image)"
if kind_image_exists "$(kind_node_image)"; then
  ok "$(kind_node_image) (built before)"
  exit 0
fi
need debootstrap "apt-get install debootstrap"
need chroot "chroot is part of coreutils"
[ "$(id -u)" -eq 0 ] || die "building the node image needs root (debootstrap and chroot); run ./scripts/install-kind.sh as root"

# A Debian rootfs with systemd, containerd, runc, the CNI plugins and iptables, cached by suite
# and package list.
node_packages=systemd,systemd-sysv,containerd,runc,containernetworking-plugins,iptables,nftables,iproute2,ethtool,socat,conntrack,kmod,mount,util-linux,procps,ca-certificates,bash,tar,gzip
rootfs_tar="$ZT_CACHE/kind/rootfs-$KIND_DEBIAN_SUITE-$(echo "$node_packages" | sha256sum | cut -c1-12).tar"
if [ ! -f "$rootfs_tar" ]; then
  note "debootstrap $KIND_DEBIAN_SUITE (about a minute)"
  tmp_root=$(mktemp -d "$ZT_CACHE/kind/rootfs.XXXXXX")
  debootstrap --variant=minbase --include="$node_packages" "$KIND_DEBIAN_SUITE" "$tmp_root" http://deb.debian.org/debian \
    >"$ZT_CACHE/kind/debootstrap.log" 2>&1 || die "debootstrap failed; see $ZT_CACHE/kind/debootstrap.log"
  rm -rf "$tmp_root"/var/cache/apt/archives/*.deb "$tmp_root"/var/lib/apt/lists/*
  tar -C "$tmp_root" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$tmp_root"
fi
ok "rootfs $(basename "$rootfs_tar")"

work=$(mktemp -d "$ZT_CACHE/kind/node.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xf "$rootfs_tar"
cp -R "$ZT_ROOT/infrastructure/kind/node/." "$work/"
sed -i "s/PAUSE_VERSION/$KIND_PAUSE_VERSION/" "$work/etc/containerd/config.toml"
install -m 0755 "$k8s_bin/kubeadm" "$k8s_bin/kubelet" "$k8s_bin/kubectl" "$work/usr/bin/"
install -m 0755 "$(kind_tool_dir crictl "$KIND_CRICTL_VERSION")/crictl" "$work/usr/local/bin/"
echo "$KIND_KUBERNETES_VERSION" >"$work/kind/version"
# Every node gets its own machine ID at start (the entrypoint writes it).
rm -f "$work/etc/machine-id" && : >"$work/etc/machine-id"
chroot "$work" systemctl enable containerd.service kubelet.service ztlab-preload.service >/dev/null 2>&1
# systemd-sysctl would write host-wide kernel settings (fs.*); udev and getty have nothing to do.
chroot "$work" systemctl mask systemd-sysctl.service systemd-udevd.service systemd-udev-trigger.service \
  getty.target systemd-modules-load.service >/dev/null 2>&1
ok "node files and binaries"

# The control-plane images kubeadm expects, written by mkimage.py and imported by the node at
# its first boot (ztlab-preload.service).
images="$work/kind/images"
mkdir -p "$images"
mkimage() { python3 "$ZT_ROOT/infrastructure/kind/mkimage.py" "$@" >/dev/null || die "mkimage $*"; }
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  mkimage --tag "registry.k8s.io/$c:$KIND_KUBERNETES_VERSION" --out "$images/$c.tar" \
    --bin "$k8s_bin/$c:/usr/local/bin/$c" --entrypoint "/usr/local/bin/$c" --user 0
done
# kube-proxy programs the node's iptables (nft backend, as the node's own tools).
ipt=()
for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ipt+=(--symlink "/usr/sbin/$t:xtables-nft-multi")
done
# The match and target modules are loaded at run time, so each comes with its own libraries.
for m in "$work"/usr/lib/x86_64-linux-gnu/xtables/*.so; do
  ipt+=(--bin "${m#"$work"}")
done
mkimage --tag "registry.k8s.io/kube-proxy:$KIND_KUBERNETES_VERSION" --out "$images/kube-proxy.tar" \
  --sysroot "$work" --bin /usr/sbin/xtables-nft-multi "${ipt[@]}" \
  --file "$k8s_bin/kube-proxy:/usr/local/bin/kube-proxy" --entrypoint /usr/local/bin/kube-proxy --user 0
mkimage --tag "registry.k8s.io/etcd:${KIND_ETCD_VERSION#v}-0" --out "$images/etcd.tar" \
  --bin "$(kind_tool_dir etcd "$KIND_ETCD_VERSION")/etcd:/usr/local/bin/etcd" --entrypoint /usr/local/bin/etcd --user 0
mkimage --tag "registry.k8s.io/coredns/coredns:$KIND_COREDNS_VERSION" --out "$images/coredns.tar" \
  --bin "$(kind_tool_dir coredns "$KIND_COREDNS_VERSION")/coredns:/coredns" --entrypoint /coredns --user 0
pause_bin="$ZT_CACHE/kind/pause-$KIND_PAUSE_VERSION"
(cd "$ZT_ROOT/infrastructure/kind/pause" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$pause_bin" .) \
  || die "go build of the pause program failed"
mkimage --tag "registry.k8s.io/pause:$KIND_PAUSE_VERSION" --out "$images/pause.tar" \
  --bin "$pause_bin:/pause" --entrypoint /pause --user 65535
ok "control-plane images: $(find "$images" -name '*.tar' -printf '%f ')"

note "importing the node image (about a minute)"
tar -C "$work" -c . | kind_engine_cmd import \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change 'STOPSIGNAL SIGRTMIN+3' --change 'ENV container=docker' \
  - "$(kind_node_image)" >"$ZT_CACHE/kind/import.log" 2>&1 || die "importing the node image failed; see $ZT_CACHE/kind/import.log"
ok "$(kind_node_image)"
# Older node images (other inputs) are 1 GB each; keep only this one.
kind_engine_cmd images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep '^localhost/ztlab/kind-node:' \
  | { grep -vx "$(kind_node_image)" || true; } | while read -r old; do
  if kind_engine_cmd rmi "$old" >/dev/null 2>&1; then note "removed the older $old"; fi
done
