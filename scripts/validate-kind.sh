#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Checks the kind runtime offline (there is no Docker, Kubernetes or Cilium here; docs/kind.md):
#   - every manifest in infrastructure/kind/ against the Kubernetes JSON schemas shipped by the
#     PyPI package kubernetes-validate (strict), and the CiliumNetworkPolicy objects against
#     infrastructure/kind/schemas/ciliumnetworkpolicy.schema.json;
#   - names, Services, ConfigMaps, image pins, the SPIFFE CSI socket, pod security, Cilium's values;
#   - that policies select workloads by ServiceAccount (= SPIFFE ID), and that the flows they allow
#     are exactly those of infrastructure/kind/reachability.toml, mutual authentication included;
#   - a self-test: broken copies of the tree must each be rejected for the expected reason.
#
#   ./scripts/validate-kind.sh                  # everything (scripts/test.sh runs this)
#   ./scripts/validate-kind.sh --no-self-test   # only the real tree
#
# kubernetes-validate is installed pinned (KUBERNETES_VALIDATE_VERSION in
# infrastructure/versions.env) into ~/.cache/ztlab/kubernetes-validate-<version>/ when missing,
# the same venv that ./scripts/install-infra.sh --with-test-tools installs. Needs Python 3.11+.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

self_test=1
for arg in "$@"; do
  case "$arg" in
    --no-self-test) self_test=0 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

kv_dir="$ZT_CACHE/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
kv_tmp="$kv_dir.tmp"
cleanup() { rm -rf "$kv_tmp"; }
trap cleanup EXIT

if [ -x "$kv_dir/bin/kubernetes-validate" ]; then
  ok "kubernetes-validate $KUBERNETES_VALIDATE_VERSION ($kv_dir)"
else
  need python3 "Install Python 3.11 or newer (Debian: apt-get install python3 python3-venv)."
  step "kubernetes-validate $KUBERNETES_VALIDATE_VERSION (PyPI, into $kv_dir)"
  mkdir -p "$ZT_CACHE"
  rm -rf "$kv_tmp"
  python3 -m venv "$kv_tmp" >/dev/null 2>&1 \
    || die "python3 -m venv failed: install python3-venv (Debian: apt-get install python3-venv)"
  log="$ZT_CACHE/pip-install-kubernetes-validate.log"
  "$kv_tmp/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >"$log" 2>&1 \
    || die "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed; see $log"
  rm -rf "$kv_dir"
  mv "$kv_tmp" "$kv_dir"
  # Python venvs hard-code their path in scripts; re-create the console script after the move.
  sed -i "1s|.*|#!$kv_dir/bin/python3|" "$kv_dir/bin/kubernetes-validate"
  ok "kubernetes-validate ($kv_dir/bin)"
fi

"$kv_dir/bin/python3" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "$kv_dir was built with Python older than 3.11 (infrastructure/kind/check.py needs tomllib); remove it and re-run with a newer python3"

check_args=(--root "$ZT_ROOT")
if [ "$self_test" -eq 1 ]; then check_args+=(--self-test); fi
if ! "$kv_dir/bin/python3" "$ZT_ROOT/infrastructure/kind/check.py" "${check_args[@]}"; then
  die "the kind manifests failed their offline checks (above); docs/kind.md says what each check means"
fi
step "kind manifests: all offline checks passed"
