#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The guided demo: walks the scenario catalogue (demo/scenarios.toml) on the running lab. For
# each scenario it prints the title and narration, waits for Enter, runs it with
# `ztlab demo run <id>` (PASS/FAIL for every step and case, with the observed outcome and the
# reason), then shows the evidence with the real tools: spire-server entry show, openssl on the
# backend's SVID, Envoy's RBAC counters and SDS certificates, PostgreSQL's log, the document
# service's decisions, the entry-management audit trail, the SPIRE servers' health.
#
#   ./scripts/demo.sh                        # every scenario, pausing before each
#   ./scripts/demo.sh --auto                 # no pauses (CI, rehearsal)
#   ./scripts/demo.sh --scenario envoy-rbac  # one scenario
#   ./scripts/demo.sh --list                 # the scenarios in the catalogue
#   ./scripts/demo.sh --state-dir DIR        # the lab in DIR (default: $ZT_STATE_DIR, as ztlab)
#   ./scripts/demo.sh --catalogue FILE       # another scenario catalogue (a rehearsal, a test)
#
# Start the lab first (./scripts/setup.sh). Exits 0 when every expected outcome held, 1 when one
# did not, 2 when a scenario could not run (no lab, a component down). $ZTLAB overrides the
# ztlab binary (default: the build in this checkout).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# ztlab demo's network-policy step runs infrastructure/kind/check.py from this checkout.
export ZT_ROOT

auto=0
list=0
only=()
state_args=()
demo_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --auto) auto=1 ;;
    --list) list=1 ;;
    --scenario) [ $# -ge 2 ] || die "--scenario needs an id (try --list)"; only+=("$2"); shift ;;
    --scenario=*) only+=("${1#*=}") ;;
    --state-dir) [ $# -ge 2 ] || die "--state-dir needs a directory"; state_args=(--state-dir "$2"); shift ;;
    --state-dir=*) state_args=(--state-dir "${1#*=}") ;;
    --catalogue) [ $# -ge 2 ] || die "--catalogue needs a file"; demo_args=(--catalogue "$2"); shift ;;
    --catalogue=*) demo_args=(--catalogue "${1#*=}") ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done

ZTLAB="${ZTLAB:-$(zt_target_dir)/debug/ztlab}"
[ -x "$ZTLAB" ] || die "ztlab is not built at $ZTLAB: run ./scripts/setup.sh (or cargo build -p ztlab)"
zt() { "$ZTLAB" "${state_args[@]}" "$@"; }
# The drills stop and restart components; ztlab's own progress log stays quiet (warnings only),
# since the run prints what it does, and plain when stderr is not a terminal.
export RUST_LOG="${RUST_LOG:-warn}"
[ -t 2 ] || export NO_COLOR=1
# ztlab demo SUBCOMMAND ARGS...: with the catalogue asked for.
demo() { local sub="$1"; shift; zt demo "$sub" "${demo_args[@]}" "$@"; }

# While a scenario runs (set to its id), an interruption puts the normal RBAC policy back.
# `ztlab demo run` does that itself on Ctrl-C; this covers a kill of the script in between.
current=''
cleanup() {
  local rc=$?
  if [ -n "$current" ] && zt policy rbac show 2>/dev/null | grep -q '^deny-frontend'; then
    zt policy rbac allow-frontend >/dev/null 2>&1 || true
    note "interrupted during $current: put the allow-frontend RBAC policy back"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -t 1 ]; then _cyan=$'\e[36m'; else _cyan=''; fi
banner() {
  local line='────────────────────────────────────────────────────────────────────────────────'
  printf '\n%s%s%s\n%s%s%s\n%s%s%s\n' "$_cyan" "$line" "$_zt_off" "$_zt_bold" "$*" "$_zt_off" "$_cyan" "$line" "$_zt_off"
}
heading() { printf '\n%s── %s%s\n' "$_zt_bold" "$*" "$_zt_off"; }
pause() {
  [ "$auto" -eq 1 ] && return 0
  printf '\n%s[Enter] %s%s ' "$_zt_dim" "$*" "$_zt_off"
  read -r _ || true
}
# shows DESCRIPTION DISPLAY CMD...: print DISPLAY (the command as typed; empty: CMD itself) with
# the state dir as $S, then run CMD; a failure is noted, not fatal.
shows() {
  local what="$1" display="$2"; shift 2
  [ -n "$display" ] || display="$*"
  printf '  %s%s%s\n' "$_zt_bold" "$what" "$_zt_off"
  printf '  %s$ %s%s\n' "$_zt_dim" "${display//"${fact[state_dir]}"/\$S}" "$_zt_off"
  if ! "$@" 2>&1 | sed 's/^/    /'; then
    note "(that did not work; the lab may be partly down)"
  fi
}

