# Shared by the bench/*.sh scripts: `source "$SCRIPT_DIR/lib.sh"`.
#
# run_child CMD...      run CMD in the background and wait for it, so a signal is handled at
#                       once and cleanup can end it (its pid is in CHILD_PID meanwhile)
# stop_child            end that child, if any (for the scripts' cleanup traps)
# die MSG               log MSG as an error and exit 1
# pick_port             a free TCP port on 127.0.0.1 below the ephemeral range, where no
#                       outgoing connection takes it meanwhile (port_in_use PORT tests one)
# now, now_ns           the time: epoch seconds with microseconds / nanoseconds
# wait_gone PID [T]     wait up to T tenths of a second (50) for PID to exit, then SIGKILL it
# cpu_ticks PID         utime+stime of PID, all threads, in clock ticks (0 if it is gone)
# sample_interference W count compiler and QEMU processes now (another job disturbing the
#                       figures), logging them with W; COMPILE_SEEN of SAMPLES sample points
# interference          one line saying whether sample_interference ever saw any
# cpu_busy_total        busy and total CPU ticks of the machine (/proc/stat)
# cpu_self              CPU ticks of this script and its waited-for children
# sleep_until T         sleep until epoch second T (a float), if it is still ahead
# timestamp_lines       copy stdin to stdout with the arrival time in front, logging each line
# hf_mean_ms F CMD, hf_sd_ms F CMD   mean / σ in ms of CMD in hyperfine's CSV export F
# machine_facts         set CPU_MODEL, MEM_TOTAL and DATE (UTC, to the minute) for the results
# install_missing C=P... apt-get install package P for each command C that is missing
# cargo_on_path         put ~/.cargo/bin on PATH when cargo is not found
# write_section H FILE  put FILE, a section whose first line is the heading H, into
#                       $RESULTS_FILE: in place of the section with that heading, else at the
#                       end (uses $TMP for the new file); does nothing with WRITE_RESULTS=0

CHILD_PID=""
COMPILE_SEEN=0
SAMPLES=0

die() { log "ERROR: $*"; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    if ! port_in_use "$p"; then echo "$p"; return 0; fi
  done
  die "no free port found"
}
now() { printf '%s\n' "$EPOCHREALTIME"; }
now_ns() { date +%s%N; }

wait_gone() {
  local i
  for ((i = 0; i < ${2:-50}; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

sample_interference() {
  local c
  SAMPLES=$((SAMPLES + 1))
  c=$(ps -eo comm= | grep -cxE 'rustc|cargo|cargo-clippy|clippy-driver|cc1|cc1plus|ld|ld\.lld|rust-lld|qemu-system-x86_64|qemu-system-x86' || true)
  if ((c > 0)); then COMPILE_SEEN=$((COMPILE_SEEN + 1)); log "note: $c compiler/QEMU process(es) running (another job?) during '$1'"; fi
}
interference() {
  if ((COMPILE_SEEN > 0)); then
    echo "yes: compiler or QEMU processes were seen at $COMPILE_SEEN of $SAMPLES sample points; figures may be disturbed"
  else
    echo "none seen (no rustc/cargo/cc/ld/QEMU process at any of $SAMPLES sample points)"
  fi
}

# A benchmark's wulfd config: its data directory, 127.0.0.1:PORT, log warn, DHCP, TFTP and
# DNS off.
quiet_wulfd_config() { # FILE DATADIR PORT
  printf 'data_dir = "%s"\nlisten = "127.0.0.1:%s"\nlog = "warn"\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n' \
    "$2" "$3" >"$1"
}

# Remove network namespaces and the processes in them (TERM, then KILL after a moment).
remove_netns() { # NS...
  local ns p
  for ns in "$@"; do
    ip netns list 2>/dev/null | grep -qw "$ns" || continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  return 0
}

# A DHCP benchmark's wulfd config: its data directory, the API on 127.0.0.1:8740, DHCP on
# with its defaults, TFTP and DNS off.
dhcp_wulfd_config() { # FILE DATADIR
  printf 'data_dir = "%s"\nlisten = "127.0.0.1:8740"\n\n[tftp]\nenabled = false\n\n[dns]\nenabled = false\n' "$2" >"$1"
}

run_child() {
  local rc=0
  "$@" &
  CHILD_PID=$!
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}

stop_child() {
  if [[ -n "$CHILD_PID" ]]; then
    kill "$CHILD_PID" 2>/dev/null || true
    wait "$CHILD_PID" 2>/dev/null || true
  fi
}

write_section() {
  local heading=$1 section=$2
  [[ "${WRITE_RESULTS:-1}" != 0 ]] || return 0
  if [[ -f "$RESULTS_FILE" ]] && grep -qxF "$heading" "$RESULTS_FILE"; then
    awk -v h="$heading" -v sec="$section" '
      $0 == h { while ((getline l < sec) > 0) print l; skip = 1; next }
      skip && /^## / { skip = 0 }
      !skip { print }' "$RESULTS_FILE" >"$TMP/results.new"
  elif [[ -f "$RESULTS_FILE" ]]; then
    { cat "$RESULTS_FILE"; echo; cat "$section"; } >"$TMP/results.new"
  else
    { printf '# Benchmarks\n\n'; cat "$section"; } >"$TMP/results.new"
  fi
  cat "$TMP/results.new" >"$RESULTS_FILE"
  log "wrote section to $RESULTS_FILE"
}

install_missing() {
  local need=() pair
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null 2>&1 || need+=("${pair#*=}")
  done
  ((${#need[@]})) || return 0
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
}

cargo_on_path() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}

machine_facts() {
  CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  CPU_MODEL=${CPU_MODEL:-unknown}
  MEM_TOTAL=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
  DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
}

cpu_busy_total() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; t = b + $5 + $6; print b, t }' /proc/stat; }
cpu_self() { sed 's/^.*) //' "/proc/$$/stat" | awk '{ print $12 + $13 + $14 + $15 }'; }
sleep_until() {
  local d
  d=$(awk -v t="$1" -v n="$EPOCHREALTIME" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
  [[ "$d" == 0.000 ]] || sleep "$d"
}
timestamp_lines() {
  local l
  while IFS= read -r l; do
    printf '%s %s\n' "$EPOCHREALTIME" "$l"
    log "sim: $l"
  done
}
hf_mean_ms() { awk -F, -v n="$2" '$1 == n { printf "%.1f", $2 * 1000 }' "$1"; }
hf_sd_ms() { awk -F, -v n="$2" '$1 == n { printf "%.1f", $3 * 1000 }' "$1"; }
