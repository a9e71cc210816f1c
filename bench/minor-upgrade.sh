#!/usr/bin/env bash
# Benchmark of the rolling minor upgrade on local sandbox hosts (see bench/README.md): a
# 3-host cluster of FLAVOUR installed at OLD (Debian's `bookworm` suite), then
# `postgres.package_version: NEW` (`bookworm-security`) applied under a client write load
# from this machine (one INSERT per connection through every host's address with
# target_session_attrs=read-write, as an application with a multi-host URL):
#   - the apply's wall time (packages downloaded on every host, standbys one at a time, the
#     switchover, the old primary; verify included);
#   - the longest gap between two acknowledged writes, and acknowledged writes missing after;
#   - every server's version afterwards and a clean `plan --detailed-exitcode`.
# Writes bench/out/minor-upgrade-FLAVOUR-report.txt. Tears its sandbox down on exit.
#
# Environment: FLAVOUR (streaming | repmgr | patroni; default streaming), OLD
# (15.18-0+deb12u1), NEW (15.20-0+deb12u1), BENCH_NAME (must start with "bench"; benchmu).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
FLAVOUR=${FLAVOUR:-streaming}
OLD=${OLD:-15.18-0+deb12u1}
NEW=${NEW:-15.20-0+deb12u1}
NAME=${BENCH_NAME:-benchmu}
DIR=$OUT/$NAME
LOGS=$OUT/minor-upgrade-$FLAVOUR-logs
REPORT=$OUT/minor-upgrade-$FLAVOUR-report.txt
PGHA=$OUT/pgha-mu

case $NAME in bench*) ;; *) echo "BENCH_NAME must start with bench" >&2; exit 1 ;; esac
case $FLAVOUR in streaming | repmgr | patroni) ;; *) echo "FLAVOUR is streaming, repmgr or patroni" >&2; exit 1 ;; esac

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# The hosts at the older minor before pgha's first apply, in parallel.
bench_before_apply() {
  log "installing $OLD on every host"
  local h pids=()
  for h in "${HOSTS[@]}"; do
    "${SSH[@]}" "root@${h#* }" "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq >/dev/null && apt-get install -y -qq --allow-downgrades postgresql-15=$OLD postgresql-client-15=$OLD libpq5=$OLD >/dev/null" \
      >"$LOGS/downgrade-${h%% *}.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || die "installing $OLD failed: $LOGS/downgrade-*.log"; done
}

bench_start
LOAD_START=$(loadavg)
bench_sandbox_up --flavour "$FLAVOUR"

ADDRS=$(printf '%s\n' "${HOSTS[@]}" | awk '{ print $2 }' | paste -sd, -)
CONNINFO="host=$ADDRS port=5432 dbname=appdb user=app target_session_attrs=read-write connect_timeout=2 sslmode=verify-full sslrootcert=$DIR/tls/ca.crt"
export PGPASSWORD=$PGHA_APP_PASSWORD
psql -XAtq -v ON_ERROR_STOP=1 "$CONNINFO" -c "CREATE TABLE IF NOT EXISTS bench_mu (id bigint PRIMARY KEY)" ||
  die "the bench's table"

# The write load: one INSERT per connection, the time of each acknowledged one.
ACKS=$LOGS/acks.txt
: >"$ACKS"
writer() {
  local i=0
  while [ ! -e "$LOGS/stop" ]; do
    i=$((i + 1))
    if psql -XAtq "$CONNINFO" -c "INSERT INTO bench_mu VALUES ($i)" >/dev/null 2>&1; then
      echo "$i $(date +%s.%N)" >>"$ACKS"
    fi
  done
}
rm -f "$LOGS/stop"
writer &
WRITER=$!
sleep 3

sed -i "s/^  version: 15\$/  version: 15\n  package_version: \"$NEW\"/" "$INV"
grep -q "package_version: \"$NEW\"" "$INV" || die "could not pin $NEW in $INV"
log "pgha apply -y: rolling upgrade to $NEW under the write load"
t0=$(now_ns)
"$PGHA" apply -y -i "$INV" >"$LOGS/upgrade.out" 2>&1 || die "the upgrade's apply: $LOGS/upgrade.out"
T_UPGRADE=$(( $(now_ns) - t0 ))
sleep 3
touch "$LOGS/stop"
wait "$WRITER" || true

GAP=$(awk 'NR > 1 && $2 - prev > max { max = $2 - prev } { prev = $2 } END { printf "%.2f", max }' "$ACKS")
ACKED=$(wc -l <"$ACKS")
HELD=$(psql -XAtq "$CONNINFO" -c "SELECT string_agg(id::text, ' ') FROM bench_mu")
MISSING=$(awk -v held="$HELD" 'BEGIN { n = split(held, a, " "); for (i = 1; i <= n; i++) h[a[i]] = 1 } !($1 in h) { m++ } END { print m + 0 }' "$ACKS")
VERSIONS=$(for h in "${HOSTS[@]}"; do
  printf '%s=%s ' "${h%% *}" "$("${SSH[@]}" "root@${h#* }" "runuser -u postgres -- psql -XAtq -c 'SHOW server_version'" | awk '{ print $1 }')"
done)
"$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/plan-after.out" 2>&1 ||
  die "plan after the upgrade is not clean (exit $?): $LOGS/plan-after.out"

{
  echo "pgha rolling minor upgrade benchmark: $FLAVOUR, 3 hosts, $OLD -> $NEW under a write load"
  echo "commit: $REV"
  echo "load average at start: $LOAD_START; at end: $(loadavg)"
  echo "bare hosts -> verified cluster at $OLD: $(secs "$T_APPLY") s"
  echo "rolling upgrade (apply + verify): $(secs "$T_UPGRADE") s; $(grep -E 'Minor upgrade: switched over' "$LOGS/upgrade.out" || true)"
  echo "writes acknowledged: $ACKED; missing afterwards: $MISSING; longest gap between two: $GAP s"
  echo "server versions after: $VERSIONS"
  echo "plan --detailed-exitcode clean after the upgrade"
} | tee "$REPORT"
