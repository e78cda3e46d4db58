#!/usr/bin/env bash
# DHCP benchmark: perfdhcp against wulfd, Kea (kea-dhcp4, memfile, host reservations)
# and dnsmasq (dhcp-hostsfile), each serving the same 10,000 reserved MACs, each set up
# as its own documentation recommends for speed (see the method in the results).
#
# Topology (created here, removed on exit): network namespace SRV with veth end
# 10.90.0.1/16, namespace CLI with the other end holding one relay address per perfdhcp
# (10.90.0.2, 10.90.0.3, ...). Each perfdhcp runs in CLI as a relay (`-l 10.90.0.K`:
# giaddr = 10.90.0.K) with its own, disjoint list of MACs and talks to 10.90.0.1:67.
# One server at a time runs in SRV. (SRV's loopback is up only for wulfd's API, which
# the wulf CLI uses to load the nodes; no DHCP packet crosses a loopback.)
#
# Pinning (PIN=1, with 2 or more cores): the server runs on CPU 0 (`taskset -c 0`), the
# perfdhcp processes on the other CPUs; a multi-threaded Kea is given every CPU.
#
# For each server the best rate with < 1 % drops is searched: the offered rate starts at
# START and doubles until a run fails (>= 1 % drops of DISCOVER-OFFER or REQUEST-ACK), then
# the interval between the highest passing and the lowest failing rate is bisected until it
# is narrower than 250/s or 3 % of the passing rate, at most MAX_RUNS runs per server. The
# offered rate is split evenly between the perfdhcp processes; their results are summed.
# A run in which the load generator is the limit (perfdhcp sent < 97 % of the DISCOVERs
# asked for, used >= 90 % of its CPUs, or perfdhcp's namespace dropped datagrams for a
# full receive buffer, as many as half the lost replies) is marked "load generator limit":
# it bounds the search from above, and is never taken as the server's ceiling.
#
# Environment:
#   SERVERS="wulfd kea kea-mt kea-mt4 dnsmasq"
#            kea     = Kea, single-threaded (the Debian 2.2 default)
#            kea-mt  = Kea multi-threaded, thread-pool-size = cores, packet-queue-size 7 × threads
#            kea-mt4 = 4 threads, queue 28: the ARM's memfile figures verbatim
#            also:   kea-np (single-threaded, memfile persist false: leases never written),
#                    dnsmasq-ro (--leasefile-ro: no lease file)
#   PERFDHCP=2   perfdhcp processes (disjoint MAC lists, one relay address each)
#   PERIOD=5     seconds per run
#   START=2000   first offered rate (DORA exchanges/s, all perfdhcp together)
#   MAX_RUNS=11  runs per server at most
#   NMACS=10000  reserved MACs
#   PIN=1        taskset pinning as above (0: let the scheduler place everything)
#   RMEM=8388608 net.core.rmem_default (and rmem_max) during the run, restored at exit: the
#                receive buffer wulfd sets for its own socket, given to every socket (Kea's,
#                dnsmasq's, perfdhcp's: none of them sets one, and the sysctl is not per
#                namespace), so a short preemption is not a drop; RMEM=0 keeps the kernel's
#   PD_MODE=     perfdhcp -g single|multi; default single when the perfdhcp processes have
#                one CPU (pinned: a receiver thread only adds hand-offs there), else
#                perfdhcp's own choice (multi on 2+ cores)
#   WRITE_RESULTS=0   do not touch bench/RESULTS.md
#   SKIP_BUILD=1      accepted for symmetry: binaries are built only if missing
# Runs as root non-interactively. Output: tables on stdout, section
# "## DHCP: perfdhcp vs Kea and dnsmasq (bench/dhcp.sh)" in bench/RESULTS.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RESULTS_FILE="$SCRIPT_DIR/RESULTS.md"
HEADING="## DHCP: perfdhcp vs Kea and dnsmasq (bench/dhcp.sh)"

CMD=""
for v in SERVERS PERFDHCP PERIOD START MAX_RUNS NMACS PIN PD_MODE RMEM SKIP_BUILD WRITE_RESULTS; do
  if [[ -n "${!v:-}" ]]; then CMD+="$v=$(printf %q "${!v}") "; fi
done
CMD+="bash bench/dhcp.sh"