if [ "$list" -eq 1 ]; then
  demo list
  exit 0
fi

# The scenarios to walk: the ones asked for (checked against the catalogue), else all.
catalogue="$(demo list)" || exit 2
ids=()
if [ ${#only[@]} -gt 0 ]; then
  for id in "${only[@]}"; do
    demo show "$id" >/dev/null || exit 2
    ids+=("$id")
  done
else
  while read -r id _; do ids+=("$id"); done <<<"$catalogue"
fi
[ ${#ids[@]} -gt 0 ] || die "the scenario catalogue is empty"

# Where the lab's evidence is (SPIFFE IDs, ports, files): `ztlab demo facts`, key=value lines.
declare -A fact=()
facts_text="$(demo facts)" || exit 2
while IFS='=' read -r key value; do fact[$key]="$value"; done <<<"$facts_text"

# The evidence for each scenario, with the real tools.
spire_entries() {
  local id
  for id in "$@"; do
    shows "SPIRE registration entries of $id" '' \
      "${fact[spire_server]}" entry show -socketPath "${fact[spire_socket]}" -spiffeID "$id"
  done
}
backend_pg_connection() {
  grep 'connection authorized' "${fact[postgres_log]}" | grep 'application_name=backend' | tail -1
}
rbac_counters() {
  curl -s --max-time 5 "${fact[backend_envoy_admin]}/stats?filter=rbac" \
    | grep -E 'inbound\.rbac\.(allowed|denied)|rbac\.(config_reload|update_success):'
}
lease() { curl -s --max-time 5 "${fact[backend_lease_url]}"; echo; }
# `bao lease lookup` of the backend's current lease, with the lab's lease-reader token (policy
# lease-reader: sys/leases/lookup and nothing else; the root token is revoked).
bao_lease_lookup() {
  local id token addr
  id="$(lease | sed -n 's/.*"lease_id":"\([^"]*\)".*/\1/p')"
  token="$(sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' "${fact[lease_reader_file]}")"
  addr="$(sed -n 's/.*"addr": *"\([^"]*\)".*/\1/p' "${fact[lease_reader_file]}")"
  [ -n "$id" ] || { echo "the backend reports no lease (is it up?)"; return 1; }
  [ -n "$token" ] || { echo "no lease-reader token in ${fact[lease_reader_file]} (run ztlab up)"; return 1; }
  BAO_ADDR="$addr" BAO_TOKEN="$token" "${fact[bao]}" lease lookup "$id"
}
envoy_certs() {
  local admin
  for admin in "${fact[frontend_envoy_admin]}" "${fact[backend_envoy_admin]}"; do
    echo "$admin/certs:"
    curl -s --max-time 5 "$admin/certs" | grep -E '"(serial_number|expiration_time)"' | tr -d ' ",' | sed 's/^/  /'
  done
}
opa_healthz() { curl -s --max-time 5 "${fact[opa_healthz_url]}"; echo; }
backend_pg_connections() {
  grep 'connection authorized' "${fact[postgres_log]}" | grep 'application_name=backend' | tail -3
}
token_in_logs() { { grep -rl ghp_fixture_jake_demo "${fact[logs_dir]}" || true; } | wc -l; }
spire_servers_healthy() {
  local pair site socket
  for pair in ${fact[spire_sockets]}; do
    site="${pair%%=*}" socket="${pair#*=}"
    shows "SPIRE server of site $site, running again" '' \
      "${fact[spire_server]}" healthcheck -socketPath "$socket"
  done
}
site_b_unavailable() {
  { grep -h 'SPIRE server unavailable' "${fact[logs_dir]}/site-agent-b.log" || true; } | tail -2 \
    | sed -E 's/.*"timestamp":"([^".]*)[^"]*".*"message":"([^"]*)".*"error":"([^"]{0,110}).*/\1  \2: \3…/'
}
# OpenBao's audit log: who (the token's display name: the backend's JWT-SVID login is
# jwt-<its SPIFFE ID>) did what to which path. Secret values in it are HMAC'd, never plain.
# audit_lines PATH-PATTERN [N]: the last N (default 1) audited requests to paths matching it.
audit_lines() {
  { grep '"type":"request"' "${fact[openbao_audit_log]}" || true; } | grep -E "\"path\":\"$1" | tail -"${2:-1}" \
    | sed -E 's/.*"time":"([^".]*)[^"]*".*"display_name":"([^"]*)".*"operation":"([^"]*)".*"path":"([^"]*)".*/\1  \2  \3 \4/'
}
github_token_read() { audit_lines 'secret/data/github/jake"' 1; }
lease_revocations() { audit_lines 'sys/leases/revoke/' 3; }
db_creds_reads() { audit_lines 'database/creds/backend"' 2; }
backend_recovery() {
  { grep -h 'PostgreSQL rejected the database credentials\|recovered: new database credentials' "${fact[backend_log]}" || true; } \
    | tail -2 | sed -E 's/.*"timestamp":"([^".]*)[^"]*".*"message":"([^"]*)".*/\1  \2/'
}
document_decisions() {
  grep '"document decision"' "${fact[document_log]}" | tail -9 \
    | sed -E 's/.*"caller":"([^"]*)".*"doc":"([^"]*)","allow":([a-z]+),"reason":"([^"]*)".*/\1 → \2  allow=\3  (\4)/'
}

evidence() {
  case "$1" in
    run-demo)
      spire_entries "${fact[frontend_id]}" "${fact[backend_id]}"
      shows "The backend's X.509-SVID, as spiffe-helper wrote it for PostgreSQL" '' \
        openssl x509 -in "${fact[backend_svid]}" -noout -subject -serial -enddate -ext subjectAltName
      shows "PostgreSQL's log of the backend's last connection (TLS 1.3, OpenBao's dynamic user)" \
        "grep 'connection authorized' ${fact[postgres_log]} | grep application_name=backend | tail -1" \
        backend_pg_connection
      shows "The backend's OpenBao lease (the backend reports it)" "curl -s ${fact[backend_lease_url]}" lease
      shows "OpenBao's own view of that lease, with a token that may only look leases up" \
        "bao lease lookup <lease_id>" bao_lease_lookup
      ;;
    envoy-rbac)
      shows "Envoy's RBAC counters and policy reloads (backend Envoy admin)" \
        "curl -s ${fact[backend_envoy_admin]}/stats?filter=rbac | grep -E 'inbound.rbac|reload|success'" rbac_counters
      shows "The policy installed now" "ztlab policy rbac show" zt policy rbac show
      ;;
    delegation)
      # shellcheck disable=SC2086  # agent_ids is a space-separated list of SPIFFE IDs
      spire_entries ${fact[agent_ids]}
      shows "The document service's last nine decisions (caller → document, decision, reason)" \
        "grep '\"document decision\"' ${fact[document_log]} | tail -9" document_decisions
      ;;
    rotation)
      shows "The certificates both Envoys serve now, from SDS (admin /certs)" \
        "curl -s ${fact[frontend_envoy_admin]}/certs ${fact[backend_envoy_admin]}/certs | grep -E 'serial_number|expiration_time'" \
        envoy_certs
      shows "The backend's spiffe-helper files: the serial and validity now" '' \
        openssl x509 -in "${fact[backend_svid]}" -noout -serial -startdate -enddate
      shows "PostgreSQL's spiffe-helper files: the serial and validity now" '' \
        openssl x509 -in "${fact[postgres_svid]}" -noout -serial -startdate -enddate
      shows "opa's native SVID (its /healthz)" "curl -s ${fact[opa_healthz_url]}" opa_healthz
      ;;
    openbao)
      shows "The backend's lease now: a newer user than at the start of the scenario" \
        "curl -s ${fact[backend_lease_url]}" lease
      shows "OpenBao's lease lookup of it: the TTL counting down (lease-reader token)" \
        "bao lease lookup <lease_id>" bao_lease_lookup
      shows "OpenBao's audit log: who got the database credentials (the backend's JWT-SVID login)" \
        "grep database/creds/backend \$S/openbao/audit.log | tail -2" db_creds_reads
      shows "PostgreSQL's log: the backend connecting as its dynamic users (last three)" \
        "grep 'connection authorized' ${fact[postgres_log]} | grep application_name=backend | tail -3" \
        backend_pg_connections
      ;;
    github)
      shows "Log files that contain the GitHub token the scenario stored (none: it lives in OpenBao only)" \
        "grep -rl ghp_fixture_jake_demo \$S/logs | wc -l" token_in_logs
      shows "OpenBao's audit log: who read Jake's token (time, the login's identity, operation, path)" \
        "grep secret/data/github/jake \$S/openbao/audit.log | tail -1" github_token_read
      ;;
    revoke-credentials)
      shows "OpenBao's audit log: the revocations (the drill's lease-revoker token, then the backend's own)" \
        "grep sys/leases/revoke/ \$S/openbao/audit.log | tail -3" lease_revocations
      shows "The backend's log: PostgreSQL refused the revoked user, the backend got a new one at once" \
        "grep 'rejected the database credentials' \$S/logs/backend.log | tail -2" backend_recovery
      shows "The backend's lease now (a new one), in OpenBao's own view" "bao lease lookup <lease_id>" bao_lease_lookup
      ;;
    entries)
      shows "The entry-management audit trail (newest first)" "ztlab audit list --limit 8" \
        zt audit list --limit 8
      shows "Demo entries left on the API (none: the scenario deleted its entry)" \
        "ztlab entries list --prefix spiffe://${fact[trust_domain]}/demo/" \
        zt entries list --prefix "spiffe://${fact[trust_domain]}/demo/"
      ;;
    failure-drills)
      spire_servers_healthy
      shows "Site b's site agent while its SPIRE server was down (entry-manager retried through it)" \
        "grep 'SPIRE server unavailable' \$S/logs/site-agent-b.log | tail -2" site_b_unavailable
      ;;
    network-policy)
      shows "The Cilium policies the matrix comes from" "ls infrastructure/kind/policies" \
        ls "$ZT_ROOT/infrastructure/kind/policies"
      note "Live enforcement exists only on kind (Cilium with mutual authentication, docs/kind.md);"
      note "the local runtime shows the policy, it does not enforce it."
      ;;
    *) note "no extra evidence for $1 (the run above shows what it observed)" ;;
  esac
}

