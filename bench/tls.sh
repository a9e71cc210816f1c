#!/usr/bin/env bash
# What TLS costs a no-op plan (see bench/README.md): two converged 3-host streaming clusters
# side by side, one with TLS (the default) and one with `tls: off`, each `pgha plan` timed
# RUNS times in turn (A B A B ..., so that the machine's drift hits both alike). Reports each
# one's median wall time and the median of the pairwise ratios TLS / no TLS.
# Writes bench/out/tls-report.txt; tears both sandboxes down on exit, also on failure.
#
# Environment: RUNS (15).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
RUNS=${RUNS:-15}
LOGS=$OUT/tls-logs
REPORT=$OUT/tls-report.txt
PGHA=$OUT/pgha-tls                    # a copy: others rebuild target/ while we measure

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

mkdir -p "$OUT" "$LOGS"
rm -f "$LOGS"/*
build_pgha "$PGHA" "$LOGS/build.log"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  for NAME in benchtlson benchtlsoff; do DIR=$OUT/$NAME bench_sandbox_down; done
  [ $rc -eq 0 ] || log "exit $rc; logs in $LOGS"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The cluster without TLS: the sandbox's inventory as an earlier pgha wrote it.
NAME=benchtlsoff DIR=$OUT/benchtlsoff
"$PGHA" sandbox up --name "$NAME" --dir "$DIR" --image-with-packages >"$LOGS/up-off.log" 2>&1 ||
  die "sandbox up: $LOGS/up-off.log"
sed -i 's/^    - type: hostssl$/    - type: host/' "$DIR/inventory.yml"
printf '\ntls: off\n' >>"$DIR/inventory.yml"
OFF=$DIR/inventory.yml
NAME=benchtlson DIR=$OUT/benchtlson
"$PGHA" sandbox up --name "$NAME" --dir "$DIR" --image-with-packages >"$LOGS/up-on.log" 2>&1 ||
  die "sandbox up: $LOGS/up-on.log"
ON=$DIR/inventory.yml

for inv in "$OFF" "$ON"; do
  # shellcheck disable=SC1091
  (source "$(dirname "$inv")/env.sh" && "$PGHA" apply -y -i "$inv") >"$LOGS/apply-$(basename "$(dirname "$inv")").log" 2>&1 ||
    die "apply $inv"
done

plan_ns() {
  local inv=$1 t0
  t0=$(now_ns)
  # shellcheck disable=SC1091
  (source "$(dirname "$inv")/env.sh" && "$PGHA" plan --detailed-exitcode -i "$inv") >"$LOGS/plan.out" 2>&1 ||
    die "plan on $inv is not clean: $LOGS/plan.out"
  echo $(( $(now_ns) - t0 ))
}

plan_ns "$OFF" >/dev/null; plan_ns "$ON" >/dev/null    # warm-up
: >"$LOGS/pairs.txt"
for _ in $(seq 1 "$RUNS"); do
  a=$(plan_ns "$ON"); b=$(plan_ns "$OFF")
  echo "$a $b" >>"$LOGS/pairs.txt"
done

python3 - "$LOGS/pairs.txt" "$REV" "$RUNS" >"$REPORT" <<'PY'
import statistics, sys
pairs = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
on = statistics.median(a for a, _ in pairs) / 1e9
off = statistics.median(b for _, b in pairs) / 1e9
ratio = statistics.median(a / b for a, b in pairs)
print(f"pgha {sys.argv[2]}: no-op plan, 3-host streaming cluster, {sys.argv[3]} runs each, alternating")
print(f"  with TLS (default)  median {on:.3f} s")
print(f"  tls: off            median {off:.3f} s")
print(f"  TLS / no TLS        median ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f} %)")
PY
cat "$REPORT"
