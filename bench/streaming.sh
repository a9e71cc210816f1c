#!/usr/bin/env bash
# Benchmark of the streaming flavour on local sandbox hosts (see bench/README.md):
#   1. bare hosts -> verified 3-node cluster: `pgha apply -y` wall time (sandbox up apart);
#   2. `pgha plan` on the converged cluster: median wall time, SSH connections and commands
#      per host;
#   3. the same no-op check by Ansible (bench/ansible/noop.yml, `--check`), and the ratio.
# Writes bench/out/report.txt. Tears its sandbox down on exit, also on failure.
#
# Environment: BENCH_NAME (sandbox name, must start with "bench"; default benchstream),
# PLAN_RUNS (10), ANSIBLE_RUNS (3), BENCH_STRICT=1 (exit 3 when a goal is missed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
NAME=${BENCH_NAME:-benchstream}
DIR=$OUT/$NAME
PLAN_RUNS=${PLAN_RUNS:-10}
ANSIBLE_RUNS=${ANSIBLE_RUNS:-3}
FORKS=5
LOGS=$OUT/logs
REPORT=$OUT/report.txt
RENDER=$OUT/$NAME-render              # holds passwords (--show-secrets): removed on exit
AINV=$OUT/ansible/inventory.yml
PLAYBOOK=$ROOT/bench/ansible/noop.yml
export ANSIBLE_SSH_CONTROL_PATH_DIR=$OUT/ansible-cp   # only to find and close our masters
PGHA=$OUT/pgha                        # a copy: others rebuild target/ while we measure

