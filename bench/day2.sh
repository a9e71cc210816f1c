#!/usr/bin/env bash
# Benchmark of day-2 topology changes on local sandbox hosts (see bench/README.md): a
# 4-host cluster of FLAVOUR (streaming, repmgr or patroni) where pg4, a standby, leaves and
# comes back, ROUNDS times:
#   1. remove: pg4's entry leaves `hosts:` and goes under `decommission:` with wipe_data;
#      `pgha apply -y` (stops it for good, deletes its data, the others forget it; verify
#      included) is timed, then `plan --detailed-exitcode` must be clean;
#   2. add: pg4 back in `hosts:`; `pgha apply -y` (unmask, clone, stream, verify) is timed,
#      then the plan must be clean again.
# Writes bench/out/day2-FLAVOUR-report.txt. Tears its sandbox down on exit, also on failure.
#
# Environment: FLAVOUR (streaming), ROUNDS (3), BENCH_NAME (must start with "bench";
# default benchday2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
FLAVOUR=${FLAVOUR:-streaming}
ROUNDS=${ROUNDS:-3}
NAME=${BENCH_NAME:-benchday2}
DIR=$OUT/$NAME
LOGS=$OUT/day2-$FLAVOUR-logs
REPORT=$OUT/day2-$FLAVOUR-report.txt
PGHA=$OUT/pgha-day2

case $NAME in bench*) ;; *) echo "BENCH_NAME must start with bench" >&2; exit 1 ;; esac
case $FLAVOUR in streaming | repmgr | patroni) ;; *) echo "FLAVOUR is streaming, repmgr or patroni" >&2; exit 1 ;; esac

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

bench_start

LOAD_START=$(loadavg)
bench_sandbox_up --flavour "$FLAVOUR" --hosts 4
cp "$INV" "$LOGS/inventory-with-pg4.yml"

# The inventory without pg4 in `hosts:`, and pg4 under `decommission:` with wipe_data.
python3 - "$INV" "$LOGS/inventory-without-pg4.yml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
entry = re.search(r"  - name: pg4\n    address: (\S+)\n(?:    .*\n)*", text)
if not entry:
    sys.exit("no pg4 entry in the inventory")
text = text.replace(entry.group(0), "", 1)
# etcd members (Patroni): pg4 is never one in a 4-host sandbox (3 members), nothing to do.
text = text.replace(
    "\nhosts:\n",
    "\ndecommission:\n  - name: pg4\n    address: %s\n    wipe_data: true\n\nhosts:\n" % entry.group(1),
    1,
)
open(sys.argv[2], "w").write(text)
PY

clean_plan() {
  "$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/plan-$1.out" 2>&1 ||
    die "plan after $1 is not clean (exit $?): $LOGS/plan-$1.out"
}

timed_apply() { # LABEL -> prints seconds
  local t0
  t0=$(now_ns)
  "$PGHA" apply -y -i "$INV" >"$LOGS/apply-$1.out" 2>&1 || die "apply $1: $LOGS/apply-$1.out"
  grep -q ' 0 failed\.' "$LOGS/apply-$1.out" || die "apply $1 did not verify: $LOGS/apply-$1.out"
  secs $(( $(now_ns) - t0 ))
}

REMOVE=()
ADD=()
for round in $(seq 1 "$ROUNDS"); do
  log "round $round: pg4 leaves (decommission, wipe_data)"
  cp "$LOGS/inventory-without-pg4.yml" "$INV"
  REMOVE+=("$(timed_apply "remove-$round")")
  clean_plan "remove-$round"
  log "round $round: pg4 comes back"
  cp "$LOGS/inventory-with-pg4.yml" "$INV"
  ADD+=("$(timed_apply "add-$round")")
  clean_plan "add-$round"
done

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

{
  echo "pgha day-2 benchmark: $FLAVOUR, 4 hosts, pg4 removed and added back $ROUNDS times"
  echo "commit: $REV"
  echo "load average at start: $LOAD_START; at end: $(loadavg)"
  echo "bare hosts -> verified cluster: $(secs "$T_APPLY") s"
  echo "remove pg4 (decommission with wipe_data, apply + verify): ${REMOVE[*]} s; median $(median "${REMOVE[@]}") s"
  echo "add pg4 back (clone, apply + verify): ${ADD[*]} s; median $(median "${ADD[@]}") s"
  echo "plan --detailed-exitcode clean after every change"
} | tee "$REPORT"
