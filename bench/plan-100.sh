#!/usr/bin/env bash
# `pgha plan` over 100 hosts (see bench/README.md). The hosts are containers of the sandbox's
# packages image (Debian 12 with PostgreSQL, Patroni, etcd... installed) running sshd alone:
# no systemd, no PostgreSQL server. Every file pgha manages is put on them first, as `pgha
# render --show-secrets` writes it and with the owner and mode the plan asks for, so that a
# plan reads and compares every managed file as on a converged cluster and finds them equal
# (the packages are installed too; the standbys lose the image's stock cluster, as
# standbys-to-be). What the plan still has to do is what only a running server (systemd,
# PostgreSQL) could make true. Measures RUNS timed runs of `pgha plan` after a warm-up: wall
# and CPU time of pgha and its ssh processes, and the CPU the hosts spent meanwhile.
# Writes bench/out/plan-100-report.txt. Tears down every container and the network it made,
# also on failure.
#
# Environment: BENCH_NAME (must start with "bench"; default benchplan), HOSTS (100, at most
# 245), RUNS (5), BENCH_STRICT=1 (exit 3 when the median is 3 s or more), BENCH_KEEP=1 (leave
# the hosts up to look into them; `bash bench/plan-100.sh down` removes them), SSHD_KEX (the
# hosts' sshd offers only these key exchange algorithms, e.g. curve25519-sha256, to measure
# what OpenSSH's default, sntrup761x25519-sha512, costs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
NAME=${BENCH_NAME:-benchplan}
HOSTS=${HOSTS:-100}
RUNS=${RUNS:-5}
DIR=$OUT/$NAME
LOGS=$DIR/logs
REPORT=$OUT/plan-100-report.txt
PGHA=$OUT/pgha-plan                   # a copy: others rebuild target/ while we measure
IMAGE=pgha-pg:bookworm                # the sandbox's packages image (`sandbox up --image-with-packages`)
LABEL=pgha.bench                      # on every container and the network made here
NET=$NAME-net
GOAL_SECONDS=3

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