banner "ztlab demo: ${#ids[@]} scenario(s) from demo/scenarios.toml"
note "lab: S=${fact[state_dir]}   UI: ${fact[frontend_url]}"

passed=()
failed=()
n=0
for id in "${ids[@]}"; do
  n=$((n + 1))
  banner "Scenario $n/${#ids[@]}"
  demo show "$id"
  pause "run it"
  heading "Running $id"
  current="$id"
  rc=0
  demo run "$id" || rc=$?
  current=''
  case "$rc" in
    0) passed+=("$id") ;;
    1) failed+=("$id") ;;
    *)
      printf '%serror:%s scenario %s could not run (ztlab demo run exited %s); is the lab up? ./scripts/setup.sh\n' \
        "$_zt_red" "$_zt_off" "$id" "$rc" >&2
      exit 2 ;;
  esac
  heading "Evidence"
  evidence "$id"
  if [ "$n" -lt ${#ids[@]} ]; then pause "next scenario"; fi
done

banner "Summary"
for id in "${ids[@]}"; do
  title="$(awk -v id="$id" '$1 == id { $1 = ""; sub(/^ +/, ""); print }' <<<"$catalogue")"
  if printf '%s\n' "${passed[@]}" | grep -qx -- "$id"; then
    printf '  %sPASS%s  %-12s %s\n' "$_zt_green" "$_zt_off" "$id" "$title"
  else
    printf '  %sFAIL%s  %-12s %s\n' "$_zt_red" "$_zt_off" "$id" "$title"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  printf '\n%s%d of %d scenarios failed:%s %s\n' "$_zt_red" "${#failed[@]}" "${#ids[@]}" "$_zt_off" "${failed[*]}"
  exit 1
fi
printf '\n%severy expected outcome held%s\n' "$_zt_green" "$_zt_off"
