#!/usr/bin/env bash
# Benchmark of the repmgr flavour on local sandbox hosts (see bench/README.md): three data
# nodes pg1..pg3 and a witness pg4.
#   1. bare hosts -> verified repmgr cluster: `pgha apply -y` wall time, apt included;
#   2. `pgha plan` on the converged cluster: median wall time, SSH connections and commands
#      per host;
#   3. failover: `docker kill` of the primary's container, time until a surviving data node
#      accepts a write; then the old primary's container is started again and `pgha apply -y`
#      rejoins it (timed), verify and a clean plan before the next round. FAILOVERS rounds with
#      pgha's default repmgr timing and FAILOVERS with repmgr's own defaults.
# Writes bench/out/repmgr-report.txt. Tears its sandbox down on exit, also on failure.
#
# Environment: BENCH_NAME (sandbox name, must start with "bench"; default benchrepmgr),
# PLAN_RUNS (10), FAILOVERS (5), BENCH_STRICT=1 (exit 3 when bare -> verified takes 90 s or
# more).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
NAME=${BENCH_NAME:-benchrepmgr}
DIR=$OUT/$NAME
PLAN_RUNS=${PLAN_RUNS:-10}
FAILOVERS=${FAILOVERS:-5}
POLL=0.2                              # seconds between two write probes
LOGS=$OUT/repmgr-logs
REPORT=$OUT/repmgr-report.txt
PGHA=$OUT/pgha-repmgr                 # a copy: others rebuild target/ while we measure

case $NAME in bench*) ;; *) echo "BENCH_NAME must start with bench" >&2; exit 1 ;; esac

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

bench_start

# ---------------------------------------------------------------- 1. bare -> verified
LOAD_START=$(loadavg)
bench_sandbox_up --flavour repmgr --hosts 4 --witness
container() { echo "$NAME-$1"; }
docker inspect "$(container pg1)" >/dev/null 2>&1 || die "container naming changed: no $(container pg1)"

