#!/usr/bin/env bash
# DHCP benchmark: perfdhcp against wulfd, Kea (kea-dhcp4, memfile, host reservations)
# and dnsmasq (dhcp-host), each serving the same 10,000 reserved MACs.
#
# Topology (created here, removed on exit): network namespace SRV with veth end
# 10.90.0.1/16, namespace CLI with the other end 10.90.0.2/16. perfdhcp runs in CLI
# as a relay (`-l 10.90.0.2`: giaddr = 10.90.0.2) and talks to 10.90.0.1:67. One
# server at a time runs in SRV. (SRV's loopback is up only for wulfd's API, which
# the wulf CLI uses to load the nodes; no DHCP packet crosses a loopback.)
#
# For each server and each rate in RATES (rising; stop after a rate with > 10 %
# drops): `perfdhcp -4 -l 10.90.0.2 -r RATE -R 10000 -M MACS -p PERIOD -W 500000
# -d 1 10.90.0.1`. Recorded: completed 4-way exchanges/s (perfdhcp's "Rate", i.e.
# ACKs received / test period), drop % of DISCOVER-OFFER and REQUEST-ACK, the
# server's CPU use over the run. Best sustained = highest exchanges/s among runs
# with both drop ratios < 1 %.
#
# Environment:
#   RATES="1000 2000 5000 7500 10000 15000 20000 30000"   offered DORA exchanges/s
#                        (if the first rate already drops >= 1 %, 500 and 250 are tried)
#   PERIOD=6             seconds per perfdhcp run
#   NMACS=10000          reserved MACs
#   SERVERS="wulfd kea kea-mt dnsmasq"
#                        kea = Kea 2.x default (single-threaded);
#                        kea-mt = Kea with multi-threading (2 threads)
#   WRITE_RESULTS=0      do not touch bench/RESULTS.md
#   SKIP_BUILD=1         accepted for symmetry: binaries are built only if missing
# Runs as root non-interactively. Output: tables on stdout, section
# "## DHCP: perfdhcp vs Kea and dnsmasq (bench/dhcp.sh)" in bench/RESULTS.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RESULTS_FILE="$SCRIPT_DIR/RESULTS.md"
HEADING="## DHCP: perfdhcp vs Kea and dnsmasq (bench/dhcp.sh)"

CMD=""
for v in RATES PERIOD NMACS SERVERS SKIP_BUILD WRITE_RESULTS; do
  if [[ -n "${!v:-}" ]]; then CMD+="$v=$(printf %q "${!v}") "; fi
done
CMD+="bash bench/dhcp.sh"

read -r -a RATE_LIST <<<"${RATES:-1000 2000 5000 7500 10000 15000 20000 30000}"
read -r -a SERVER_LIST <<<"${SERVERS:-wulfd kea kea-mt dnsmasq}"
PERIOD=${PERIOD:-6}
NMACS=${NMACS:-10000}

