#!/usr/bin/env bash
# Regenerates data/pg15_settings.tsv from a REAL PostgreSQL 15 server's pg_settings.
#
# NOT run by CI. Manual use only. Requires PostgreSQL 15 server binaries
# (Debian/Ubuntu: `apt-get install postgresql-15`, which puts them in /usr/lib/postgresql/15/bin).
#
# It starts a throwaway cluster in a temp dir. The cluster listens only on a unix
# socket (listen_addresses=''), with no TCP. It dumps pg_settings, then stops the cluster and deletes it.
# If run as root, initdb/postgres run as the `postgres` user.
#
# Usage: data/gen_pg15_settings.sh [output-file]   (default: data/pg15_settings.tsv next to this script)
set -euo pipefail

PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PORT="${PGPORT_TMP:-54999}"
OUT="${1:-$(cd "$(dirname "$0")" && pwd)/pg15_settings.tsv}"

"$PGBIN/postgres" --version | grep -q ' 15\.' || { echo "need PostgreSQL 15 in $PGBIN" >&2; exit 1; }

TMP="$(mktemp -d /tmp/pg15settings.XXXXXX)"
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$TMP"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$TMP/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

as_pg "$PGBIN/initdb" -D "$TMP/data" -U postgres -A trust --no-sync >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/server.log" -w \
    -o "-p $PORT -k $TMP -c listen_addresses=''" start >/dev/null

{
    printf '# name\tvartype\tcontext\tunit\tmin_val\tmax_val\tenumvals\n'
    as_pg "$PGBIN/psql" -XAt -F $'\t' -h "$TMP" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -c \
        "SELECT name, vartype, context, coalesce(unit,''), coalesce(min_val,''), coalesce(max_val,''),
                coalesce(array_to_string(enumvals, ','),'')
           FROM pg_settings ORDER BY name"
} > "$OUT.tmp"

for p in shared_preload_libraries wal_level max_slot_wal_keep_size hot_standby \
         archive_mode synchronous_standby_names wal_log_hints; do
    grep -q "^$p"$'\t' "$OUT.tmp" || { echo "missing parameter: $p" >&2; rm -f "$OUT.tmp"; exit 1; }
done
mv "$OUT.tmp" "$OUT"
echo "wrote $(($(wc -l < "$OUT") - 1)) parameters to $OUT ($("$PGBIN/postgres" --version))"
