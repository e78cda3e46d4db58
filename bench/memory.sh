#!/usr/bin/env bash
# Head memory benchmark: wulfd's VmRSS and VmHWM while N simulated nodes are created, boot
# and report, for each N, with no command polls (those cost per open connection; see
# bench/status.sh).
#
# For each N (default 10000 50000 100000), and for each wulfd build given (WULFDS; the
# current target/release/wulfd by default):
#   1. a fresh wulfd (new data dir, DHCP/TFTP/DNS off, 127.0.0.1 only);
#   2. `wulf sim --nodes N --boot-secs 10 --duration DURATION --connections 64 --polls 0`:
#      the sim creates the N nodes, boots each (iPXE script, enrollment), then every node
#      reports every 10 s over a new connection per report, and sends a clean-shutdown
#      report at the end;
#   3. wulfd's VmRSS (and thread count) from /proc/PID/status every 2 s; recorded: VmRSS
#      when the sim prints "booted", its range from 20 s after that to the sim's end
#      ("reporting"), and VmHWM and VmRSS 10 s after the sim ended.
# Prints a table and writes the section "## Memory: wulfd VmRSS with simulated nodes
# (bench/memory.sh)" of bench/RESULTS.md. Memory does not depend much on the machine's
# load, but the intake the sim reaches does: it is printed next to the figures.
#
# Environment:
#   SIZES="10000 50000 100000"  node counts
#   DURATION=60        sim --duration (seconds of reporting after the boots)
#   WULFDS="PATH ..."  wulfd binaries to compare (default: target/release/wulfd)
#   WRITE_RESULTS=0    do not touch bench/RESULTS.md
#   SKIP_BUILD=1       never build (default: build the release binaries if missing)
# Uses only 127.0.0.1. Runs as root non-interactively.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RESULTS_FILE="$SCRIPT_DIR/RESULTS.md"
HEADING="## Memory: wulfd VmRSS with simulated nodes (bench/memory.sh)"

CMD=""
for v in SIZES DURATION WULFDS SKIP_BUILD; do
  if [[ -n "${!v:-}" ]]; then CMD+="$v=$(printf %q "${!v}") "; fi
done
CMD+="bash bench/memory.sh"

read -r -a SIZE_LIST <<<"${SIZES:-10000 50000 100000}"
DURATION=${DURATION:-60}

log() { printf '[memory.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
source "$SCRIPT_DIR/lib.sh"
[[ "$DURATION" =~ ^[0-9]+$ ]] && ((DURATION >= 30)) || die "DURATION must be an integer >= 30"
for n in "${SIZE_LIST[@]}"; do [[ "$n" =~ ^[0-9]+$ && "$n" -gt 0 ]] || die "bad size '$n'"; done
T_START=$(date +%s)

install_missing curl=curl
cargo_on_path
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ ! -x "$TARGET_DIR/release/wulfd" || ! -x "$TARGET_DIR/release/wulf" ]]; then
  [[ "${SKIP_BUILD:-0}" != 1 ]] || die "binaries not found in $TARGET_DIR/release (SKIP_BUILD=1)"
  log "building release binaries (missing): cargo build --release -p wulfd -p wulf-cli"
  (cd "$ROOT" && cargo build --release -p wulfd -p wulf-cli) || die "cargo build failed"
fi
read -r -a BUILDS <<<"${WULFDS:-$TARGET_DIR/release/wulfd}"
for b in "${BUILDS[@]}"; do [[ -x "$b" ]] || die "no wulfd binary at $b"; done