read -r -a SERVER_LIST <<<"${SERVERS:-wulfd kea kea-mt kea-mt4 dnsmasq}"
NPERF=${PERFDHCP:-2}
PERIOD=${PERIOD:-5}
START=${START:-2000}
MAX_RUNS=${MAX_RUNS:-11}
NMACS=${NMACS:-10000}
PIN=${PIN:-1}

log() { printf '[dhcp.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
source "$SCRIPT_DIR/lib.sh"
[[ $(id -u) == 0 ]] || die "run as root (network namespaces, port 67)"
((NPERF >= 1 && NPERF <= 8)) || die "PERFDHCP must be 1..8"
T_START=$(date +%s)

# ---------------------------------------------------------------- tools
install_missing perfdhcp=kea-admin kea-dhcp4=kea-dhcp4-server dnsmasq=dnsmasq-base taskset=util-linux
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
PERFDHCP_VERSION=$(perfdhcp -v 2>&1 | head -1 | sed 's/^VERSION: *//' || true)

# ---------------------------------------------------------------- CPU placement
NCPU=$(nproc)
if [[ $PIN == 1 ]] && ((NCPU >= 2)); then
  SRV_CPUS=0
  GEN_CPUS="1-$((NCPU - 1))"
  ((NCPU == 2)) && GEN_CPUS=1
  ALL_CPUS="0-$((NCPU - 1))"
  GEN_NCPU=$((NCPU - 1))
  PIN_NOTE="server on CPU 0 (\`taskset -c 0\`), the $NPERF perfdhcp processes on CPU $GEN_CPUS (\`taskset -c $GEN_CPUS\`); a multi-threaded Kea on CPUs $ALL_CPUS, i.e. sharing CPU $GEN_CPUS with perfdhcp"
else
  SRV_CPUS=""
  GEN_CPUS=""
  ALL_CPUS="0-$((NCPU - 1))" # every CPU: taskset then pins nothing
  GEN_NCPU=$NCPU
  PIN_NOTE="no pinning: the scheduler places the server and the $NPERF perfdhcp processes on the $NCPU cores"
fi
if [[ -z "${PD_MODE:-}" ]] && ((GEN_NCPU == 1)); then PD_MODE=single; fi
on_cpus() { # cpus cmd... : run cmd on those CPUs (no taskset when cpus is empty)
  local c=$1
  shift
  if [[ -n "$c" ]]; then taskset -c "$c" "$@"; else "$@"; fi
}

# ---------------------------------------------------------------- namespaces
TMP=$(mktemp -d /tmp/wulf-dhcp-bench.XXXXXX)
SRV=wulfb-srv-$$
CLI=wulfb-cli-$$
VS=wbs$$
VC=wbc$$
VS=${VS:0:15}
VC=${VC:0:15}
SERVER_PID=""

RMEM=${RMEM:-8388608}
RMEM_OLD=$(sysctl -n net.core.rmem_default)
RMEM_MAX_OLD=$(sysctl -n net.core.rmem_max)
cleanup() {
  set +e
  if [[ $RMEM != 0 ]]; then
    sysctl -qw net.core.rmem_default="$RMEM_OLD" net.core.rmem_max="$RMEM_MAX_OLD" 2>/dev/null
  fi
  remove_netns "$SRV" "$CLI"
  ip link del "$VS" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $RMEM != 0 ]]; then
  sysctl -qw net.core.rmem_max="$((RMEM > RMEM_MAX_OLD ? RMEM : RMEM_MAX_OLD))" net.core.rmem_default="$RMEM"
  RMEM_NOTE="net.core.rmem_default = $RMEM during the run (restored after; it was $RMEM_OLD): every socket that sets no size of its own (Kea's, dnsmasq's, perfdhcp's) gets the receive buffer wulfd sets for its socket"
else
  RMEM_NOTE="net.core.rmem_default left at $RMEM_OLD (Kea, dnsmasq and perfdhcp set no size of their own; wulfd sets 8 MiB)"
fi
ip netns add "$SRV"
ip netns add "$CLI"
ip link add "$VS" type veth peer name "$VC"
ip link set "$VS" netns "$SRV"
ip link set "$VC" netns "$CLI"
ip -n "$SRV" addr add 10.90.0.1/16 dev "$VS"
RELAYS=()
for ((k = 0; k < NPERF; k++)); do
  RELAYS+=("10.90.0.$((2 + k))")
  ip -n "$CLI" addr add "10.90.0.$((2 + k))/16" dev "$VC"
