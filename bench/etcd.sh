#!/usr/bin/env bash
# etcd benchmark: bulk node creation and node status intake on a 3-member etcd shared by
# HEADS wulfd heads, against one wulfd on the embedded store, in one run on this machine.
#
# Stores, one after the other (never both at once):
#   embedded  one wulfd (embedded redb store, its own data dir)
#   etcd      a 3-member etcd cluster on loopback (Debian's etcd; each member its own data
#             dir under ETCD_DIR, started with the limits docs/admin/head.md asks for:
#             --max-txn-ops ETCD_MAX_TXN_OPS --max-request-bytes ETCD_MAX_REQUEST_BYTES
#             --quota-backend-bytes ETCD_QUOTA_BYTES), then HEADS wulfd heads on it
#             (--store etcd://m0,m1,m2, head_name head-a, head-b, ..., own data dirs and
#             ports, [db] quota_mib = the quota)
# Every wulfd: DHCP/TFTP/DNS disabled, listen 127.0.0.1:PORT (HTTPS, the cluster CA from its
# data dir's tls/ca.pem), log = warn, [limits] at their defaults (written out), the open-file
# limit raised to the hard limit beforehand (wulfd raises its soft limit to the hard one;
# /proc/PID/limits is recorded). The etcd members and the sim get the same limit.
#
# For each store:
#   1. Bulk create, for each C in CREATE_SIZES (default 1000 10000), BULK_RUNS times: time
#      `wulf node create --count C` (one call, wall time with date +%s%N, through head A on
#      etcd; a create etcd refuses as too large for one transaction is recorded as refused,
#      and that size is skipped), check every head lists C nodes (on etcd: how long after the
#      call each other head listed them, polled every 20 ms), time `wulf node --all delete`
#      the same way, check every head lists none. After the first create of each C:
#      `wulf node ls` and `wulf node ls --json > /dev/null` through each head with hyperfine
#      (-w 1 -r RUNS).
#   2. Status intake: `wulf sim --nodes NODES --boot-secs BOOT_SECS --duration DURATION
#      --stats 5 --connections CONNECTIONS --polls P` (on etcd with --heads A,B,...: node i
#      reports to head i mod HEADS), every node reporting every 10 s (offered NODES/10
#      reports/s). The sim creates the nodes (POSTs of 10,000) and boots them first; its
#      stderr is timestamped line by line, so the creation's time is known (from its
#      "creating" line to the boots' start). P nodes keep a command poll open: one open
#      file each in the sim and at their head, so P = POLLS, by default as many as leave
#      10,000 of the sim's open-file limit free (10,000 with this machine's hard limit of
#      20,000). Steady window: from 20 s after the sim printed "booted" until 15 s before
#      its end (>= 60 s with the default DURATION=95). Over it: sustained reports/s (mean of
#      the 5-s stats windows whose midpoint lies in it), lowest window, mean p50 / worst p99
#      / worst max of those windows; CPU (utime+stime from /proc/PID/stat, % of one core) of
#      each wulfd, each etcd member and the sim; CPU used by other processes (machine busy
#      time from /proc/stat minus ours). At its end: VmRSS and VmHWM of each wulfd and etcd
#      member (wulfd's VmHWM reset with clear_refs when the sim booted its nodes, so it
#      covers intake only; etcd's is since its start). Store size when the sim has booted
#      its nodes and at the end (after the shutdown reports): etcd's dbSize and dbSizeInUse
#      per member (`etcdctl endpoint status -w json`) and du of each data dir; embedded:
#      wulf.redb size and allocated. Then, through EVERY head, `wulf node status` must
#      print exactly `up NODES n[0-(NODES-1)]` (timed, single run; otherwise its states and
#      counts are recorded). Whole-run p50/p99/max, errors and failovers and the reports
#      each head took are the sim's final lines. After the sim stops (clean shutdown
#      reports), every head must show `down (clean shutdown) NODES ...` (retried for up to
#      20 s).
# Prints the tables, the ratios etcd / embedded and the check (NODES nodes through HEADS
# heads on etcd: >= 99 % of the offered reports/s sustained, no errors, every head showing
# every node up), and writes the section "## etcd: status intake and bulk create, 3-member
# etcd vs embedded (bench/etcd.sh)" of bench/RESULTS.md (other sections kept).
#
# Environment:
#   NODES=10000          simulated nodes for the intake
#   HEADS=3              wulfd heads on etcd (1 to 26: head-a to head-z)
#   CREATE_SIZES="1000 10000"   bulk create sizes
#   BULK_RUNS=3          create + delete rounds per size (the table shows the median)
#   DURATION=95          sim --duration, seconds of reporting after the boots (>= 40; the
#                        steady window is DURATION - 35 s)
#   BOOT_SECS=10         sim --boot-secs
#   BOOT_MAX=900         seconds the sim may take to create and boot its nodes
#   CONNECTIONS=64       sim --connections
#   POLLS=N              sim --polls (default: NODES, fewer if the open-file limit is short)
#   RUNS=5               hyperfine runs per listing (after 1 warm-up)
#   ETCD_MAX_TXN_OPS=65536  ETCD_MAX_REQUEST_BYTES=16777216  ETCD_QUOTA_BYTES=8589934592
#                        etcd's transaction limits and space quota (8 GiB)
#   ETCD_DIR=/tmp        where the etcd members' data dirs go (e.g. /dev/shm for tmpfs; etcd
#                        fsyncs, so the file system matters; it is recorded in the results)
#   STORES="embedded etcd"   which stores to run, in this order
#   WRITE_RESULTS=0      do not touch bench/RESULTS.md
#   SKIP_BUILD=1         never build (default: build target/release with the etcd feature if
#                        the binaries are missing or were built without it)
# Uses only 127.0.0.1. Runs as root non-interactively (package installs, clear_refs). Stops
# every process it started and removes its temp dir on exit. About 4 minutes on 2 cores
# with the defaults; about 9 with NODES=100000. Every CLI call is bounded (2 min), as are
# hyperfine (10 min), the boots (BOOT_MAX) and every wait for a head, etcd or the sim.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RESULTS_FILE="$SCRIPT_DIR/RESULTS.md"
HEADING="## etcd: status intake and bulk create, 3-member etcd vs embedded (bench/etcd.sh)"

CMD=""
for v in NODES HEADS CREATE_SIZES BULK_RUNS DURATION BOOT_SECS BOOT_MAX CONNECTIONS POLLS RUNS ETCD_MAX_TXN_OPS ETCD_MAX_REQUEST_BYTES ETCD_QUOTA_BYTES ETCD_DIR STORES SKIP_BUILD WRITE_RESULTS; do
  if [[ -n "${!v:-}" ]]; then CMD+="$v=$(printf %q "${!v}") "; fi
