#!/usr/bin/env bash
# Benchmark of the Patroni flavour on local sandbox hosts (see bench/README.md):
#   1. bare hosts -> verified 3-node Patroni cluster (3 etcd members co-located): `pgha apply
#      -y` wall time, apt included;
#   2. `pgha plan` on the converged cluster: median wall time, SSH connections and commands per
#      host;
#   3. write gap on a hard crash of the leader's host (`docker kill`), synchronous mode on, a
#      client writing sequential ids through a multi-host connection string: median of
#      FAILOVER_RUNS runs with pgha's default profile and with the field guide's values, and
#      acknowledged writes missing on the new leader.
# Writes bench/out/patroni-report.txt. Tears its sandbox down on exit, also on failure.
#
# Environment: BENCH_NAME (sandbox name, must start with "bench"; default benchpatroni),
# PLAN_RUNS (10), FAILOVER_RUNS (3), CONNECT_TIMEOUT (the client's, seconds; 2), PROFILES
# ("default field-guide").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
NAME=${BENCH_NAME:-benchpatroni}
DIR=$OUT/$NAME
PLAN_RUNS=${PLAN_RUNS:-10}
FAILOVER_RUNS=${FAILOVER_RUNS:-3}
CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-2}
LOGS=$OUT/patroni-logs
REPORT=$OUT/patroni-report.txt
PGHA=$OUT/pgha-patroni                # a copy: others rebuild target/ while we measure

case $NAME in bench*) ;; *) echo "BENCH_NAME must start with bench" >&2; exit 1 ;; esac

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ -n "${WRITER:-}" ] && kill "$WRITER" 2>/dev/null
  bench_sandbox_down
  [ $rc -eq 0 ] || log "exit $rc; logs in $LOGS"
  exit $rc
}