done
ip -n "$SRV" link set "$VS" up
ip -n "$CLI" link set "$VC" up
ip -n "$SRV" link set lo up
log "namespaces $SRV ($VS 10.90.0.1/16) and $CLI ($VC ${RELAYS[*]}); $PIN_NOTE"

# ---------------------------------------------------------------- MACs and reservations
MACS="$TMP/macs.txt"
awk -v n="$NMACS" 'BEGIN { for (i = 0; i < n; i++) printf "02:90:%02x:%02x:%02x:%02x\n", int(i/16777216)%256, int(i/65536)%256, int(i/256)%256, i%256 }' >"$MACS"
# One disjoint share per perfdhcp: line i goes to file i mod N.
for ((k = 0; k < NPERF; k++)); do
  awk -v n="$NPERF" -v k="$k" '(NR - 1) % n == k' "$MACS" >"$TMP/macs.$k"
done
MACS_PER=$((NMACS / NPERF))

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

# parse perfdhcp output -> "do_sent do_rcvd ra_sent ra_rcvd"
parse_perfdhcp() {
  awk '
    /Statistics for: DISCOVER-OFFER/ { sec = "do" }
    /Statistics for: REQUEST-ACK/ { sec = "ra" }
    /^sent packets:/ { s[sec] = $3 }
    /^received packets:/ { r[sec] = $3 }
    END { printf "%d %d %d %d\n", s["do"], r["do"], s["ra"], r["ra"] }' "$1"
}

# One perfdhcp in CLI. Args: index rate period outfile. Writes outfile and outfile.cpu
# (its user+system CPU seconds, from the subshell's `times`).
perfdhcp_one() {
  local k=$1 rate=$2 period=$3 out=$4
  (
    timeout $((period + 20)) ip netns exec "$CLI" taskset -c "${GEN_CPUS:-0-$((NCPU - 1))}" \
      perfdhcp -4 ${PD_MODE:+-g "$PD_MODE"} -l "${RELAYS[$k]}" -r "$rate" -R "$MACS_PER" -M "$TMP/macs.$k" \
      -p "$period" -d 1 -W 500000 10.90.0.1 >"$out" 2>&1 || true
    times >"$out.times" # the builtin, in this subshell: its children's CPU on line 2
  )
  awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.2f\n", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$out.times" >"$out.cpu"
}

