#!/usr/bin/env bash
# Benchmark of client routing (see bench/README.md): per flavour and route, `pgha drill
# failover --crash kill` RUNS times on a 3-host sandbox on the packages image, with the
# default failover profile: the longest write gap, the time until a write through the route
# reached the new primary, and acknowledged writes lost (read back on the new primary).
# Every route is compared with the direct multi-host connection string on the same cluster.
# Writes bench/out/routing-report.txt. Tears its sandboxes down on exit, also on failure.
#
# Environment: RUNS (5), FLAVOURS ("patroni repmgr streaming"), DURATION (drill seconds, 30).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
RUNS=${RUNS:-5}
FLAVOURS=${FLAVOURS:-"patroni repmgr streaming"}
DURATION=${DURATION:-30}
LOGS=$OUT/routing-logs
REPORT=$OUT/routing-report.txt
PGHA=$OUT/pgha-routing                # a copy: others rebuild target/ while we measure

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

bench_start

# median FILE: the median of the numbers in FILE (one per line), "-" when there are none.
median() {
  sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
range() { sort -g "$1" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.1f-%.1f", lo, hi; else print "-" }'; }

ROWS=()
for flavour in $FLAVOURS; do
  case $flavour in
    patroni) routing=callback,haproxy extra=(--hosts 3) routes="multihost vip haproxy" ;;
    repmgr) routing=keepalived extra=(--hosts 4 --witness) routes="multihost vip" ;;
    streaming) routing=haproxy extra=(--hosts 3) routes="multihost haproxy" ;;
    *) die "unknown flavour $flavour" ;;
  esac
  NAME=benchroute-$flavour
  DIR=$OUT/$NAME
  bench_sandbox_up --flavour "$flavour" --routing "$routing" --image-with-packages "${extra[@]}"
  log "$flavour: $(echo "$VERIFIED")"
  for route in $routes; do
    : >"$LOGS/$flavour-$route.gap"; : >"$LOGS/$flavour-$route.route"; : >"$LOGS/$flavour-$route.lost"
    for (( i = 1; i <= RUNS; i++ )); do
      log "$flavour via $route: drill $i/$RUNS"
      json=$LOGS/$flavour-$route-$i.json
      rc=0
      "$PGHA" drill failover -y --json --via "$route" --crash kill --duration "$DURATION" -i "$INV" \
        >"$json" 2>"$LOGS/$flavour-$route-$i.err" || rc=$?
      [ "$rc" -eq 0 ] || log "drill exit $rc: $LOGS/$flavour-$route-$i.err"
      # A drill that could not run (it says why in .err) is counted, not fatal.
      python3 - "$json" "$LOGS/$flavour-$route" <<'PY' || { log "no report: $(tail -1 "$LOGS/$flavour-$route-$i.err")"; echo x >>"$LOGS/$flavour-$route.refused"; }
import json, sys
r = json.load(open(sys.argv[1]))
w = r["writes"]
for key, ext in (("longest_gap_s", "gap"), ("time_to_route_s", "route"), ("lost", "lost")):
    if w.get(key) is not None:
        open(f"{sys.argv[2]}.{ext}", "a").write(f"{w[key]}\n")
PY
    done
    ROWS+=("$(printf '%-10s %-10s %8s s (%s) %8s s (%s) %6s %s' "$flavour" "$route" \
      "$(median "$LOGS/$flavour-$route.gap")" "$(range "$LOGS/$flavour-$route.gap")" \
      "$(median "$LOGS/$flavour-$route.route")" "$(range "$LOGS/$flavour-$route.route")" \
      "$(paste -sd+ "$LOGS/$flavour-$route.lost" | bc 2>/dev/null || echo -)" \
      "$( [ -s "$LOGS/$flavour-$route.refused" ] && echo "($(wc -l <"$LOGS/$flavour-$route.refused") drill(s) refused to run)")")")
  done
  bench_sandbox_down
  NAME=
done

{
  echo "pgha client routing: drill failover --crash kill, $RUNS runs per route, commit $REV"
  echo "load average at the end: $(loadavg)"
  printf '%-10s %-10s %-22s %-22s %s\n' flavour route "write gap median (range)" "time to route" "lost (sum)"
  printf '%s\n' "${ROWS[@]}"
} | tee "$REPORT"
