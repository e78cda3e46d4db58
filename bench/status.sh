#!/usr/bin/env bash
# Node status intake benchmark: simulated nodes reporting every 10 s to wulfd on the
# embedded store, and `wulf node status` at that size.
#
# For each N (default 10000 50000 100000):
#   1. fresh wulfd (new data dir, DHCP/TFTP/DNS off, 127.0.0.1 only), then in the
#      background `wulf sim --nodes N --boot-secs BOOT_SECS --duration DURATION --stats 5
#      --connections CONNECTIONS`: the sim creates the N simulated nodes, boots each (fetches
#      its iPXE script from the head), then every node reports every 10 s (offered load
#      N/10 reports/s), first reports spread over BOOT_SECS. Its stderr lines are
#      timestamped as they arrive, so each 5-s stats line is a known wall-clock window.
#   2. Steady window: from 20 s after the sim printed "booted" until 10 s before its end.
#      Recorded over it: wulfd and sim CPU (utime+stime from /proc/PID/stat, % of one
#      core), the 5-s stats lines whose midpoint lies in it (mean reports/s = sustained
#      rate; worst per-window p99 and max), and the sim's own whole-run p50/p99/max/errors.
#      The first part of the window (20 s .. DURATION-30 s) has no listing ("reporting
#      only"); its CPU and latency are also reported on their own.
#   3. From DURATION-30 s, while the sim runs, once: `wulf node status` must print exactly
#      one line `up  N  n[0-(N-1)]` (whitespace-insensitive), else its states and counts
#      are recorded as WRONG (late reports show as down) and the target is missed. Then, each
#      kind starting right after a stats line so the 5-s windows it touches are known,
#      `wulf node status`, `wulf node status -l > /dev/null`, `wulf node status --json >
#      /dev/null` are timed: one run with date +%s%N; if it took < HF_MAX_MS, hyperfine
#      -r RUNS follows and its mean is the figure, else the single run is. The sim's
#      latency in the windows each kind touched is reported separately.
#   4. After the sim ends (nodes send clean-shutdown reports): `wulf node status` must
#      show exactly `down (clean shutdown)  N  n[0-(N-1)]` (else recorded as WRONG), and
#      `-l` must list N nodes.
#      wulfd VmHWM: through create + boot (read when the sim prints "booted", then reset
#      with `echo 5 > /proc/PID/clear_refs`), during steady reporting (read before the
#      listings), and at the end (includes the listings and the shutdown reports);
#      VmRSS at the end; size of DATA/wulf.redb after the boots and at the end; size of
#      `wulf node status --json` after the stop.
# Prints tables and the target check (100,000 nodes: >= 9,900 reports/s sustained of
# 10,000 offered, whole-run p99 < 50 ms, correct status table), and writes the section
# "## Status: node status intake with simulated nodes (bench/status.sh)" of bench/RESULTS.md.
#
# Environment:
#   SIZES="10000 50000 100000"   node counts
#   DURATION=70        sim --duration, seconds of reporting after the boots (>= 60)
#   BOOT_SECS=10       sim --boot-secs: first reports spread over this many seconds
#   CONNECTIONS=64     sim --connections
#   POLLS=N            sim --polls: nodes that keep a command poll open (default: all N,
#                      fewer when the open-file limit leaves less than 10,000 files beside them)
#   RUNS=3             hyperfine runs per listing (no warm-up: the timed single run is one)
#   HF_MAX_MS=1500     use hyperfine only if one listing run took less than this
#   WRITE_RESULTS=0    do not touch bench/RESULTS.md
#   SKIP_BUILD=1       never build (default: build target/release binaries only if missing)
# Uses only 127.0.0.1. Runs as root non-interactively.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RESULTS_FILE="$SCRIPT_DIR/RESULTS.md"
HEADING="## Status: node status intake with simulated nodes (bench/status.sh)"

# Exact command line, for RESULTS.md.
CMD=""
for v in SIZES DURATION BOOT_SECS CONNECTIONS POLLS RUNS HF_MAX_MS SKIP_BUILD WRITE_RESULTS; do
  if [[ -n "${!v:-}" ]]; then CMD+="$v=$(printf %q "${!v}") "; fi