log() { printf '[dhcp.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
source "$SCRIPT_DIR/lib.sh"
[[ $(id -u) == 0 ]] || die "run as root (network namespaces, port 67)"
T_START=$(date +%s)

# ---------------------------------------------------------------- tools
install_missing perfdhcp=kea-admin kea-dhcp4=kea-dhcp4-server dnsmasq=dnsmasq-base
# The Debian packages may start their own services; we run the binaries directly.
if command -v systemctl >/dev/null 2>&1; then
  systemctl stop kea-dhcp4-server dnsmasq >/dev/null 2>&1 || true
  systemctl disable kea-dhcp4-server dnsmasq >/dev/null 2>&1 || true
fi

WULFD="$ROOT/target/release/wulfd"
WULF="$ROOT/target/release/wulf"
if [[ ! -x "$WULFD" || ! -x "$WULF" ]]; then
  log "building release binaries (missing)"
  (cd "$ROOT" && cargo build --release -p wulfd -p wulf-cli)
fi
WULF_VERSION=$("$WULF" --version 2>/dev/null || echo unknown)
KEA_VERSION=$(kea-dhcp4 -v 2>/dev/null | head -1 || echo unknown)
DNSMASQ_VERSION=$(dnsmasq --version 2>/dev/null | head -1 | awk '{print $3}')
PERFDHCP_VERSION=$(perfdhcp -v 2>&1 | head -1 || true)

# ---------------------------------------------------------------- namespaces
TMP=$(mktemp -d /tmp/wulf-dhcp-bench.XXXXXX)
SRV=wulfb-srv-$$
CLI=wulfb-cli-$$
VS=wbs$$
VC=wbc$$
VS=${VS:0:15}
VC=${VC:0:15}
SERVER_PID=""

cleanup() {
  set +e
  for ns in "$SRV" "$CLI"; do
    if ip netns list 2>/dev/null | grep -qw "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
      sleep 0.3
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
      ip netns del "$ns" 2>/dev/null
    fi
  done
  ip link del "$VS" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$SRV"
ip netns add "$CLI"
ip link add "$VS" type veth peer name "$VC"
ip link set "$VS" netns "$SRV"
ip link set "$VC" netns "$CLI"
ip -n "$SRV" addr add 10.90.0.1/16 dev "$VS"
ip -n "$CLI" addr add 10.90.0.2/16 dev "$VC"
ip -n "$SRV" link set "$VS" up
ip -n "$CLI" link set "$VC" up
ip -n "$SRV" link set lo up
log "namespaces $SRV ($VS 10.90.0.1/16) and $CLI ($VC 10.90.0.2/16)"

# ---------------------------------------------------------------- MACs and reservations
MACS="$TMP/macs.txt"
awk -v n="$NMACS" 'BEGIN { for (i = 0; i < n; i++) printf "02:90:%02x:%02x:%02x:%02x\n", int(i/16777216)%256, int(i/65536)%256, int(i/256)%256, i%256 }' >"$MACS"

# ---------------------------------------------------------------- helpers
ns_srv() { ip netns exec "$SRV" "$@"; }


stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait_gone "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
  for p in $(ip netns pids "$SRV" 2>/dev/null); do kill "$p" 2>/dev/null || true; wait_gone "$p"; done
}

CLK_TCK=$(getconf CLK_TCK)

# UDP RcvbufErrors (datagrams the kernel dropped for a full socket receive buffer) in a namespace
rcvbuf_errors() {
  ip netns exec "$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] }' /proc/net/snmp 2>/dev/null || echo 0
}

# perfdhcp in CLI as a relay. Args: rate period outfile
run_perfdhcp() {
  local rate=$1 period=$2 out=$3
  timeout $((period + 20)) ip netns exec "$CLI" perfdhcp -4 -l 10.90.0.2 -r "$rate" -R "$NMACS" -M "$MACS" \
    -p "$period" -d 1 -W 500000 10.90.0.1 >"$out" 2>&1 || true
}

# parse perfdhcp output -> "rate do_sent do_rcvd do_drop% ra_sent ra_rcvd ra_drop%"
parse_perfdhcp() {
  awk '
    /^Rate:/ { rate = $2 }
    /Statistics for: DISCOVER-OFFER/ { sec = "do" }
    /Statistics for: REQUEST-ACK/ { sec = "ra" }
    /^sent packets:/ { s[sec] = $3 }
    /^received packets:/ { r[sec] = $3 }
    END {
      if (rate == "") rate = 0
      dd = (s["do"] > 0) ? 100 * (s["do"] - r["do"]) / s["do"] : 100
      dr = (s["ra"] > 0) ? 100 * (s["ra"] - r["ra"]) / s["ra"] : 100
      printf "%s %d %d %.2f %d %d %.2f\n", rate, s["do"], r["do"], dd, s["ra"], r["ra"], dr
    }' "$1"
}

start_wulfd() {
  local dir="$TMP/wulf-data" cfg="$TMP/wulfd.toml"
  mkdir -p "$dir"
  cat >"$cfg" <<EOF
data_dir = "$dir"
listen = "127.0.0.1:8740"

[tftp]
enabled = false

[dns]
enabled = false
EOF
  ip netns exec "$SRV" "$WULFD" --config "$cfg" --log warn >"$TMP/wulfd.log" 2>&1 &
  SERVER_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -f "$dir/admin.token" ]] && WULF_DATA_DIR="$dir" ns_srv "$WULF" net ls >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "wulfd exited: $(tail -5 "$TMP/wulfd.log")"
    sleep 0.1
  done
  WULF_DATA_DIR="$dir" ns_srv "$WULF" net create name=cluster first_ip=10.90.1.0 ip_count=20000 mask_bits=16 router_ip=10.90.0.1 >/dev/null
  local t0 t1
  t0=$(date +%s.%N)
  WULF_DATA_DIR="$dir" ns_srv "$WULF" node create --macs "$MACS" >/dev/null
  t1=$(date +%s.%N)
  log "wulfd: created $NMACS nodes in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s"
  # Reservations for the peers: the addresses wulfd gave the same MACs.
  WULF_DATA_DIR="$dir" ns_srv "$WULF" node ls --json >"$TMP/nodes.json"
  jq -r '.[] | select(.mac != null and .ip != null) | "\(.mac|ascii_downcase),\(.ip)"' "$TMP/nodes.json" >"$TMP/resv.csv" 2>/dev/null || true
  sleep 1.5 # interface set re-evaluated every second
}