# One run at an offered total rate. Sets R_* (see below) and appends a table row to ROWS_CUR.
run_step() { # name rate
  local name=$1 rate=$2 per k t0 t1 s0 s1 c0 c1 w0 w1 out
  per=$(((rate + NPERF - 1) / NPERF))
  out="$TMP/$name-$rate"
  t0=$(cpu_ticks "$SERVER_PID"); s0=$(rcvbuf_errors "$SRV"); c0=$(rcvbuf_errors "$CLI"); w0=$EPOCHREALTIME
  sample_interference "$name @ $rate/s"
  local pids=()
  for ((k = 0; k < NPERF; k++)); do
    perfdhcp_one "$k" "$per" "$PERIOD" "$out.$k.txt" &
    pids+=($!)
  done
  wait "${pids[@]}" || true
  t1=$(cpu_ticks "$SERVER_PID"); s1=$(rcvbuf_errors "$SRV"); c1=$(rcvbuf_errors "$CLI"); w1=$EPOCHREALTIME
  local ds=0 dr=0 rs=0 rr=0 a b c d gcpu=0
  for ((k = 0; k < NPERF; k++)); do
    read -r a b c d <<<"$(parse_perfdhcp "$out.$k.txt")"
    ds=$((ds + a)); dr=$((dr + b)); rs=$((rs + c)); rr=$((rr + d))
    gcpu=$(awk -v x="$gcpu" -v y="$(cat "$out.$k.txt.cpu" 2>/dev/null || echo 0)" 'BEGIN { printf "%.2f", x + y }')
    cp "$out.$k.txt" "$TMP/keep-$name-$rate-$k.txt"
  done
  R_RATE=$rate
  R_DONE=$(awk -v a="$rr" -v p="$PERIOD" 'BEGIN { printf "%.0f", a / p }')
  R_DD=$(awk -v s="$ds" -v r="$dr" 'BEGIN { printf "%.2f", (s > 0) ? 100 * (s - r) / s : 100 }')
  R_DR=$(awk -v s="$rs" -v r="$rr" 'BEGIN { printf "%.2f", (s > 0) ? 100 * (s - r) / s : 100 }')
  R_SENT_PCT=$(awk -v s="$ds" -v r="$rate" -v p="$PERIOD" 'BEGIN { printf "%.1f", 100 * s / (r * p) }')
  local wall
  wall=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.3f", b - a }')
  R_CPU=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v w="$wall" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / w }')
  # server CPU milliseconds per 1,000 completed exchanges
  R_MSK=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v n="$rr" 'BEGIN { if (n > 0) printf "%.1f", 1e6 * (b - a) / hz / n; else print "n/a" }')
  R_GCPU=$(awk -v c="$gcpu" -v w="$wall" -v n="$GEN_NCPU" 'BEGIN { printf "%.0f", 100 * c / w / n }')
  R_SRB=$((s1 - s0)); R_CRB=$((c1 - c0))
  local lost=$(((ds - dr) + (rs - rr)))
  R_PASS=$(awk -v a="$R_DD" -v b="$R_DR" 'BEGIN { print (a < 1 && b < 1) ? 1 : 0 }')
  R_LG=""
  if awk -v p="$R_SENT_PCT" 'BEGIN { exit !(p < 97) }'; then R_LG="perfdhcp sent ${R_SENT_PCT} % of the DISCOVERs asked for"; fi
  if ((R_GCPU >= 90)); then R_LG="${R_LG:+$R_LG; }perfdhcp used ${R_GCPU} % of its CPUs"; fi
  if ((lost > 0 && 2 * R_CRB >= lost)); then R_LG="${R_LG:+$R_LG; }perfdhcp's namespace dropped $R_CRB datagrams for a full receive buffer ($lost replies lost)"; fi
  local verdict
  if [[ -n "$R_LG" ]] && ((R_PASS)); then verdict="< 1 % drops, but load generator limit"
  elif [[ -n "$R_LG" ]]; then verdict="load generator limit"
  elif ((R_PASS)); then verdict="pass"
  else verdict="fail (≥ 1 % drops)"
  fi
  R_VERDICT=$verdict
  log "$name @ $rate/s: $R_DONE exchanges/s, drops DO $R_DD % RA $R_DR %, sent ${R_SENT_PCT} % of asked, server CPU $R_CPU % ($R_MSK ms/1000), perfdhcp CPU $R_GCPU %, rcvbuf drops srv $R_SRB cli $R_CRB: $verdict${R_LG:+ ($R_LG)}"
  ROWS_CUR+="| $rate | $R_DONE | $R_DD | $R_DR | $R_SENT_PCT | $R_CPU | $R_MSK | $R_GCPU | $R_SRB | $R_CRB | $verdict |"$'\n'
}

