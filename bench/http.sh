#!/usr/bin/env bash
# HTTP benchmark for wulf: how fast wulfd's head serves a boot file (an image) to many
# parallel clients, against nginx (sendfile on) serving the same file, in one run.
#
#   1. build the release binaries (unless SKIP_BUILD=1), install nginx-light if missing;
#   2. make a random SIZE_MIB file, start wulfd (DHCP/TFTP/DNS off), upload it with
#      `wulf boot create name=big kernel=@FILE` (a kernel, which iPXE fetches without a
#      token; an image goes only to an enrolled node), restart wulfd (so its memory figures
#      cover serving only), hard-link the stored blob into the root of a private nginx;
#   3. check both servers return the same bytes (sha256 of a full download, a Range request);
#   4. for each run, for each concurrency (CONCS), both servers in alternating order:
#      CONC parallel `curl -o /dev/null` downloads of the whole file (xargs -P);
#      aggregate throughput = bytes received / wall time of the batch; server CPU from
#      /proc/PID/stat (utime+stime) per GB served; wulfd VmHWM (reset before each batch
#      through /proc/PID/clear_refs);
#   5. optionally (PERF=1) a short perf profile of each server under 8 clients.
# Prints a table (medians) with the ratio wulfd/nginx against the 0.9x target and writes
# the section "## HTTP: boot file downloads vs nginx (bench/http.sh)" of bench/RESULTS.md.
#
# Environment:
#   SIZE_MIB=1024      size of the file served
#   CONCS="8 64"       parallel clients per batch
#   RUNS=3             batches per server and concurrency (median reported)
#   BUDGET_S=330       runs after the second are skipped if they would take the benchmark
#                      (not counting the build) past this many seconds; 0 = only 2 runs
#   PERF=1             profile each server for PERF_SECS=4 s under 8 clients (0: skip)
#   WRITE_RESULTS=0    do not touch bench/RESULTS.md
#   SKIP_BUILD=1       use the existing target/release binaries
# Uses only 127.0.0.1. Runs as root non-interactively. Never touches the system nginx
# service: it runs its own nginx master with its own config, prefix and pid file.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RESULTS_FILE="$SCRIPT_DIR/RESULTS.md"
HEADING="## HTTP: boot file downloads vs nginx (bench/http.sh)"

CMD=""
for v in SIZE_MIB CONCS RUNS BUDGET_S PERF PERF_SECS SKIP_BUILD; do
  if [[ -n "${!v:-}" ]]; then CMD+="$v=$(printf %q "${!v}") "; fi
done
CMD+="bash bench/http.sh"

SIZE_MIB=${SIZE_MIB:-1024}
read -r -a CONC_LIST <<<"${CONCS:-8 64}"
RUNS=${RUNS:-3}
PERF=${PERF:-1}
PERF_SECS=${PERF_SECS:-4}
BUDGET_S=${BUDGET_S:-330}
TARGET_RATIO=0.9

log() { printf '[http.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
source "$SCRIPT_DIR/lib.sh"

[[ "$SIZE_MIB" =~ ^[0-9]+$ && "$SIZE_MIB" -gt 0 ]] || die "bad SIZE_MIB '$SIZE_MIB'"
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -gt 0 ]] || die "bad RUNS '$RUNS'"
[[ "$BUDGET_S" =~ ^[0-9]+$ ]] || die "bad BUDGET_S '$BUDGET_S'"
for c in "${CONC_LIST[@]}"; do [[ "$c" =~ ^[0-9]+$ && "$c" -gt 0 ]] || die "bad concurrency '$c'"; done
T_START=$(date +%s)

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v nginx >/dev/null 2>&1 || need_pkgs+=(nginx-light)
command -v sha256sum >/dev/null 2>&1 || need_pkgs+=(coreutils)
if [[ "$PERF" == 1 ]] && ! command -v perf >/dev/null 2>&1; then need_pkgs+=(linux-perf); fi
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # RUNLEVEL=1: the package's maintainer scripts must not start the system nginx.
  RUNLEVEL=1 apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null ||
    { [[ "$PERF" == 1 ]] && command -v nginx >/dev/null && command -v curl >/dev/null; } ||
    die "apt-get install ${need_pkgs[*]} failed"
fi
if [[ "$PERF" == 1 ]] && ! command -v perf >/dev/null 2>&1; then
  log "perf not available: no profile"
  PERF=0