write_reservations_fallback() {
  if [[ ! -s "$TMP/resv.csv" ]] || (($(wc -l <"$TMP/resv.csv") != NMACS)); then
    log "reservations: wulfd's node list unusable ($(wc -l <"$TMP/resv.csv" 2>/dev/null || echo 0) lines); using sequential addresses from 10.90.1.0"
    awk '{ i = NR - 1; n = 10*16777216 + 90*65536 + 256 + i;
           printf "%s,%d.%d.%d.%d\n", $1, int(n/16777216), int(n/65536)%256, int(n/256)%256, n%256 }' "$MACS" >"$TMP/resv.csv"
    RESV_NOTE="sequential addresses from 10.90.1.0 (wulfd's node list could not be read)"
  else
    RESV_NOTE="the addresses wulfd assigned to the same MACs (from \`wulf node ls --json\`)"
  fi
}

start_kea() { # threads (1 = default, single-threaded)
  local mt=$1 cfg="$TMP/kea.json"
  mkdir -p "$TMP/kea"
  {
    printf '{ "Dhcp4": {\n'
    printf '  "interfaces-config": { "interfaces": [ "%s" ], "dhcp-socket-type": "udp" },\n' "$VS"
    printf '  "lease-database": { "type": "memfile", "persist": false, "lfc-interval": 0 },\n'
    printf '  "host-reservation-identifiers": [ "hw-address" ],\n'
    printf '  "valid-lifetime": 86400, "renew-timer": 43200, "rebind-timer": 75600,\n'
    if ((mt > 1)); then
      printf '  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": %d, "packet-queue-size": 64 },\n' "$mt"
    else
      printf '  "multi-threading": { "enable-multi-threading": false },\n'
    fi
    printf '  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "%s" } ], "severity": "WARN" } ],\n' "$TMP/kea/kea.log"
    printf '  "subnet4": [ { "id": 1, "subnet": "10.90.0.0/16",\n'
    printf '    "option-data": [ { "name": "routers", "data": "10.90.0.1" } ],\n'
    printf '    "reservations": [\n'
    awk -F, '{ printf "%s      { \"hw-address\": \"%s\", \"ip-address\": \"%s\" }", (NR > 1 ? ",\n" : ""), $1, $2 } END { print "" }' "$TMP/resv.csv"
    printf '    ] } ]\n} }\n'
  } >"$cfg"
  KEA_PIDFILE_DIR="$TMP/kea" KEA_LOCKFILE_DIR="$TMP/kea" ip netns exec "$SRV" kea-dhcp4 -c "$cfg" >"$TMP/kea/stdout.log" 2>&1 &
  SERVER_PID=$!
  sleep 2
  kill -0 "$SERVER_PID" 2>/dev/null || die "kea-dhcp4 exited: $(tail -5 "$TMP/kea/stdout.log" "$TMP/kea/kea.log" 2>/dev/null)"
}