done
CMD+="bash bench/status.sh"
if (($#)); then CMD+=" $*"; fi

read -r -a SIZE_LIST <<<"${SIZES:-10000 50000 100000}"
DURATION=${DURATION:-70}
BOOT_SECS=${BOOT_SECS:-10}
CONNECTIONS=${CONNECTIONS:-64}
RUNS=${RUNS:-3}
HF_MAX_MS=${HF_MAX_MS:-1500}
STATS_SECS=5
STEADY_FROM=20                        # s after "booted"
STEADY_TO=$((DURATION - 10))          # s after "booted"
LIST_AT=$((DURATION - 30))            # listings start after this (s after "booted")

log() { printf '[status.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
source "$SCRIPT_DIR/lib.sh"
[[ $(id -u) == 0 ]] || die "run as root (/proc/PID/clear_refs of wulfd, package installs)"
[[ "$DURATION" =~ ^[0-9]+$ ]] && ((DURATION >= 60)) || die "DURATION must be an integer >= 60"
T_START=$(date +%s)

# ---------------------------------------------------------------- tools
install_missing hyperfine=hyperfine curl=curl

cargo_on_path
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ ! -x "$TARGET_DIR/release/wulfd" || ! -x "$TARGET_DIR/release/wulf" ]]; then
  [[ "${SKIP_BUILD:-0}" != 1 ]] || die "binaries not found in $TARGET_DIR/release (SKIP_BUILD=1)"
  log "building release binaries (missing): cargo build --release -p wulfd -p wulf-cli"
  (cd "$ROOT" && cargo build --release -p wulfd -p wulf-cli) || die "cargo build failed"
fi
[[ -x "$TARGET_DIR/release/wulfd" && -x "$TARGET_DIR/release/wulf" ]] ||
  die "binaries not found in $TARGET_DIR/release"

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d /tmp/wulf-bench-status.XXXXXX)
# Private copies, so a concurrent rebuild of target/ cannot swap binaries mid-run.
mkdir "$TMP/bin"
cp "$TARGET_DIR/release/wulfd" "$TARGET_DIR/release/wulf" "$TMP/bin/"
WULFD="$TMP/bin/wulfd"
WULF="$TMP/bin/wulf"
WULFD_PID=""
SIM_PID=""
TS_PID=""

stop_wulfd() {
  if [[ -n "$WULFD_PID" ]]; then
    kill "$WULFD_PID" 2>/dev/null || true
    wait_gone "$WULFD_PID"
    wait "$WULFD_PID" 2>/dev/null || true
    WULFD_PID=""
  fi
}
stop_sim() { # SIGTERM lets the sim send its shutdown reports; 10 s at most
  if [[ -n "$SIM_PID" ]]; then
    kill "$SIM_PID" 2>/dev/null || true
    wait_gone "$SIM_PID" 100
    wait "$SIM_PID" 2>/dev/null || true
    SIM_PID=""
  fi
  if [[ -n "$TS_PID" ]]; then
    kill "$TS_PID" 2>/dev/null || true
    wait_gone "$TS_PID" 20
    wait "$TS_PID" 2>/dev/null || true
    TS_PID=""
  fi
}
# Short-lived foreground children run in the background and are waited for, so a
# signal is handled at once and cleanup can end them.
cleanup() {
  local rc=$?
  stop_child
  stop_sim
  stop_wulfd
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
store_mib() { # FILE -> "size (allocated)" in MiB
  awk -v b="$(stat -c %s "$1")" -v a="$(du -k "$1" | cut -f1)" 'BEGIN { printf "%.1f (%.1f)", b / 1048576, a / 1024 }'
}
kb_to_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
vm() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$2/status"; } # FIELD PID -> kB

CLK_TCK=$(getconf CLK_TCK)
cpu_pct() { # TICKS0 TICKS1 T0 T1 -> % of one core
  awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / (t1 - t0) }'
}
# CPU used by other processes: all busy CPU time on the machine (/proc/stat) minus
# wulfd's, the sim's and this script's own and its waited-for children's (wulf listings,
# hyperfine), as a share of the machine's capacity.
other_cpu_pct() { # BUSY0 TOTAL0 BUSY1 TOTAL1 OURS_TICKS
  awk -v b0="$1" -v t0="$2" -v b1="$3" -v t1="$4" -v s="$5" 'BEGIN {
    o = (b1 - b0) - s; if (o < 0) o = 0
    printf "%.0f", (t1 > t0 ? 100 * o / (t1 - t0) : 0) }'
}

# A status table's states and counts, hostlists left out: "up 83702; down (…) 16298".
states_of() { sed -E 's/[[:space:]]+[^[:space:]]+$//; s/[[:space:]]+/ /g; s/^ //' "$1" | sed '/^$/d' | paste -sd ';' | sed 's/;/; /g'; }

stats_lines() { grep -c ' reports/s ' "$1" 2>/dev/null || true; }
# wait for the next 5-s stats line after this moment (at most 8 s)
wait_next_window() {
  local f=$1 n0 i
  n0=$(stats_lines "$f")
  for ((i = 0; i < 80; i++)); do
    (($(stats_lines "$f") > n0)) && { sleep 0.1; return 0; }
    sleep 0.1
  done
  log "note: no stats line within 8 s"
}

start_wulfd() { # DATADIR PORT
  local dir=$1 port=$2 i cfg="$1.toml"
  mkdir -p "$dir"
  quiet_wulfd_config "$cfg" "$dir" "$port"
  "$WULFD" --config "$cfg" >"$dir.log" 2>&1 &
  WULFD_PID=$!
  for ((i = 0; i < 150; i++)); do
    if ! kill -0 "$WULFD_PID" 2>/dev/null; then
      wait "$WULFD_PID" 2>/dev/null || true
      WULFD_PID=""
      cat "$dir.log" >&2
      die "wulfd exited at start"
    fi
    if [[ -s "$dir/admin.token" ]] && curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
      return 0
    fi
    sleep 0.1
  done
  die "wulfd did not come up on 127.0.0.1:$port"
}
wulfd_alive() {
  if ! kill -0 "$WULFD_PID" 2>/dev/null; then
    local wrc=0
    wait "$WULFD_PID" || wrc=$?
    WULFD_PID=""
    log "wulfd log tail:"; tail -n 30 "$DATA.log" >&2 || true
    die "wulfd died during the run (exit status $wrc)"
  fi
}