case $NAME in bench*) ;; *) echo "BENCH_NAME must start with bench" >&2; exit 1 ;; esac

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -d "$ANSIBLE_SSH_CONTROL_PATH_DIR" ]; then
    for s in "$ANSIBLE_SSH_CONTROL_PATH_DIR"/*; do
      [ -S "$s" ] && ssh -o ControlPath="$s" -O exit bench-master >/dev/null 2>&1
    done
  fi
  bench_sandbox_down
  rm -rf "$RENDER"
  [ $rc -eq 0 ] || log "exit $rc; logs in $LOGS"
  exit $rc
}

mkdir -p "$OUT" "$LOGS" "$OUT/ansible"
rm -f "$LOGS"/*

# ---------------------------------------------------------------- tools and build
need=()
command -v ansible-playbook >/dev/null || need+=(ansible)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >"$LOGS/apt.log" 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >"$LOGS/apt.log" 2>&1; } ||
    die "apt-get install ${need[*]}"
fi
if ! ansible-galaxy collection list community.postgresql 2>/dev/null | grep -q '^community.postgresql'; then
  die "the community.postgresql collection is missing (Debian's ansible package ships it); bench/ansible/noop.yml needs it"
fi

build_pgha "$PGHA" "$LOGS/build.log"

trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 1. bare -> verified
LOAD_START=$(loadavg)
bench_sandbox_up --hosts 3

# Not timed: what Ansible's modules need on the hosts (apt in check mode, psycopg2).
log "installing python3-apt python3-psycopg2 on the hosts (not timed)"
pids=()
for h in "${HOSTS[@]}"; do
  addr=${h#* }
  "${SSH[@]}" "root@$addr" 'export DEBIAN_FRONTEND=noninteractive;
    apt-get install -y -qq python3-apt python3-psycopg2 >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq python3-apt python3-psycopg2 >/dev/null; }' \
    >"$LOGS/pydeps-${h%% *}.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || die "installing python3-apt python3-psycopg2: $LOGS/pydeps-*.log"; done

# ---------------------------------------------------------------- 2. pgha plan, converged
"$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/plan.out" 2>&1 ||
  die "plan on the converged cluster is not clean (exit $?): $LOGS/plan.out"
grep -q '^No changes\.' "$LOGS/plan.out" || die "plan did not say \"No changes.\": $LOGS/plan.out"

# SSH connections (sshd's journal on each host) and commands (`-vv` debug lines) of one plan.
# The debug log is colourised even into a file with --no-color: NO_COLOR=1 and strip ANSI.
log "pgha -vv plan: SSH round trips per host"
t0=$(date +%s.%N)
NO_COLOR=1 "$PGHA" -vv plan --detailed-exitcode -i "$INV" >"$LOGS/plan-vv.out" 2>"$LOGS/plan-vv.raw" ||
  die "-vv plan: $LOGS/plan-vv.raw"
t1=$(date +%s.%N)
sed 's/\x1b\[[0-9;]*m//g' "$LOGS/plan-vv.raw" >"$LOGS/plan-vv.err"
# A `run` event is one line starting with the level and target; the command it shows may span
# many lines, which never start that way. `done` closes each run.
count_events() {  # EVENT HOST
  grep -cE "^ *DEBUG +pgha::transport::ssh: +$1 +host=$2( |\$)" "$LOGS/plan-vv.err" || true
}
RT_LINES=()
RT_GOAL=met
for h in "${HOSTS[@]}"; do
  name=${h%% *} addr=${h#* }
  runs=$(count_events run "$name")
  dones=$(count_events done "$name")
  conns=$("${SSH[@]}" "root@$addr" "journalctl --no-pager -q -t sshd --since @$t0 --until @$t1 | grep -c 'Accepted publickey'" || true)
  ms=$(grep -E "^ *DEBUG +pgha::transport::ssh: +done +host=$name " "$LOGS/plan-vv.err" |
       grep -oE 'elapsed_ms=[0-9]+' | cut -d= -f2 | paste -sd+ -)
  [ "$runs" = "$dones" ] || die "$name: $runs run lines but $dones done lines in $LOGS/plan-vv.err"
  [ "$runs" -ge 1 ] || die "$name: no run lines in $LOGS/plan-vv.err: did the -vv format change?"
  { [ "$runs" -le 2 ] && [ "$conns" = 1 ]; } || RT_GOAL="NOT met"
  RT_LINES+=("$(printf '    %-4s %s SSH connection(s) + %s command(s) (remote time %s ms)' "$name" "$conns" "$runs" "$ms")")
done
TOTAL_RUNS=$(grep -cE '^ *DEBUG +pgha::transport::ssh: +run +host=' "$LOGS/plan-vv.err" || true)

# ---------------------------------------------------------------- 3. the same check, Ansible
log "pgha render --show-secrets; Ansible inventory"
rm -rf "$RENDER"
(umask 077 && "$PGHA" render --show-secrets -i "$INV" --out "$RENDER" >"$LOGS/render.log" 2>&1) ||
  die "render: $LOGS/render.log"
python3 "$ROOT/bench/ansible/inventory_from_pgha.py" "$INV" "$RENDER" "$AINV"
mkdir -p "$ANSIBLE_SSH_CONTROL_PATH_DIR"
ANSIBLE=(ansible-playbook -f "$FORKS" -i "$AINV" "$PLAYBOOK")

recap_clean() {  # LOG: every host changed=0 failed=0 unreachable=0
  local n
  n=$(grep -cE '^[^ ]+ +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0 ' "$1" || true)
  [ "$n" = "${#HOSTS[@]}" ]
}
log "ansible-playbook, real run (must change nothing)"
"${ANSIBLE[@]}" >"$LOGS/ansible-run.log" 2>&1 || die "ansible-playbook: $LOGS/ansible-run.log"
recap_clean "$LOGS/ansible-run.log" ||
  die "Ansible reports changes or failures on the converged cluster: $LOGS/ansible-run.log"
log "ansible-playbook --check -vvv (changed=0, SSH round trips)"
"${ANSIBLE[@]}" --check -vvv >"$LOGS/ansible-check-vvv.log" 2>&1 || die "check: $LOGS/ansible-check-vvv.log"
recap_clean "$LOGS/ansible-check-vvv.log" || die "check run not clean: $LOGS/ansible-check-vvv.log"
A_LINES=()
for h in "${HOSTS[@]}"; do
  name=${h%% *} addr=${h#* }
  ssh_n=$(grep -cE "^<$addr> SSH: EXEC ssh " "$LOGS/ansible-check-vvv.log" || true)
  sftp_n=$(grep -cE "^<$addr> SSH: EXEC (sftp|scp) " "$LOGS/ansible-check-vvv.log" || true)
  A_LINES+=("$(printf '    %-4s %s ssh commands + %s sftp transfers' "$name" "$ssh_n" "$sftp_n")")
done

# ---------------------------------------------------------------- timing, interleaved
# The machine is shared and its load drifts: the Ansible runs are spread among the pgha runs
# so that both tools see the same conditions. Every timed run must report no changes.
log "timing: $PLAN_RUNS x pgha plan, $ANSIBLE_RUNS x ansible-playbook --check, interleaved"
P_TIMES=() A_TIMES=() LOADS=()
every=$(( PLAN_RUNS / ANSIBLE_RUNS )); [ "$every" -ge 1 ] || every=1
for (( i = 0; i < PLAN_RUNS || ${#A_TIMES[@]} < ANSIBLE_RUNS; i++ )); do
  if [ "$i" -lt "$PLAN_RUNS" ]; then
    t0=$(now_ns)
    "$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/timed-plan.out" 2>&1 ||
      die "timed plan $((i + 1)) exit $?: $LOGS/timed-plan.out"
    P_TIMES+=($(( $(now_ns) - t0 )))
    echo "pgha plan $(secs "${P_TIMES[-1]}") s  load $(loadavg)" >>"$LOGS/timings.txt"
  fi
  if [ ${#A_TIMES[@]} -lt "$ANSIBLE_RUNS" ] && { [ $(( i % every )) = 0 ] || [ "$i" -ge "$PLAN_RUNS" ]; }; then
    LOADS+=("$(loadavg | cut -d' ' -f1)")
    t0=$(now_ns)
    "${ANSIBLE[@]}" --check >"$LOGS/timed-ansible.log" 2>&1 ||
      die "timed check $(( ${#A_TIMES[@]} + 1 )): $LOGS/timed-ansible.log"
    A_TIMES+=($(( $(now_ns) - t0 )))
    echo "ansible --check $(secs "${A_TIMES[-1]}") s  load $(loadavg)" >>"$LOGS/timings.txt"
    recap_clean "$LOGS/timed-ansible.log" || die "timed check not clean: $LOGS/timed-ansible.log"
  fi
done

# Both tools still agree that nothing is to do.
"$PGHA" plan --detailed-exitcode -i "$INV" >"$LOGS/plan-after.out" 2>&1 ||
  die "plan after the Ansible runs is not clean: $LOGS/plan-after.out"
LOAD_END=$(loadavg)

# ---------------------------------------------------------------- report
stats() {  # NANOSECONDS...: "median min max all" in seconds
  printf '%s\n' "$@" | sort -n | awk '{ t[NR] = $1 / 1e9 } END {
    m = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
    all = ""; for (i = 1; i <= NR; i++) all = all sprintf("%s%.2f", i > 1 ? " " : "", t[i])
    printf "%.2f %.2f %.2f %s\n", m, t[1], t[NR], all }'
}
read -r P_MED P_MIN P_MAX P_ALL < <(stats "${P_TIMES[@]}")
read -r A_MED A_MIN A_MAX A_ALL < <(stats "${A_TIMES[@]}")
RATIO=$(awk -v a="$A_MED" -v p="$P_MED" 'BEGIN { printf "%.1f", a / p }')
RATIO_MIN=$(awk -v a="$A_MIN" -v p="$P_MIN" 'BEGIN { printf "%.1f", a / p }')
RATIO_GOAL=$(awk -v r="$RATIO" 'BEGIN { print (r >= 20 ? "met" : "NOT met") }')

{
  echo "pgha streaming benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "machine:   $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/^Mem:/ { print $2 }') GiB memory, kernel $(uname -r)"
  echo "load avg:  start $LOAD_START | end $LOAD_END | 1-min at each timed Ansible run: ${LOADS[*]}"
  echo "           (the machine is shared: other sandboxes and tests may run meanwhile)"
  echo "versions:  pgha $REV; $(ansible --version 2>/dev/null | sed -n 1p); community.postgresql $(ansible-galaxy collection list community.postgresql 2>/dev/null | awk '/^community.postgresql/ { print $2 }')"
  echo "hosts:     3 sandbox containers (Debian 12, systemd, sshd), PostgreSQL 15 from Debian"
  echo
  echo "1. bare hosts -> verified 3-node cluster"
  echo "   sandbox up (not counted):           $(secs "$T_UP") s"
  echo "   pgha apply -y (apt included):       $(secs "$T_APPLY") s   [pgha: \"$APPLIED\"; verify: $VERIFIED]"
  echo
  echo "2. pgha plan on the converged cluster (\"No changes.\", exit 0 with --detailed-exitcode)"
  echo "   wall time, median of $PLAN_RUNS:           $P_MED s   (min $P_MIN, max $P_MAX)"
  echo "   sorted: $P_ALL"
  echo "   SSH per host (journal of sshd; -vv \`run\` lines):"
  printf '%s\n' "${RT_LINES[@]}"
  echo "   total commands: $TOTAL_RUNS; goal one connection + at most 2 commands per host: $RT_GOAL"
  echo
  echo "3. the same no-op check by Ansible (bench/ansible/noop.yml --check, changed=0 on every host)"
  echo "   wall time, median of $ANSIBLE_RUNS:            $A_MED s   (min $A_MIN, max $A_MAX)"
  echo "   sorted: $A_ALL   (each run checked: changed=0 on every host)"
  echo "   SSH per host (-vvv \`SSH: EXEC\` lines, one check run):"
  printf '%s\n' "${A_LINES[@]}"
  echo "   settings: -f $FORKS; otherwise Ansible defaults, no ansible.cfg: fact gathering on,"
  echo "   pipelining off, ssh -C -o ControlMaster=auto -o ControlPersist=60s (masters stay warm"
  echo "   between the timed runs; pgha opens new connections on every run), strategy linear."
  echo "   The first (real) run also reported changed=0."
  echo
  echo "ratio Ansible / pgha (median no-op check): ${RATIO}x   (goal >= 20x: $RATIO_GOAL; min/min ${RATIO_MIN}x)"
  echo "timed runs interleaved (an Ansible run after every $every pgha plans) so both see the same load;"
  echo "in order with the load average: bench/out/logs/timings.txt"
} >"$REPORT"
cat "$REPORT"
log "report saved to $REPORT"

if [ "${BENCH_STRICT:-0}" = 1 ] && { [ "$RT_GOAL" != met ] || [ "$RATIO_GOAL" != met ]; }; then
  exit 3
fi