done
CMD+="bash bench/etcd.sh"
if (($#)); then CMD+=" $*"; fi

NODES=${NODES:-10000}
HEADS=${HEADS:-3}
BOOT_MAX=${BOOT_MAX:-900}
read -r -a CREATE_LIST <<<"${CREATE_SIZES:-1000 10000}"
BULK_RUNS=${BULK_RUNS:-3}
DURATION=${DURATION:-95}
BOOT_SECS=${BOOT_SECS:-10}
CONNECTIONS=${CONNECTIONS:-64}
RUNS=${RUNS:-5}
ETCD_DIR=${ETCD_DIR:-/tmp}
ETCD_MAX_TXN_OPS=${ETCD_MAX_TXN_OPS:-65536}
ETCD_MAX_REQUEST_BYTES=${ETCD_MAX_REQUEST_BYTES:-16777216}
ETCD_QUOTA_BYTES=${ETCD_QUOTA_BYTES:-8589934592}
read -r -a STORE_LIST <<<"${STORES:-embedded etcd}"
STATS_SECS=5
CLI_MAX=120
STEADY_FROM=20
STEADY_TO=$((DURATION - 15))
OFFERED=$((NODES / 10))

log() { printf '[etcd.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
source "$SCRIPT_DIR/lib.sh"
[[ $(id -u) == 0 ]] || die "run as root (package installs, /proc/PID/clear_refs)"
[[ "$DURATION" =~ ^[0-9]+$ ]] && ((DURATION >= 40)) || die "DURATION must be an integer >= 40"
[[ "$NODES" =~ ^[0-9]+$ ]] && ((NODES >= 10)) || die "NODES must be an integer >= 10"
[[ "$BULK_RUNS" =~ ^[0-9]+$ ]] && ((BULK_RUNS >= 1)) || die "BULK_RUNS must be >= 1"
[[ "$HEADS" =~ ^[0-9]+$ ]] && ((HEADS >= 1 && HEADS <= 26)) || die "HEADS must be an integer from 1 to 26"
[[ "$BOOT_MAX" =~ ^[0-9]+$ ]] && ((BOOT_MAX >= 10)) || die "BOOT_MAX must be an integer >= 10 (seconds)"
[[ "$ETCD_QUOTA_BYTES" =~ ^[0-9]+$ ]] && ((ETCD_QUOTA_BYTES >= 1048576)) || die "ETCD_QUOTA_BYTES must be bytes (>= 1 MiB)"
for s in "${STORE_LIST[@]}"; do [[ "$s" == embedded || "$s" == etcd ]] || die "bad store '$s'"; done
for c in "${CREATE_LIST[@]}"; do [[ "$c" =~ ^[0-9]+$ ]] && ((c > 0)) || die "bad create size '$c'"; done
T_START=$(date +%s)

# ---------------------------------------------------------------- tools
install_missing etcd=etcd-server etcdctl=etcd-client hyperfine=hyperfine curl=curl

cargo_on_path
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# A wulfd built without the etcd feature carries this refusal message.
NO_ETCD_MSG="built without the etcd store"
if [[ ! -x "$TARGET_DIR/release/wulfd" || ! -x "$TARGET_DIR/release/wulf" ]] ||
  grep -qF "$NO_ETCD_MSG" "$TARGET_DIR/release/wulfd"; then
  [[ "${SKIP_BUILD:-0}" != 1 ]] || die "no wulfd with the etcd feature in $TARGET_DIR/release (SKIP_BUILD=1)"
  log "building: cargo build --release --workspace --features wulfd/etcd,wulf-store/etcd"
  (cd "$ROOT" && cargo build --release --workspace --features wulfd/etcd,wulf-store/etcd) || die "cargo build failed"
fi
grep -qF "$NO_ETCD_MSG" "$TARGET_DIR/release/wulfd" && die "$TARGET_DIR/release/wulfd was built without the etcd feature"

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d /tmp/wulf-bench-etcd.XXXXXX)
mkdir -p "$ETCD_DIR"
ETCD_TMP=$(mktemp -d "$ETCD_DIR/wulf-bench-etcd-data.XXXXXX")
mkdir "$TMP/bin"
# Private copies, so a concurrent rebuild of target/ cannot swap binaries mid-run.
cp "$TARGET_DIR/release/wulfd" "$TARGET_DIR/release/wulf" "$TMP/bin/"
WULFD="$TMP/bin/wulfd"
WULF="$TMP/bin/wulf"
declare -a ETCD_PIDS=() HEAD_PIDS=() HEAD_URLS=() HEAD_NAMES=() HEAD_DIRS=() ETCD_CLIENT=() ETCD_DATA=()
SIM_PID=""
TS_PID=""

stop_pid() { # pid [tenths]
  [[ -n "$1" ]] || return 0
  kill "$1" 2>/dev/null || true
  wait_gone "$1" "${2:-50}"
  wait "$1" 2>/dev/null || true
}
stop_sim() {
  if [[ -n "$SIM_PID" ]]; then stop_pid "$SIM_PID" 150; SIM_PID=""; fi
  if [[ -n "$TS_PID" ]]; then stop_pid "$TS_PID" 20; TS_PID=""; fi
}
stop_heads() {
  local p
  for p in "${HEAD_PIDS[@]}"; do stop_pid "$p"; done
  HEAD_PIDS=() HEAD_URLS=() HEAD_NAMES=() HEAD_DIRS=()
}
stop_etcd() {
  local p
  for p in "${ETCD_PIDS[@]}"; do stop_pid "$p"; done
  ETCD_PIDS=() ETCD_CLIENT=() ETCD_DATA=()
}
cleanup() {
  local rc=$?
  stop_child
  stop_sim
  stop_heads
  stop_etcd
  rm -rf "$TMP" "$ETCD_TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }
kb_to_mib() { awk -v k="${1:-0}" 'BEGIN { printf "%.0f", k / 1024 }'; }
b_to_mib() { awk -v b="${1:-0}" 'BEGIN { printf "%.1f", b / 1048576 }'; }
vm() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$2/status" 2>/dev/null || echo 0; } # FIELD PID -> kB
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
CLK_TCK=$(getconf CLK_TCK)
cpu_pct() { awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / (t1 - t0) }'; }
# status summary, whitespace-normalised
norm() { sed 's/[[:space:]]\+/ /g; s/^ //; s/ $//' | sed '/^$/d'; }
# the CLI, bounded in time (one call of it never takes a minute here)
cli() { timeout "$CLI_MAX" "$WULF" "$@"; }
count_nodes() { # URL -> number of nodes `wulf node ls` lists
  local out
  out=$(cli --url "$1" node ls 2>&1) || { log "wulf node ls at $1: $out"; echo -1; return 0; }
  tail -n +2 <<<"$out" | grep -c . || true
}

start_etcd() {
  local i cluster="" peers=() dir
  for i in 0 1 2; do
    ETCD_CLIENT[i]=$(pick_port)
    peers[i]=$(pick_port)
    cluster+="${cluster:+,}m$i=http://127.0.0.1:${peers[i]}"
  done
  for i in 0 1 2; do
    dir="$ETCD_TMP/m$i"
    ETCD_DATA[i]=$dir
    etcd --name "m$i" --data-dir "$dir" \
      --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[i]}" --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[i]}" \
      --listen-peer-urls "http://127.0.0.1:${peers[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${peers[i]}" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "wulf-bench-$$" \
      --max-txn-ops "$ETCD_MAX_TXN_OPS" --max-request-bytes "$ETCD_MAX_REQUEST_BYTES" \
      --quota-backend-bytes "$ETCD_QUOTA_BYTES" --log-level warn \
      >"$TMP/etcd-m$i.log" 2>&1 &
    ETCD_PIDS[i]=$!
  done
  for ((t = 0; t < 300; t++)); do
    local ok=0
    for i in 0 1 2; do
      kill -0 "${ETCD_PIDS[i]}" 2>/dev/null || { tail -n 20 "$TMP/etcd-m$i.log" >&2; die "etcd member m$i exited at start"; }
      curl -s --max-time 1 "http://127.0.0.1:${ETCD_CLIENT[i]}/health" | grep -q '"health":"true"' && ok=$((ok + 1))
    done
    ((ok == 3)) && return 0
    sleep 0.1
  done
  die "the etcd cluster did not become healthy within 30 s"
}
etcd_endpoints() { echo "etcd://127.0.0.1:${ETCD_CLIENT[0]},127.0.0.1:${ETCD_CLIENT[1]},127.0.0.1:${ETCD_CLIENT[2]}"; }
# "dbSize dbSizeInUse" of member I, in bytes (etcdctl endpoint status -w json)
etcd_db() {
  local j
  j=$(timeout 10 etcdctl --endpoints "127.0.0.1:${ETCD_CLIENT[$1]}" --command-timeout 5s endpoint status -w json 2>/dev/null) || { echo "- -"; return 0; }
  echo "$(grep -o '"dbSize":[0-9]*' <<<"$j" | cut -d: -f2) $(grep -o '"dbSizeInUse":[0-9]*' <<<"$j" | cut -d: -f2)"
}
# the store's size now, one line for the results
store_size() { # STORE
  local i out="" db
  if [[ "$1" == etcd ]]; then
    for i in "${!ETCD_PIDS[@]}"; do
      read -r -a db <<<"$(etcd_db "$i")"
      out+="${out:+; }m$i $(b_to_mib "${db[0]:-}") ($(b_to_mib "${db[1]:-}")), dir $(du -sm "${ETCD_DATA[i]}" | cut -f1)"
    done
    echo "$out"
  else
    local f="${HEAD_DIRS[0]}/wulf.redb"
    echo "wulf.redb $(b_to_mib "$(stat -c %s "$f")") MiB ($(du -m "$f" | cut -f1) MiB allocated)"
  fi
}
open_files() { awk '/^Max open files/ { print $4 "/" $5 }' "/proc/$1/limits" 2>/dev/null || echo "?"; } # soft/hard

start_head() { # NAME [STORE]
  local name=$1 store=${2:-} port dir cfg i
  port=$(pick_port)
  dir="$TMP/head-$name"
  cfg="$dir.toml"
  mkdir -p "$dir"
  {
    [[ -z "$store" ]] || echo "head_name = \"$name\""
    echo "data_dir = \"$dir\""
    echo "listen = \"127.0.0.1:$port\""
    echo 'log = "warn"'
    printf '[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n'
    # docs/admin/head.md's defaults, written out: the connection cap follows the open-file limit
    printf '[limits]\nhead_timeout_secs = 10\nidle_timeout_secs = 60\nmax_connections = 0\n'
    [[ -z "$store" ]] || printf '[db]\nquota_mib = %s\n' "$((ETCD_QUOTA_BYTES / 1048576))"
  } >"$cfg"
  if [[ -n "$store" ]]; then
    "$WULFD" --config "$cfg" --store "$store" >"$dir.log" 2>&1 &
  else
    "$WULFD" --config "$cfg" >"$dir.log" 2>&1 &
  fi
  local pid=$!
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      cat "$dir.log" >&2
      die "wulfd $name exited at start"
    fi
    if [[ -s "$dir/admin.token" && -s "$dir/tls/ca.pem" ]] && curl -s -o /dev/null --max-time 2 --cacert "$dir/tls/ca.pem" "https://127.0.0.1:$port/"; then
      HEAD_PIDS+=("$pid") HEAD_URLS+=("https://127.0.0.1:$port") HEAD_NAMES+=("$name") HEAD_DIRS+=("$dir")
      return 0
    fi
    sleep 0.1
  done
  die "wulfd $name did not come up on 127.0.0.1:$port"
}
heads_alive() {
  local i
  for i in "${!HEAD_PIDS[@]}"; do
    kill -0 "${HEAD_PIDS[i]}" 2>/dev/null && continue
    log "wulfd ${HEAD_NAMES[i]} log tail:"; tail -n 30 "${HEAD_DIRS[i]}.log" >&2 || true
    die "wulfd ${HEAD_NAMES[i]} died"
  done
  for i in "${!ETCD_PIDS[@]}"; do
    kill -0 "${ETCD_PIDS[i]}" 2>/dev/null || { tail -n 30 "$TMP/etcd-m$i.log" >&2; die "etcd member m$i died"; }
  done
}
# a status table's states and counts, hostlists left out: "up 83702; down (…) 16298"
states() { sed -E 's/ [^ ]+$//' | paste -sd ';' | sed 's/;/; /g'; }

# hyperfine CSV (command,mean,stddev,...) -> "mean ± sd" ms
hf_ms() { awk -F, -v n="$2" '$1 == n { printf "%.1f ± %.1f", $2 * 1000, $3 * 1000 }' "$1"; }


# ---------------------------------------------------------------- machine
NPROC=$(nproc)
machine_facts
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
ETCD_VERSION=$(etcd --version 2>/dev/null | awk '/^etcd Version/ { print $3; exit }')
ETCD_FS=$(findmnt -n -o FSTYPE -T "$ETCD_TMP" 2>/dev/null || echo unknown)
ETCD_SRC=$(findmnt -n -o SOURCE -T "$ETCD_TMP" 2>/dev/null || echo unknown)
DATA_FS=$(findmnt -n -o FSTYPE -T "$TMP" 2>/dev/null || echo unknown)
WULF_VERSION=$("$WULF" --version 2>/dev/null || echo unknown)
BUILT=$(date -u -r "$TARGET_DIR/release/wulfd" '+%Y-%m-%d %H:%M UTC')
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
  GIT_REV+=" with uncommitted changes under crates/"
fi
HF_VERSION=$(hyperfine --version 2>/dev/null || echo unknown)
log "machine: $NPROC cores, $CPU_MODEL, $MEM_TOTAL; etcd $ETCD_VERSION, member data on $ETCD_FS ($ETCD_SRC); loadavg $LOAD_START"
sample_interference start
# Open files: every command poll holds one in the sim and one at its head; wulfd raises its
# soft limit to the hard one itself, the sim as far as it needs. Raise the shell's (inherited
# by every process started here) to what NODES polls want, or as far as the hard limit allows.
FILES_BEFORE="$(ulimit -n) (hard $(ulimit -Hn))"
FILES_WANT=$((NODES + 10000))
if (($(ulimit -n) < FILES_WANT)); then
  ulimit -n "$FILES_WANT" 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
fi
FILES=$(ulimit -n)
MAX_POLLS=$((FILES > 10000 ? FILES - 10000 : 0))
if [[ -n "${POLLS:-}" ]]; then
  [[ "$POLLS" =~ ^[0-9]+$ ]] || die "POLLS must be a number"
  ((POLLS <= MAX_POLLS)) || die "POLLS=$POLLS needs more open files than the limit $FILES allows (10,000 kept for the rest)"
fi
P_POLLS=${POLLS:-$MAX_POLLS}
((P_POLLS <= NODES)) || P_POLLS=$NODES
log "open-file limit $FILES (was $FILES_BEFORE; $FILES_WANT wanted): $P_POLLS of $NODES nodes poll for commands"

declare -A I_FILES I_CREATE I_STORE0 REFUSED I_NAMES NHEADS B_CREATE B_DELETE B_SEEN B_LS B_LSJ \
  I_RATE I_MIN I_NWIN I_WP50 I_WP99 I_WMAX I_P50 I_P99 I_MAX I_ERR I_FAIL I_TOTAL I_PERHEAD I_BOOT \
  I_CPU I_RSS I_HWM I_SIMCPU I_OTHER I_STORE I_UP I_UPMS I_DOWN I_HEADS I_LASTERR

# ---------------------------------------------------------------- bulk create
bulk() { # STORE
  local st=$1 c r t0 ms i k n admin=${HEAD_URLS[0]} creates deletes seen out last
  for c in "${CREATE_LIST[@]}"; do
    creates="" deletes="" seen="" last=""
    for ((r = 1; r <= BULK_RUNS; r++)); do
      heads_alive
      sample_interference "create $c on $st"
      t0=$(now_ns)
      if ! out=$(cli --url "$admin" node create --count "$c" 2>&1); then
        [[ "$out" == *"too large for one database transaction"* ]] || die "wulf node create --count $c on $st: $out"
        # the store refused it whole: record that, check nothing was written, next size
        log "$st: create --count $c REFUSED after $(ms_since "$t0") ms: $out"
        creates="refused"
        REFUSED[$st,$c]=$out
        n=$(count_nodes "$admin")
        [[ "$n" == 0 ]] || die "$st: a refused create left $n nodes"
        break
      fi
      ms=$(ms_since "$t0")
      creates+="$ms "
      # every head lists them (the others through etcd's watch), timed from the end of the call
      t0=$(now_ns)
      for i in "${!HEAD_URLS[@]}"; do
        for ((k = 0; ; k++)); do
          n=$(count_nodes "${HEAD_URLS[i]}")
          [[ "$n" == "$c" ]] && break
          ((k < 500)) || die "${HEAD_NAMES[i]} lists $n nodes after creating $c on $st"
          sleep 0.02
        done
        if ((i > 0)); then last=$(ms_since "$t0"); seen+="$last "; fi
      done
      log "$st: create --count $c: $ms ms (run $r)${last:+; listed by the last head after $last ms (including one listing)}"
      if ((r == 1)); then
        for i in "${!HEAD_URLS[@]}"; do
          run_child timeout 600 hyperfine -N -w 1 -r "$RUNS" --style basic --export-csv "$TMP/hf.csv" \
            -n ls "$WULF --url ${HEAD_URLS[i]} node ls" \
            -n json "$WULF --url ${HEAD_URLS[i]} node ls --json" >"$TMP/hf.txt" 2>&1 ||
            { cat "$TMP/hf.txt" >&2; die "hyperfine failed"; }
          B_LS[$st,$c,$i]=$(hf_ms "$TMP/hf.csv" ls)
          B_LSJ[$st,$c,$i]=$(hf_ms "$TMP/hf.csv" json)
          log "$st: ${HEAD_NAMES[i]} with $c nodes: wulf node ls ${B_LS[$st,$c,$i]} ms, --json ${B_LSJ[$st,$c,$i]} ms"
        done
      fi
      t0=$(now_ns)
      out=$(cli --url "$admin" node --all delete 2>&1) || die "wulf node --all delete of $c nodes on $st: $out"
      ms=$(ms_since "$t0")
      deletes+="$ms "
      for i in "${!HEAD_URLS[@]}"; do
        for ((k = 0; ; k++)); do
          n=$(count_nodes "${HEAD_URLS[i]}")
          [[ "$n" == 0 ]] && break
          ((k < 500)) || die "${HEAD_NAMES[i]} still lists $n nodes after deleting all on $st"
          sleep 0.02
        done
      done
      log "$st: node --all delete of $c: $ms ms"
    done
    if [[ "$creates" == refused ]]; then
      B_CREATE[$st,$c]="refused (HTTP 413)"
      B_DELETE[$st,$c]="-"
      B_SEEN[$st,$c]="-"
      for i in "${!HEAD_URLS[@]}"; do B_LS[$st,$c,$i]="-"; B_LSJ[$st,$c,$i]="-"; done
      continue
    fi
    B_CREATE[$st,$c]="$(median <<<"$creates") ($(tr -s ' ' <<<"${creates% }" | sed 's/ /, /g'))"
    B_DELETE[$st,$c]="$(median <<<"$deletes") ($(tr -s ' ' <<<"${deletes% }" | sed 's/ /, /g'))"
    B_SEEN[$st,$c]=${seen:+$(median <<<"$seen")}
  done
}

# ---------------------------------------------------------------- status intake
intake() { # STORE
  local st=$1 i k heads simlog fifo tb t0 t2 final want got ok cb0 ct0 cb1 ct1 cs0 cs1
  heads=$(IFS=,; echo "${HEAD_URLS[*]}")
  simlog="$TMP/sim-$st.log"
  fifo="$TMP/sim-$st.fifo"
  mkfifo "$fifo"
  : >"$simlog"
  timestamp_lines <"$fifo" >>"$simlog" &
  TS_PID=$!
  log "$st: wulf --url ${HEAD_URLS[0]} sim --heads $heads --nodes $NODES --boot-secs $BOOT_SECS --duration $DURATION --stats $STATS_SECS --connections $CONNECTIONS --polls $P_POLLS"
  "$WULF" --url "${HEAD_URLS[0]}" sim --heads "$heads" --nodes "$NODES" --boot-secs "$BOOT_SECS" \
    --duration "$DURATION" --stats "$STATS_SECS" --connections "$CONNECTIONS" --polls "$P_POLLS" >"$TMP/sim-$st.out" 2>"$fifo" &
  SIM_PID=$!
  local tw0
  tw0=$(date +%s)
  for ((i = 0; ; i++)); do
    grep -q 'simulated nodes booted' "$simlog" && break
    kill -0 "$SIM_PID" 2>/dev/null || { cat "$simlog" >&2; die "wulf sim exited before booting the nodes"; }
    if ((i % 10 == 0)); then heads_alive; fi
    (($(date +%s) - tw0 < BOOT_MAX)) || die "the sim did not create and boot $NODES nodes within BOOT_MAX=$BOOT_MAX s (on $st)"
    sleep 0.1
  done
  tb=$(awk '/simulated nodes booted/ { print $1; exit }' "$simlog")
  I_BOOT[$st]=$(awk '/simulated nodes booted/ { for (i = 1; i <= NF; i++) if ($i == "in") { print $(i + 1); exit } }' "$simlog")
  # creation: from the sim's "creating" line to the start of the boots (booted line less their time)
  I_CREATE[$st]=$(awk -v tb="$tb" -v b="${I_BOOT[$st]}" '/ creating [0-9]+ simulated nodes/ { printf "%.1f", tb - b - $1; f = 1; exit } END { if (!f) print "-" }' "$simlog")
  for i in "${!HEAD_PIDS[@]}"; do echo 5 >"/proc/${HEAD_PIDS[i]}/clear_refs" 2>/dev/null || true; done
  sample_interference "$st intake start"
  I_STORE0[$st]=$(store_size "$st")
  log "$st: $NODES nodes created in ${I_CREATE[$st]} s and booted in ${I_BOOT[$st]} s; store: ${I_STORE0[$st]}"
  I_FILES[$st,sim]=$(open_files "$SIM_PID")
  for i in "${!HEAD_PIDS[@]}"; do I_FILES[$st,h$i]=$(open_files "${HEAD_PIDS[i]}"); done
  for i in "${!ETCD_PIDS[@]}"; do I_FILES[$st,e$i]=$(open_files "${ETCD_PIDS[i]}"); done

  sleep_until "$(awk -v t="$tb" -v d="$STEADY_FROM" 'BEGIN { printf "%.3f", t + d }')"
  heads_alive
  local -A c0
  for i in "${!HEAD_PIDS[@]}"; do c0[h$i]=$(cpu_ticks "${HEAD_PIDS[i]}"); done
  for i in "${!ETCD_PIDS[@]}"; do c0[e$i]=$(cpu_ticks "${ETCD_PIDS[i]}"); done
  c0[sim]=$(cpu_ticks "$SIM_PID")
  read -r cb0 ct0 < <(cpu_busy_total)
  cs0=$(cpu_self)
  t0=$(now)
  sleep_until "$(awk -v t="$tb" -v d="$((STEADY_FROM + (STEADY_TO - STEADY_FROM) / 2))" 'BEGIN { printf "%.3f", t + d }')"
  sample_interference "$st steady window"
  sleep_until "$(awk -v t="$tb" -v d="$STEADY_TO" 'BEGIN { printf "%.3f", t + d }')"
  heads_alive
  t2=$(now)
  local ours=0 d
  for i in "${!HEAD_PIDS[@]}"; do
    d=$(($(cpu_ticks "${HEAD_PIDS[i]}") - ${c0[h$i]})); ours=$((ours + d))
    I_CPU[$st,h$i]=$(cpu_pct 0 "$d" "$t0" "$t2")
    I_RSS[$st,h$i]=$(kb_to_mib "$(vm VmRSS "${HEAD_PIDS[i]}")")
    I_HWM[$st,h$i]=$(kb_to_mib "$(vm VmHWM "${HEAD_PIDS[i]}")")
  done
  for i in "${!ETCD_PIDS[@]}"; do
    d=$(($(cpu_ticks "${ETCD_PIDS[i]}") - ${c0[e$i]})); ours=$((ours + d))
    I_CPU[$st,e$i]=$(cpu_pct 0 "$d" "$t0" "$t2")
    I_RSS[$st,e$i]=$(kb_to_mib "$(vm VmRSS "${ETCD_PIDS[i]}")")
    I_HWM[$st,e$i]=$(kb_to_mib "$(vm VmHWM "${ETCD_PIDS[i]}")")
  done
  d=$(($(cpu_ticks "$SIM_PID") - ${c0[sim]})); ours=$((ours + d))
  I_SIMCPU[$st]=$(cpu_pct 0 "$d" "$t0" "$t2")
  read -r cb1 ct1 < <(cpu_busy_total)
  cs1=$(cpu_self)
  ours=$((ours + cs1 - cs0))
  I_OTHER[$st]=$(awk -v b0="$cb0" -v t0="$ct0" -v b1="$cb1" -v t1="$ct1" -v s="$ours" 'BEGIN {
    o = (b1 - b0) - s; if (o < 0) o = 0; printf "%.0f", (t1 > t0 ? 100 * o / (t1 - t0) : 0) }')
  log "$st steady window ($(fsub "$t2" "$t0") s): other processes ${I_OTHER[$st]} % of the machine"

  # every head shows every node up
  want="up $NODES n[0-$((NODES - 1))]"
  ok=yes
  for i in "${!HEAD_URLS[@]}"; do
    t0=$(now_ns)
    got=$(cli --url "${HEAD_URLS[i]}" node status 2>&1 | norm) || true
    I_UPMS[$st,$i]=$(ms_since "$t0")
    if [[ "$got" == "$want" ]]; then
      I_UP[$st,$i]="\`$want\`"
    else
      ok=no
      I_UP[$st,$i]="NOT ALL UP: $(states <<<"$got")"
      log "${HEAD_NAMES[i]}: wulf node status printed:"; head -n 10 <<<"$got" >&2
    fi
    log "$st: ${HEAD_NAMES[i]} wulf node status (${I_UPMS[$st,$i]} ms): $(head -c 300 <<<"$got")"
  done

  for ((i = 0; i < 1800; i++)); do kill -0 "$SIM_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SIM_PID" 2>/dev/null && die "the sim did not stop within 3 min of the end of the steady window"
  local src=0
  wait "$SIM_PID" || src=$?
  SIM_PID=""
  wait "$TS_PID" 2>/dev/null || true
  TS_PID=""
  ((src == 0)) || { tail -n 5 "$simlog" >&2; die "wulf sim exited with status $src"; }
  final=$(grep ' sim: .* reports in ' "$simlog" | tail -n 1) || die "the sim printed no summary"
  # sim: 600524 reports in 63.5 s (9455/s), latency p50 0.12 ms, p99 5.92 ms, max 413.5 ms, 0 errors, 0 failovers; ...
  read -r I_TOTAL[$st] I_P50[$st] I_P99[$st] I_MAX[$st] I_ERR[$st] I_FAIL[$st] < <(awk '{
    for (i = 1; i <= NF; i++) {
      if ($i == "sim:") n = $(i + 1)
      if ($i == "p50") p50 = $(i + 1)
      if ($i == "p99") p99 = $(i + 1)
      if ($i == "max") mx = $(i + 1)
      if ($i ~ /^errors/) e = $(i - 1)
      if ($i ~ /^failovers/) f = $(i - 1)
    }
    gsub(/,/, "", p50); gsub(/,/, "", p99)
    print n, p50, p99, mx, e, f }' <<<"$final")
  # e.g. "http://127.0.0.1:P took 50000 reports, has 5000 nodes; ...", heads named instead of their ports
  I_PERHEAD[$st]=$(grep ' sim: per head: ' "$simlog" | tail -n 1 | sed 's/^.* sim: per head: //' || true)
  for i in "${!HEAD_URLS[@]}"; do I_PERHEAD[$st]=${I_PERHEAD[$st]//"${HEAD_URLS[i]}"/"${HEAD_NAMES[i]}"}; done
  I_LASTERR[$st]=$(grep ' sim: last error: ' "$simlog" | tail -n 1 | sed 's/^.* sim: last error: //' || true)
  [[ -z "${I_LASTERR[$st]}" ]] || log "$st: sim last error: ${I_LASTERR[$st]}"

  # after the clean shutdown, through every head
  want="down (clean shutdown) $NODES n[0-$((NODES - 1))]"
  for i in "${!HEAD_URLS[@]}"; do
    for ((k = 0; k < 100; k++)); do
      got=$(cli --url "${HEAD_URLS[i]}" node status 2>&1 | norm) || true
      [[ "$got" == "$want" ]] && break
      sleep 0.2
    done
    if [[ "$got" == "$want" ]]; then
      I_DOWN[$st,$i]="\`$want\`"
    else
      ok=no
      I_DOWN[$st,$i]="WRONG after 20 s: $(states <<<"$got")"
    fi
    log "$st: ${HEAD_NAMES[i]} after the stop: $(head -c 300 <<<"$got")"
  done
  I_HEADS[$st]=$ok
  I_STORE[$st]=$(store_size "$st")
  log "$st: store at the end: ${I_STORE[$st]}"

  # the 5-s windows: (previous line's arrival, this line's arrival]
  read -r I_NWIN[$st] I_RATE[$st] I_MIN[$st] I_WP50[$st] I_WP99[$st] I_WMAX[$st] < <(
    awk -v tb="$tb" -v a="$STEADY_FROM" -v z="$STEADY_TO" '
      BEGIN { prev = tb }
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
        sp50 += p50; if (p99 > wp99) wp99 = p99; if (mx > wmx) wmx = mx
      }
      END { printf "%d %.0f %.0f %.2f %.2f %.1f\n", n, (n ? sum / n : 0), minr, (n ? sp50 / n : 0), wp99, wmx }' "$simlog")
  log "$st: steady ${I_NWIN[$st]} windows, mean ${I_RATE[$st]} reports/s (lowest ${I_MIN[$st]}), p50 ${I_WP50[$st]} ms, worst p99 ${I_WP99[$st]} ms, worst max ${I_WMAX[$st]} ms; whole run: ${final#* }"
  cp "$simlog" "/tmp/wulf-bench-etcd-last-sim-$st.log" 2>/dev/null || true
  rm -f "$fifo"
}

# ---------------------------------------------------------------- run
for st in "${STORE_LIST[@]}"; do
  log "=== $st ==="
  if [[ "$st" == etcd ]]; then
    start_etcd
    log "etcd members: client ports ${ETCD_CLIENT[*]} (data under $ETCD_TMP, $ETCD_FS)"
    for ((h = 0; h < HEADS; h++)); do
      start_head "head-$(printf "\\$(printf %03o $((97 + h)))")" "$(etcd_endpoints)"
      cmp -s "${HEAD_DIRS[0]}/admin.token" "${HEAD_DIRS[h]}/admin.token" || die "${HEAD_NAMES[h]} has another admin token than ${HEAD_NAMES[0]}"
      cmp -s "${HEAD_DIRS[0]}/tls/ca.pem" "${HEAD_DIRS[h]}/tls/ca.pem" || die "${HEAD_NAMES[h]} has another cluster CA than ${HEAD_NAMES[0]}"
    done
  else
    start_head embedded
  fi
  WULF_TOKEN=$(cat "${HEAD_DIRS[0]}/admin.token")
  WULF_CA="${HEAD_DIRS[0]}/tls/ca.pem"
  export WULF_TOKEN WULF_CA
  for i in "${!HEAD_URLS[@]}"; do
    store=$(cli --url "${HEAD_URLS[i]}" --json info | tr -d ' \n' | sed -n 's/.*"store":"\([^"]*\)".*/\1/p')
    [[ "$store" == "$st" ]] || die "${HEAD_NAMES[i]} reports store '$store', expected $st"
  done
  bulk "$st"
  intake "$st"
  for i in "${!HEAD_DIRS[@]}"; do
    if [[ -s "${HEAD_DIRS[i]}.log" ]]; then
      log "$st: ${HEAD_NAMES[i]} log (warn+), first lines:"; head -n 5 "${HEAD_DIRS[i]}.log" >&2
      cp "${HEAD_DIRS[i]}.log" "/tmp/wulf-bench-etcd-last-${HEAD_NAMES[i]}.log" 2>/dev/null || true
    fi
  done
  I_NAMES[$st]="${HEAD_NAMES[*]}"
  NHEADS[$st]=${#HEAD_PIDS[@]}
  stop_heads
  stop_etcd
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
sample_interference end
T_END=$(date +%s)

# ---------------------------------------------------------------- report
have() { [[ " ${STORE_LIST[*]} " == *" $1 "* ]]; }
ratio() { awk -v a="${1%% *}" -v b="${2%% *}" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }
sum_cpu() { # store prefix(h|e) -> sum
  local st=$1 p=$2 s=0 k
  for k in "${!I_CPU[@]}"; do if [[ "$k" == "$st,$p"* ]]; then s=$((s + ${I_CPU[$k]})); fi; done
  echo "$s"
}
sum_rss() {
  local st=$1 p=$2 s=0 k
  for k in "${!I_RSS[@]}"; do if [[ "$k" == "$st,$p"* ]]; then s=$((s + ${I_RSS[$k]})); fi; done
  echo "$s"
}

BULK=$(
  printf '| store | nodes | `wulf node create --count` (ms): median (runs) | `wulf node --all delete` (ms): median (runs) | listed by the other heads after (ms, median) | head | `wulf node ls` (ms) | `wulf node ls --json > /dev/null` (ms) |\n'
  printf '|---|---:|---:|---:|---:|---|---:|---:|\n'
  for st in "${STORE_LIST[@]}"; do
    read -r -a names <<<"${I_NAMES[$st]}"
    for c in "${CREATE_LIST[@]}"; do
      for i in "${!names[@]}"; do
        if ((i == 0)); then
          printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$st" "$c" "${B_CREATE[$st,$c]}" "${B_DELETE[$st,$c]}" "${B_SEEN[$st,$c]:--}" "${names[i]}" "${B_LS[$st,$c,$i]}" "${B_LSJ[$st,$c,$i]}"
        else
          printf '| | | | | | %s | %s | %s |\n' "${names[i]}" "${B_LS[$st,$c,$i]}" "${B_LSJ[$st,$c,$i]}"
        fi
      done
    done
  done
)

INTAKE=$(
  printf '| store | heads | offered (reports/s) | sustained, steady window (reports/s) | lowest 5-s window | steady: mean p50 / worst 5-s p99 / worst max (ms) | whole run: p50 / p99 / max (ms) | errors | failovers | reports per head (whole run, incl. shutdown reports), nodes per head at the end |\n'
  printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'
  for st in "${STORE_LIST[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s / %s / %s | %s / %s / %s | %s | %s | %s |\n' "$st" "${NHEADS[$st]}" "$OFFERED" "${I_RATE[$st]}" "${I_MIN[$st]}" \
      "${I_WP50[$st]}" "${I_WP99[$st]}" "${I_WMAX[$st]}" "${I_P50[$st]}" "${I_P99[$st]}" "${I_MAX[$st]}" "${I_ERR[$st]}" "${I_FAIL[$st]}" "${I_PERHEAD[$st]:-all on one head}"
  done
)

RESOURCES=$(
  printf '| store | process | CPU, steady window (%% of one core) | VmRSS at the end of the window (MiB) | VmHWM (MiB) | open files: soft / hard limit |\n'
  printf '|---|---|---:|---:|---:|---:|\n'
  for st in "${STORE_LIST[@]}"; do
    read -r -a names <<<"${I_NAMES[$st]}"
    for i in "${!names[@]}"; do
      printf '| %s | wulfd %s | %s | %s | %s | %s |\n' "$st" "${names[i]}" "${I_CPU[$st,h$i]}" "${I_RSS[$st,h$i]}" "${I_HWM[$st,h$i]}" "${I_FILES[$st,h$i]}"
    done
    if [[ "$st" == etcd ]]; then
      for i in 0 1 2; do
        printf '| %s | etcd member m%s | %s | %s | %s | %s |\n' "$st" "$i" "${I_CPU[$st,e$i]}" "${I_RSS[$st,e$i]}" "${I_HWM[$st,e$i]}" "${I_FILES[$st,e$i]}"
      done
    fi
    printf '| %s | **all server processes** | **%s** | **%s** | | |\n' "$st" "$(($(sum_cpu "$st" h) + $(sum_cpu "$st" e)))" "$(($(sum_rss "$st" h) + $(sum_rss "$st" e)))"
    printf '| %s | `wulf sim` | %s | | | %s |\n' "$st" "${I_SIMCPU[$st]}" "${I_FILES[$st,sim]}"
  done
)

CHECKS=$(
  printf '| store | head | `wulf node status` while reporting | its time (ms, 1 run) | after the sim stopped |\n'
  printf '|---|---|---|---:|---|\n'
  for st in "${STORE_LIST[@]}"; do
    read -r -a names <<<"${I_NAMES[$st]}"
    for i in "${!names[@]}"; do
      printf '| %s | %s | %s | %s | %s |\n' "$st" "${names[i]}" "${I_UP[$st,$i]}" "${I_UPMS[$st,$i]}" "${I_DOWN[$st,$i]}"
    done
  done
)

DIAG=$(
  printf '| store | sim: creation of the %s nodes (s) | sim: boot of all nodes (s) | nodes polling for commands | reports in the whole run | CPU used by other processes, steady window |\n' "$NODES"
  printf '|---|---:|---:|---:|---:|---:|\n'
  for st in "${STORE_LIST[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s%% |\n' "$st" "${I_CREATE[$st]}" "${I_BOOT[$st]}" "$P_POLLS" "${I_TOTAL[$st]}" "${I_OTHER[$st]}"
  done
)

SIZES_T=$(
  printf '| store | after the boots (%s nodes, before any status report) | at the end (after the shutdown reports) |\n' "$NODES"
  printf '|---|---|---|\n'
  for st in "${STORE_LIST[@]}"; do
    printf '| %s | %s | %s |\n' "$st" "${I_STORE0[$st]}" "${I_STORE[$st]}"
  done
)

RATIOS=""
VERDICT=""
if have etcd && have embedded; then
  RATIOS=$(
    read -r -a enames <<<"${I_NAMES[etcd]}"
    printf '| figure | etcd (%s heads, 3 members) | embedded (1 head) | etcd / embedded |\n' "${NHEADS[etcd]}"
    printf '|---|---:|---:|---:|\n'
    for c in "${CREATE_LIST[@]}"; do
      printf '| `wulf node create --count %s` (ms, median) | %s | %s | %s |\n' "$c" "${B_CREATE[etcd,$c]%% *}" "${B_CREATE[embedded,$c]%% *}" "$(ratio "${B_CREATE[etcd,$c]}" "${B_CREATE[embedded,$c]}")"
      printf '| `wulf node --all delete` of %s (ms, median) | %s | %s | %s |\n' "$c" "${B_DELETE[etcd,$c]%% *}" "${B_DELETE[embedded,$c]%% *}" "$(ratio "${B_DELETE[etcd,$c]}" "${B_DELETE[embedded,$c]}")"
      for i in "${!enames[@]}"; do
        printf '| `wulf node ls`, %s nodes, %s (ms) | %s | %s | %s |\n' "$c" "${enames[i]}" "${B_LS[etcd,$c,$i]%% *}" "${B_LS[embedded,$c,0]%% *}" "$(ratio "${B_LS[etcd,$c,$i]}" "${B_LS[embedded,$c,0]}")"
      done
    done
    printf '| sim: creation of %s nodes (s) | %s | %s | %s |\n' "$NODES" "${I_CREATE[etcd]}" "${I_CREATE[embedded]}" "$(ratio "${I_CREATE[etcd]}" "${I_CREATE[embedded]}")"
    printf '| sim: boot of %s nodes (s) | %s | %s | %s |\n' "$NODES" "${I_BOOT[etcd]}" "${I_BOOT[embedded]}" "$(ratio "${I_BOOT[etcd]}" "${I_BOOT[embedded]}")"
    printf '| intake sustained (reports/s, %s offered) | %s | %s | %s |\n' "$OFFERED" "${I_RATE[etcd]}" "${I_RATE[embedded]}" "$(ratio "${I_RATE[etcd]}" "${I_RATE[embedded]}")"
    printf '| intake, lowest 5-s window (reports/s) | %s | %s | %s |\n' "${I_MIN[etcd]}" "${I_MIN[embedded]}" "$(ratio "${I_MIN[etcd]}" "${I_MIN[embedded]}")"
    printf '| report latency p50, whole run (ms) | %s | %s | %s |\n' "${I_P50[etcd]}" "${I_P50[embedded]}" "$(ratio "${I_P50[etcd]}" "${I_P50[embedded]}")"
    printf '| report latency p99, whole run (ms) | %s | %s | %s |\n' "${I_P99[etcd]}" "${I_P99[embedded]}" "$(ratio "${I_P99[etcd]}" "${I_P99[embedded]}")"
    printf '| report latency max, whole run (ms) | %s | %s | %s |\n' "${I_MAX[etcd]}" "${I_MAX[embedded]}" "$(ratio "${I_MAX[etcd]}" "${I_MAX[embedded]}")"
    printf '| wulfd CPU, all heads (%% of one core) | %s | %s | %s |\n' "$(sum_cpu etcd h)" "$(sum_cpu embedded h)" "$(ratio "$(sum_cpu etcd h)" "$(sum_cpu embedded h)")"
    printf '| all server CPU: wulfd + etcd (%% of one core) | %s | %s | %s |\n' "$(($(sum_cpu etcd h) + $(sum_cpu etcd e)))" "$(sum_cpu embedded h)" "$(ratio "$(($(sum_cpu etcd h) + $(sum_cpu etcd e)))" "$(sum_cpu embedded h)")"
    printf '| all server RSS: wulfd + etcd (MiB) | %s | %s | %s |\n' "$(($(sum_rss etcd h) + $(sum_rss etcd e)))" "$(sum_rss embedded h)" "$(ratio "$(($(sum_rss etcd h) + $(sum_rss etcd e)))" "$(sum_rss embedded h)")"
    e_db=$(awk '{ print $2 }' <<<"${I_STORE[etcd]}")
    r_db=$(awk '{ print $2 }' <<<"${I_STORE[embedded]}")
    printf '| database file at the end: etcd m0 dbSize / wulf.redb (MiB) | %s | %s | %s |\n' "$e_db" "$r_db" "$(ratio "$e_db" "$r_db")"
  )
fi
if have etcd; then
  if awk -v r="${I_RATE[etcd]}" -v o="$OFFERED" 'BEGIN { exit !(r >= 0.99 * o) }' && [[ "${I_ERR[etcd]}" == 0 && "${I_HEADS[etcd]}" == yes ]]; then
    VERDICT="meets"
  else
    VERDICT="MISSES"
  fi
  TARGET_LINE="Check ($NODES nodes reporting every 10 s through ${NHEADS[etcd]} heads on a 3-member etcd: ≥ 99 % of the offered $OFFERED reports/s sustained, no errors, every head showing every node up): **$VERDICT** — sustained ${I_RATE[etcd]} reports/s ($(awk -v r="${I_RATE[etcd]}" -v o="$OFFERED" 'BEGIN { printf "%.1f", 100 * r / o }') % of offered), ${I_ERR[etcd]} errors, every head correct: ${I_HEADS[etcd]}."
fi

INTERFERENCE=$(interference)

SEC="$TMP/section.md"
{
  echo "$HEADING"
  echo
  echo "- Date: $DATE"
  echo "- Machine: $NPROC cores (\`nproc\`), $CPU_MODEL, $MEM_TOTAL RAM, kernel $(uname -r). Every etcd member, wulfd, \`wulf sim\` and the CLI share the $NPROC cores."
  echo "- Command: \`$CMD\` (from the repository root), $((T_END - T_START)) s in all"
  echo "- Software: $WULF_VERSION (target/release built with \`--features wulfd/etcd,wulf-store/etcd\`: wulfd built $BUILT, repository at $GIT_REV), etcd $ETCD_VERSION (Debian), $HF_VERSION"
  echo "- etcd: 3 members on 127.0.0.1, \`--max-txn-ops $ETCD_MAX_TXN_OPS --max-request-bytes $ETCD_MAX_REQUEST_BYTES --quota-backend-bytes $ETCD_QUOTA_BYTES --log-level warn\` (the transaction limits docs/admin/head.md asks for, and a $((ETCD_QUOTA_BYTES / 1073741824)) GiB space quota; the heads' \`[db] quota_mib = $((ETCD_QUOTA_BYTES / 1048576))\`), other settings default (fsync on, no auto-compaction: the heads compact); their data dirs on $ETCD_FS ($ETCD_SRC)$([[ "$ETCD_FS" == tmpfs ]] && echo ': tmpfs, so fsync costs nothing here, unlike on a disk' || echo ', a real disk: etcd fsyncs its WAL there'). wulfd data dirs on $DATA_FS."
  echo "- Open files: hard limit $(ulimit -Hn) on this machine (it cannot be raised here); the script's limit was $FILES_BEFORE and is $FILES for every process it starts (wulfd raises its soft limit to the hard one and caps its connections at three quarters of it; the sim keeps 10,000 files for everything but its polls), so $P_POLLS of the $NODES nodes keep a command poll open (POLLS${POLLS:+=$POLLS}$([[ -z "${POLLS:-}" ]] && echo ' not set: the open-file limit less 10,000')). Each poll holds one file in the sim and one at its head."
  echo "- Parameters: NODES=$NODES, HEADS=$HEADS, CREATE_SIZES=\"${CREATE_LIST[*]}\", BULK_RUNS=$BULK_RUNS, DURATION=$DURATION s, BOOT_SECS=$BOOT_SECS, CONNECTIONS=$CONNECTIONS, steady window $STEADY_FROM–$STEADY_TO s after the boots ($((STEADY_TO - STEADY_FROM)) s)"
  echo "- Load: loadavg $LOAD_START at start, $LOAD_END at end; concurrent compile/QEMU: $INTERFERENCE"
  echo
  if [[ -n "$VERDICT" ]]; then echo "$TARGET_LINE"; echo; fi
  if [[ -n "$RATIOS" ]]; then
    echo "etcd / embedded (< 1: etcd is faster or smaller for times, CPU and memory; for the sustained rate ≈ 1 is the goal):"
    echo
    echo "$RATIOS"
    echo
  fi
  echo "Bulk create, delete and listing (wall time of one CLI call; on etcd through head-a, listings through each head):"
  echo
  echo "$BULK"
  echo
  for k in "${!REFUSED[@]}"; do
    echo "Refused: \`wulf node create --count ${k#*,}\` on ${k%%,*}: \`$(tr '\n' ' ' <<<"${REFUSED[$k]}" | sed 's/ *$//')\`"
    echo
  done
  echo "Status intake: $NODES simulated nodes, every 10 s (offered $OFFERED reports/s)$(have etcd && echo "; on etcd node i reports to head i mod ${NHEADS[etcd]}"):"
  echo
  echo "$INTAKE"
  echo
  echo "CPU and memory over the steady window:"
  echo
  echo "$RESOURCES"
  echo
  echo "Every head answers for every node:"
  echo
  echo "$CHECKS"
  echo
  echo "Diagnostics:"
  echo
  echo "$DIAG"
  echo
  echo "Store size (etcd: each member's dbSize (dbSizeInUse) in MiB from \`etcdctl endpoint status -w json\`, and \`du -sm\` of its data dir: db + WAL + snapshots):"
  echo
  echo "$SIZES_T"
  echo
  echo "Method:"
  echo
  echo "- Stores one after the other, never at once: $(sed 's/ / then /g' <<<"${STORE_LIST[*]}"). Each wulfd: \`wulfd --config CFG\` (data_dir, listen = 127.0.0.1:PORT, log = warn, [dhcp], [tftp] and [dns] enabled = false; [limits] head_timeout_secs = 10, idle_timeout_secs = 60, max_connections = 0 (the defaults, written out); on etcd also head_name, [db] quota_mib and \`--store etcd://M0,M1,M2\`, all three members' client URLs). The CLI and the sim use \`--url https://127.0.0.1:PORT\`, WULF_CA (the cluster CA, the same file on every head) and WULF_TOKEN (the cluster's admin token, the same on every etcd head)."
  echo "- Bulk: \`wulf node create --count C\` then \`wulf node --all delete\`, each one API call and one transaction, timed with \`date +%s%N\` around the CLI, $BULK_RUNS rounds per size (median shown, every run in brackets). After each create every head must list C nodes, after each delete none; \"listed by the other heads after\" is from the end of the create call until \`wulf node ls\` through each other head listed all C (heads checked in turn, polled every 20 ms, includes one listing's time; median over heads and runs). Listings: \`hyperfine -N -w 1 -r $RUNS\` (no shell) after the first create of each size, mean ± σ, end to end (CLI start, HTTP, decode, print)."
  echo "- Intake: \`wulf --url HEAD_A sim --heads HEADS --nodes $NODES --boot-secs $BOOT_SECS --duration $DURATION --stats $STATS_SECS --connections $CONNECTIONS --polls $P_POLLS\`: it creates the simulated nodes (POSTs of 10,000 nodes, each one transaction; its time is from the sim's \"creating\" line to the start of the boots, by the timestamps of its stderr lines), boots each by fetching its iPXE script from its head (node i from head i mod H), then every node reports every 10 s with its own credential to its head over a new HTTPS connection (TLS resumed), the first $P_POLLS nodes also keeping a command long poll open at their head, failing over to another head if its own does not answer (no failover is expected here). The sim's stderr is timestamped per line; a 5-s stats window belongs to the steady window if its midpoint does; sustained = mean of those windows' reports/s. Whole-run latency, errors and failovers come from the sim's final line (every report after the boots; shutdown reports not counted in latency)."
  echo "- CPU: utime+stime (all threads) from /proc/PID/stat over the steady window, 100 % = one core. \"Other processes\": machine busy time (/proc/stat) minus wulfd, etcd, the sim and this script over the window, as a share of all $NPROC cores. Memory: VmRSS at the end of the steady window; VmHWM of wulfd reset (\`echo 5 > /proc/PID/clear_refs\`) when the sim had booted its nodes, so it is the intake's peak; etcd's VmHWM is since its start (includes the bulk phase). MiB = 1024 KiB."
  echo "- Store size, when the sim printed \"booted\" and after the shutdown reports: etcd's dbSize and dbSizeInUse per member (\`etcdctl --endpoints MEMBER endpoint status -w json\`) and \`du -sm\` of each member's data dir; wulf.redb's size (\`stat\`) and allocated space (\`du\`). Open files: \"Max open files\" of /proc/PID/limits."
  echo "- Correctness: after the steady window \`wulf node status\` through each head must print exactly \`up $NODES n[0-$((NODES - 1))]\`; after the sim's clean-shutdown reports, \`down (clean shutdown) $NODES n[0-$((NODES - 1))]\` (retried for up to 20 s)."
  echo
} >"$SEC"

echo
cat "$SEC"
[[ -z "$VERDICT" ]] || log "target: $VERDICT"

write_section "$HEADING" "$SEC"