# hyperfine CSV (command,mean,stddev,median,user,system,min,max) -> mean / sd in ms

# Time one listing kind: NAME START|"" [wulf node status ARGS...]; sets L_MS and L_HOW for
# (N, NAME); records the interval it ran in (from START if given) to $LISTS.
time_listing() {
  local name=$1 s=${2:-} t0 t1 e ms
  shift 2
  [[ -n "$s" ]] || s=$(now)
  t0=$(now_ns)
  run_child "$WULF" node status "$@" >/dev/null || die "'wulf node status $*' failed"
  t1=$(now_ns)
  ms=$(((t1 - t0) / 1000000))
  if ((ms < HF_MAX_MS)); then
    # output goes to hyperfine's /dev/null
    run_child hyperfine -w 0 -r "$RUNS" --style basic --export-csv "$TMP/hf-$N-$name.csv" \
      -n "$name" "$WULF node status $*" >"$TMP/hf-$N-$name.txt" 2>&1 ||
      { cat "$TMP/hf-$N-$name.txt" >&2; die "hyperfine failed"; }
    L_MS[$N,$name]="$(hf_mean_ms "$TMP/hf-$N-$name.csv" "$name") ± $(hf_sd_ms "$TMP/hf-$N-$name.csv" "$name")"
    L_HOW[$N,$name]="hyperfine, $RUNS runs"
  else
    L_MS[$N,$name]=$ms
    L_HOW[$N,$name]="1 run"
  fi
  e=$(now)
  echo "$name $s $e" >>"$LISTS"
  log "wulf node status $*: ${L_MS[$N,$name]} ms (${L_HOW[$N,$name]}; the single timed run took $ms ms)"
}

# ---------------------------------------------------------------- machine
NPROC=$(nproc)
machine_facts
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
WULF_VERSION=$("$WULF" --version 2>/dev/null || echo unknown)
BUILT=$(date -u -r "$TARGET_DIR/release/wulfd" '+%Y-%m-%d %H:%M UTC')
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
  GIT_REV+=" with uncommitted changes under crates/"
fi
HF_VERSION=$(hyperfine --version 2>/dev/null || echo unknown)
log "machine: $NPROC cores, $CPU_MODEL, $MEM_TOTAL; loadavg at start $LOAD_START"
sample_interference "start"
# Every simulated node keeps a command poll open at the head, as agents do: wulfd and the sim
# each need an open file per polling node and then some (the shell's limits pass to both).
# Where the hard limit cannot be raised (no CAP_SYS_RESOURCE), fewer nodes poll: as many as
# leave 10,000 files to spare (wulfd keeps a quarter of its limit out of its connection cap).
FILES_WANT=$((2 * $(printf '%s\n' "${SIZE_LIST[@]}" | sort -n | tail -n 1) + 10000))
FILES_BEFORE="$(ulimit -n) (hard $(ulimit -Hn))"
if (($(ulimit -n) < FILES_WANT)); then
  ulimit -n "$FILES_WANT" 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
fi
FILES=$(ulimit -n)
MAX_POLLS=$((FILES > 10000 ? FILES - 10000 : 0))
log "open-file limit $FILES (was $FILES_BEFORE; $FILES_WANT wanted): at most $MAX_POLLS nodes poll for commands"
if [[ -n "${POLLS:-}" ]]; then
  [[ "$POLLS" =~ ^[0-9]+$ ]] || die "POLLS must be a number"
  ((POLLS <= MAX_POLLS)) || die "POLLS=$POLLS needs more open files than the limit $FILES allows"
fi
polls_for() { # N -> nodes that poll
  local p=${POLLS:-$MAX_POLLS}
  echo $(($1 < p ? $1 : p))
}

declare -A R_WRONG R_POLLS R_OFFER R_RATE R_NWIN R_MINRATE R_P50 R_P99 R_MAX R_ERR R_TOTAL R_WRATE R_QNWIN R_QP50 R_QP99 R_QMAX \
  R_CPU R_CPUQ R_SIMCPU R_SIMCPUQ R_OTHER R_BOOT R_CHECK R_DOWN R_HWMC R_HWMS R_HWME R_RSSE R_STORE \
  L_MS L_HOW LW R_LATE R_STORE0 R_JSONB

