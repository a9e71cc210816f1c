#!/usr/bin/env bash
# Scale benchmark (see bench/README.md): `pgha validate` and `pgha render --out DIR` of large
# generated inventories, no host contacted. For each flavour (streaming: a primary and N-1
# standbys; patroni: 3 etcd hosts and N-3 members) and each size, a warm-up and RUNS timed
# runs of each command, each timed as a whole process by /usr/bin/time; prints the median wall
# time (min-max), the median CPU time and the largest resident set, as a table.
# Writes bench/out/scale-report.txt; removes the rendered files on exit.
#
# Environment: SIZES ("10 100 1000"), FLAVOURS ("streaming patroni"), RUNS (5),
# RENDER_DIR (where render writes, a fresh folder for each run; default under /dev/shm, a
# memory file system, else bench/out/scale/render), BENCH_STRICT=1 (exit 3 when a 1000-host
# median is 2 s or more).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
WORK=$OUT/scale
LOGS=$WORK/logs
REPORT=$OUT/scale-report.txt
PGHA=$OUT/pgha-scale                  # a copy: others rebuild target/ while we measure
SIZES=${SIZES:-10 100 1000}
FLAVOURS=${FLAVOURS:-streaming patroni}
RUNS=${RUNS:-5}
# Memory, not the disk, unless asked: what is timed is pgha, not how a virtual disk takes
# hundreds of MiB of small files (ext4 flushes a file written over at once, for one).
if [ -z "${RENDER_DIR:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    RENDER_DIR=/dev/shm/pgha-scale-$$
  else
    RENDER_DIR=$WORK/render
  fi
fi
GOAL_SECONDS=2

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

[ -x /usr/bin/time ] || die "/usr/bin/time is missing (Debian package \`time\`)"
case $RUNS in '' | *[!0-9]* | 0) die "RUNS must be a positive number" ;; esac

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  rm -rf "$RENDER_DIR"
  [ $rc -eq 0 ] || log "exit $rc; logs in $LOGS"
  exit $rc
}

mkdir -p "$WORK" "$LOGS"
rm -f "$LOGS"/*
build_pgha "$PGHA" "$LOGS/build.log"
trap cleanup EXIT
trap 'exit 130' INT TERM

# measure NAME CMD...: one warm-up and RUNS timed runs (each must succeed); sets MED (median
# wall), MIN, MAX, CPU (median user+sys) in seconds and RSS (largest, MiB).
measure() {
  local name=$1 i w u s m out walls=() cpus=() rss=0 args
  shift
  for (( i = 0; i <= RUNS; i++ )); do
    # A fresh output folder for each run (an argument @OUT@), removed after it.
    out=$RENDER_DIR/run-$i
    args=("${@/#@OUT@/$out}")
    /usr/bin/time -f '%e %U %S %M' -o "$LOGS/$name.time" "${args[@]}" >"$LOGS/$name.out" 2>&1 ||
      die "$name failed: $LOGS/$name.out"
    if [ -d "$out" ]; then
      FILES=$(find "$out" -type f | wc -l) MIB=$(du -sm "$out" | cut -f1)
      rm -rf "$out"
    fi
    [ "$i" -gt 0 ] || continue       # the first run warms up
    read -r w u s m < <(tail -n 1 "$LOGS/$name.time")
    walls+=("$w")
    cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')")
    [ "$m" -gt "$rss" ] && rss=$m
    echo "$name: wall $w s, user $u s, sys $s s, rss $m KiB; load $(loadavg)" >>"$LOGS/timings.txt"
  done
  read -r MED MIN MAX < <(printf '%s\n' "${walls[@]}" | sort -n | awk '{ t[NR] = $1 } END {
    m = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
    printf "%.2f %.2f %.2f\n", m, t[1], t[NR] }')
  CPU=$(printf '%s\n' "${cpus[@]}" | sort -n | awk '{ t[NR] = $1 } END {
    printf "%.2f", NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2 }')
  RSS=$(( rss / 1024 ))
}

mkdir -p "$RENDER_DIR"
FS=$(df -PT "$RENDER_DIR" | awk 'NR == 2 { print $2 }')
LOAD_START=$(loadavg)
ROWS=()
GOAL=met
for flavour in $FLAVOURS; do
  for n in $SIZES; do
    inv=$WORK/$flavour-$n.yml
    python3 "$ROOT/bench/scale_inventory.py" "$flavour" "$n" "$inv"
    log "$flavour, $n hosts: validate"
    measure "validate-$flavour-$n" "$PGHA" validate -i "$inv"
    v="$MED ($MIN-$MAX)" vcpu=$CPU vrss=$RSS vmed=$MED
    log "$flavour, $n hosts: render"
    measure "render-$flavour-$n" "$PGHA" render -i "$inv" --out @OUT@
    r="$MED ($MIN-$MAX)" rcpu=$CPU rrss=$RSS rmed=$MED files=$FILES size=$MIB
    if [ "$n" -ge 1000 ] && ! awk -v a="$vmed" -v b="$rmed" -v g="$GOAL_SECONDS" 'BEGIN { exit !(a < g && b < g) }'; then
      GOAL="NOT met"
    fi
    ROWS+=("$(printf '%-9s %6s | %-18s %6s %6s | %-18s %6s %6s | %6s %7s' \
      "$flavour" "$n" "$v" "$vcpu" "$vrss" "$r" "$rcpu" "$rrss" "$files" "$size")")
  done
done

{
  echo "pgha scale benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "machine:  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r)"
  echo "load avg: start $LOAD_START | end $(loadavg) (the machine is shared)"
  echo "pgha:     $REV (release build)"
  echo "render:   into a fresh folder under $RENDER_DIR ($FS) for each run, removed after it"
  echo
  echo "seconds: median wall (min-max) of $RUNS runs after a warm-up; cpu: median user+sys;"
  echo "rss: largest resident set (MiB); files and MiB written by one render"
  echo
  printf '%-9s %6s | %-18s %6s %6s | %-18s %6s %6s | %6s %7s\n' \
    flavour hosts "validate s" cpu rss "render s" cpu rss files MiB
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "goal: validate and render of 1000 hosts each under $GOAL_SECONDS s: $GOAL"
} >"$REPORT"
cat "$REPORT"
log "report saved to $REPORT"

if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$GOAL" != met ]; then
  exit 3
fi