# The data nodes (every host but the witness), "name address" lines.
mapfile -t DATA < <(python3 -c 'import sys, yaml
for h in yaml.safe_load(open(sys.argv[1]))["hosts"]:
    if h["role"] != "witness": print(h["name"], h["address"])' "$INV")
[ ${#DATA[@]} = 3 ] || die "expected 3 data nodes in $INV, found ${#DATA[@]}"
addr_of() { for h in "${HOSTS[@]}"; do [ "${h%% *}" = "$1" ] && { echo "${h#* }"; return 0; }; done; return 1; }

# ---------------------------------------------------------------- 2. pgha plan, converged
"$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/plan.out" 2>&1 ||
  die "plan on the converged cluster is not clean (exit $?): $LOGS/plan.out"
grep -q '^No changes\.' "$LOGS/plan.out" || die "plan did not say \"No changes.\": $LOGS/plan.out"

# SSH connections (sshd's journal on each host) and commands (`-vv` debug lines) of one plan.
log "pgha -vv plan: SSH round trips per host"
t0=$(date +%s.%N)
NO_COLOR=1 "$PGHA" -vv plan --detailed-exitcode -i "$INV" >"$LOGS/plan-vv.out" 2>"$LOGS/plan-vv.raw" ||
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
  dones=$(count_events done "$name")
  conns=$("${SSH[@]}" "root@$addr" "journalctl --no-pager -q -t sshd --since @$t0 --until @$t1 | grep -c 'Accepted publickey'" || true)
  ms=$(grep -E "^ *DEBUG +pgha::transport::ssh: +done +host=$name " "$LOGS/plan-vv.err" |
       grep -oE 'elapsed_ms=[0-9]+' | cut -d= -f2 | paste -sd+ -)
  [ "$runs" = "$dones" ] || die "$name: $runs run lines but $dones done lines in $LOGS/plan-vv.err"
  [ "$runs" -ge 1 ] || die "$name: no run lines in $LOGS/plan-vv.err: did the -vv format change?"
  RT_LINES+=("$(printf '    %-4s %s SSH connection(s) + %s command(s) (remote time %s ms)' "$name" "$conns" "$runs" "$ms")")
done
TOTAL_RUNS=$(grep -cE '^ *DEBUG +pgha::transport::ssh: +run +host=' "$LOGS/plan-vv.err" || true)

log "timing: $PLAN_RUNS x pgha plan"
P_TIMES=()
for (( i = 0; i < PLAN_RUNS; i++ )); do
  t0=$(now_ns)
  "$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/timed-plan.out" 2>&1 ||
    die "timed plan $((i + 1)) exit $?: $LOGS/timed-plan.out"
  P_TIMES+=($(( $(now_ns) - t0 )))
  echo "pgha plan $(secs "${P_TIMES[-1]}") s  load $(loadavg)" >>"$LOGS/timings.txt"
done

# ---------------------------------------------------------------- 3. failover and rejoin
# The probe: a client on a surviving data node's container writes through a multi-host
# connection string as the application role (pg_hba admits the app role from the sandbox's
# network; the postgres role only over the local socket). The password travels in the
# environment of `docker exec`, not on a command line.
export PGPASSWORD=$PGHA_APP_PASSWORD
conninfo() {  # ADDRESS...
  local IFS=,
  echo "host=$* port=5432 dbname=appdb user=app target_session_attrs=read-write connect_timeout=1"
}
probe() {  # CONTAINER ADDRESS...: one write, true when it was acknowledged
  local c=$1; shift
  docker exec -e PGPASSWORD "$c" psql -X -q -v ON_ERROR_STOP=1 "$(conninfo "$@")" \
    -c 'create table if not exists bench_probe(x int); insert into bench_probe values (1)' >/dev/null 2>&1
}
ALL_ADDRS=()
for h in "${DATA[@]}"; do ALL_ADDRS+=("${h#* }"); done
probe "$(container pg2)" "${ALL_ADDRS[@]}" || die "the app role cannot write through $(conninfo "${ALL_ADDRS[@]}")"

primary() {  # the primary as `pgha status --json` reports it
  "$PGHA" status --json -i "$INV" 2>"$LOGS/status.err" |
    python3 -c 'import json, sys; p = json.load(sys.stdin).get("primary"); print(p or "")'
}
in_recovery() {  # HOST: "f" on a primary, "t" on a standby, "" when it does not answer
  docker exec "$(container "$1")" sh -c "cd / && runuser -u postgres -- psql -X -At -c 'SELECT pg_is_in_recovery()'" 2>/dev/null || true
}

# Writes the repmgr timing into the inventory's `repmgr:` section (those four keys only; the
# ssh section has a connect_timeout of its own) and applies it, untimed.
set_timing() {  # LABEL MONITOR ATTEMPTS INTERVAL CONNECT_TIMEOUT
  local label=$1; shift
  python3 - "$INV" "$@" <<'EOF'
import sys, yaml
path, monitor, attempts, interval, timeout = sys.argv[1:]
keys = {"monitor_interval_secs": monitor, "reconnect_attempts": attempts,
        "reconnect_interval": interval, "connect_timeout": timeout}
lines = open(path).read().split("\n")
start = lines.index("repmgr:")
end = start + 1
while end < len(lines) and (lines[end] == "" or lines[end].startswith(" ")):
    end += 1
body = [l for l in lines[start + 1:end]
        if not any(l.startswith(f"  {k}:") for k in keys)]
lines[start + 1:end] = [f"  {k}: {v}" for k, v in keys.items()] + body
open(path, "w").write("\n".join(lines))
section = yaml.safe_load(open(path))["repmgr"]
assert all(section[k] == int(v) for k, v in keys.items()), section
EOF
  "$PGHA" apply -y -i "$INV" >"$LOGS/apply-timing-$label.out" 2>&1 ||
    die "apply timing $label: $LOGS/apply-timing-$label.out"
  "$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/plan-timing-$label.out" 2>&1 ||
    die "plan after the timing $label is not clean: $LOGS/plan-timing-$label.out"
  # What repmgrd reads on every data node.
  local h want got
  want="monitor_interval_secs=$1 reconnect_attempts=$2 reconnect_interval=$3"
  for h in "${DATA[@]}"; do
    got=$(docker exec "$(container "${h%% *}")" grep -E '^(monitor_interval_secs|reconnect_attempts|reconnect_interval)=' /etc/repmgr.conf | paste -sd' ' -)
    [ "$got" = "$want" ] || die "${h%% *}: /etc/repmgr.conf has \"$got\", not \"$want\""
  done
}

# One round. Prints "failover_s rejoin_s boot_s old->new promoted_s rejoin_planned".
round() {  # TAG
  local tag=$1 old new h survivors=() addrs=() prober kill_ns write_ns deadline tries=0
  old=$(primary) || true
  [ -n "$old" ] || die "$tag: pgha status names no primary: $LOGS/status.err"
  [ "$(in_recovery "$old")" = f ] || die "$tag: $old, the primary by pgha status, is not a primary"
  for h in "${DATA[@]}"; do
    [ "${h%% *}" = "$old" ] && continue
    survivors+=("${h%% *}") addrs+=("${h#* }")
  done
  [ ${#survivors[@]} = 2 ] || die "$tag: $old is not one of the data nodes"
  prober=$(container "${survivors[0]}")
  # The probe names the surviving data nodes only: with the dead host in the list, libpq
  # would spend its connect timeout (at least 2 s) on it in every failing probe.
  ! probe "$prober" "${addrs[@]}" || die "$tag: a standby accepted a write before the crash"
  kill_ns=$(now_ns)
  docker kill "$(container "$old")" >/dev/null || die "docker kill $old"
  deadline=$(( $(date +%s) + 300 ))
  until probe "$prober" "${addrs[@]}"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$tag: no surviving node accepted a write within 300 s of the kill"
    tries=$((tries + 1))
    sleep "$POLL"
  done
  write_ns=$(now_ns)
  new=
  for h in "${survivors[@]}"; do [ "$(in_recovery "$h")" = f ] && new=$h; done
  [ -n "$new" ] || die "$tag: a write was acknowledged but no survivor is a primary"
  # repmgrd's own account on the promoted node: when it decided to promote itself.
  local promoted_at promoted=? jlog=$LOGS/repmgrd-$tag-$new.log
  docker exec "$(container "$new")" journalctl -u pgha-repmgrd.service -o short-unix --no-pager \
    --since "@$(( kill_ns / 1000000000 - 1 ))" >"$jlog" 2>&1 || true
  promoted_at=$(grep -m1 'will now promote itself' "$jlog" | cut -d' ' -f1 || true)
  [ -n "$promoted_at" ] && promoted=$(awk -v p="$promoted_at" -v k="$kill_ns" 'BEGIN { printf "%.1f", p - k / 1e9 }')

  # The old host comes back: sshd first (untimed), then plan must offer the rejoin and apply
  # does it (timed), verify passes and plan is clean.
  local start_ns boot_ns t0 rejoin_ns planned=no
  start_ns=$(now_ns)
  docker start "$(container "$old")" >/dev/null || die "docker start $old"
  local addr; addr=$(addr_of "$old")
  deadline=$(( $(date +%s) + 180 ))
  until "${SSH[@]}" -o ConnectTimeout=2 "root@$addr" 'timeout 60 systemctl is-system-running --wait >/dev/null 2>&1; true' >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$tag: $old did not answer over SSH within 180 s"
    sleep 1
  done
  boot_ns=$(( $(now_ns) - start_ns ))
  "$PGHA" plan -i "$INV" >"$LOGS/plan-rejoin-$tag.out" 2>&1 || die "$tag: plan before the rejoin: $LOGS/plan-rejoin-$tag.out"
  grep -q "rejoin (repmgr node rejoin --force-rewind) before start: $old" "$LOGS/plan-rejoin-$tag.out" && planned=yes
  t0=$(now_ns)
  "$PGHA" apply -y -i "$INV" >"$LOGS/apply-rejoin-$tag.out" 2>&1 || die "$tag: apply (rejoin of $old): $LOGS/apply-rejoin-$tag.out"
  rejoin_ns=$(( $(now_ns) - t0 ))
  "$PGHA" verify -i "$INV" >"$LOGS/verify-after-$tag.out" 2>&1 ||
    die "$tag: verify after the rejoin failed: $LOGS/verify-after-$tag.out"
  "$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/plan-after-$tag.out" 2>&1 ||
    die "$tag: plan after the rejoin is not clean (exit $?): $LOGS/plan-after-$tag.out"
  [ "$(in_recovery "$old")" = t ] || die "$tag: $old is not a standby after the rejoin"
  echo "$(( write_ns - kill_ns )) $rejoin_ns $boot_ns $old->$new $promoted $planned $tries"
}

stats() {  # NANOSECONDS...: "median min max" in seconds
  printf '%s\n' "$@" | sort -n | awk '{ t[NR] = $1 / 1e9 } END {
    m = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
    printf "%.1f %.1f %.1f\n", m, t[1], t[NR] }'
}

declare -A F_STATS R_STATS LINES
run_setting() {  # LABEL MONITOR ATTEMPTS INTERVAL CONNECT_TIMEOUT
  local label=$1 f=() r=() lines=() i
  log "timing $label: monitor_interval_secs $2, reconnect_attempts $3, reconnect_interval $4, connect_timeout $5"
  set_timing "$@"
  for (( i = 1; i <= FAILOVERS; i++ )); do
    sleep 5   # repmgrd's monitoring settles on the current topology
    log "  $label: failover $i of $FAILOVERS (load $(loadavg))"
    round "$label-$i" >"$LOGS/round-$label-$i.txt"
    read -r fo rj boot moved promoted planned tries <"$LOGS/round-$label-$i.txt"
    f+=("$fo") r+=("$rj")
    lines+=("$(printf '    round %d: %s; kill -> write %5s s (repmgrd chose to promote at %s s; %s failed probes), boot %s s, rejoin apply %5s s (plan showed the rejoin: %s)' \
      "$i" "$moved" "$(secs "$fo")" "$promoted" "$tries" "$(secs "$boot")" "$(secs "$rj")" "$planned")")
    echo "$label ${lines[-1]#    }  load $(loadavg)" >>"$LOGS/timings.txt"
    [ "$planned" = yes ] || log "  plan before the rejoin did not show the rejoin: $LOGS/plan-rejoin-$label-$i.out"
  done
  F_STATS[$label]=$(stats "${f[@]}")
  R_STATS[$label]=$(stats "${r[@]}")
  LINES[$label]=$(printf '%s\n' "${lines[@]}")
}
run_setting pgha 2 4 5 2
run_setting repmgr 2 6 10 2
LOAD_END=$(loadavg)

# ---------------------------------------------------------------- report
read -r P_MED P_MIN P_MAX < <(printf '%s\n' "${P_TIMES[@]}" | sort -n | awk '{ t[NR] = $1 / 1e9 } END {
  printf "%.2f %.2f %.2f\n", NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2, t[1], t[NR] }')
APPLY_GOAL=$(awk -v ns="$T_APPLY" 'BEGIN { print (ns < 90e9 ? "met" : "NOT met") }')
fmt() { read -r m lo hi <<<"$1"; echo "$m s ($lo-$hi)"; }
{
  echo "pgha repmgr benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "machine:   $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/^Mem:/ { print $2 }') GiB memory, kernel $(uname -r)"
  echo "load avg:  start $LOAD_START | end $LOAD_END (the machine is shared: other sandboxes and tests may run meanwhile;"
  echo "           the load at each round: bench/out/repmgr-logs/timings.txt)"
  echo "versions:  pgha $REV; $(docker exec "$(container pg1)" sh -c 'dpkg-query -W -f="repmgr \${Version}" postgresql-15-repmgr' 2>/dev/null), PostgreSQL 15 (Debian 12)"
  echo "hosts:     4 sandbox containers: data nodes pg1..pg3, witness pg4"
  echo
  echo "1. bare hosts -> verified repmgr cluster (goal < 90 s: $APPLY_GOAL)"
  echo "   sandbox up (not counted):          $(secs "$T_UP") s"
  echo "   pgha apply -y (apt included):      $(secs "$T_APPLY") s   [pgha: \"$APPLIED\"; verify: $VERIFIED]"
  echo
  echo "2. pgha plan on the converged cluster (\"No changes.\", exit 0 with --detailed-exitcode)"
  echo "   wall time, median of $PLAN_RUNS:          $P_MED s (min $P_MIN, max $P_MAX)"
  echo "   SSH per host (journal of sshd; -vv \`run\` lines):"
  printf '%s\n' "${RT_LINES[@]}"
  echo "   total commands: $TOTAL_RUNS"
  echo
  echo "3. failover: docker kill of the primary's container -> a surviving data node accepts a write"
  echo "   (probe every ${POLL} s from a surviving container: psql, multi-host connection string over the"
  echo "   surviving data nodes, target_session_attrs=read-write, app role); then docker start of the old"
  echo "   primary, pgha apply -y rejoins it (timed from when it answers SSH), verify and a clean plan."
  echo "   median (min-max) of $FAILOVERS rounds each:"
  printf '   %-44s %-20s %s\n' "repmgr timing" "kill -> write" "rejoin (apply -y)"
  printf '   %-44s %-20s %s\n' "pgha defaults (2 / 4 / 5 / connect 2)" "$(fmt "${F_STATS[pgha]}")" "$(fmt "${R_STATS[pgha]}")"
  printf '   %-44s %-20s %s\n' "repmgr's defaults (2 / 6 / 10 / connect 2)" "$(fmt "${F_STATS[repmgr]}")" "$(fmt "${R_STATS[repmgr]}")"
  echo "   (monitor_interval_secs / reconnect_attempts / reconnect_interval / connect_timeout)"
  echo "   pgha defaults:"
  echo "${LINES[pgha]}"
  echo "   repmgr's defaults:"
  echo "${LINES[repmgr]}"
} >"$REPORT"
cat "$REPORT"
log "report saved to $REPORT"

if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$APPLY_GOAL" != met ]; then
  exit 3
fi