# ---------------------------------------------------------------- run
for N in "${SIZE_LIST[@]}"; do
  [[ "$N" =~ ^[0-9]+$ && "$N" -gt 0 ]] || die "bad size '$N'"
  log "=== N=$N ==="
  sample_interference "start N=$N"
  DATA="$TMP/data-$N"
  PORT=$(pick_port)
  start_wulfd "$DATA" "$PORT"
  export WULF_URL="https://127.0.0.1:$PORT" WULF_CA="$DATA/tls/ca.pem"
  WULF_TOKEN=$(cat "$DATA/admin.token")
  export WULF_TOKEN
  R_OFFER[$N]=$((N / 10))
  SIMLOG="$TMP/sim-$N.log"
  LISTS="$TMP/lists-$N.txt"
  : >"$LISTS"
  FIFO="$TMP/sim-$N.fifo"
  mkfifo "$FIFO"
  : >"$SIMLOG"
  timestamp_lines <"$FIFO" >>"$SIMLOG" &
  TS_PID=$!
  R_POLLS[$N]=$(polls_for "$N")
  log "wulf sim --nodes $N --boot-secs $BOOT_SECS --duration $DURATION --stats $STATS_SECS --connections $CONNECTIONS --polls ${R_POLLS[$N]}"
  "$WULF" sim --nodes "$N" --boot-secs "$BOOT_SECS" --duration "$DURATION" --stats "$STATS_SECS" \
    --connections "$CONNECTIONS" --polls "${R_POLLS[$N]}" >"$TMP/sim-$N.out" 2>"$FIFO" &
  SIM_PID=$!

  # wait for the boots
  for ((i = 0; ; i++)); do
    grep -q 'simulated nodes booted' "$SIMLOG" && break
    kill -0 "$SIM_PID" 2>/dev/null || { cat "$SIMLOG" >&2; die "wulf sim exited before booting the nodes"; }
    wulfd_alive
    ((i < 9000)) || die "the sim did not boot $N nodes within 15 min"
    sleep 0.1
  done
  TB=$(awk '/simulated nodes booted/ { print $1; exit }' "$SIMLOG")
  TC=$(awk '/creating .* simulated nodes/ { print $1; exit }' "$SIMLOG")
  R_BOOT[$N]=$(awk -v b="$TB" -v c="${TC:-$TB}" 'BEGIN { printf "%.1f", b - c }')
  R_HWMC[$N]=$(kb_to_mib "$(vm VmHWM "$WULFD_PID")")
  echo 5 >"/proc/$WULFD_PID/clear_refs"
  R_STORE0[$N]=$(store_mib "$DATA/wulf.redb")
  log "booted; create + boot took ${R_BOOT[$N]} s; wulfd VmHWM through create + boot ${R_HWMC[$N]} MiB (reset now)"

  # steady window, reporting-only part
  sleep_until "$(awk -v b="$TB" -v s="$STEADY_FROM" 'BEGIN { printf "%.3f", b + s }')"
  wulfd_alive
  sample_interference "steady N=$N"
  read -r cb0 ct0 < <(cpu_busy_total); cs0=$(cpu_self)
  w0=$(cpu_ticks "$WULFD_PID"); m0=$(cpu_ticks "$SIM_PID"); t0=$(now)
  sleep_until "$(awk -v b="$TB" -v s="$LIST_AT" 'BEGIN { printf "%.3f", b + s }')"
  wulfd_alive
  w1=$(cpu_ticks "$WULFD_PID"); m1=$(cpu_ticks "$SIM_PID"); t1=$(now)
  R_CPUQ[$N]=$(cpu_pct "$w0" "$w1" "$t0" "$t1")
  R_SIMCPUQ[$N]=$(cpu_pct "$m0" "$m1" "$t0" "$t1")
  R_HWMS[$N]=$(kb_to_mib "$(vm VmHWM "$WULFD_PID")")
  log "reporting only ($(fsub "$t1" "$t0") s): wulfd CPU ${R_CPUQ[$N]} %, sim CPU ${R_SIMCPUQ[$N]} %; wulfd VmHWM since the reset ${R_HWMS[$N]} MiB"

  # listings, each kind starting right after a stats line
  wait_next_window "$SIMLOG"
  s=$(now)
  run_child "$WULF" node status >"$TMP/status-up-$N.txt" 2>&1 || { cat "$TMP/status-up-$N.txt" >&2; die "wulf node status failed"; }
  want="up $N n[0-$((N - 1))]"
  got=$(sed 's/[[:space:]]\+/ /g; s/^ //; s/ $//' "$TMP/status-up-$N.txt" | sed '/^$/d')
  if [[ "$got" != "$want" ]]; then
    # Recorded, not fatal: nodes whose reports came too late show as down, and the figures
    # of the run say why.
    cp "$TMP/status-up-$N.txt" "/tmp/wulf-bench-status-fail-$N.txt"
    cp "$SIMLOG" "/tmp/wulf-bench-status-fail-$N-sim.log"
    R_CHECK[$N]="WRONG: $(states_of "$TMP/status-up-$N.txt")"
    R_WRONG[$N]=1
    log "status table wrong at N=$N while the sim runs: expected exactly '$want', got ${R_CHECK[$N]} (saved to /tmp/wulf-bench-status-fail-$N*.txt/.log)"
  else
    R_CHECK[$N]="\`$want\`"
    log "status table correct: $got"
  fi
  time_listing status "$s" # the check run belongs to the same interval
  wait_next_window "$SIMLOG"
  time_listing long "" -l
  wait_next_window "$SIMLOG"
  time_listing json "" --json
  t_done=$(now)
  late=$(awk -v d="$t_done" -v b="$TB" -v s="$STEADY_TO" 'BEGIN { print (d > b + s) ? 1 : 0 }')
  R_LATE[$N]=$late
  ((late == 0)) || log "note: the listings ran past the end of the steady window"

  # end of the steady window
  sleep_until "$(awk -v b="$TB" -v s="$STEADY_TO" 'BEGIN { printf "%.3f", b + s }')"
  wulfd_alive
  kill -0 "$SIM_PID" 2>/dev/null || log "note: the sim ended before the end of the steady window"
  w2=$(cpu_ticks "$WULFD_PID"); m2=$(cpu_ticks "$SIM_PID"); t2=$(now)
  read -r cb1 ct1 < <(cpu_busy_total); cs1=$(cpu_self)
  R_CPU[$N]=$(cpu_pct "$w0" "$w2" "$t0" "$t2")
  R_SIMCPU[$N]=$(cpu_pct "$m0" "$m2" "$t0" "$t2")
  R_OTHER[$N]=$(other_cpu_pct "$cb0" "$ct0" "$cb1" "$ct1" $(((w2 - w0) + (m2 - m0) + (cs1 - cs0))))
  log "steady window ($(fsub "$t2" "$t0") s): wulfd CPU ${R_CPU[$N]} %, sim CPU ${R_SIMCPU[$N]} %, other processes ${R_OTHER[$N]} % of the machine"

  # end of the sim
  for ((i = 0; i < 1800; i++)); do
    kill -0 "$SIM_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$SIM_PID" 2>/dev/null && die "the sim did not stop within 3 min of the end of the steady window"
  src=0; wait "$SIM_PID" || src=$?
  SIM_PID=""
  wait "$TS_PID" 2>/dev/null || true
  TS_PID=""
  ((src == 0)) || { tail -n 5 "$SIMLOG" >&2; die "wulf sim exited with status $src"; }
  final=$(grep ' sim: .* reports in ' "$SIMLOG" | tail -n 1) || die "the sim printed no summary"
  # sim: 600524 reports in 63.5 s (9455/s), latency p50 0.12 ms, p99 5.92 ms, max 413.5 ms, 0 errors; ...
  read -r R_TOTAL[$N] R_WRATE[$N] R_P50[$N] R_P99[$N] R_MAX[$N] R_ERR[$N] < <(awk '{
    for (i = 1; i <= NF; i++) {
      if ($i == "sim:") n = $(i + 1)
      if ($i ~ /^\([0-9]+\/s\),$/) { r = $i; gsub(/[^0-9]/, "", r) }
      if ($i == "p50") p50 = $(i + 1)
      if ($i == "p99") p99 = $(i + 1)
      if ($i == "max") mx = $(i + 1)
      if ($i ~ /^errors/) e = $(i - 1)
    }
    print n, r, p50, p99, mx, e }' <<<"$final")
  if grep -q 'last error' "$SIMLOG"; then log "$(grep 'last error' "$SIMLOG" | tail -n 1 | cut -d' ' -f2-)"; fi

  # state after the clean shutdown (status writes are batched: allow a few seconds)
  want="down (clean shutdown) $N n[0-$((N - 1))]"
  for ((i = 0; i < 50; i++)); do
    "$WULF" node status >"$TMP/status-down-$N.txt" 2>&1 || true
    got=$(sed 's/[[:space:]]\+/ /g; s/^ //; s/ $//' "$TMP/status-down-$N.txt" | sed '/^$/d')
    [[ "$got" == "$want" ]] && break
    sleep 0.2
  done
  if [[ "$got" != "$want" ]]; then
    cp "$TMP/status-down-$N.txt" "/tmp/wulf-bench-status-fail-$N-down.txt"
    R_DOWN[$N]="WRONG: $(states_of "$TMP/status-down-$N.txt")"
    R_WRONG[$N]=1
    log "status table wrong at N=$N after the sim stopped: expected exactly '$want', got ${R_DOWN[$N]}"
  else
    R_DOWN[$N]="\`$want\`"
  fi
  nl=$("$WULF" node status -l | tail -n +2 | grep -c . || true)
  [[ "$nl" == "$N" ]] || die "wulf node status -l lists $nl nodes, expected $N"
  R_JSONB[$N]=$("$WULF" node status --json | wc -c | awk '{ printf "%.1f", $1 / 1e6 }')
  log "after the stop: $got; -l lists $nl nodes; --json is ${R_JSONB[$N]} MB"

  wulfd_alive
  R_HWME[$N]=$(kb_to_mib "$(vm VmHWM "$WULFD_PID")")
  R_RSSE[$N]=$(kb_to_mib "$(vm VmRSS "$WULFD_PID")")
  R_STORE[$N]=$(store_mib "$DATA/wulf.redb")
  log "wulfd VmHWM since the reset ${R_HWME[$N]} MiB, VmRSS ${R_RSSE[$N]} MiB; store $DATA/wulf.redb ${R_STORE[$N]} MiB"
  if [[ -s "$DATA.log" ]]; then log "wulfd log (warn+): $(head -c 500 "$DATA.log")"; fi

  # the 5-s windows: (previous line's arrival, this line's arrival]
  read -r R_NWIN[$N] R_RATE[$N] R_MINRATE[$N] R_QNWIN[$N] R_QP50[$N] R_QP99[$N] R_QMAX[$N] < <(
    awk -v tb="$TB" -v a="$STEADY_FROM" -v z="$STEADY_TO" -v lists="$LISTS" '
      BEGIN { while ((getline l < lists) > 0) { split(l, f, " "); nl++; ls[nl] = f[2]; le[nl] = f[3] }; prev = tb }
      / reports\/s / {
        e = $1; s = prev; prev = e; mid = (s + e) / 2
        if (mid < tb + a || mid > tb + z) next
        for (i = 1; i <= NF; i++) {
          if ($i == "reports/s") r = $(i - 1)
          if ($i == "p50") p50 = $(i + 1)
          if ($i == "p99") p99 = $(i + 1)
          if ($i == "max") mx = $(i + 1)
        }
        n++; sum += r; if (n == 1 || r < minr) minr = r
        busy = 0
        for (k = 1; k <= nl; k++) if (s < le[k] && e > ls[k]) busy = 1
        if (busy) next
        q++; qp50 += p50; if (p99 > qp99) qp99 = p99; if (mx > qmx) qmx = mx
      }
      END { printf "%d %.0f %.0f %d %.2f %.2f %.1f\n", n, (n ? sum / n : 0), minr, q, (q ? qp50 / q : 0), qp99, qmx }' "$SIMLOG")
  # windows touched by each listing kind
  for kind in status long json; do
    LW[$N,$kind]=$(awk -v tb="$TB" -v kind="$kind" -v lists="$LISTS" '
      BEGIN { while ((getline l < lists) > 0) { split(l, f, " "); if (f[1] == kind) { ls = f[2] + 0; le = f[3] + 0; have = 1 } }; prev = tb }
      / reports\/s / {
        e = $1; s = prev; prev = e
        if (!have || !(s < le && e > ls)) next
        for (i = 1; i <= NF; i++) {
          if ($i == "reports/s") r = $(i - 1)
          if ($i == "p50") p50 = $(i + 1)
          if ($i == "p99") p99 = $(i + 1)
          if ($i == "max") mx = $(i + 1)
        }
        n++; sum += r; if (p50 > wp50) wp50 = p50; if (p99 > wp99) wp99 = p99; if (mx > wmx) wmx = mx
        t = t sprintf("%s%.0f–%.0f s", (n > 1 ? ", " : ""), s - tb, e - tb)
      }
      END { if (n) printf "%d | %s | %.0f | %.2f | %.2f | %.1f\n", n, t, sum / n, wp50, wp99, wmx; else print "0 | - | - | - | - | -" }' "$SIMLOG")
  done
  log "steady window: ${R_NWIN[$N]} windows, mean ${R_RATE[$N]} reports/s (lowest ${R_MINRATE[$N]}); without listings (${R_QNWIN[$N]} windows): p50 ${R_QP50[$N]} ms, worst p99 ${R_QP99[$N]} ms, worst max ${R_QMAX[$N]} ms"
  for kind in status long json; do log "windows during $kind: ${LW[$N,$kind]}"; done
  cp "$SIMLOG" "/tmp/wulf-bench-status-last-sim-$N.log" 2>/dev/null || true

  stop_wulfd
  rm -rf "$DATA" "$DATA.log" "$FIFO"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
sample_interference "end"
T_END=$(date +%s)

# ---------------------------------------------------------------- report
TABLE=$(
  printf '| N nodes | offered (reports/s) | sustained, steady window (reports/s) | lowest 5-s window (reports/s) | whole run: p50 / p99 / max (ms) | steady, no listing: mean p50 / worst 5-s p99 / worst max (ms) | errors | wulfd CPU, steady window / reporting only (%% of one core) | `wulf sim` CPU, steady / reporting only (%% of one core) |\n'
  printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  for N in "${SIZE_LIST[@]}"; do
    printf '| %s | %s | %s | %s | %s / %s / %s | %s / %s / %s | %s | %s / %s | %s / %s |\n' "$N" "${R_OFFER[$N]}" "${R_RATE[$N]}" "${R_MINRATE[$N]}" \
      "${R_P50[$N]}" "${R_P99[$N]}" "${R_MAX[$N]}" "${R_QP50[$N]}" "${R_QP99[$N]}" "${R_QMAX[$N]}" "${R_ERR[$N]}" \
      "${R_CPU[$N]}" "${R_CPUQ[$N]}" "${R_SIMCPU[$N]}" "${R_SIMCPUQ[$N]}"
  done
)

LISTINGS=$(
  printf '| N nodes | `wulf node status` while reporting | `wulf node status` (ms) | `wulf node status -l > /dev/null` (ms) | `wulf node status --json > /dev/null` (ms) | after the sim stopped | wulfd VmHWM: create + boot / steady reporting / end (MiB) | wulfd VmRSS end (MiB) | wulf.redb at the end: size (allocated) (MiB) |\n'
  printf '|---:|---|---:|---:|---:|---|---:|---:|---:|\n'
  for N in "${SIZE_LIST[@]}"; do
    printf '| %s | %s | %s (%s) | %s (%s) | %s (%s) | %s | %s / %s / %s | %s | %s |\n' "$N" "${R_CHECK[$N]}" \
      "${L_MS[$N,status]}" "${L_HOW[$N,status]}" "${L_MS[$N,long]}" "${L_HOW[$N,long]}" "${L_MS[$N,json]}" "${L_HOW[$N,json]}" \
      "${R_DOWN[$N]}" "${R_HWMC[$N]}" "${R_HWMS[$N]}" "${R_HWME[$N]}" "${R_RSSE[$N]}" "${R_STORE[$N]}"
  done
)

LISTLAT=$(
  printf '| N nodes | listing | 5-s windows | window (s after boot) | reports/s | worst p50 (ms) | worst p99 (ms) | worst max (ms) |\n'
  printf '|---:|---|---:|---|---:|---:|---:|---:|\n'
  for N in "${SIZE_LIST[@]}"; do
    printf '| %s | `wulf node status` (check + timing) | %s |\n' "$N" "${LW[$N,status]}"
    printf '| %s | `wulf node status -l` | %s |\n' "$N" "${LW[$N,long]}"
    printf '| %s | `wulf node status --json` | %s |\n' "$N" "${LW[$N,json]}"
  done
)

DIAG=$(
  printf '| N nodes | nodes polling for commands (--polls) | sim create + boot (s) | wulf.redb after boot / at the end: size (allocated) (MiB) | `wulf node status --json` output (MB) | reports in the whole run | whole run rate (reports/s) | steady 5-s windows (without listing) | CPU used by other processes, steady window | listings inside the steady window |\n'
  printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'
  for N in "${SIZE_LIST[@]}"; do
    printf '| %s | %s | %s | %s / %s | %s | %s | %s | %s (%s) | %s%% | %s |\n' "$N" "${R_POLLS[$N]}" "${R_BOOT[$N]}" "${R_STORE0[$N]}" "${R_STORE[$N]}" "${R_JSONB[$N]}" "${R_TOTAL[$N]}" "${R_WRATE[$N]}" "${R_NWIN[$N]}" "${R_QNWIN[$N]}" \
      "${R_OTHER[$N]}" "$([[ ${R_LATE[$N]} == 0 ]] && echo yes || echo 'no: ran past its end')"
  done
)

VERDICT=""
if [[ -n "${R_RATE[100000]:-}" ]]; then
  TARGETS=$(
    printf '| target (100,000 nodes, 10 s interval) | measured | ratio to the target | |\n|---|---:|---:|---|\n'
    printf '| sustained ≥ 9,900 reports/s (10,000 offered) | %s reports/s | %s (achieved / 10,000) | %s |\n' "${R_RATE[100000]}" \
      "$(awk -v r="${R_RATE[100000]}" 'BEGIN { printf "%.3f", r / 10000 }')" "$(awk -v r="${R_RATE[100000]}" 'BEGIN { print (r >= 9900) ? "meets" : "MISSES" }')"
    printf '| report latency p99 < 50 ms (whole run) | %s ms | %s (50 ms / p99) | %s |\n' "${R_P99[100000]}" \
      "$(awk -v p="${R_P99[100000]}" 'BEGIN { printf "%.1f", (p > 0 ? 50 / p : 0) }')" "$(awk -v p="${R_P99[100000]}" 'BEGIN { print (p < 50) ? "meets" : "MISSES" }')"
    printf '| correct status table | %s, then %s | - | %s |\n' "${R_CHECK[100000]}" "${R_DOWN[100000]}" \
      "$([[ -z "${R_WRONG[100000]:-}" ]] && echo meets || echo MISSES)"
  )
  if [[ -z "${R_WRONG[100000]:-}" ]] && awk -v r="${R_RATE[100000]}" -v p="${R_P99[100000]}" 'BEGIN { exit !(r >= 9900 && p < 50) }'; then
    VERDICT="meets"
  else
    VERDICT="misses"
  fi
else
  TARGETS="| target | not run (N=100000 not in SIZES) |"$'\n''|---|---|'
fi

INTERFERENCE=$(interference)

SEC="$TMP/section.md"
{
  echo "$HEADING"
  echo
  echo "- Date: $DATE"
  echo "- Machine: $NPROC cores (\`nproc\`), $CPU_MODEL, $MEM_TOTAL RAM, kernel $(uname -r). wulfd, \`wulf sim\` and the listings share the $NPROC cores."
  echo "- Command: \`$CMD\` (from the repository root), $((T_END - T_START)) s in all"
  echo "- Software: $WULF_VERSION (target/release as built: wulfd built $BUILT, repository at $GIT_REV), $HF_VERSION"
  echo "- Load: loadavg $LOAD_START at start, $LOAD_END at end; concurrent compile/QEMU: $INTERFERENCE"
  echo
  echo "Intake (offered = N / 10 s):"
  echo
  echo "$TABLE"
  echo
  echo "Status listings while the nodes report, and memory:"
  echo
  echo "$LISTINGS"
  echo
  echo "Report latency in the 5-s windows each listing touched (the sim's per-window figures; reports/s is the window's mean):"
  echo
  echo "$LISTLAT"
  echo
  echo "Diagnostics:"
  echo
  echo "$DIAG"
  echo
  echo "No peer program speaks this protocol, so the ratios are to the targets, not to another tool (ratio ≥ 1 meets the target):"
  echo
  echo "$TARGETS"
  echo
  if [[ -n "$VERDICT" ]]; then
    echo "Target (100,000 nodes at 10,000 reports/s on this $NPROC-core machine, p99 < 50 ms, correct status table): $VERDICT."
    echo
  fi
  echo "Method:"
  echo
  echo "- Each N gets a fresh \`wulfd --config CFG\` (CFG: data_dir = NEW, listen = 127.0.0.1:PORT, log = warn, [dhcp], [tftp] and [dns] enabled = false; embedded redb store). The CLI talks to it through WULF_URL and WULF_TOKEN (the admin token)."
  echo "- Load: \`wulf sim --nodes N --boot-secs $BOOT_SECS --duration $DURATION --stats $STATS_SECS --connections $CONNECTIONS --polls P\` (one process, $CONNECTIONS worker threads; like wulf-agent, every report opens a new connection, TLS resumed with a session ticket; P nodes, the first by index, also keep a command long poll open as agents do (\`GET /api/v1/node/commands?wait=25\`, one kept-alive connection each, async tasks on two threads; each node's first poll follows its first report); P per N is in the diagnostics table, with the open-file limit that set it: $FILES, was $FILES_BEFORE). It creates the N simulated nodes (POSTs of 10,000), boots each by fetching its iPXE script from the head (the credential comes from the script), then each node reports every 10 s (\`_status_secs\` default) with its own node credential, first reports spread at random over $BOOT_SECS s; a late report is sent at once and the next one stays on its 10-s schedule. Latency = from the time the report was due (its 10-s slot) to the head's answer, so time a report waited for its worker counts (no coordinated omission), connection and TLS handshake included. At --duration every node sends a clean-shutdown report."
  echo "- Windows: the sim's stderr is timestamped line by line as it arrives; a stats line covers the time since the previous one (≈ 5 s). Steady window: ${STEADY_FROM} s after the sim printed \"booted\" until $STEADY_TO s (10 s before its end); a 5-s window belongs to it if its midpoint does. Sustained = mean of the steady windows' reports/s; \"no listing\" excludes windows that overlap a listing. Whole-run p50/p99/max/errors are the sim's final line (every report after the boots, listings included; shutdown reports excluded)."
  echo "- CPU: utime+stime of wulfd and of \`wulf sim\` (all threads) from /proc/PID/stat over the steady window ($STEADY_FROM–$STEADY_TO s) and over its reporting-only part ($STEADY_FROM–$LIST_AT s), 100 % = one core. \"Other processes\" = machine busy time (/proc/stat) minus wulfd, the sim, this script and its children (listings, hyperfine) over the steady window, as a share of all $NPROC cores."
  echo "- Listings, from $LIST_AT s, each kind starting just after a stats line: \`wulf node status\` must print exactly one line \`up  N  n[0-(N-1)]\` (whitespace-insensitive; otherwise the table is recorded as WRONG with its states and counts, and the target missed); then each of \`wulf node status\`, \`wulf node status -l > /dev/null\`, \`wulf node status --json > /dev/null\` is timed once with \`date +%s%N\`; if that took < $HF_MAX_MS ms, \`hyperfine -w 0 -r $RUNS\` follows (mean ± σ shown), otherwise the single run is the figure. End to end: CLI start, HTTP, decode, format."
  echo "- After the sim ends: \`wulf node status\` must print exactly \`down (clean shutdown)  N  n[0-(N-1)]\` (retried for up to 10 s, status writes are batched; otherwise recorded as WRONG) and \`wulf node status -l\` must list N nodes."
  echo "- Memory: wulfd VmHWM from /proc/PID/status when the sim prints \"booted\" (peak through node creation and boot), then reset with \`echo 5 > /proc/PID/clear_refs\`; read again before the listings (peak of steady reporting) and at the end (peak since the reset: includes the listings and the shutdown reports). VmRSS at the end. wulf.redb size (\`stat\`) and allocated space (\`du\`) when the sim prints \"booted\" and at the end; size of \`wulf node status --json\` after the stop (MB = 10^6 bytes). MiB = 1024 KiB."
  echo "- Targets: the ratios are achieved / 10,000 reports/s and 50 ms / whole-run p99, since no peer program exists to compare with."
  echo
} >"$SEC"

echo
cat "$SEC"
[[ -z "$VERDICT" ]] || log "target at 100,000 nodes: $VERDICT"

write_section "$HEADING" "$SEC"
