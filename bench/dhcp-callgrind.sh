#!/usr/bin/env bash
# Instructions per DHCP exchange in wulfd, counted by valgrind's callgrind (which counts
# instructions on any machine, also where perf has no hardware counters).
#
# wulfd runs under `valgrind --tool=callgrind --instr-atstart=no` in namespace SRV
# (veth 10.90.0.1/16) with NMACS nodes; one perfdhcp in namespace CLI (10.90.0.2, as a
# relay) offers RATE DORA exchanges/s for PERIOD seconds. Collection is switched on
# (`callgrind_control -i on`) just before the perfdhcp run and off after it, so the count
# covers the DHCP path under load (and whatever else wulfd did meanwhile: nothing else is
# asked of it). Printed: instructions collected, ACKs received, instructions per completed
# 4-way exchange, and the functions with the most inclusive instructions.
#
# Environment: NMACS=10000 RATE=300 PERIOD=10 WULFD=target/release/wulfd (another build to
# compare) OUT=/tmp/wulf-dhcp-callgrind (kept: the
# callgrind.out file and the annotated listing).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
NMACS=${NMACS:-10000}
RATE=${RATE:-300}
PERIOD=${PERIOD:-10}
OUT=${OUT:-/tmp/wulf-dhcp-callgrind}

log() { printf '[dhcp-callgrind.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
source "$SCRIPT_DIR/lib.sh"
[[ $(id -u) == 0 ]] || die "run as root (network namespaces, port 67)"
install_missing perfdhcp=kea-admin valgrind=valgrind callgrind_annotate=valgrind jq=jq

WULFD=${WULFD:-$ROOT/target/release/wulfd}
WULF="$ROOT/target/release/wulf"
[[ -x "$WULFD" && -x "$WULF" ]] || die "build first: cargo build --release"

TMP=$(mktemp -d /tmp/wulf-dhcp-cg.XXXXXX)
SRV=wulfc-srv-$$
CLI=wulfc-cli-$$
VS=wcs$$
VC=wcc$$
VS=${VS:0:15}
VC=${VC:0:15}
cleanup() {
  set +e
  remove_netns "$SRV" "$CLI"
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

MACS="$TMP/macs.txt"
awk -v n="$NMACS" 'BEGIN { for (i = 0; i < n; i++) printf "02:90:%02x:%02x:%02x:%02x\n", int(i/16777216)%256, int(i/65536)%256, int(i/256)%256, i%256 }' >"$MACS"

dir="$TMP/wulf-data"
mkdir -p "$dir" "$OUT"
dhcp_wulfd_config "$TMP/wulfd.toml" "$dir"
rm -f "$OUT"/callgrind.out*
ip netns exec "$SRV" valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$OUT/callgrind.out" "$WULFD" --config "$TMP/wulfd.toml" --log warn >"$TMP/wulfd.log" 2>&1 &
VPID=$!
for ((i = 0; i < 600; i++)); do
  [[ -f "$dir/admin.token" ]] && WULF_DATA_DIR="$dir" ip netns exec "$SRV" "$WULF" net ls >/dev/null 2>&1 && break
  kill -0 "$VPID" 2>/dev/null || die "wulfd exited: $(tail -5 "$TMP/wulfd.log")"
  sleep 0.2
done
WULF_DATA_DIR="$dir" ip netns exec "$SRV" "$WULF" net create name=cluster first_ip=10.90.1.0 ip_count=20000 mask_bits=16 router_ip=10.90.0.1 >/dev/null
t0=$(date +%s)
WULF_DATA_DIR="$dir" ip netns exec "$SRV" "$WULF" node create --macs "$MACS" >/dev/null
log "created $NMACS nodes under valgrind in $(($(date +%s) - t0)) s"
sleep 3
# warm-up (not counted)
ip netns exec "$CLI" perfdhcp -4 -l 10.90.0.2 -r 50 -R "$NMACS" -M "$MACS" -p 2 -d 1 -W 500000 10.90.0.1 >"$TMP/warm.txt" 2>&1 || true
ip netns exec "$SRV" callgrind_control -i on "$VPID" >/dev/null
ip netns exec "$CLI" perfdhcp -4 -l 10.90.0.2 -r "$RATE" -R "$NMACS" -M "$MACS" -p "$PERIOD" -d 1 -W 500000 10.90.0.1 >"$OUT/perfdhcp.txt" 2>&1 || true
ip netns exec "$SRV" callgrind_control -i off "$VPID" >/dev/null
ip netns exec "$SRV" callgrind_control -d "$VPID" >/dev/null
sleep 1
kill "$VPID" 2>/dev/null || true
wait "$VPID" 2>/dev/null || true

acks=$(awk '/Statistics for: REQUEST-ACK/ { s = 1 } s && /^received packets:/ { print $3; exit }' "$OUT/perfdhcp.txt")
offers=$(awk '/Statistics for: DISCOVER-OFFER/ { s = 1 } s && /^received packets:/ { print $3; exit }' "$OUT/perfdhcp.txt")
sent=$(awk '/Statistics for: DISCOVER-OFFER/ { s = 1 } s && /^sent packets:/ { print $3; exit }' "$OUT/perfdhcp.txt")
# The dump taken right after the run (part 1) holds the counts since collection began.
prof="$OUT/callgrind.out.1"
[[ -s "$prof" ]] || die "no callgrind dump written"
ir=$(callgrind_annotate "$prof" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n { gsub(/,/, "", $1); print $1; n = 1 }')
callgrind_annotate --inclusive=yes "$prof" 2>/dev/null | head -80 >"$OUT/annotate.txt" || true
callgrind_annotate "$prof" 2>/dev/null | head -60 >"$OUT/annotate-self.txt" || true
echo "wulfd $("$WULF" --version 2>/dev/null): $RATE/s offered for $PERIOD s, DISCOVERs sent $sent, OFFERs $offers, ACKs $acks"
echo "instructions collected: $ir"
awk -v i="$ir" -v a="$acks" 'BEGIN { if (a > 0) printf "instructions per completed exchange: %.0f\n", i / a }'
echo "top functions (inclusive), from $OUT/annotate.txt:"
sed -n '20,80p' "$OUT/annotate.txt"
echo "top functions (self), from $OUT/annotate-self.txt:"
sed -n '20,60p' "$OUT/annotate-self.txt"