start_wulfd() {
  local dir="$TMP/wulf-data" cfg="$TMP/wulfd.toml"
  mkdir -p "$dir"
  dhcp_wulfd_config "$cfg" "$dir"
  ip netns exec "$SRV" taskset -c "${SRV_CPUS:-$ALL_CPUS}" "$WULFD" --config "$cfg" --log warn >"$TMP/wulfd.log" 2>&1 &
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

# Kea per its ARM (see the method). Args: threads (1: multi-threading off) queue persist
start_kea() {
  local mt=$1 queue=$2 persist=$3 cfg="$TMP/kea.json" cpus=$SRV_CPUS
  rm -rf "$TMP/kea"
  mkdir -p "$TMP/kea"
  ((mt > 1)) && cpus=$ALL_CPUS
  {
    printf '{ "Dhcp4": {\n'
    printf '  "interfaces-config": { "interfaces": [ "%s" ], "dhcp-socket-type": "udp" },\n' "$VS"
    printf '  "lease-database": { "type": "memfile", "persist": %s, "name": "%s", "lfc-interval": 3600 },\n' "$persist" "$TMP/kea/leases4.csv"
    printf '  "host-reservation-identifiers": [ "hw-address" ],\n'
    printf '  "reservations-global": false, "reservations-in-subnet": true, "reservations-out-of-pool": true,\n'
    printf '  "cache-threshold": 0.25,\n'
    printf '  "valid-lifetime": 86400, "renew-timer": 43200, "rebind-timer": 75600,\n'
    if ((mt > 1)); then
      printf '  "multi-threading": { "enable-multi-threading": true, "thread-pool-size": %d, "packet-queue-size": %d },\n' "$mt" "$queue"
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
  KEA_PIDFILE_DIR="$TMP/kea" KEA_LOCKFILE_DIR="$TMP/kea" ip netns exec "$SRV" \
    taskset -c "${cpus:-$ALL_CPUS}" kea-dhcp4 -c "$cfg" >"$TMP/kea/stdout.log" 2>&1 &
  SERVER_PID=$!
  local i
  for ((i = 0; i < 50; i++)); do
    ns_srv ss -Hlun 'sport = :67' 2>/dev/null | grep -q . && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "kea-dhcp4 exited: $(tail -5 "$TMP/kea/stdout.log" "$TMP/kea/kea.log" 2>/dev/null)"
    sleep 0.2
  done
  sleep 1
  kill -0 "$SERVER_PID" 2>/dev/null || die "kea-dhcp4 exited: $(tail -5 "$TMP/kea/stdout.log" "$TMP/kea/kea.log" 2>/dev/null)"
}

# dnsmasq per its man page (see the method). Args: leasefile (1: a lease file, 0: --leasefile-ro)
start_dnsmasq() {
  local lf=$1 leaseopt
  cp "$TMP/resv.csv" "$TMP/dnsmasq-hosts"
  rm -f "$TMP/dnsmasq.leases"
  if ((lf)); then leaseopt="--dhcp-leasefile=$TMP/dnsmasq.leases"; else leaseopt="--leasefile-ro"; fi
  ip netns exec "$SRV" taskset -c "${SRV_CPUS:-$ALL_CPUS}" dnsmasq --no-daemon --port=0 \
    --dhcp-range=10.90.0.0,static,255.255.0.0 --dhcp-hostsfile="$TMP/dnsmasq-hosts" \
    --dhcp-authoritative --no-ping --quiet-dhcp --no-resolv --no-hosts "$leaseopt" \
    --dhcp-lease-max=$((NMACS * 2)) --interface="$VS" \
    --pid-file="$TMP/dnsmasq.pid" --log-facility=- >"$TMP/dnsmasq.log" 2>&1 &
  SERVER_PID=$!
  sleep 1
  kill -0 "$SERVER_PID" 2>/dev/null || die "dnsmasq exited: $(tail -5 "$TMP/dnsmasq.log")"
}

# ---------------------------------------------------------------- measure
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A BEST BEST_NOTE BEST_MSK BEST_CPU ROWS RUNS
RESV_NOTE=""
: >"$TMP/resv.csv"

# Resolution reached: hi - lo <= max(250, 3 % of lo)
narrow_enough() { awk -v lo="$1" -v hi="$2" 'BEGIN { r = 0.03 * lo; if (r < 250) r = 250; exit !(hi - lo <= r) }'; }

bench_server() { # name
  local name=$1
  [[ $name == wulfd || -n "$RESV_NOTE" ]] || write_reservations_fallback
  case $name in
    wulfd) start_wulfd ;;
    kea) start_kea 1 0 true ;;
    kea-np) start_kea 1 0 false ;;
    kea-mt) start_kea "$NCPU" $((7 * NCPU)) true ;;
    kea-mt4) start_kea 4 28 true ;;
    dnsmasq) start_dnsmasq 1 ;;
    dnsmasq-ro) start_dnsmasq 0 ;;
    *) die "unknown server $name" ;;
  esac
  [[ -n "$RESV_NOTE" ]] || write_reservations_fallback
  # smoke test: a few exchanges must complete
  perfdhcp_one 0 20 2 "$TMP/$name-smoke.txt"
  local ra_rcvd
  read -r _ _ _ ra_rcvd <<<"$(parse_perfdhcp "$TMP/$name-smoke.txt")"
  if ((ra_rcvd == 0)); then
    log "$name: smoke test got no ACK; perfdhcp said:"; sed 's/^/    /' "$TMP/$name-smoke.txt" >&2
    for f in "$TMP/kea/kea.log" "$TMP/kea/stdout.log" "$TMP/dnsmasq.log" "$TMP/wulfd.log"; do
      [[ -s $f && $f -nt $TMP/resv.csv ]] && { log "$f:"; tail -20 "$f" | sed 's/^/    /' >&2; }
    done
    ROWS[$name]="| (no answers in the smoke test) | | | | | | | | | | |"$'\n'
    BEST[$name]=0; BEST_NOTE[$name]="no answers"; RUNS[$name]=0
    stop_server
    return
  fi
  log "$name: smoke test ok ($ra_rcvd ACKs); server pid $SERVER_PID ($(cat "/proc/$SERVER_PID/comm" 2>/dev/null), $(ls "/proc/$SERVER_PID/task" 2>/dev/null | wc -l) threads, CPUs $(taskset -pc "$SERVER_PID" 2>/dev/null | sed 's/.*: //'))"
  ROWS_CUR=""
  local lo=0 hi=0 rate=$START runs=0 best=0 best_msk="n/a" best_cpu="n/a" note="" lg_seen=""
  record() { # after run_step: update best from a run with < 1 % drops
    if ((R_PASS)) && ((R_DONE > best)); then
      best=$R_DONE; best_msk=$R_MSK; best_cpu=$R_CPU
      if [[ -n "$R_LG" ]]; then note="load generator limit at this rate"; else note=""; fi
    fi
  }
  # grow
  while ((runs < MAX_RUNS)); do
    run_step "$name" "$rate"; runs=$((runs + 1)); record
    if ((R_PASS)) && [[ -z "$R_LG" ]]; then
      lo=$rate; rate=$((rate * 2))
    else
      hi=$rate; [[ -n "$R_LG" ]] && lg_seen=$rate
      break
    fi
  done
  # bisect
  while ((hi > 0 && runs < MAX_RUNS)) && ! narrow_enough "$lo" "$hi"; do
    rate=$(((lo + hi) / 2 / 50 * 50))
    ((rate > lo && rate < hi)) || break
    run_step "$name" "$rate"; runs=$((runs + 1)); record
    if ((R_PASS)) && [[ -z "$R_LG" ]]; then lo=$rate; else hi=$rate; [[ -n "$R_LG" ]] && lg_seen=$rate; fi
  done
  if ((hi == 0)); then note="${note:+$note; }no failing rate found within $MAX_RUNS runs"; fi
  if [[ -n "$lg_seen" && -z "$note" ]]; then note="search bounded by the load generator limit at $lg_seen/s, not by the server"; fi
  ROWS[$name]=$ROWS_CUR
  BEST[$name]=$best; BEST_NOTE[$name]=$note; BEST_MSK[$name]=$best_msk; BEST_CPU[$name]=$best_cpu; RUNS[$name]=$runs
  if [[ $name == wulfd ]]; then
    WULFD_RSS=$(awk '/VmHWM/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")
    WULFD_LOG_LINES=$(wc -l <"$TMP/wulfd.log")
    WULFD_LOG_TAIL=$(grep -v '^$' "$TMP/wulfd.log" | tail -5 || true)
  fi
  if [[ $name == kea* ]]; then
    KEA_LOG_LINES[$name]=$(cat "$TMP/kea/kea.log" 2>/dev/null | wc -l)
  fi
  stop_server
}
declare -A KEA_LOG_LINES

