#!/usr/bin/env bash
# Core benchmark for wulf: bulk create, listing, get by MAC, wulfd memory.
#
# For each N (default 10000 and 100000):
#   1. fresh wulfd (new data dir), create a network, then time
#      `wulf node create --macs FILE` with N generated MACs;
#   2. hyperfine `wulf node ls` and `wulf node ls --json > /dev/null`;
#   3. wrk GET /api/v1/node?ids=<MAC>, rotating through up to 1,000 MACs;
#   4. wulfd VmHWM / VmRSS from /proc/<pid>/status at the end.
# Prints a table with ratios to the targets and writes the section
# "## Core: bulk create, listing, get by MAC (bench/core.sh)" of bench/RESULTS.md.
#
# Environment:
#   QUICK=1            only N=10000
#   SIZES="10000 ..."  node counts (overrides QUICK)
#   RUNS=5             hyperfine runs per listing command (plus 1 warm-up)
#   WRK_THREADS=2 WRK_CONNS=32 WRK_DURATION=10s
#   LOOKUP_MACS=1000   how many distinct MACs wrk rotates through
#   WRITE_RESULTS=0    do not touch bench/RESULTS.md
#   SKIP_BUILD=1       use the existing target/release binaries
# Uses only 127.0.0.1. Runs as root non-interactively.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RESULTS_FILE="$SCRIPT_DIR/RESULTS.md"
HEADING="## Core: bulk create, listing, get by MAC (bench/core.sh)"

# Exact command line, for RESULTS.md.
CMD=""
for v in QUICK SIZES RUNS WRK_THREADS WRK_CONNS WRK_DURATION LOOKUP_MACS SKIP_BUILD; do
  if [[ -n "${!v:-}" ]]; then CMD+="$v=$(printf %q "${!v}") "; fi
done
CMD+="bash bench/core.sh"
if (($#)); then CMD+=" $*"; fi

if [[ -n "${SIZES:-}" ]]; then
  read -r -a SIZE_LIST <<<"$SIZES"
elif [[ "${QUICK:-0}" == 1 ]]; then
  SIZE_LIST=(10000)
else
  SIZE_LIST=(10000 100000)
fi
RUNS=${RUNS:-5}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-32}
WRK_DURATION=${WRK_DURATION:-10s}
LOOKUP_MACS=${LOOKUP_MACS:-1000}

log() { printf '[core.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
source "$SCRIPT_DIR/lib.sh"

# ---------------------------------------------------------------- tools
install_missing wrk=wrk hyperfine=hyperfine curl=curl

cargo_on_path
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building release binaries (cargo build --release -p wulfd -p wulf-cli)"
  build_log=$(mktemp /tmp/wulf-bench-core-build.XXXXXX)
  if ! (cd "$ROOT" && cargo build --release -p wulfd -p wulf-cli) >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    rm -f "$build_log"
    die "cargo build failed"
  fi
  rm -f "$build_log"
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ -x "$TARGET_DIR/release/wulfd" && -x "$TARGET_DIR/release/wulf" ]] ||
  die "binaries not found in $TARGET_DIR/release"

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d /tmp/wulf-bench-core.XXXXXX)
# Private copies, so a concurrent rebuild of target/ cannot swap binaries mid-run.
mkdir "$TMP/bin"
cp "$TARGET_DIR/release/wulfd" "$TARGET_DIR/release/wulf" "$TMP/bin/"
WULFD="$TMP/bin/wulfd"
WULF="$TMP/bin/wulf"
WULFD_PID=""
stop_wulfd() {
  if [[ -n "$WULFD_PID" ]]; then
    kill "$WULFD_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do
      kill -0 "$WULFD_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$WULFD_PID" 2>/dev/null || true
    wait "$WULFD_PID" 2>/dev/null || true
    WULFD_PID=""
  fi
}
# Long-running children run in the background and are waited for, so a signal
# is handled at once and cleanup can end them.
cleanup() {
  local rc=$?
  stop_child
  stop_wulfd
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

# CPU used by other processes while this benchmark ran: all busy CPU time on the
# machine (/proc/stat) minus this script's own and its waited-for children's
# (wulfd, wulf, hyperfine, wrk, curl), as a share of the machine's capacity.
other_cpu_pct() { # BUSY0 TOTAL0 SELF0 BUSY1 TOTAL1 SELF1
  awk -v b0="$1" -v t0="$2" -v s0="$3" -v b1="$4" -v t1="$5" -v s1="$6" 'BEGIN {
    o = (b1 - b0) - (s1 - s0); if (o < 0) o = 0
    printf "%.0f", (t1 > t0 ? 100 * o / (t1 - t0) : 0) }'
}