fi
NGINX=$(command -v nginx) || die "nginx not found"

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building release binaries (cargo build --release -p wulfd -p wulf-cli)"
  build_log=$(mktemp /tmp/wulf-bench-http-build.XXXXXX)
  if ! (cd "$ROOT" && timeout 1800 cargo build --release -p wulfd -p wulf-cli) >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    rm -f "$build_log"
    die "cargo build failed"
  fi
  rm -f "$build_log"
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ -x "$TARGET_DIR/release/wulfd" && -x "$TARGET_DIR/release/wulf" ]] ||
  die "binaries not found in $TARGET_DIR/release"
T_BENCH=$(date +%s)

# ---------------------------------------------------------------- space
TMPBASE=${TMPDIR:-/tmp}
need_kib=$((SIZE_MIB * 1024 * 2 + 512 * 1024)) # source file + blob + 512 MiB margin
avail_kib=$(df -Pk "$TMPBASE" | awk 'NR == 2 { print $4 }')
((avail_kib > need_kib)) ||
  die "not enough space in $TMPBASE: $((avail_kib / 1024)) MiB free, need $((need_kib / 1024)) MiB"
avail_mem_kib=$(awk '/^MemAvailable/ { print $2 }' /proc/meminfo)
((avail_mem_kib > SIZE_MIB * 1024 + 1048576)) ||
  log "WARNING: only $((avail_mem_kib / 1024)) MiB RAM available: the file may not stay in the page cache"

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d "$TMPBASE/wulf-bench-http.XXXXXX")
mkdir "$TMP/bin"
cp "$TARGET_DIR/release/wulfd" "$TARGET_DIR/release/wulf" "$TMP/bin/"
WULFD="$TMP/bin/wulfd"
WULF="$TMP/bin/wulf"
WULFD_PID=""
NGINX_PID=""
NGINX_WORKERS=()
stop_pid() { # PID: TERM, wait up to 5 s, then KILL
  local pid=$1 i
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_wulfd() {
  if [[ -n "$WULFD_PID" ]]; then stop_pid "$WULFD_PID"; WULFD_PID=""; fi
}
stop_nginx() {
  if [[ -n "$NGINX_PID" ]]; then
    stop_pid "$NGINX_PID"
    local w
    for w in "${NGINX_WORKERS[@]}"; do kill -9 "$w" 2>/dev/null || true; done
    NGINX_PID=""
    NGINX_WORKERS=()
  fi
}
cleanup() {
  local rc=$?
  stop_child
  stop_wulfd
  stop_nginx
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
CLK_TCK=$(getconf CLK_TCK)
proc_ticks() { # PID...: utime+stime summed (ticks)
  local t=0 p v
  for p in "$@"; do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
machine_cpu() { # "busy total" jiffies over all CPUs
  awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# "min–max" of the values on stdin, with FORMAT (the spread of the runs)
spread() { tr ' ' '\n' | grep -v '^$' | sort -g | awk -v f="$1" '{ v[NR] = $1 } END { if (NR == 0) print "-"; else printf f "–" f "\n", v[1], v[NR] }'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { printf f, v }'; }

# ---------------------------------------------------------------- machine
NPROC=$(nproc)
machine_facts
KERNEL=$(uname -r)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
WULF_VERSION=$("$WULF" --version 2>/dev/null || echo unknown)
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
CURL_VERSION=$(curl --version | awk 'NR == 1 { print $1, $2 }')
log "machine: $NPROC cores, $CPU_MODEL, $MEM_TOTAL; kernel $KERNEL; loadavg at start $LOAD_START"
sample_interference "start"

# ---------------------------------------------------------------- file + wulfd
SRC="$TMP/image.bin"
log "writing a random ${SIZE_MIB} MiB file"
head -c "$((SIZE_MIB * 1048576))" /dev/urandom >"$SRC"
SIZE=$(stat -c %s "$SRC")
SRC_SHA=$(sha256sum "$SRC" | cut -d' ' -f1)

DATA="$TMP/data"
WPORT=$(pick_port)
WCONF="$TMP/wulfd.toml"
cat >"$WCONF" <<EOF
data_dir = "$DATA"
listen = "127.0.0.1:$WPORT"
log = "warn"

[dhcp]
enabled = false

[tftp]
enabled = false

[dns]
enabled = false
EOF
start_wulfd() {
  local i
  "$WULFD" --config "$WCONF" --data-dir "$DATA" --listen "127.0.0.1:$WPORT" --log warn >>"$TMP/wulfd.log" 2>&1 &
  WULFD_PID=$!
  for ((i = 0; i < 150; i++)); do
    kill -0 "$WULFD_PID" 2>/dev/null || { cat "$TMP/wulfd.log" >&2; die "wulfd exited at start"; }
    if [[ -s "$DATA/admin.token" && -s "$DATA/wulfd.url" ]] &&
      curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$WPORT/"; then
      return 0
    fi
    sleep 0.1
  done
  die "wulfd did not come up on 127.0.0.1:$WPORT"
}
start_wulfd
export WULF_DATA_DIR="$DATA"
unset WULF_URL WULF_TOKEN || true
log "uploading the file: wulf boot create name=big kernel=@$SRC"
t0=$(now_ns)
run_child timeout 600 "$WULF" boot create name=big "kernel=@$SRC" </dev/null >"$TMP/upload.out" 2>&1 ||
  { cat "$TMP/upload.out" >&2; die "wulf boot create failed"; }
t1=$(now_ns)
UPLOAD_S=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e9 }')
SHA=$("$WULF" boot ls big --json | sed -n 's/.*"sha256": *"\([0-9a-f]\{64\}\)".*/\1/p' | head -n 1)
[[ "$SHA" == "$SRC_SHA" ]] || die "wulf boot ls big --json shows the kernel's sha256 '$SHA', the file has $SRC_SHA"
BLOB="$DATA/blobs/sha256/$SHA"
[[ -f "$BLOB" && $(stat -c %s "$BLOB") == "$SIZE" ]] || die "blob $BLOB missing or of the wrong size"
rm -f "$SRC" # the blob is the only copy from here on
log "uploaded in $UPLOAD_S s, sha256 $SHA"
# A fresh wulfd, so VmHWM covers serving only (not the upload).
stop_wulfd
start_wulfd
WULFD_HWM_START=$(awk '/^VmHWM/ { print $2 }' "/proc/$WULFD_PID/status")

# ---------------------------------------------------------------- nginx
NPORT=$(pick_port)
while [[ "$NPORT" == "$WPORT" ]]; do NPORT=$(pick_port); done
NG="$TMP/nginx"
mkdir -p "$NG/logs" "$TMP/www/boot/file"
ln "$BLOB" "$TMP/www/boot/file/$SHA" # same inode: both servers read the same page cache
cat >"$NG/nginx.conf" <<EOF
user root;
worker_processes auto;
pid $NG/nginx.pid;
error_log $NG/logs/error.log warn;
daemon off;
events { worker_connections 1024; }
http {
    types { }
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=64 inactive=60s;
    access_log off;
    client_body_temp_path $NG/client_body;
    proxy_temp_path $NG/proxy;
    fastcgi_temp_path $NG/fastcgi;
    uwsgi_temp_path $NG/uwsgi;
    scgi_temp_path $NG/scgi;
    server {
        listen 127.0.0.1:$NPORT;
        root $TMP/www;
    }
}
EOF
"$NGINX" -t -q -c "$NG/nginx.conf" -p "$NG/" 2>"$NG/t.log" || { cat "$NG/t.log" >&2; die "nginx -t failed"; }
"$NGINX" -c "$NG/nginx.conf" -p "$NG/" >"$NG/out.log" 2>&1 &
NGINX_PID=$!
for ((i = 0; i < 100; i++)); do
  kill -0 "$NGINX_PID" 2>/dev/null || { cat "$NG/out.log" "$NG/logs/error.log" >&2 || true; die "nginx exited at start"; }
  if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$NPORT/"; then break; fi
  sleep 0.1
done
mapfile -t NGINX_WORKERS < <(pgrep -P "$NGINX_PID" || true)
((${#NGINX_WORKERS[@]} > 0)) || die "nginx has no worker processes"
log "nginx $NGINX_VERSION on 127.0.0.1:$NPORT, master $NGINX_PID, ${#NGINX_WORKERS[@]} workers; wulfd on 127.0.0.1:$WPORT, pid $WULFD_PID"

declare -A URL PIDS
URL[wulfd]="http://127.0.0.1:$WPORT/boot/file/$SHA"
URL[nginx]="http://127.0.0.1:$NPORT/boot/file/$SHA"
server_pids() { if [[ $1 == wulfd ]]; then echo "$WULFD_PID"; else echo "$NGINX_PID ${NGINX_WORKERS[*]}"; fi; }

# ---------------------------------------------------------------- checks (and warm the page cache)
for s in wulfd nginx; do
  got=$(curl -sf --max-time 120 "${URL[$s]}" | sha256sum | cut -d' ' -f1) || die "$s: full download failed"
  [[ "$got" == "$SHA" ]] || die "$s: full download has sha256 $got, expected $SHA"
  part=$(curl -s --max-time 10 -r 100-199 -o /dev/null -w '%{http_code} %{size_download}' "${URL[$s]}")
  [[ "$part" == "206 100" ]] || die "$s: Range 100-199 answered '$part', expected '206 100'"
  log "$s: full download matches sha256, Range request OK"
done

# ---------------------------------------------------------------- batches
# run_batch SERVER CONC KEY: CONC parallel full downloads; results in R_* [KEY]
declare -A R_GBPS R_WALL R_CPU R_BUSY R_SLOW R_HWM
run_batch() {
  local s=$1 c=$2 key=$3 out="$TMP/batch.out" maxt t0 t1 pids c0 c1 m0 m1 rc=0 ok bytes
  maxt=$((SIZE_MIB * c / 50 + 60)) # >= 50 MiB/s aggregate, or it is a failure
  read -r -a pids <<<"$(server_pids "$s")"
  if [[ $s == wulfd ]]; then echo 5 >"/proc/$WULFD_PID/clear_refs" 2>/dev/null || true; fi
  sample_interference "$s c=$c"
  : >"$out"
  c0=$(proc_ticks "${pids[@]}")
  m0=$(machine_cpu)
  t0=$(now_ns)
  run_child timeout $((maxt + 30)) bash -c 'seq "$1" | xargs -P "$1" -I{} curl -s -o /dev/null --max-time "$2" \
      -w "%{http_code} %{size_download} %{time_total}\n" "$3"' _ "$c" "$maxt" "${URL[$s]}" >"$out" || rc=$?
  t1=$(now_ns)
  m1=$(machine_cpu)
  c1=$(proc_ticks "${pids[@]}")
  ok=$(awk -v n="$SIZE" '$1 == 200 && $2 == n' "$out" | wc -l)
  ((rc == 0 && ok == c)) || { head -n 5 "$out" >&2; die "$s c=$c: $ok of $c downloads complete (rc $rc)"; }
  bytes=$(awk '{ s += $2 } END { printf "%.0f", s }' "$out")
  R_WALL[$key]=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e9 }')
  R_GBPS[$key]=$(awk -v b="$bytes" -v d=$((t1 - t0)) 'BEGIN { printf "%.3f", b / d }')
  R_CPU[$key]=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v b="$bytes" 'BEGIN { printf "%.3f", t / hz / (b / 1e9) }')
  R_BUSY[$key]=$(awk -v a="$m0" -v b="$m1" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]) }')
  R_SLOW[$key]=$(awk 'BEGIN { m = 0 } $3 > m { m = $3 } END { printf "%.2f", m }' "$out")
  if [[ $s == wulfd ]]; then
    R_HWM[$key]=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$WULFD_PID/status")
  fi
  log "$s c=$c: ${R_GBPS[$key]} GB/s ($bytes B in ${R_WALL[$key]} s), slowest client ${R_SLOW[$key]} s, server CPU ${R_CPU[$key]} s/GB, machine busy ${R_BUSY[$key]}%${R_HWM[$key]:+, wulfd VmHWM ${R_HWM[$key]} MiB}"
}

# Runs beyond the second are skipped when they would push the benchmark (after the build)
# past BUDGET_S seconds, judged from the duration of the previous run of that concurrency.
declare -A NRUN PAIR_S
SKIPPED=""
for c in "${CONC_LIST[@]}"; do NRUN[$c]=0; done
for ((r = 1; r <= RUNS; r++)); do
  for ci in "${!CONC_LIST[@]}"; do
    c=${CONC_LIST[$ci]}
    if ((r > 2)); then
      left=$((T_BENCH + BUDGET_S - $(date +%s) - (PERF == 1 ? 2 * PERF_SECS + 10 : 0)))
      if ((${PAIR_S[$c]} > left)); then
        log "skipping run $r of c=$c: it would take ~${PAIR_S[$c]} s, ${left} s left of BUDGET_S=$BUDGET_S"
        SKIPPED+="run $r of $c clients skipped (time budget); "
        continue
      fi
    fi
    if (((r + ci) % 2)); then order=(nginx wulfd); else order=(wulfd nginx); fi
    p0=$(date +%s)
    for s in "${order[@]}"; do
      kill -0 "$WULFD_PID" 2>/dev/null || { tail -n 30 "$TMP/wulfd.log" >&2; die "wulfd died"; }
      kill -0 "$NGINX_PID" 2>/dev/null || die "nginx died"
      run_batch "$s" "$c" "$s,$c,$r"
    done
    PAIR_S[$c]=$(($(date +%s) - p0 + 1))
    NRUN[$c]=$r
  done
done
WULFD_HWM_END=$(awk '/^VmHWM/ { print $2 }' "/proc/$WULFD_PID/status")
WULFD_THREADS=$(awk '/^Threads/ { print $2 }' "/proc/$WULFD_PID/status")

# ---------------------------------------------------------------- profile
PROFILE=""
if [[ "$PERF" == 1 ]]; then
  for s in wulfd nginx; do
    read -r -a pids <<<"$(server_pids "$s")"
    log "profiling $s for $PERF_SECS s under 8 clients (perf record -F 999)"
    # 8 clients downloading over and over; timeout ends the whole group (xargs and curls).
    (timeout $((PERF_SECS + 1)) bash -c 'seq 100000 | xargs -P 8 -I{} curl -s -o /dev/null --max-time "$1" "$2"' _ \
      $((PERF_SECS + 3)) "${URL[$s]}" >/dev/null 2>&1 || true) &
    loadpid=$!
    sleep 0.5
    pl=$(
      IFS=,
      echo "${pids[*]}"
    )
    c0=$(proc_ticks "${pids[@]}")
    if timeout $((PERF_SECS + 30)) perf record -q -F 999 -o "$TMP/perf-$s.data" -p "$pl" -- sleep "$PERF_SECS" >"$TMP/perf-$s.log" 2>&1; then
      c1=$(proc_ticks "${pids[@]}")
      top=$(perf report -i "$TMP/perf-$s.data" --no-children --sort sym --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -n 14 | sed -E 's/ +$//; s/^ +//' | cut -c1-140 || true)
      split=$(perf report -i "$TMP/perf-$s.data" --no-children --sort dso --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -n 5 | sed -E 's/^ +//; s/ +/ /g' | sed 's/ *$//' | paste -sd';' | sed 's/;/; /g' || true)
      cpus=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v d="$PERF_SECS" 'BEGIN { printf "%.2f", t / hz / d }')
      PROFILE+="$s: $cpus CPUs busy on average while profiled; by DSO: $split"$'\n'"$top"$'\n\n'
    else
      log "perf record failed: $(head -c 300 "$TMP/perf-$s.log")"
    fi
    wait "$loadpid" 2>/dev/null || true
  done
fi

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
sample_interference "end"
T_TOTAL=$(($(date +%s) - T_START))
T_BENCH_TOTAL=$(($(date +%s) - T_BENCH))
RUNS_DESC=$(for c in "${CONC_LIST[@]}"; do printf '%s clients: %s runs, ' "$c" "${NRUN[$c]}"; done | sed 's/, $//')

# ---------------------------------------------------------------- report
vals() { # ARRAY SERVER CONC
  local -n a=$1
  local r out=""
  for ((r = 1; r <= NRUN[$3]; r++)); do out+="${a[$2,$3,$r]} "; done
  echo "$out"
}
declare -A M_GBPS
TABLE=$(
  printf '| clients | nginx GB/s | wulfd GB/s | wulfd / nginx | vs 0.9x target | nginx GB/s, min–max of the runs | wulfd GB/s, min–max of the runs | nginx CPU s/GB | wulfd CPU s/GB | wulfd / nginx CPU per GB | slowest client nginx / wulfd (s) | machine CPU busy nginx / wulfd | wulfd VmHWM (MiB) |\n'
  printf '|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  for c in "${CONC_LIST[@]}"; do
    ng=$(vals R_GBPS nginx "$c" | median)
    wu=$(vals R_GBPS wulfd "$c" | median)
    ratio=$(awk -v a="$wu" -v b="$ng" 'BEGIN { printf "%.2f", a / b }')
    verdict=$(awk -v r="$ratio" -v t="$TARGET_RATIO" 'BEGIN { print (r >= t ? "meets" : "MISSES") }')
    ncpu=$(vals R_CPU nginx "$c" | median)
    wcpu=$(vals R_CPU wulfd "$c" | median)
    cr=$(awk -v a="$wcpu" -v b="$ncpu" 'BEGIN { printf "%.1f", a / b }')
    nslow=$(vals R_SLOW nginx "$c" | median)
    wslow=$(vals R_SLOW wulfd "$c" | median)
    nbusy=$(vals R_BUSY nginx "$c" | median)
    wbusy=$(vals R_BUSY wulfd "$c" | median)
    hwm=$(vals R_HWM wulfd "$c" | tr ' ' '\n' | sort -g | tail -n 1)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s× | %s / %s | %s%% / %s%% | %s |\n' "$c" \
      "$(fmt "$ng" %.2f)" "$(fmt "$wu" %.2f)" "$ratio" "$verdict" \
      "$(vals R_GBPS nginx "$c" | spread %.2f)" "$(vals R_GBPS wulfd "$c" | spread %.2f)" \
      "$(fmt "$ncpu" %.3f)" "$(fmt "$wcpu" %.3f)" "$cr" \
      "$(fmt "$nslow" %.1f)" "$(fmt "$wslow" %.1f)" "$nbusy" "$wbusy" "$hwm"
  done
)
RAW=$(
  printf '| server | clients | GB/s per run | wall s per run | server CPU s/GB per run |\n|---|---:|---|---|---|\n'
  for c in "${CONC_LIST[@]}"; do
    for s in nginx wulfd; do
      printf '| %s | %s | %s | %s | %s |\n' "$s" "$c" "$(vals R_GBPS "$s" "$c" | xargs)" "$(vals R_WALL "$s" "$c" | xargs)" "$(vals R_CPU "$s" "$c" | xargs)"
    done
  done
)
INTERFERENCE=$(interference)
HWM_START_MIB=$(awk -v k="$WULFD_HWM_START" 'BEGIN { printf "%.1f", k / 1024 }')
HWM_END_MIB=$(awk -v k="$WULFD_HWM_END" 'BEGIN { printf "%.1f", k / 1024 }')

echo
echo "HTTP boot file benchmark: $DATE, $NPROC cores, $CPU_MODEL; $SIZE B file; medians ($RUNS_DESC); ${T_BENCH_TOTAL} s after the build, ${T_TOTAL} s in all"
echo
echo "$TABLE"
echo
echo "$RAW"
echo
echo "wulfd VmHWM: $HWM_START_MIB MiB after restart, peak per batch in the table (reset before each batch), $WULFD_THREADS threads at the end"
echo "loadavg start $LOAD_START, end $LOAD_END; concurrent compile: $INTERFERENCE"
if [[ -n "$PROFILE" ]]; then
  echo
  echo "Profiles (perf record -F 999 -p PID, self time by symbol, 8 clients):"
  echo "$PROFILE"
fi

if [[ "${WRITE_RESULTS:-1}" != 0 ]]; then
  SEC="$TMP/section.md"
  {
    echo "$HEADING"
    echo
    echo "- Date: $DATE"
    echo "- Machine: $NPROC cores (\`nproc\`), $CPU_MODEL, $MEM_TOTAL RAM, kernel $KERNEL. Clients (curl) and servers share the $NPROC cores: every figure is for a CPU-bound loopback, not a network."
    echo "- Command: \`$CMD\` (from the repository root): ${T_BENCH_TOTAL} s after the build, ${T_TOTAL} s in all"
    echo "- Software: $WULF_VERSION (\`cargo build --release -p wulfd -p wulf-cli\`), nginx $NGINX_VERSION (Debian nginx-light), $CURL_VERSION"
    echo "- Load: loadavg $LOAD_START at start, $LOAD_END at end; concurrent compile: $INTERFERENCE"
    echo
    echo "Medians ($RUNS_DESC${SKIPPED:+; ${SKIPPED%; }}; the median of 2 runs is their mean); GB = 10^9 bytes; file $SIZE bytes (${SIZE_MIB} MiB); target: wulfd ≥ ${TARGET_RATIO}× nginx aggregate throughput."
    echo
    echo "$TABLE"
    echo
    echo "Every run:"
    echo
    echo "$RAW"
    echo
    echo "Method:"
    echo
    echo "- One random ${SIZE_MIB} MiB file, uploaded as a kernel with \`wulf boot create name=big kernel=@FILE\` (${UPLOAD_S} s) to \`wulfd --config FILE\` (\`[dhcp]\`, \`[tftp]\`, \`[dns]\` disabled, \`--listen 127.0.0.1:PORT --log warn\`); the sha256 from \`wulf boot ls big --json\` is checked against the file's. wulfd is then restarted so its memory figures cover serving only. Clients fetch \`/boot/file/<sha256>\` without a token, as iPXE fetches a kernel (an image goes only to a node with its enrollment or node token)."
    echo "- nginx: a private master (\`nginx -c CONF -p PREFIX\`, \`daemon off\`, not the system service) set up for static files as nginx's documentation (ngx_core_module, ngx_http_core_module) describes: \`worker_processes auto\` (one worker per core: ${#NGINX_WORKERS[@]} workers), \`sendfile on\` (the kernel copies the file to the socket), \`tcp_nopush on\` (with sendfile: the response header and the start of the file in full packets), \`open_file_cache max=64 inactive=60s\` (open descriptors kept between requests), \`access_log off\` (wulfd's access log is off for boot files too), default \`sendfile_max_chunk\`; no \`aio\`/\`directio\` (they are for files read from disk, bypassing or waiting on it; this file is in the page cache), serving a hard link of wulfd's blob under the same path, so both servers read the same inode and page cache. Before timing, one full download from each server is checked against the sha256 (this also warms the page cache) and a \`Range: bytes=100-199\` request must return 206 and 100 bytes."
    echo "- Batch: \`seq C | xargs -P C curl -s -o /dev/null --max-time T -w '%{http_code} %{size_download} %{time_total}'\`, C parallel downloads of the whole file; every download must return 200 and the full size. Aggregate GB/s = bytes received / wall time of the batch (first start to last end). \"Slowest client\" is the largest curl time_total in the batch."
    echo "- Order: for each run and concurrency both servers, the first server alternating, so background noise is shared."
    echo "- Server CPU: utime+stime from /proc/PID/stat (wulfd: the process; nginx: master + workers) before and after the batch, per GB received. On loopback part of the receiving side's TCP work (softirq) is charged to the sender, so this includes some client-side kernel work, alike for both servers. \"Machine CPU busy\" is from /proc/stat over all $NPROC cores (100% = both cores busy)."
    echo "- Memory: wulfd VmHWM reset (\`echo 5 > /proc/PID/clear_refs\`) before each wulfd batch and read after it; the table shows the largest over the runs. After the restart and before any download, VmHWM was $HWM_START_MIB MiB. A server that buffered the file would show ≥ ${SIZE_MIB} MiB."
    if [[ -n "$PROFILE" ]]; then
      echo "- Profile: \`perf record -F 999 -p PIDS -- sleep $PERF_SECS\` on each server (after the timed runs) while 8 curl clients download; self time by symbol (\`perf report --no-children --sort sym\`), [k] = kernel, [.] = user space. In this VM perf has no hardware PMU (cpu-clock sampling), so time spent with interrupts disabled shows up in \`_raw_spin_unlock_irqrestore\` and similar."
      echo
      echo '```'
      printf '%s\n' "${PROFILE%$'\n\n'}"
      echo '```'
    fi
    echo
  } >"$SEC"
  # Re-read the file now (others may have edited it during the run) and replace only this section.
  if [[ -f "$RESULTS_FILE" ]] && grep -qxF "$HEADING" "$RESULTS_FILE"; then
    awk -v h="$HEADING" -v sec="$SEC" '
      $0 == h { while ((getline l < sec) > 0) print l; skip = 1; next }
      skip && /^## / { skip = 0 }
      !skip { print }' "$RESULTS_FILE" >"$TMP/results.new"
  elif [[ -f "$RESULTS_FILE" ]]; then
    { printf '%s\n\n' "$(cat "$RESULTS_FILE")"; cat "$SEC"; } >"$TMP/results.new"
  else
    { printf '# Benchmarks\n\n'; cat "$SEC"; } >"$TMP/results.new"
  fi
  cat "$TMP/results.new" >"$RESULTS_FILE"
  log "wrote section to $RESULTS_FILE"
fi