# wulfd first: it provides the reservations for the others.
ORDERED=()
for s in "${SERVER_LIST[@]}"; do [[ $s == wulfd ]] && ORDERED+=(wulfd); done
for s in "${SERVER_LIST[@]}"; do [[ $s != wulfd ]] && ORDERED+=("$s"); done
for s in "${ORDERED[@]}"; do bench_server "$s"; done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
T_END=$(date +%s)

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && a > 0 && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
label() {
  case $1 in
    wulfd) echo "wulfd ($WULF_VERSION)" ;;
    kea) echo "Kea $KEA_VERSION, single-threaded" ;;
    kea-np) echo "Kea $KEA_VERSION, single-threaded, persist false" ;;
    kea-mt) echo "Kea $KEA_VERSION, multi-threaded ($NCPU threads, queue $((7 * NCPU)))" ;;
    kea-mt4) echo "Kea $KEA_VERSION, multi-threaded (4 threads, queue 28)" ;;
    dnsmasq) echo "dnsmasq $DNSMASQ_VERSION, lease file" ;;
    dnsmasq-ro) echo "dnsmasq $DNSMASQ_VERSION, --leasefile-ro" ;;
  esac
}
SEC="$TMP/section.md"
{
  echo "$HEADING"
  echo
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Machine: $NCPU cores (\`nproc\`), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r). Placement: $PIN_NOTE."
  echo "- Command: \`$CMD\` (from the repository root), $((T_END - T_START)) s in all"
  echo "- Software: $WULF_VERSION (target/release, used as built), Kea $KEA_VERSION (Debian), dnsmasq $DNSMASQ_VERSION (Debian dnsmasq-base), perfdhcp $PERFDHCP_VERSION"
  echo "- Load: loadavg $LOAD_START at start, $LOAD_END at end; other jobs: $(interference)"
  echo
  for s in "${ORDERED[@]}"; do
    echo "$(label "$s") (${RUNS[$s]} runs):"
    echo
    echo "| offered DORA/s | completed 4-way exchanges/s | DISCOVER-OFFER drops % | REQUEST-ACK drops % | DISCOVERs sent, % of offered | server CPU % (100 = 1 core) | server CPU ms per 1,000 exchanges | perfdhcp CPU % of its CPUs | UDP rcvbuf drops, server ns | UDP rcvbuf drops, client ns | run |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    printf '%s' "${ROWS[$s]}"
    echo
  done
  echo "Best rate with both drop ratios < 1 % (found by the search above), server CPU at that rate, and ratios:"
  echo
  echo "| server | best exchanges/s | server CPU % | server CPU ms per 1,000 exchanges | wulfd / server (rate) | server / wulfd (CPU per exchange) | note |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  for s in "${ORDERED[@]}"; do
    echo "| $(label "$s") | ${BEST[$s]} | ${BEST_CPU[$s]:-n/a} | ${BEST_MSK[$s]:-n/a} | $(ratio "${BEST[wulfd]:-0}" "${BEST[$s]}") | $(ratio "${BEST_MSK[$s]:-0}" "${BEST_MSK[wulfd]:-0}") | ${BEST_NOTE[$s]:-} |"
  done
  echo
  kbest=0 kname=""
  for s in "${ORDERED[@]}"; do
    if [[ $s == kea* ]] && ((BEST[$s] > kbest)); then kbest=${BEST[$s]}; kname=$s; fi
  done
  if ((kbest > 0)) && [[ -n "${BEST[wulfd]:-}" ]]; then
    rk=$(ratio "${BEST[wulfd]}" "$kbest")
    verdict=$(awk -v r="$rk" 'BEGIN { print (r >= 3) ? "meets" : "MISSES" }')
    echo "Target wulfd ≥ 3× Kea's best configuration ($(label "$kname"), $kbest/s) at < 1 % drops, in the same run: ratio $rk — $verdict${BEST_NOTE[wulfd]:+ (wulfd: ${BEST_NOTE[wulfd]})}."
    echo
  fi
  echo "Method:"
  echo
  echo "- Topology: namespace SRV with veth 10.90.0.1/16 and namespace CLI with the peer holding ${RELAYS[*]} (created and removed by the script; SRV's loopback is up only for wulfd's API). One server at a time listens on port 67 in SRV."
  echo "- Load: $NPERF perfdhcp processes at once, each \`perfdhcp -4 ${PD_MODE:+-g $PD_MODE }-l RELAY -r RATE/$NPERF -R $MACS_PER -M MACS_K -p $PERIOD -d 1 -W 500000 10.90.0.1\`: its own relay address (giaddr) and its own $MACS_PER of the $NMACS MACs (02:90:00:00:xx:xx, line i of the list to process i mod $NPERF; a MAC picked at random per exchange; a request unanswered after 1 s is a drop). Their counts are summed. Completed = ACKs received / period; drops % = (sent − received) / sent per exchange type."
  echo "- Search: the offered rate starts at $START/s and doubles until a run has ≥ 1 % drops (or hits the load generator limit), then the interval between the highest passing and the lowest failing rate is bisected (to multiples of 50) until it is ≤ 250/s or ≤ 3 % of the passing rate; at most $MAX_RUNS runs per server. A 2-second, 20/s smoke run must get ACKs first."
  echo "- Load generator limit: a run is marked so when the perfdhcp processes sent < 97 % of the DISCOVERs asked for, used ≥ 90 % of their CPUs (user+system of all of them over the run, against the $GEN_NCPU CPU(s) they may use), or their namespace's UDP RcvbufErrors grew by at least half the replies lost. Such a run is not a failure of the server: it ends the search from above, and if it passed, the best rate is a lower bound."
  echo "- Server CPU: utime+stime of the server process (all threads) from /proc/PID/stat over the run (period + exit wait), as % of one core and as milliseconds per 1,000 completed exchanges (4 packets each way counted as one exchange). UDP rcvbuf drops: the increase of RcvbufErrors in /proc/net/snmp of each namespace (datagrams the kernel threw away because a socket's receive buffer was full: server side = the server's socket, client side = perfdhcp's)."
  echo "- wulfd: \`wulfd --config CFG --log warn\` (CFG: data_dir, listen = 127.0.0.1:8740, [tftp] and [dns] enabled = false, DHCP on with defaults: one worker thread per CPU it may use, recvmmsg/sendmmsg batches, 8 MiB receive buffer), \`wulf net create name=cluster first_ip=10.90.1.0 ip_count=20000 mask_bits=16 router_ip=10.90.0.1\`, \`wulf node create --macs MACS\`."
  echo "- Kea (kea-dhcp4 -c FILE), set up as Kea's ARM (chapter \"The DHCPv4 Server\") and ISC's knowledge-base article \"Kea Performance Optimization\" recommend for speed: \`dhcp-socket-type: udp\` (the ARM's example configuration: relayed traffic is better served by plain UDP sockets than raw ones); \`lease-database\` memfile (the fastest backend, per the KB article) with \`persist: true\` (the ARM strongly recommends true for normal operation; false is \"mostly useful for performance-testing\"), lease file in the run's temporary directory, \`lfc-interval: 3600\`; \`host-reservation-identifiers: [hw-address]\` (ARM \"Fine-Tuning DHCPv4 Host Reservation\": keep the identifier types to a minimum, ideally one); \`reservations-in-subnet: true, reservations-out-of-pool: true, reservations-global: false\` (the ARM's decision diagram for high leases-per-second when reserved addresses are outside any pool; the subnet 10.90.0.0/16 has $NMACS reservations and no pool); \`cache-threshold: 0.25\` (ARM \"Lease Caching\": a client renewing within a quarter of its lease gets the same lease without a database write; the default from Kea 2.7.8 on); loggers at WARN to a file (nothing per packet). Multi-threading (ARM \"Multi-Threading Settings With Different Database Backends\": for memfile, thread-pool-size 4 and packet-queue-size 7 × thread-pool-size on ISC's benchmark machine): kea = off (the Debian 2.2 default); kea-mt = $NCPU threads (the auto-detected count, one per core) and queue $((7 * NCPU)); kea-mt4 = the ARM's 4 and 28 verbatim. The ARM names no socket-buffer setting for kea-dhcp4; Kea's socket gets the system default (see receive buffers below). memfile with persist false: $( [[ " ${SERVER_LIST[*]} " == *" kea-np "* ]] && echo "measured (kea-np above)" || echo "not measured in this run (SERVERS=kea-np measures it)")."
  echo "- dnsmasq, per its man page: \`dnsmasq --no-daemon --port=0 --dhcp-range=10.90.0.0,static,255.255.0.0 --dhcp-hostsfile=FILE --dhcp-authoritative --no-ping --quiet-dhcp --no-resolv --no-hosts --dhcp-leasefile=FILE --dhcp-lease-max=$((NMACS * 2)) --interface=VETH\`: --dhcp-hostsfile (the same entries as --dhcp-host, one per line, re-read on SIGHUP), --dhcp-authoritative (the only server on the network: requests on unknown leases are not ignored), --no-ping (no ICMP check before allocating an address), --quiet-dhcp (no log line per exchange; wulfd logs those at DEBUG only), --dhcp-lease-max (the default, 1000, would refuse most of the $NMACS clients), --port=0 (no DNS). The lease file is kept, as dnsmasq runs by default (dnsmasq-ro, when listed: --leasefile-ro instead)."
  echo "- Receive buffers: $RMEM_NOTE."
  echo "- Reservations for Kea and dnsmasq: $RESV_NOTE."
  echo
} >"$SEC"

cat "$SEC"
if [[ -n "${WULFD_LOG_TAIL:-}" ]]; then
  log "wulfd log ($WULFD_LOG_LINES lines at warn), last lines:"; printf '%s\n' "$WULFD_LOG_TAIL" >&2
fi
for s in "${!KEA_LOG_LINES[@]}"; do log "$s: kea.log has ${KEA_LOG_LINES[$s]} lines"; done
log "wulfd VmHWM: ${WULFD_RSS:-?} kB"
rm -rf /tmp/wulf-dhcp-bench-last && mkdir -p /tmp/wulf-dhcp-bench-last && cp "$TMP"/keep-*.txt "$TMP"/*smoke.txt "$TMP/wulfd.log" /tmp/wulf-dhcp-bench-last/ 2>/dev/null || true

write_section "$HEADING" "$SEC"