case $NAME in bench*) ;; *) die "BENCH_NAME must start with bench" ;; esac
case $HOSTS in '' | *[!0-9]*) die "HOSTS must be a number" ;; esac
[ "$HOSTS" -ge 2 ] && [ "$HOSTS" -le 245 ] || die "HOSTS must be between 2 and 245"
case $RUNS in '' | *[!0-9]* | 0) die "RUNS must be a positive number" ;; esac
case ${SSHD_KEX:-} in *[!A-Za-z0-9@.,+-]*) die "SSHD_KEX: a list of key exchange algorithms" ;; esac
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (Debian package \`time\`)"
docker info >/dev/null 2>&1 || die "docker does not answer (see scripts/prepare-machine)"

ours() { docker ps -aq --filter "label=$LABEL=$NAME"; }

# Remove what this bench made: its containers (by label), its network, the secrets on disk.
teardown() {
  local attempt
  # A few at a time: a hundred removals at once have left Docker counting endpoints that are
  # gone, and then the network cannot be removed.
  ours | xargs -r -n 8 docker rm -f >/dev/null ||
    log "could not remove every container labelled $LABEL=$NAME"
  if docker network inspect "$NET" >/dev/null 2>&1; then
    for attempt in 1 2 3 4 5 6; do
      docker network rm "$NET" >/dev/null 2>&1 && break
      [ "$attempt" -lt 6 ] || log "could not remove network $NET: remove it with \`docker network rm $NET\`"
      sleep 5
    done
  fi
  if [ -e "$DIR/img/state.json" ]; then
    "$PGHA" sandbox down --name "$NAME-img" --dir "$DIR/img" >"$LOGS/img-down.log" 2>&1 || true
  fi
  rm -rf "$DIR/hosts" "$DIR/render" "$DIR/id_ed25519" "$DIR/id_ed25519.pub" "$DIR/env.sh"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "BENCH_KEEP=1: $NAME stays up (inventory $DIR/inventory.yml, secrets $DIR/env.sh); remove it with: bash bench/plan-100.sh down"
    exit $rc
  fi
  log "tearing down $NAME (containers, network)"
  teardown
  [ $rc -eq 0 ] || log "exit $rc; logs in $LOGS"
  exit $rc
}

mkdir -p "$DIR" "$LOGS"
if [ "${1:-}" = down ]; then
  [ -x "$PGHA" ] || PGHA=true
  teardown
  exit 0
fi
rm -f "$LOGS"/*
build_pgha "$PGHA" "$LOGS/build.log"
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -n "$(ours)" ] || docker network inspect "$NET" >/dev/null 2>&1; then
  log "removing a leftover $NAME"
  teardown
fi

# ---------------------------------------------------------------- image, network, hosts
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "building $IMAGE through a one-host sandbox (once, several minutes)"
  "$PGHA" sandbox up --name "$NAME-img" --dir "$DIR/img" --hosts 1 --image-with-packages \
    >"$LOGS/img-up.log" 2>&1 || die "sandbox up: $LOGS/img-up.log"
  "$PGHA" sandbox down --name "$NAME-img" --dir "$DIR/img" >"$LOGS/img-down.log" 2>&1 || true
fi

# A /24 in 10.79.0.0/16 that no Docker network overlaps (the sandbox uses 10.77).
free_subnet() {
  python3 - <<'EOF'
import ipaddress, json, subprocess
ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True, check=True).stdout.split()
used = []
if ids:
    out = subprocess.run(["docker", "network", "inspect", *ids], capture_output=True, text=True, check=True).stdout
    for net in json.loads(out):
        for c in (net.get("IPAM") or {}).get("Config") or []:
            if c.get("Subnet"):
                used.append(ipaddress.ip_network(c["Subnet"], strict=False))
for third in range(1, 255):
    net = ipaddress.ip_network(f"10.79.{third}.0/24")
    if not any(u.version == 4 and net.overlaps(u) for u in used):
        print(net)
        break
EOF
}
for attempt in 1 2 3 4 5; do
  SUBNET=$(free_subnet)
  [ -n "$SUBNET" ] || die "no free /24 in 10.79.0.0/16"
  if docker network create --subnet "$SUBNET" --label "$LABEL=$NAME" "$NET" >"$LOGS/network.log" 2>&1; then
    break
  fi
  [ "$attempt" -lt 5 ] || die "docker network create: $LOGS/network.log"
  sleep 2                              # someone took it meanwhile
done
BASE=${SUBNET%.0/24}
address() { echo "$BASE.$((9 + $1))"; }   # pg1 is .10
log "network $NET $SUBNET"

ssh-keygen -q -t ed25519 -N '' -C "$NAME" -f "$DIR/id_ed25519"
: >"$DIR/known_hosts"
for (( i = 1; i <= HOSTS; i++ )); do
  d=$DIR/hosts/pg$i
  mkdir -p "$d/files"
  ssh-keygen -q -t ed25519 -N '' -C "pg$i" -f "$d/ssh_host_ed25519_key"
  cp "$DIR/id_ed25519.pub" "$d/authorized_keys"
  echo "$(address "$i") $(cut -d' ' -f1,2 "$d/ssh_host_ed25519_key.pub")" >>"$DIR/known_hosts"
done

# sshd alone, with the key made above (its own for each host) and our public key for root.
ENTRY='set -e
install -m 600 /bench/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key
install -m 644 /bench/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ed25519_key.pub
install -d -m 700 /root/.ssh
install -m 600 /bench/authorized_keys /root/.ssh/authorized_keys
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e -o HostKey=/etc/ssh/ssh_host_ed25519_key'"${SSHD_KEX:+ -o KexAlgorithms=$SSHD_KEX}"
log "starting $HOSTS containers of $IMAGE running sshd"
T_UP0=$(now_ns)
run_host() {
  docker run -d --name "$NAME-pg$1" --hostname "pg$1" --label "$LABEL=$NAME" \
    --network "$NET" --ip "$(address "$1")" -v "$DIR/hosts/pg$1:/bench:ro" \
    --entrypoint /bin/sh "$IMAGE" -c "$ENTRY" >>"$LOGS/docker-run.log" 2>&1
}
for (( i = 1; i <= HOSTS; i++ )); do
  run_host "$i" &
  if (( i % 8 == 0 )); then wait; fi
done
wait
[ "$(ours | wc -l)" -eq "$HOSTS" ] || die "not every container started: $LOGS/docker-run.log"
python3 - "$HOSTS" "$BASE" <<'PY' || die "sshd did not answer on every host within 120 s"
import socket, sys, time
count, base = int(sys.argv[1]), sys.argv[2]
waiting = {f"{base}.{9 + i}" for i in range(1, count + 1)}
deadline = time.time() + 120
while waiting and time.time() < deadline:
    for ip in sorted(waiting):
        try:
            with socket.create_connection((ip, 22), timeout=1) as s:
                s.settimeout(2)
                if s.recv(4) == b"SSH-":
                    waiting.discard(ip)
        except OSError:
            pass
    if waiting:
        time.sleep(0.5)
if waiting:
    print("no sshd on", " ".join(sorted(waiting)), file=sys.stderr)
    sys.exit(1)
PY
T_UP=$(( $(now_ns) - T_UP0 ))

# ---------------------------------------------------------------- inventory, secrets
INV=$DIR/inventory.yml
python3 "$ROOT/bench/scale_inventory.py" streaming "$HOSTS" "$INV" --name "$NAME" \
  --first-address "$(address 1)" --ssh-dir "$DIR"
secret() { python3 -c 'import secrets; print(secrets.token_hex(12))'; }
(
  umask 077
  for v in PGHA_REPLICATION_PASSWORD PGHA_SUPERUSER_PASSWORD PGHA_APP_PASSWORD; do
    echo "export $v=$(secret)"
  done >"$DIR/env.sh"
)
# shellcheck disable=SC1091
source "$DIR/env.sh"
"$PGHA" validate --secrets -i "$INV" >"$LOGS/validate.log" 2>&1 || die "validate: $LOGS/validate.log"

# ---------------------------------------------------------------- the managed files in place
# The first plan sees the packages but none of pgha's files; its file changes name each file's
# owner and mode (`install -m MODE -o OWNER -g GROUP /dev/stdin DEST.pgha-new`).
log "pgha plan on hosts without pgha's files (first contact)"
t0=$(now_ns)
rc=0
"$PGHA" plan --json -i "$INV" >"$LOGS/plan-first.json" 2>"$LOGS/plan-first.err" || rc=$?
T_FIRST=$(( $(now_ns) - t0 ))
[ "$rc" -le 1 ] || die "plan (first contact) exit $rc: $LOGS/plan-first.err"
(umask 077 && "$PGHA" render --show-secrets -i "$INV" --out "$DIR/render" >"$LOGS/render.log" 2>&1) ||
  die "render: $LOGS/render.log"
python3 - "$LOGS/plan-first.json" "$DIR/render" "$DIR/hosts" pg1 /var/lib/postgresql/15/main <<'PY' || die "cannot lay out the managed files"
import json, os, re, shlex, shutil, sys
plan, rendered, hosts, primary, data_dir = sys.argv[1:]
install = re.compile(r"install -m (\S+) -o (\S+) -g (\S+) /dev/stdin ([^;]+);")
for host, outcomes in json.load(open(plan))["hosts"].items():
    lines = ["set -e"]
    for o in outcomes:
        for c in o.get("changes", []) if o["kind"] == "file" else []:
            script = c["commands"][0]["argv"][-1]
            m = install.search(script)
            dest = c["target"]
            if not m or shlex.split(m.group(4))[0] != dest + ".pgha-new":
                sys.exit(f"{host} {dest}: no install command in {script!r}")
            mode, owner, group = m.group(1), m.group(2), m.group(3)
            src = os.path.join(rendered, host, dest.lstrip("/"))
            keep = os.path.join(hosts, host, "files", dest.lstrip("/"))
            os.makedirs(os.path.dirname(keep), exist_ok=True)
            shutil.copyfile(src, keep)
            lines.append(f"install -D -m {mode} -o {owner} -g {group} "
                         f"{shlex.quote('/bench/files' + dest)} {shlex.quote(dest)}")
    if len(lines) == 1:
        sys.exit(f"{host}: the first plan has no file to create")
    if host != primary:
        # Every host of the image holds the same stock cluster (one system identifier): on a
        # standby-to-be it would read as a second primary. A standby-to-be has none.
        lines.append(f"rm -rf {shlex.quote(data_dir)}")
    with open(os.path.join(hosts, host, "place.sh"), "w") as f:
        f.write("\n".join(lines) + "\n")
PY
log "putting the managed files on the hosts"
for (( i = 1; i <= HOSTS; i++ )); do
  docker exec "$NAME-pg$i" sh /bench/place.sh >>"$LOGS/place.log" 2>&1 &
  if (( i % 8 == 0 )); then wait; fi
done
wait
rm -rf "$DIR/render"

# The plan the timed runs make: every file in sync; what remains, by kind.
rc=0
"$PGHA" plan --json -i "$INV" >"$LOGS/plan.json" 2>"$LOGS/plan.err" || rc=$?
[ "$rc" -le 1 ] || die "plan exit $rc: $LOGS/plan.err"
SUMMARY=$(python3 - "$LOGS/plan.json" <<'PY'
import collections, json, sys
plan = json.load(open(sys.argv[1]))
files_in_sync = files = 0
changes = collections.Counter()
for host, outcomes in plan["hosts"].items():
    for o in outcomes:
        if o["kind"] == "file":
            files += 1
            files_in_sync += o["status"] == "in_sync"
        if o["status"] == "changes":
            changes[o["kind"]] += len(o["changes"])
        if o["status"] == "refused":
            changes["refused " + o["kind"]] += 1
if files_in_sync != files:
    sys.exit(f"{files - files_in_sync} of {files} managed files are not in sync")
print(f"{len(plan['hosts'])} hosts; {files} managed files, all in sync; still planned: "
      + ", ".join(f"{n} {k}" for k, n in sorted(changes.items())))
PY
) || die "the managed files are not all in sync: $LOGS/plan.json"
log "$SUMMARY"

# ---------------------------------------------------------------- connections and commands
# One `-vv` plan: SSH commands (its `run` debug lines) and connections (sshd's logs, counted
# before and after).
accepted() {
  local i total=0 n
  for (( i = 1; i <= HOSTS; i++ )); do
    n=$(docker logs "$NAME-pg$i" 2>&1 | grep -c 'Accepted publickey' || true)
    total=$(( total + n ))
  done
  echo "$total"
}
before=$(accepted)
rc=0
NO_COLOR=1 "$PGHA" -vv plan -i "$INV" >"$LOGS/plan-vv.out" 2>"$LOGS/plan-vv.raw" || rc=$?
[ "$rc" -le 1 ] || die "-vv plan exit $rc: $LOGS/plan-vv.raw"
CONNS=$(( $(accepted) - before ))
sed 's/\x1b\[[0-9;]*m//g' "$LOGS/plan-vv.raw" >"$LOGS/plan-vv.err"
COMMANDS=$(grep -cE '^ *DEBUG +pgha::transport::ssh: +run +host=' "$LOGS/plan-vv.err" || true)

# ---------------------------------------------------------------- timed runs
# CPU time the hosts spent, from the containers' cgroups (v1 or v2); -1 when not readable.
hosts_cpu_ns() {
  local total=0 id v1 v2
  for id in $(docker ps -q --no-trunc --filter "label=$LABEL=$NAME"); do
    v1=/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage
    v2=/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat
    if [ -r "$v1" ]; then
      total=$(( total + $(cat "$v1") ))
    elif [ -r "$v2" ]; then
      total=$(( total + $(awk '$1 == "usage_usec" { print $2 * 1000 }' "$v2") ))
    else
      echo -1
      return
    fi
  done
  echo "$total"
}
log "timing: a warm-up and $RUNS x pgha plan"
"$PGHA" plan -i "$INV" >"$LOGS/plan-warmup.out" 2>&1 || true
LOAD_START=$(loadavg)
WALLS=() CPUS=() HOSTCPUS=()
for (( i = 1; i <= RUNS; i++ )); do
  h0=$(hosts_cpu_ns)
  rc=0
  /usr/bin/time -f '%e %U %S' -o "$LOGS/plan.time" "$PGHA" plan -i "$INV" >"$LOGS/plan-timed.out" 2>&1 || rc=$?
  h1=$(hosts_cpu_ns)
  [ "$rc" -le 1 ] || die "timed plan $i exit $rc: $LOGS/plan-timed.out"
  # The last line: /usr/bin/time says first when the command exited non-zero.
  read -r w u s < <(tail -n 1 "$LOGS/plan.time")
  case "$w$u$s" in *[!0-9.]* | '') die "cannot read $LOGS/plan.time" ;; esac
  WALLS+=("$w")
  CPUS+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')")
  h=?
  if [ "$h0" -ge 0 ] && [ "$h1" -ge 0 ]; then
    h=$(awk -v a="$h0" -v b="$h1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    HOSTCPUS+=("$h")
  fi
  echo "plan $i: wall $w s, user $u s, sys $s s, hosts $h s; load $(loadavg)" >>"$LOGS/timings.txt"
done
LOAD_END=$(loadavg)

# Where pgha's own CPU goes, apart from its ssh processes: one run under perf, when present.
SPLIT="not measured (perf is not installed)"
if command -v perf >/dev/null; then
  rc=0
  perf record -q -o "$LOGS/plan.perf" -- "$PGHA" plan -i "$INV" >"$LOGS/plan-perf.out" 2>"$LOGS/plan-perf.err" || rc=$?
  SPLIT="not measured (perf record exit $rc: $LOGS/plan-perf.err)"
fi
if [ -s "$LOGS/plan.perf" ] && [ "$rc" -le 1 ]; then
  SPLIT=$(perf report -i "$LOGS/plan.perf" --sort comm --stdio -F period,comm 2>/dev/null |
    awk '!/^#/ && NF == 2 { if ($2 == "ssh") ssh += $1; else if ($2 ~ /^(pgha|tokio)/) own += $1; else other += $1 }
      END { printf "pgha %.2f s, its ssh clients %.2f s, other %.2f s", own / 1e9, ssh / 1e9, other / 1e9 }')
fi

stats() {  # SECONDS...: "median min max"
  printf '%s\n' "$@" | sort -n | awk '{ t[NR] = $1 } END {
    m = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
    printf "%.2f %.2f %.2f\n", m, t[1], t[NR] }'
}
read -r P_MED P_MIN P_MAX < <(stats "${WALLS[@]}")
read -r C_MED _ _ < <(stats "${CPUS[@]}")
H_MED=n/a
if [ ${#HOSTCPUS[@]} -eq "$RUNS" ]; then read -r H_MED _ _ < <(stats "${HOSTCPUS[@]}"); fi
GOAL=$(awk -v m="$P_MED" -v g="$GOAL_SECONDS" 'BEGIN { print (m < g ? "met" : "NOT met") }')

{
  echo "pgha plan over $HOSTS hosts, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "machine:  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r)"
  echo "load avg: start $LOAD_START | end $LOAD_END (the machine is shared)"
  echo "pgha:     $REV (release build)"
  echo "hosts:    $HOSTS containers of $IMAGE on this machine running sshd alone (no systemd,"
  echo "          no PostgreSQL server), every file pgha manages in place with its owner and"
  echo "          mode; started in $(secs "$T_UP") s (not counted). Inventory: streaming, a"
  echo "          primary and $((HOSTS - 1)) standbys."
  echo "ssh:      $(ssh -V 2>&1); key exchange offered by the hosts: ${SSHD_KEX:-OpenSSH default}"
  echo "plan:     $SUMMARY"
  echo "          SSH in one plan: $CONNS connections accepted (sshd's logs), $COMMANDS commands run"
  echo
  echo "first contact (no pgha file on the hosts, every file planned with its diff): $(secs "$T_FIRST") s"
  echo "pgha plan, median of $RUNS after a warm-up: $P_MED s wall (min $P_MIN, max $P_MAX)"
  echo "  CPU of pgha and its ssh processes (user+sys), median: $C_MED s"
  echo "    of which, in one run sampled by perf: $SPLIT"
  echo "  CPU the $HOSTS hosts spent meanwhile (their cgroups), median: $H_MED s"
  echo "  each run: bench/out/$NAME/logs/timings.txt"
  echo "The hosts share this machine's CPUs with pgha; real hosts do their part on their own"
  echo "CPUs, in parallel."
  echo
  echo "goal: under $GOAL_SECONDS s: $GOAL"
} >"$REPORT"
cat "$REPORT"
log "report saved to $REPORT"

if [ "${BENCH_STRICT:-0}" = 1 ] && [ "$GOAL" != met ]; then
  exit 3
fi