gen_macs() { # N FILE: locally administered unicast MACs 02:b5:xx:xx:xx:xx
  awk -v n="$1" 'BEGIN {
    for (i = 0; i < n; i++)
      printf "02:b5:%02x:%02x:%02x:%02x\n", int(i / 16777216) % 256, int(i / 65536) % 256, int(i / 256) % 256, i % 256
  }' >"$2"
}

# wulfd's network services (DHCP :67, TFTP 0.0.0.0:69, DNS :53) are off for this
# benchmark: it measures the object database and API, and binds only 127.0.0.1.
WULFD_CFG="$TMP/wulfd.toml"
printf '[dhcp]\nenabled = false\n\n[tftp]\nenabled = false\n\n[dns]\nenabled = false\n' >"$WULFD_CFG"
WULFD_CFG_ARGS=(--config "$WULFD_CFG")
SERVICES_NOTE="CFG turns DHCP, TFTP and DNS off with enabled = false"
start_wulfd() { # DATADIR PORT
  local dir=$1 port=$2 i
  "$WULFD" "${WULFD_CFG_ARGS[@]}" --data-dir "$dir" --listen "127.0.0.1:$port" --log warn >"$dir.log" 2>&1 &
  WULFD_PID=$!
  for ((i = 0; i < 150; i++)); do
    if ! kill -0 "$WULFD_PID" 2>/dev/null; then
      wait "$WULFD_PID" 2>/dev/null || true
      WULFD_PID=""
      if ((${#WULFD_CFG_ARGS[@]})) && grep -q 'unknown field' "$dir.log"; then
        # An older wulfd without these config sections: run it without the file.
        log "wulfd rejects the service config ($(head -c 200 "$dir.log")); starting it without --config"
        WULFD_CFG_ARGS=()
        SERVICES_NOTE="wulfd default services (its config has no dhcp/tftp/dns sections)"
        rm -rf "$dir" "$dir.log"
        start_wulfd "$dir" "$port"
        return
      fi
      cat "$dir.log" >&2
      die "wulfd exited at start"
    fi
    if [[ -s "$dir/admin.token" && -s "$dir/wulfd.url" ]] &&
      curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
      return 0
    fi
    sleep 0.1
  done
  die "wulfd did not come up on 127.0.0.1:$port"
}

# hyperfine CSV (command,mean,stddev,median,user,system,min,max) -> mean in ms for NAME

kb_to_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# ---------------------------------------------------------------- machine
NPROC=$(nproc)
machine_facts
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
WULF_VERSION=$("$WULF" --version 2>/dev/null || echo unknown)
log "machine: $NPROC cores, $CPU_MODEL, $MEM_TOTAL; loadavg at start $LOAD_START"
sample_interference "start"

declare -A R_HWMC R_RSSC R_OTHER R_SRVNAMES R_SRVFULL R_CREATE R_LS R_LSSD R_JSON R_JSONSD R_RPS R_P50 R_P99 R_AVG R_HWM R_RSS R_BPR R_ERR R_NODES

# ---------------------------------------------------------------- run
for N in "${SIZE_LIST[@]}"; do
  [[ "$N" =~ ^[0-9]+$ && "$N" -gt 0 ]] || die "bad size '$N'"
  log "=== N=$N ==="
  read -r cpu_b0 cpu_t0 < <(cpu_busy_total); cpu_s0=$(cpu_self)
  DATA="$TMP/data-$N"
  PORT=$(pick_port)
  start_wulfd "$DATA" "$PORT"
  if command -v ss >/dev/null 2>&1; then
    socks=$(ss -lntupH 2>/dev/null | grep "pid=$WULFD_PID," | awk '{ print $1 " " $5 }' | tr '\n' ' ' || true)
    log "wulfd listens on: ${socks:-?}"
    if grep -qvE '^(tcp|udp) 127\.0\.0\.1:[0-9]+$' < <(tr -s ' ' '\n' <<<"$socks" | paste -d' ' - - | sed '/^ *$/d'); then
      log "WARNING: wulfd listens beyond 127.0.0.1: $socks"
    fi
  fi
  export WULF_DATA_DIR="$DATA"
  unset WULF_URL WULF_TOKEN || true
  TOKEN=$(cat "$DATA/admin.token")
  BASE="http://127.0.0.1:$PORT"

  "$WULF" net create name=cluster first_ip=10.128.0.1 ip_count=200000 mask_bits=9 >/dev/null

  MACS="$TMP/macs-$N.txt"
  gen_macs "$N" "$MACS"

  # 1. bulk create
  sample_interference "create N=$N"
  t0=$(now_ns)
  run_child timeout 600 "$WULF" node create --macs "$MACS" >"$TMP/create-$N.out"
  t1=$(now_ns)
  R_CREATE[$N]=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.3f", d / 1e9 }')
  R_HWMC[$N]=$(kb_to_mib "$(awk '/^VmHWM/ { print $2 }' "/proc/$WULFD_PID/status")")
  R_RSSC[$N]=$(kb_to_mib "$(awk '/^VmRSS/ { print $2 }' "/proc/$WULFD_PID/status")")
  log "create: ${R_CREATE[$N]} s ($(head -c 200 "$TMP/create-$N.out")); wulfd VmHWM ${R_HWMC[$N]} MiB, VmRSS ${R_RSSC[$N]} MiB right after it"

  # verify the nodes exist before timing listings
  got=$("$WULF" node ls | grep -c '^ ' || true)
  got_json=$("$WULF" node ls --json | grep -c '"mac":' || true)
  [[ "$got" == "$N" && "$got_json" == "$N" ]] ||
    die "expected $N nodes, 'wulf node ls' shows $got, --json shows $got_json"
  R_NODES[$N]=$got
  log "verified: wulf node ls lists $got nodes, --json $got_json"

  # 2. listing, end to end
  sample_interference "ls N=$N"
  run_child hyperfine -w 1 -r "$RUNS" --style basic --export-csv "$TMP/hf-$N.csv" \
    -n ls "$WULF node ls" \
    -n ls_json "$WULF node ls --json > /dev/null" >"$TMP/hf-$N.txt" 2>&1 ||
    { cat "$TMP/hf-$N.txt" >&2; die "hyperfine failed"; }
  R_LS[$N]=$(hf_mean_ms "$TMP/hf-$N.csv" ls)
  R_LSSD[$N]=$(hf_sd_ms "$TMP/hf-$N.csv" ls)
  R_JSON[$N]=$(hf_mean_ms "$TMP/hf-$N.csv" ls_json)
  R_JSONSD[$N]=$(hf_sd_ms "$TMP/hf-$N.csv" ls_json)
  log "ls: ${R_LS[$N]} ms ± ${R_LSSD[$N]}; ls --json: ${R_JSON[$N]} ms ± ${R_JSONSD[$N]}"

  # server-side share of the listings (best of 3 curl transfers, no CLI)
  for q in "fields=name" ""; do
    best=""
    for ((r = 0; r < 3; r++)); do
      t=$(curl -s -o /dev/null -w '%{time_total}' --max-time 60 -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/node${q:+?$q}")
      best=$(awk -v a="$best" -v b="$t" 'BEGIN { printf "%.1f", (a == "" || b * 1000 < a) ? b * 1000 : a }')
    done
    if [[ -n "$q" ]]; then R_SRVNAMES[$N]=$best; else R_SRVFULL[$N]=$best; fi
  done
  log "server only (curl, best of 3): GET /api/v1/node?fields=name ${R_SRVNAMES[$N]} ms, GET /api/v1/node ${R_SRVFULL[$N]} ms"

  # 3. get by MAC under load
  step=$((N / LOOKUP_MACS)); ((step >= 1)) || step=1
  awk -v s="$step" -v m="$LOOKUP_MACS" '(NR - 1) % s == 0 && c < m { print; c++ }' "$MACS" >"$TMP/lookup-$N.txt"
  nlook=$(wc -l <"$TMP/lookup-$N.txt")
  # sanity: a few lookups return exactly the node with that MAC
  while read -r mac; do
    body=$(curl -sf --max-time 5 -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/node?ids=$mac") ||
      die "GET by MAC $mac failed"
    [[ "$body" == *"\"mac\":\"$mac\""* && "$(grep -o '"uid"' <<<"$body" | wc -l)" == 1 ]] ||
      die "GET by MAC $mac returned unexpected body: ${body:0:200}"
  done < <(sed -n '1p;$p' "$TMP/lookup-$N.txt")
  LUA="$TMP/get-$N.lua"
  {
    echo "local macs = {"
    sed 's/.*/  "&",/' "$TMP/lookup-$N.txt"
    echo "}"
    cat <<EOF
local n = #macs
local counter = 0
local threads = {}
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $TOKEN"
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  counter = (tonumber(tid) or 0) * 397
end
function request()
  counter = counter + 1
  return wrk.format(nil, "/api/v1/node?ids=" .. macs[(counter % n) + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d mean_us=%.1f err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
EOF
  } >"$LUA"
  sample_interference "wrk N=$N"
  run_child timeout 120 wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --latency -s "$LUA" "$BASE/" >"$TMP/wrk-$N.txt" 2>&1 ||
    { cat "$TMP/wrk-$N.txt" >&2; die "wrk failed"; }
  res=$(grep '^RESULT ' "$TMP/wrk-$N.txt") || { cat "$TMP/wrk-$N.txt" >&2; die "wrk printed no RESULT"; }
  kv() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$res"; }
  reqs=$(kv requests); dur=$(kv duration_us)
  R_RPS[$N]=$(awk -v r="$reqs" -v d="$dur" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
  R_P50[$N]=$(awk -v v="$(kv p50_us)" 'BEGIN { printf "%.2f", v / 1000 }')
  R_P99[$N]=$(awk -v v="$(kv p99_us)" 'BEGIN { printf "%.2f", v / 1000 }')
  R_AVG[$N]=$(awk -v v="$(kv mean_us)" 'BEGIN { printf "%.2f", v / 1000 }')
  R_BPR[$N]=$(awk -v b="$(kv bytes)" -v r="$reqs" 'BEGIN { printf "%.0f", (r > 0 ? b / r : 0) }')
  R_ERR[$N]=$(($(kv err_connect) + $(kv err_read) + $(kv err_write) + $(kv err_status) + $(kv err_timeout)))
  log "get by MAC ($nlook MACs): ${R_RPS[$N]} req/s, p50 ${R_P50[$N]} ms, p99 ${R_P99[$N]} ms, ${R_BPR[$N]} B/response, ${R_ERR[$N]} errors"
  ((R_ERR[$N] == 0)) || log "WARNING: wrk saw ${R_ERR[$N]} errors (non-2xx/socket): see $res"

  # 4. memory
  if ! kill -0 "$WULFD_PID" 2>/dev/null; then
    wrc=0; wait "$WULFD_PID" || wrc=$?
    WULFD_PID=""
    log "wulfd log tail:"; tail -n 30 "$DATA.log" >&2 || true
    die "wulfd died during the run (exit status $wrc)"
  fi
  hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$WULFD_PID/status")
  rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$WULFD_PID/status")
  R_HWM[$N]=$(kb_to_mib "$hwm")
  R_RSS[$N]=$(kb_to_mib "$rss")
  log "wulfd VmHWM ${R_HWM[$N]} MiB, VmRSS ${R_RSS[$N]} MiB"
  if [[ -s "$DATA.log" ]]; then log "wulfd log (warn+): $(head -c 500 "$DATA.log")"; fi

  stop_wulfd
  read -r cpu_b1 cpu_t1 < <(cpu_busy_total); cpu_s1=$(cpu_self)
  R_OTHER[$N]=$(other_cpu_pct "$cpu_b0" "$cpu_t0" "$cpu_s0" "$cpu_b1" "$cpu_t1" "$cpu_s1")
  log "other processes used ${R_OTHER[$N]}% of the machine's CPU during N=$N"
  rm -rf "$DATA" "$DATA.log"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
sample_interference "end"

# ---------------------------------------------------------------- report
ratio() { awk -v m="$1" -v t="$2" 'BEGIN { r = m / t; printf "%.2f (%s)", r, (r < 1 ? "meets" : "MISSES") }'; }

TABLE=$(
  printf '| N nodes | create --macs (s) | `wulf node ls` (ms) | `wulf node ls --json > /dev/null` (ms) | get by MAC (req/s) | p50 (ms) | p99 (ms) | wulfd VmHWM (MiB) | wulfd VmRSS (MiB) |\n'
  printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  for N in "${SIZE_LIST[@]}"; do
    printf '| %s | %s | %s ± %s | %s ± %s | %s | %s | %s | %s | %s |\n' "$N" "${R_CREATE[$N]}" \
      "${R_LS[$N]}" "${R_LSSD[$N]}" "${R_JSON[$N]}" "${R_JSONSD[$N]}" \
      "${R_RPS[$N]}" "${R_P50[$N]}" "${R_P99[$N]}" "${R_HWM[$N]}" "${R_RSS[$N]}"
  done
)

DIAG=$(
  printf '| N nodes | server only: `GET /api/v1/node?fields=name` (ms) | server only: `GET /api/v1/node` (ms) | get by MAC: mean latency (ms) | bytes/response | wrk errors | wulfd VmHWM / VmRSS right after create (MiB) | CPU used by other processes |\n'
  printf '|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  for N in "${SIZE_LIST[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s / %s | %s%% |\n' "$N" "${R_SRVNAMES[$N]}" "${R_SRVFULL[$N]}" "${R_AVG[$N]}" "${R_BPR[$N]}" "${R_ERR[$N]}" "${R_HWMC[$N]}" "${R_RSSC[$N]}" "${R_OTHER[$N]}"
  done
)

TARGETS=$(
  printf '| target | measured | ratio (measured / target) |\n|---|---:|---:|\n'
  if [[ -n "${R_CREATE[10000]:-}" ]]; then
    printf '| 10,000-node create < 2 s | %s s | %s |\n' "${R_CREATE[10000]}" "$(ratio "${R_CREATE[10000]}" 2)"
    printf '| `wulf node ls`, 10,000 nodes < 300 ms | %s ms | %s |\n' "${R_LS[10000]}" "$(ratio "${R_LS[10000]}" 300)"
    printf '| `wulf node ls --json`, 10,000 nodes < 300 ms | %s ms | %s |\n' "${R_JSON[10000]}" "$(ratio "${R_JSON[10000]}" 300)"
  else
    printf '| 10,000-node create / listing | not run (N=10000 not in SIZES) | - |\n'
  fi
  if [[ -n "${R_HWM[100000]:-}" ]]; then
    printf '| wulfd < 150 MB RSS at 100,000 nodes (peak, VmHWM) | %s MiB | %s |\n' "${R_HWM[100000]}" "$(ratio "${R_HWM[100000]}" 150)"
    printf '| wulfd < 150 MB RSS at 100,000 nodes (end, VmRSS) | %s MiB | %s |\n' "${R_RSS[100000]}" "$(ratio "${R_RSS[100000]}" 150)"
  else
    printf '| wulfd < 150 MB RSS at 100,000 nodes | not run (QUICK=1 or N=100000 not in SIZES) | - |\n'
  fi
)

INTERFERENCE=$(interference)

echo
echo "Core benchmark: $DATE, $NPROC cores, $CPU_MODEL"
echo
echo "$TABLE"
echo
echo "$DIAG"
echo
echo "Ratios against the targets (no peer exists for this object database):"
echo "$TARGETS"
echo
echo "loadavg start $LOAD_START, end $LOAD_END; concurrent compile: $INTERFERENCE"

if [[ "${WRITE_RESULTS:-1}" != 0 ]]; then
  SEC="$TMP/section.md"
  {
    echo "$HEADING"
    echo
    echo "- Date: $DATE"
    echo "- Machine: $NPROC cores (\`nproc\`), $CPU_MODEL, $MEM_TOTAL RAM"
    echo "- Command: \`$CMD\` (from the repository root)"
    echo "- Binaries: \`cargo build --release -p wulfd -p wulf-cli\`, $WULF_VERSION"
    echo "- Load: loadavg $LOAD_START at start, $LOAD_END at end (on this VM loadavg sits near 2 even with idle CPUs, so the compiler check is the better signal); concurrent compile: $INTERFERENCE"
    echo
    echo "$TABLE"
    echo
    echo "Diagnostics (where the time goes; server-only figures are curl's time_total, best of 3, no CLI):"
    echo
    echo "$DIAG"
    echo
    echo "No peer exists for this object database, so the ratios are against the project's targets, not against another tool (ratio < 1 meets the target):"
    echo
    echo "$TARGETS"
    echo
    echo "Method:"
    echo
    echo "- Each N gets a fresh \`wulfd --config CFG --data-dir NEW --listen 127.0.0.1:PORT --log warn\` ($SERVICES_NOTE) and \`wulf net create name=cluster first_ip=10.128.0.1 ip_count=200000 mask_bits=9\`."
    echo "- Create: wall time of one \`wulf node create --macs FILE\` with N generated MACs (\`02:b5:..\`), one API call. The script then checks that \`wulf node ls\` and \`wulf node ls --json\` both list N nodes."
    echo "- Listing: hyperfine, 1 warm-up + $RUNS runs, mean ± σ, end to end (CLI start, HTTP, decode, print); \`wulf node ls\` output goes to hyperfine's /dev/null."
    echo "- Get by MAC: \`wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION --latency\` with a Lua script rotating through $LOOKUP_MACS MACs spread over the N nodes, \`GET /api/v1/node?ids=<MAC>\` with the bearer token; p50/p99 from wrk's latency histogram. wrk and wulfd share the $NPROC cores. Before the load, the first and last MACs are fetched with curl and checked to return exactly their node; bytes/response (headers + body) shows every request returned one node."
    echo "- Interference: \"CPU used by other processes\" is the machine's busy CPU time (/proc/stat) minus this script's and its children's (wulfd, wulf, hyperfine, wrk, curl) during that N, as a share of all $NPROC cores; 0% means the figures are undisturbed. Compiler processes are also sampled before each phase."
    echo "- Memory: VmHWM (peak) and VmRSS of wulfd from /proc/<pid>/status after all of the above for that N; MiB = 1024 KiB (the 150 MB target is compared as 150 MiB)."
    echo
  } >"$SEC"
  write_section "$HEADING" "$SEC"
fi