mkdir -p "$OUT" "$LOGS"
rm -f "$LOGS"/*
command -v psql >/dev/null || die "psql is missing (postgresql-client; scripts/prepare-machine installs it)"

build_pgha "$PGHA" "$LOGS/build.log"

trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. bare -> verified
LOAD_START=$(loadavg)
bench_sandbox_up --hosts 3 --flavour patroni
container() { echo "$NAME-$1"; }
docker inspect "$(container pg1)" >/dev/null 2>&1 || die "container naming changed: no $(container pg1)"

# ---------------------------------------------------------------- 2. pgha plan, converged
"$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/plan.out" 2>&1 ||
  die "plan on the converged cluster is not clean (exit $?): $LOGS/plan.out"
log "pgha -vv plan: SSH round trips per host"
t0=$(date +%s.%N)
NO_COLOR=1 "$PGHA" -vv --no-color plan --detailed-exitcode -i "$INV" >"$LOGS/plan-vv.out" 2>"$LOGS/plan-vv.raw" ||
  die "-vv plan: $LOGS/plan-vv.raw"
t1=$(date +%s.%N)
sed 's/\x1b\[[0-9;]*m//g' "$LOGS/plan-vv.raw" >"$LOGS/plan-vv.err"
count_events() {  # EVENT HOST
  grep -cE "^ *DEBUG +pgha::transport::ssh: +$1 +host=$2( |\$)" "$LOGS/plan-vv.err" || true
}
RT_LINES=()
for h in "${HOSTS[@]}"; do
  name=${h%% *} addr=${h#* }
  runs=$(count_events run "$name")
  conns=$("${SSH[@]}" "root@$addr" "journalctl --no-pager -q -t sshd --since @$t0 --until @$t1 | grep -c 'Accepted publickey'" || true)
  [ "$runs" -ge 1 ] || die "$name: no run lines in $LOGS/plan-vv.err: did the -vv format change?"
  RT_LINES+=("$(printf '    %-4s %s SSH connection(s) + %s command(s)' "$name" "$conns" "$runs")")
done
P_TIMES=()
for (( i = 0; i < PLAN_RUNS; i++ )); do
  t0=$(now_ns)
  "$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/timed-plan.out" 2>&1 ||
    die "timed plan $((i + 1)) exit $?: $LOGS/timed-plan.out"
  P_TIMES+=($(( $(now_ns) - t0 )))
done

# ---------------------------------------------------------------- 3. failover under load
# Synchronous mode on (a DCS change: PATCH /config), so that no acknowledged write may be lost.
python3 - "$INV" <<'EOF'
import sys
p = sys.argv[1]
s = open(p).read()
assert "patroni:\n" in s
open(p, "w").write(s.replace("patroni:\n", "patroni:\n  synchronous_mode: true\n", 1))
EOF
"$PGHA" apply -y -i "$INV" >"$LOGS/apply-sync.out" 2>&1 || die "apply synchronous_mode: $LOGS/apply-sync.out"

ADDRS=$(for h in "${HOSTS[@]}"; do printf '%s,' "${h#* }"; done)
CONNINFO="host=${ADDRS%,} port=5432 dbname=appdb user=app target_session_attrs=read-write connect_timeout=$CONNECT_TIMEOUT"
export PGPASSWORD=$PGHA_APP_PASSWORD
psql -X -q -v ON_ERROR_STOP=1 "$CONNINFO" -c 'CREATE TABLE IF NOT EXISTS writes (id bigint PRIMARY KEY)' \
  >"$LOGS/create.log" 2>&1 || die "create table: $LOGS/create.log"

leader() {  # the member whose REST API answers /leader with 200
  for h in "${HOSTS[@]}"; do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://${h#* }:8008/leader" || true)
    [ "$code" = 200 ] && { echo "${h%% *}"; return 0; }
  done
  return 1
}
etcd_leader() {  # the host whose etcd member leads the etcd cluster
  docker exec "$(container "$1")" sh -c 'ETCDCTL_API=3 etcdctl endpoint status --cluster -w simple' 2>/dev/null |
    awk -F', ' '$5 == "true" { print $1 }' | sed -E 's#http://([^:]+):.*#\1#' |
    while read -r ip; do for h in "${HOSTS[@]}"; do [ "${h#* }" = "$ip" ] && echo "${h%% *}"; done; done
}
set_profile() {  # TTL LOOP_WAIT RETRY_TIMEOUT
  python3 - "$INV" "$@" <<'EOF'
import re, sys
p, ttl, lw, rt = sys.argv[1:]
s = open(p).read()
s = re.sub(r"\n  (ttl|loop_wait|retry_timeout): \d+", "", s)
s = s.replace("patroni:\n", f"patroni:\n  ttl: {ttl}\n  loop_wait: {lw}\n  retry_timeout: {rt}\n", 1)
open(p, "w").write(s)
EOF
  "$PGHA" apply -y -i "$INV" >"$LOGS/apply-profile-$1-$2-$3.out" 2>&1 ||
    die "apply profile $*: $LOGS/apply-profile-$1-$2-$3.out"
}

# One failover: writer on, kill the leader's host, wait for writes to resume, compare.
# Prints "gap_seconds acked missing leader etcd_leader_was_killed".
failover() {  # TAG
  local tag=$1 acked=$LOGS/acked-$1.txt stop=$LOGS/stop-$1 old new kill_ns gap missing
  rm -f "$acked" "$stop"
  old=$(leader) || die "no leader before $tag"
  local etcd_lead; etcd_lead=$(etcd_leader "$old" || true)
  local start; start=$(psql -X -At "$CONNINFO" -c 'SELECT coalesce(max(id), 0) FROM writes') || die "max id"
  (
    i=$start
    while [ ! -e "$stop" ]; do
      i=$((i + 1))
      if psql -X -q "$CONNINFO" -c "INSERT INTO writes VALUES ($i)" >/dev/null 2>&1; then
        echo "$i $(date +%s%N)" >>"$acked"
      else
        sleep 0.1
      fi
    done
  ) &
  WRITER=$!
  sleep 5
  kill_ns=$(now_ns)
  docker kill "$(container "$old")" >/dev/null || die "docker kill $old"
  # Until a write after the crash is acknowledged, then 3 s more.
  local deadline=$(( $(date +%s) + 120 ))
  while [ "$(awk -v k="$kill_ns" '$2 > k + 1e9 { n++ } END { print n + 0 }' "$acked")" -lt 1 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$tag: no write acknowledged within 120 s of the crash"
    sleep 0.5
  done
  sleep 3
  touch "$stop"; wait "$WRITER"; WRITER=
  # The gap: the longest pause between two acknowledged writes that spans the crash.
  gap=$(awk -v k="$kill_ns" 'NR > 1 && $2 >= k && prev <= k + 2e9 { g = ($2 - prev) / 1e9; if (g > m) m = g }
          { prev = $2 } END { printf "%.1f", m }' "$acked")
  new=$(leader) || die "$tag: no leader after the crash"
  docker exec "$(container "$new")" sh -c 'cd / && runuser -u postgres -- psql -X -At -d appdb -c "SELECT id FROM writes"' \
    | sort -n >"$LOGS/present-$tag.txt"
  missing=$(awk 'NR == FNR { have[$1] = 1; next } !($1 in have)' "$LOGS/present-$tag.txt" "$acked" | wc -l)
  # Where the time went: the crash -> Patroni's promotion (lease expiry + the new leader's
  # round of member checks), then -> the client's first acknowledged write.
  local promoted first
  promoted=$(docker exec "$(container "$new")" journalctl -u patroni@15-main -o short-unix --no-pager \
    --since "@$(( kill_ns / 1000000000 - 1 ))" | grep -m1 'promoted self to leader' | cut -d' ' -f1 || true)
  local to_promote=? to_client=?
  if [ -n "$promoted" ]; then
    first=$(awk -v p="$promoted" '$2 / 1e9 > p { print $2; exit }' "$acked")
    to_promote=$(awk -v p="$promoted" -v k="$kill_ns" 'BEGIN { printf "%.1f", p - k / 1e9 }')
    to_client=$(awk -v p="$promoted" -v f="$first" 'BEGIN { printf "%.1f", f / 1e9 - p }')
  fi
  echo "$gap $(wc -l <"$acked") $missing $old->$new $([ "$etcd_lead" = "$old" ] && echo yes || echo no) $to_promote $to_client"
  # The old host comes back and rejoins as a replica; plan must then be clean.
  docker start "$(container "$old")" >/dev/null || die "docker start $old"
  deadline=$(( $(date +%s) + 180 ))
  until "$PGHA" status -i "$INV" 2>/dev/null | grep -E "^[└├│─ ]*$old " | grep -q streaming; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$tag: $old did not rejoin as a replica"
    sleep 3
  done
  "$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/plan-after-$tag.out" 2>&1 ||
    die "$tag: plan after the rejoin is not clean: $LOGS/plan-after-$tag.out"
  "$PGHA" verify -i "$INV" >"$LOGS/verify-after-$tag.out" 2>&1 ||
    die "$tag: verify after the rejoin failed: $LOGS/verify-after-$tag.out"
}

declare -A PROFILE_LINES PROFILE_GAPS
run_profile() {  # LABEL TTL LOOP_WAIT RETRY
  local label=$1; shift
  log "profile $label: ttl $1 / loop_wait $2 / retry_timeout $3"
  set_profile "$@"
  local gaps=() lines=()
  for (( r = 1; r <= FAILOVER_RUNS; r++ )); do
    log "  failover $r of $FAILOVER_RUNS"
    failover "$label-$r" >"$LOGS/failover-$label-$r.txt"
    read -r gap acked missing moved etcd_killed to_promote to_client <"$LOGS/failover-$label-$r.txt"
    gaps+=("$gap")
    lines+=("$(printf '    run %d: gap %5s s (crash -> promoted %s s, -> first write %s s), %4s writes acknowledged, %s missing, leader %s, etcd leader on it: %s' \
      "$r" "$gap" "$to_promote" "$to_client" "$acked" "$missing" "$moved" "$etcd_killed")")
    [ "$missing" = 0 ] || log "  $missing acknowledged writes missing!"
  done
  PROFILE_GAPS[$label]=$(printf '%s\n' "${gaps[@]}" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }')
  PROFILE_LINES[$label]=$(printf '%s\n' "${lines[@]}")
}
for profile in ${PROFILES:-default field-guide}; do
  case $profile in
    default) run_profile default 20 10 5 ;;
    field-guide) run_profile field-guide 30 10 10 ;;
    *) die "unknown profile $profile (default, field-guide)" ;;
  esac
done
LOAD_END=$(loadavg)

# ---------------------------------------------------------------- report
stats() {  # NANOSECONDS...: "median min max" in seconds
  printf '%s\n' "$@" | sort -n | awk '{ t[NR] = $1 / 1e9 } END {
    m = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
    printf "%.2f %.2f %.2f\n", m, t[1], t[NR] }'
}
read -r P_MED P_MIN P_MAX < <(stats "${P_TIMES[@]}")
{
  echo "pgha Patroni benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "machine:   $(nproc) CPUs, $(free -g | awk '/^Mem:/ { print $2 }') GiB memory, kernel $(uname -r)"
  echo "load avg:  start $LOAD_START | end $LOAD_END (the machine is shared)"
  echo "versions:  pgha $REV; Patroni $(docker exec "$(container pg1)" patroni --version 2>/dev/null | awk '{ print $2 }'), etcd $(docker exec "$(container pg1)" etcd --version 2>/dev/null | awk '/etcd Version/ { print $3 }'), PostgreSQL 15 (Debian 12)"
  echo "hosts:     3 sandbox containers, PostgreSQL + Patroni + an etcd member on each"
  echo
  echo "1. bare hosts -> verified Patroni cluster (goal < 90 s)"
  echo "   sandbox up (not counted):          $(secs "$T_UP") s"
  echo "   pgha apply -y (apt included):      $(secs "$T_APPLY") s   [verify: $VERIFIED]"
  echo
  echo "2. pgha plan on the converged cluster (\"No changes.\")"
  echo "   wall time, median of $PLAN_RUNS:          $P_MED s (min $P_MIN, max $P_MAX)"
  printf '%s\n' "${RT_LINES[@]}"
  echo
  echo "3. hard crash of the leader's host (docker kill), synchronous_mode on, client connect_timeout=${CONNECT_TIMEOUT}s"
  echo "   write gap = longest pause between two acknowledged writes across the crash"
  if [ -n "${PROFILE_GAPS[default]:-}" ]; then
    echo "   pgha default (ttl 20, loop_wait 10, retry_timeout 5): median ${PROFILE_GAPS[default]} s"
    echo "${PROFILE_LINES[default]}"
  fi
  if [ -n "${PROFILE_GAPS[field-guide]:-}" ]; then
    echo "   field guide (ttl 30, loop_wait 10, retry_timeout 10): median ${PROFILE_GAPS[field-guide]} s"
    echo "${PROFILE_LINES[field-guide]}"
  fi
} | tee "$REPORT"