TMP=$(mktemp -d /tmp/wulf-bench-memory.XXXXXX)
mkdir "$TMP/bin"
cp "$TARGET_DIR/release/wulf" "$TMP/bin/"
WULF="$TMP/bin/wulf"
WULFD_PID=""
SIM_PID=""
SAMPLER_PID=""
cleanup() {
  local rc=$?
  for p in "$SIM_PID" "$SAMPLER_PID" "$WULFD_PID"; do
    if [[ -n "$p" ]]; then
      kill "$p" 2>/dev/null || true
      wait_gone "$p" 100
      wait "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

machine_facts
SAMPLES=0
COMPILE_SEEN=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
ROWS=()
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

run_one() { # BUILD_INDEX BINARY N
  local idx=$1 bin=$2 n=$3 dir="$TMP/run-$1-$3" port cfg i booted ended hwm rss at_boot range rate boot_s
  mkdir -p "$dir/data"
  cp "$bin" "$dir/wulfd"
  port=$(pick_port)
  cfg="$dir/wulfd.toml"
  quiet_wulfd_config "$cfg" "$dir/data" "$port"
  "$dir/wulfd" --config "$cfg" >"$dir/wulfd.log" 2>&1 &
  WULFD_PID=$!
  for ((i = 0; i < 150; i++)); do
    kill -0 "$WULFD_PID" 2>/dev/null || { cat "$dir/wulfd.log" >&2; die "wulfd exited at start"; }
    if [[ -s "$dir/data/admin.token" ]] && curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then break; fi
    sleep 0.1
  done
  ((i < 150)) || die "wulfd did not come up on 127.0.0.1:$port"
  (while kill -0 "$WULFD_PID" 2>/dev/null; do
    echo "$(date +%s) $(awk '$1 == "VmRSS:" { r = $2 } $1 == "Threads:" { t = $2 } END { print r, t }' "/proc/$WULFD_PID/status" 2>/dev/null)"
    sleep 2
  done) >"$dir/rss" &
  SAMPLER_PID=$!
  sample_interference "N=$n, build $idx"
  log "N=$n, build $idx ($bin): wulf sim --nodes $n --boot-secs 10 --duration $DURATION --connections 64 --polls 0"
  WULF_URL="https://127.0.0.1:$port" WULF_CA="$dir/data/tls/ca.pem" WULF_TOKEN=$(cat "$dir/data/admin.token") \
    timeout $((DURATION + 900)) "$WULF" sim --nodes "$n" --boot-secs 10 --duration "$DURATION" --connections 64 --polls 0 \
    >"$dir/sim.out" 2> >(while IFS= read -r l; do echo "$(date +%s) $l"; done >"$dir/sim.err") &
  SIM_PID=$!
  wait "$SIM_PID" || { tail -5 "$dir/sim.err" >&2; die "wulf sim failed (N=$n, build $idx)"; }
  SIM_PID=""
  sleep 10
  sample_interference "N=$n, build $idx, end"
  hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$WULFD_PID/status")
  rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$WULFD_PID/status")
  kill "$WULFD_PID"
  wait_gone "$WULFD_PID" 100
  wait "$WULFD_PID" 2>/dev/null || true
  WULFD_PID=""
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=""
  booted=$(awk '/ simulated nodes booted in / { print $1; exit }' "$dir/sim.err")
  ended=$(awk '/ reports in / { print $1; exit }' "$dir/sim.err")
  [[ -n "$booted" && -n "$ended" ]] || { tail -5 "$dir/sim.err" >&2; die "the sim printed no boot or end line (N=$n)"; }
  boot_s=$(sed -n 's/.* booted in \([0-9.]*\) s.*/\1/p' "$dir/sim.err" | head -n 1)
  rate=$(sed -n 's/.* reports in [0-9.]* s (\([0-9]*\)\/s).*/\1/p' "$dir/sim.err" | head -n 1)
  at_boot=$(awk -v b="$booted" '$1 >= b - 2 && $2 != "" { print $2; exit }' "$dir/rss")
  range=$(awk -v a="$((booted + 20))" -v e="$ended" '$1 >= a && $1 <= e && $2 != "" {
      if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2 }
      END { if (min == "") print "–"; else printf "%.0f–%.0f", min / 1024, max / 1024 }' "$dir/rss")
  local threads
  threads=$(awk '$3 > m { m = $3 } END { print m + 0 }' "$dir/rss")
  ROWS+=("| #$idx | $n | $boot_s | ${rate:-–} | $(mib "${at_boot:-0}") | $range | $(mib "$hwm") | $(mib "$rss") | $threads |")
  log "N=$n build $idx: booted $(mib "${at_boot:-0}") MiB, reporting $range MiB, VmHWM $(mib "$hwm") MiB, end $(mib "$rss") MiB, threads ≤ $threads"
}

for n in "${SIZE_LIST[@]}"; do
  for i in "${!BUILDS[@]}"; do
    run_one "$i" "${BUILDS[$i]}" "$n"
  done
done

SECTION="$TMP/section.md"
{
  echo "$HEADING"
  echo
  echo "- Date: $DATE"
  echo "- Machine: $(nproc) cores (\`nproc\`), $CPU_MODEL, $MEM_TOTAL, kernel $(uname -r)"
  echo "- Command: \`$CMD\` (from the repository root), $(($(date +%s) - T_START)) s in all"
  echo "- Builds: $(for i in "${!BUILDS[@]}"; do printf '#%s %s; ' "$i" "${BUILDS[$i]}"; done)wulf sim from $TARGET_DIR/release/wulf"
  echo "- Load: loadavg $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end; other jobs: $(interference)"
  echo
  echo "| build | N nodes | create + boot (s) | reports/s reached (offered N/10) | VmRSS when booted (MiB) | VmRSS while reporting (MiB) | VmHWM (MiB) | VmRSS at the end (MiB) | threads, most |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Method: a fresh \`wulfd --config CFG\` per run (data_dir new, listen 127.0.0.1:PORT, log warn, [dhcp], [tftp], [dns] enabled = false; embedded store); \`wulf sim --nodes N --boot-secs 10 --duration $DURATION --connections 64 --polls 0\` with the admin token; VmRSS and Threads from /proc/PID/status every 2 s; \"when booted\": the first sample at or after the sim's \"booted\" line (less 2 s); \"while reporting\": min–max of the samples from 20 s after it to the sim's end; VmHWM (peak since start) and VmRSS 10 s after the sim ended (after its clean-shutdown reports). MiB = 1024 KiB. Target (issue 14 §4): < 150 MiB at 100,000 reporting nodes."
} >"$SECTION"
cat "$SECTION"
write_section "$HEADING" "$SECTION"