start_dnsmasq() {
  cp "$TMP/resv.csv" "$TMP/dnsmasq-hosts"
  ip netns exec "$SRV" dnsmasq --no-daemon --port=0 --dhcp-range=10.90.0.0,static,255.255.0.0 \
    --dhcp-hostsfile="$TMP/dnsmasq-hosts" --dhcp-authoritative --no-resolv --no-hosts \
    --leasefile-ro --dhcp-lease-max=$((NMACS * 2)) --quiet-dhcp --interface="$VS" \
    --pid-file="$TMP/dnsmasq.pid" --log-facility=- >"$TMP/dnsmasq.log" 2>&1 &
  SERVER_PID=$!
  sleep 1
  kill -0 "$SERVER_PID" 2>/dev/null || die "dnsmasq exited: $(tail -5 "$TMP/dnsmasq.log")"
}

# ---------------------------------------------------------------- measure
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A BEST ROWS
RESV_NOTE=""
: >"$TMP/resv.csv"

bench_server() { # name
  local name=$1
  case $name in
    wulfd) start_wulfd ;;
    kea) start_kea 1 ;;
    kea-mt) start_kea 2 ;;
    dnsmasq) start_dnsmasq ;;
    *) die "unknown server $name" ;;
  esac
  [[ -n "$RESV_NOTE" ]] || write_reservations_fallback
  # smoke test: a few exchanges must complete
  run_perfdhcp 20 2 "$TMP/$name-smoke.txt"
  read -r _ _ _ _ _ ra_rcvd _ <<<"$(parse_perfdhcp "$TMP/$name-smoke.txt")"
  if ((ra_rcvd == 0)); then
    log "$name: smoke test got no ACK; perfdhcp said:"; sed 's/^/    /' "$TMP/$name-smoke.txt" >&2
    ROWS[$name]="| (no answers in the smoke test) | | | | | |"$'\n'
    BEST[$name]=0
    stop_server
    return
  fi
  log "$name: smoke test ok ($ra_rcvd ACKs)"
  local rate best=0 rows="" out res r dd dr ra t0 t1 s0 s1 c0 c1 cpu first=1 down=0
  local rates=("${RATE_LIST[@]}")
  for ((k = 0; k < ${#rates[@]} && k < 12; k++)); do
    rate=${rates[$k]}
    out="$TMP/$name-$rate.txt"
    t0=$(cpu_ticks "$SERVER_PID"); s0=$(rcvbuf_errors "$SRV"); c0=$(rcvbuf_errors "$CLI")
    run_perfdhcp "$rate" "$PERIOD" "$out"
    t1=$(cpu_ticks "$SERVER_PID"); s1=$(rcvbuf_errors "$SRV"); c1=$(rcvbuf_errors "$CLI")
    cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v p="$PERIOD" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / p }')
    res=$(parse_perfdhcp "$out")
    read -r _ _ _ dd _ ra dr <<<"$res"
    r=$(awk -v a="$ra" -v p="$PERIOD" 'BEGIN { printf "%.0f", a / p }')
    log "$name @ $rate/s: $r exchanges/s, drops DO $dd %, RA $dr %, server CPU $cpu %, rcvbuf drops server $((s1 - s0)) client $((c1 - c0))"
    rows+="| $rate | $r | $dd | $dr | $cpu | $((s1 - s0)) | $((c1 - c0)) |"$'\n'
    cp "$out" "$TMP/keep-$name-$rate.txt"
    if awk -v a="$dd" -v b="$dr" 'BEGIN { exit !(a < 1 && b < 1) }' && ((r > best)); then best=$r; fi
    if ((first)) && awk -v a="$dd" -v b="$dr" 'BEGIN { exit !(a >= 1 || b >= 1) }'; then
      log "$name: drops >= 1 % at the first rate; trying lower rates"
      rates=("${rates[0]}" $((rate / 2)) $((rate / 4))); first=0; down=1; continue
    fi
    first=0
    ((down)) && continue
    if awk -v a="$dd" -v b="$dr" 'BEGIN { exit !(a > 10 || b > 10) }'; then
      log "$name: drops over 10 %, not raising the rate further"; break
    fi
  done
  ROWS[$name]=$rows
  BEST[$name]=$best
  if [[ $name == wulfd ]]; then
    WULFD_RSS=$(awk '/VmHWM/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")
    WULFD_LOG_LINES=$(wc -l <"$TMP/wulfd.log")
    WULFD_LOG_TAIL=$(grep -v '^$' "$TMP/wulfd.log" | tail -5 || true)
  fi
  stop_server
}

# wulfd first: it provides the reservations for the others.
ORDERED=()
for s in "${SERVER_LIST[@]}"; do [[ $s == wulfd ]] && ORDERED+=(wulfd); done
for s in "${SERVER_LIST[@]}"; do [[ $s != wulfd ]] && ORDERED+=("$s"); done
for s in "${ORDERED[@]}"; do bench_server "$s"; done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
T_END=$(date +%s)

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
label() {
  case $1 in
    wulfd) echo "wulfd ($WULF_VERSION)" ;;
    kea) echo "Kea $KEA_VERSION, default (single-threaded)" ;;
    kea-mt) echo "Kea $KEA_VERSION, multi-threading on (2 threads, queue 64)" ;;
    dnsmasq) echo "dnsmasq $DNSMASQ_VERSION" ;;
  esac
}
SEC="$TMP/section.md"
{
  echo "$HEADING"
  echo
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Machine: $(nproc) cores (\`nproc\`), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r). perfdhcp and the server share the 2 cores."
  echo "- Command: \`$CMD\` (from the repository root), $((T_END - T_START)) s in all"
  echo "- Software: $WULF_VERSION (target/release, used as built), Kea $KEA_VERSION (Debian), dnsmasq $DNSMASQ_VERSION (Debian dnsmasq-base), perfdhcp $PERFDHCP_VERSION"
  echo "- Load: loadavg $LOAD_START at start, $LOAD_END at end"
  echo
  for s in "${ORDERED[@]}"; do
    echo "$(label "$s"):"
    echo
    echo "| offered DORA/s | completed 4-way exchanges/s | DISCOVER-OFFER drops % | REQUEST-ACK drops % | server CPU % (100 = 1 core) | UDP rcvbuf drops, server ns | UDP rcvbuf drops, client ns |"
    echo "|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s' "${ROWS[$s]}"
    echo
  done
  echo "Best sustained rate (highest completed exchanges/s with both drop ratios < 1 %) and ratios; target: wulfd ≥ 2× Kea with < 1 % drops:"
  echo
  echo "| server | best sustained exchanges/s | wulfd / server |"
  echo "|---|---:|---:|"
  for s in "${ORDERED[@]}"; do
    echo "| $(label "$s") | ${BEST[$s]} | $(ratio "${BEST[wulfd]:-0}" "${BEST[$s]}") |"
  done
  echo
  kbest=0
  for s in kea kea-mt; do [[ -n "${BEST[$s]:-}" ]] && ((BEST[$s] > kbest)) && kbest=${BEST[$s]}; done
  if ((kbest > 0)) && [[ -n "${BEST[wulfd]:-}" ]]; then
    rk=$(ratio "${BEST[wulfd]}" "$kbest")
    verdict=$(awk -v r="$rk" 'BEGIN { print (r >= 2) ? "meets" : "MISSES" }')
    echo "Target wulfd ≥ 2× Kea (against the better Kea configuration, $kbest/s): ratio $rk — $verdict."
    echo
  fi
  echo "Method:"
  echo
  echo "- Topology: namespace SRV with veth 10.90.0.1/16 and namespace CLI with the peer 10.90.0.2/16 (created and removed by the script; SRV's loopback is up only for wulfd's API). perfdhcp runs in CLI as a relay (\`-l 10.90.0.2\`, giaddr = 10.90.0.2); one server at a time listens on port 67 in SRV."
  echo "- Each run: \`perfdhcp -4 -l 10.90.0.2 -r RATE -R $NMACS -M MACS -p $PERIOD -d 1 -W 500000 10.90.0.1\` (MACS: $NMACS MACs 02:90:00:00:xx:xx, one picked at random per exchange; a request unanswered after 1 s is a drop). Rates rise through ${RATE_LIST[*]} and stop after a rate with > 10 % drops. \"Completed\" = ACKs received / test period (perfdhcp's own Rate line divides by the period plus the 0.5 s exit wait, so it reads lower); if the first rate already drops >= 1 %, half and a quarter of it are tried instead; drops % = (sent − received) / sent per exchange type. A 2-second, 20/s smoke run must get ACKs first."
  echo "- Server CPU %: utime+stime of the server process (all threads) from /proc/PID/stat over the run, divided by the period. UDP rcvbuf drops: the increase of RcvbufErrors in /proc/net/snmp of each namespace over the run (datagrams the kernel threw away because a socket's receive buffer was full: server side = the server's socket, client side = perfdhcp's)."
  echo "- wulfd: \`wulfd --config CFG --log warn\` (CFG: data_dir, listen = 127.0.0.1:8740, [tftp] and [dns] enabled = false, DHCP on with defaults), \`wulf net create name=cluster first_ip=10.90.1.0 ip_count=20000 mask_bits=16 router_ip=10.90.0.1\`, \`wulf node create --macs MACS\`."
  echo "- Kea: kea-dhcp4 -c FILE, interfaces-config [veth] with dhcp-socket-type udp, memfile persist false, subnet 10.90.0.0/16 with $NMACS \`reservations\` {hw-address, ip-address}, host-reservation-identifiers [hw-address], no pool, logging at WARN."
  echo "- dnsmasq: \`dnsmasq --no-daemon --port=0 --dhcp-range=10.90.0.0,static,255.255.0.0 --dhcp-hostsfile=FILE --dhcp-authoritative --no-resolv --no-hosts --leasefile-ro --dhcp-lease-max=$((NMACS * 2)) --quiet-dhcp --interface=VETH\` (the default lease limit, 1000, would refuse most of the 10,000 clients; --quiet-dhcp, as wulfd logs ACKs at DEBUG only)."
  echo "- Reservations for Kea and dnsmasq: $RESV_NOTE."
  echo
} >"$SEC"

cat "$SEC"
if [[ -n "${WULFD_LOG_TAIL:-}" ]]; then
  log "wulfd log ($WULFD_LOG_LINES lines at warn), last lines:"; printf '%s\n' "$WULFD_LOG_TAIL" >&2
fi
log "wulfd VmHWM: ${WULFD_RSS:-?} kB"
mkdir -p /tmp/wulf-dhcp-bench-last && cp "$TMP"/keep-*.txt "$TMP"/*smoke.txt "$TMP/wulfd.log" /tmp/wulf-dhcp-bench-last/ 2>/dev/null || true

write_section "$HEADING" "$SEC"
