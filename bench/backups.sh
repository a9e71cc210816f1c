#!/usr/bin/env bash
# Benchmark of backups (see bench/README.md): a 3-host streaming sandbox on the packages
# image with `--backups`, a database of about 1 GB (pgbench scale SCALE), then RUNS times:
# `pgha backup now` (pg_basebackup and pg_verifybackup times, size) and `pgha backup test`
# (copy, verify, start, canary, pg_amcheck, total), plain and then with `compress: true`.
# Writes bench/out/backups-report.txt. Tears its sandbox down on exit, also on failure.
#
# METHOD=pgbackrest measures pgBackRest on the same data instead: the repository on a fourth
# host (`--backups pgbackrest`), `pgbackrest backup` + `verify` and the restore test
# (`pgbackrest restore`, recovery to the backup's end, canary, pg_amcheck), with zstd
# (`compress: true`) and then without compression; bench/out/backups-pgbackrest-report.txt.
#
# Environment: RUNS (3), SCALE (70: about 1 GB with its indexes), METHOD (basebackup).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
RUNS=${RUNS:-3}
SCALE=${SCALE:-70}
METHOD=${METHOD:-basebackup}
case $METHOD in
  basebackup) LOGS=$OUT/backups-logs; REPORT=$OUT/backups-report.txt ;;
  pgbackrest) LOGS=$OUT/backups-pgbackrest-logs; REPORT=$OUT/backups-pgbackrest-report.txt ;;
  *) echo "METHOD is basebackup or pgbackrest" >&2; exit 2 ;;
esac
PGHA=$OUT/pgha-backups                # a copy: others rebuild target/ while we measure

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

bench_start

NAME=benchbackups
[ "$METHOD" = basebackup ] || NAME=benchbackups-$METHOD
DIR=$OUT/$NAME
bench_sandbox_up --image-with-packages --backups "$METHOD"
log "streaming with $METHOD backups: $VERIFIED"
primary=$(awk '$1 == "pg1" { print $2 }' <<<"$(printf '%s\n' "${HOSTS[@]}")")
log "pgbench -i -s $SCALE on pg1"
t0=$(now_ns)
"${SSH[@]}" "root@$primary" "runuser -u postgres -- /usr/lib/postgresql/15/bin/pgbench -i -q -s $SCALE postgres" \
  >"$LOGS/pgbench.log" 2>&1 || die "pgbench: $LOGS/pgbench.log"
T_LOAD=$(( $(now_ns) - t0 ))
DB_SIZE=$("${SSH[@]}" "root@$primary" "runuser -u postgres -- psql -XAt -c \"SELECT pg_size_pretty(sum(pg_database_size(datname))) FROM pg_database\"")

# json FILE KEY...: a value out of a JSON file (nested keys).
json() { python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v[int(k)] if isinstance(v, list) else v.get(k)
print("-" if v is None else (round(v, 2) if isinstance(v, float) else v))' "$@"; }

ROWS=()
measure() {
  local variant=$1 i
  for (( i = 1; i <= RUNS; i++ )); do
    log "$variant: backup now $i/$RUNS"
    local t0 t_now t_test
    t0=$(now_ns)
    "$PGHA" backup now --json -i "$INV" >"$LOGS/$variant-now-$i.json" 2>"$LOGS/$variant-now-$i.err" ||
      die "backup now: $LOGS/$variant-now-$i.err"
    t_now=$(( $(now_ns) - t0 ))
    log "$variant: backup test $i/$RUNS"
    t0=$(now_ns)
    "$PGHA" backup test --json -i "$INV" >"$LOGS/$variant-test-$i.json" 2>"$LOGS/$variant-test-$i.err" ||
      die "backup test: $LOGS/$variant-test-$i.json"
    t_test=$(( $(now_ns) - t0 ))
    local n=$LOGS/$variant-now-$i.json t=$LOGS/$variant-test-$i.json
    ROWS+=("$(printf '%-10s %3d  %9s %9s %8s %8s %8s | %6s %6s %11s %6s %7s %7s | %7s %7s' \
      "$variant" "$i" \
      "$(json "$n" backups 0 size_bytes | awk '{ printf "%.0fMB", $1 / 1048576 }')" \
      "$(json "$n" backups 0 stored_bytes | awk '{ printf "%.0fMB", $1 / 1048576 }')" \
      "$(json "$n" backups 0 backup_s)" "$(json "$n" backups 0 verify_s)" "$(json "$n" backups 0 duration_s)" \
      "$(json "$t" times copy_s)" "$(json "$t" times verify_s)" \
      "$(json "$t" times start_s)+$(json "$t" times recovery_s)" \
      "$(json "$t" times canary_s)" "$(json "$t" times amcheck_s)" "$(json "$t" times total_s)" \
      "$(secs "$t_now")" "$(secs "$t_test")")")
  done
}

if [ "$METHOD" = basebackup ]; then
  measure plain
  sed -i 's/^  retention: {count: 3}$/  retention: {count: 3}\n  compress: true/' "$INV"
  "$PGHA" apply -y -i "$INV" >"$LOGS/apply-compress.out" 2>&1 || die "apply compress: $LOGS/apply-compress.out"
  measure gzip
  WHAT="basebkp"; COPY="copy"; HOSTS_NOTE="3 streaming hosts"
else
  measure pgbr-zst
  sed -i 's/^  compress: true$/  compress: false/' "$INV"
  "$PGHA" apply -y -i "$INV" >"$LOGS/apply-compress.out" 2>&1 || die "apply no compression: $LOGS/apply-compress.out"
  measure pgbr-none
  WHAT="pgbackrest"; COPY="restore"; HOSTS_NOTE="3 streaming hosts, the repository on a 4th that runs the backups and restore tests"
fi

{
  echo "pgha backups benchmark, $(date -u +%FT%TZ), pgha $REV"
  echo "machine: $(nproc) CPUs, load $(loadavg); sandbox: $HOSTS_NOTE (containers on one machine)"
  echo "data: pgbench -i -s $SCALE ($(secs "$T_LOAD") s to load), all databases $DB_SIZE"
  echo
  echo "                     backup (pgha backup now)            | restore test (pgha backup test), seconds      | wall clock, s"
  printf '%-10s %3s  %9s %9s %8s %8s %8s | %6s %6s %11s %6s %7s %7s | %7s %7s\n' variant run size stored "$WHAT" verify total "$COPY" verify start+recov canary amcheck total now test
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "amcheck: auto (every relation up to 1 GB of backup, a sample of 20 tables per database above)"
} >"$REPORT"
cat "$REPORT"
