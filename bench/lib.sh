# Shared by the bench scripts: logging, timing and a pgha build of their own.
# shellcheck shell=bash

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
now_ns() { date +%s%N; }
secs() { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# build_pgha DEST LOG: `cargo build --release`, copied to DEST (others rebuild target/ while
# the bench measures). Sets REV to the commit measured.
build_pgha() {
  local dest=$1 build_log=$2 attempt
  log "cargo build --release"
  for attempt in 1 2 3 4 5; do
    if cargo build --release >"$build_log" 2>&1; then break; fi
    [ "$attempt" -lt 5 ] || die "cargo build --release failed 5 times: $build_log"
    log "build failed (others may be editing src/); retrying in 60 s"
    sleep 60
  done
  cp target/release/pgha "$dest.tmp" && mv "$dest.tmp" "$dest"
  REV=$(git rev-parse --short HEAD)
  if [ -n "$(git status --porcelain --untracked-files=no -- src templates playbooks Cargo.toml Cargo.lock)" ]; then
    REV="$REV + uncommitted changes in the working tree"
  fi
}

# bench_sandbox_up ARGS...: a fresh sandbox $NAME in $DIR (a leftover of an interrupted run is
# removed first), `pgha sandbox up ARGS`, then `pgha apply -y` on the bare hosts. Sets T_UP
# and T_APPLY (ns), INV, HOSTS ("name address" lines), SSH (a command array), APPLIED and
# VERIFIED (apply's own summary lines); exports the sandbox's passwords.
bench_sandbox_up() {
  if docker ps -aq --filter "name=^$NAME-" | grep -q .; then
    log "removing a leftover sandbox $NAME"
    "$PGHA" sandbox down --name "$NAME" --dir "$DIR" >"$LOGS/sandbox-down-old.log" 2>&1 || true
  fi
  log "sandbox up $NAME $*"
  local t0
  t0=$(now_ns)
  "$PGHA" sandbox up --name "$NAME" --dir "$DIR" "$@" >"$LOGS/sandbox-up.log" 2>&1 ||
    die "sandbox up: $LOGS/sandbox-up.log"
  T_UP=$(( $(now_ns) - t0 ))
  INV=$DIR/inventory.yml
  # shellcheck disable=SC1091
  source "$DIR/env.sh"
  mapfile -t HOSTS < <(python3 -c 'import sys, yaml
for h in yaml.safe_load(open(sys.argv[1]))["hosts"]: print(h["name"], h["address"])' "$INV")
  SSH=(ssh -i "$DIR/id_ed25519" -o UserKnownHostsFile="$DIR/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes)

  # A bench may prepare the hosts before pgha's first apply (e.g. install an older minor).
  if declare -F bench_before_apply >/dev/null; then bench_before_apply; fi
  log "pgha apply -y (bare hosts, apt included)"
  t0=$(now_ns)
  "$PGHA" apply -y -i "$INV" >"$LOGS/apply.out" 2>"$LOGS/apply.err" || die "pgha apply: $LOGS/apply.out"
  T_APPLY=$(( $(now_ns) - t0 ))
  APPLIED=$(grep -oE 'Applied [0-9]+ changes? in [0-9.]+ s' "$LOGS/apply.out" || true)
  VERIFIED=$(grep -oE '[0-9]+ checks run, [0-9]+ passed, [0-9]+ failed' "$LOGS/apply.out" || true)
  [ -n "$VERIFIED" ] || die "apply printed no verify summary: $LOGS/apply.out"
}

# The sandbox's part of a bench's exit trap: remove it if anything of it exists.
bench_sandbox_down() {
  if [ -e "$DIR/state.json" ] || docker ps -aq --filter "name=^$NAME-" | grep -q .; then
    log "tearing down sandbox $NAME"
    "$PGHA" sandbox down --name "$NAME" --dir "$DIR" >"$LOGS/sandbox-down.log" 2>&1 ||
      log "sandbox down failed: see $LOGS/sandbox-down.log"
  fi
}

# bench_cleanup: the exit trap of a bench with one sandbox at a time ($NAME in $DIR): remove
# it, and on a failure say where the logs are.
bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ -n "${NAME:-}" ] && bench_sandbox_down
  [ $rc -eq 0 ] || log "exit $rc; logs in $LOGS"
  exit $rc
}

# bench_start: the start of a bench with one sandbox at a time ($NAME in $DIR): fresh logs in
# $LOGS, pgha built into $PGHA, and the exit trap that removes the sandbox.
bench_start() {
  mkdir -p "$OUT" "$LOGS"
  rm -f "$LOGS"/*
  build_pgha "$PGHA" "$LOGS/build.log"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
