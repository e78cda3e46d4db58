#!/usr/bin/env bash
# Boot storm benchmark: `wulf sim --boot-storm N` against wulfd, N nodes powering on within
# SPREAD seconds, each booting as real ones do (DHCP as PXE, TFTP loader, DHCP as iPXE, boot
# script, kernel, initramfs and a 128 MiB image downloaded in full and checked, enrollment,
# status report), each from its own address.
#
# Topology (created here, removed on exit): namespace SRV with bridge br0 10.95.0.1/16 where
# wulfd runs (DHCP, TFTP, HTTP on br0), namespace STORM whose eth0 is a veth on that bridge;
# the storm runs in STORM and adds each node's address to eth0. For each N a fresh head
# (its own data directory) serves net 10.95.1.0 + 4000 addresses.
#
# No peer program simulates a PXE boot storm end to end, so the comparison is against the
# bandwidth lower bound: total bytes / the bridge's bandwidth, measured in the same run by
# one bulk HTTP download (curl, STORM → SRV, a 1 GiB boot file) before each storm.
#
# Environment:
#   NODES="100 1000"   storm sizes
#   PEERS="off on"     image downloads without and with _image_peers (peer-assisted)
#   SPREAD=1           power-on spread, seconds
#   IMAGE_MIB=128      image size (random data, packed with wulf image create --from-dir)
#   NODE_TIMEOUT=600   per-node time limit, seconds
#   WRITE_RESULTS=0    do not touch bench/RESULTS.md
#   SKIP_BUILD=1       use target/release as it is
# Runs as root. Output: a table on stdout, section "## Boot storm (bench/boot-storm.sh)" in
# bench/RESULTS.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RESULTS_FILE="$SCRIPT_DIR/RESULTS.md"
HEADING="## Boot storm (bench/boot-storm.sh)"

CMD=""
for v in NODES PEERS SPREAD IMAGE_MIB NODE_TIMEOUT SKIP_BUILD WRITE_RESULTS; do
  if [[ -n "${!v:-}" ]]; then CMD+="$v=$(printf %q "${!v}") "; fi
done
CMD+="bash bench/boot-storm.sh"

read -r -a NODE_LIST <<<"${NODES:-100 1000}"
read -r -a PEER_MODES <<<"${PEERS:-off on}"
SPREAD=${SPREAD:-1}
IMAGE_MIB=${IMAGE_MIB:-128}
NODE_TIMEOUT=${NODE_TIMEOUT:-600}

log() { printf '[boot-storm.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
source "$SCRIPT_DIR/lib.sh"
[[ $(id -u) == 0 ]] || die "run as root (network namespaces, DHCP and TFTP ports)"
T_START=$(date +%s)
install_missing curl=curl jq=jq

WULFD="$ROOT/target/release/wulfd"
WULF="$ROOT/target/release/wulf"
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
  cargo_on_path
  log "building release binaries"
  (cd "$ROOT" && cargo build --release -p wulfd -p wulf-cli)
fi
[[ -x "$WULFD" && -x "$WULF" ]] || die "no release binaries in target/release (drop SKIP_BUILD=1)"
WULF_VERSION=$("$WULF" --version 2>/dev/null || echo unknown)

TMP=$(mktemp -d /tmp/wulf-storm-bench.XXXXXX)
SRV=wulfst-srv-$$
STORM=wulfst-cli-$$
VS=wst$$
VS=${VS:0:15}
HEAD_PID=""

cleanup() {
  set +e
  for ns in "$STORM" "$SRV"; do
    if ip netns list 2>/dev/null | grep -qw "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
      sleep 0.3
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
      ip netns del "$ns" 2>/dev/null
    fi
  done
  [[ -n "${KEEP_TMP:-}" ]] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$SRV"
ip netns add "$STORM"
ip -n "$SRV" link set lo up
ip -n "$SRV" link add br0 type bridge
ip -n "$SRV" link set br0 type bridge stp_state 0 forward_delay 0
ip -n "$SRV" addr add 10.95.0.1/16 dev br0
ip -n "$SRV" link set br0 up
ip -n "$SRV" link add "$VS" type veth peer name eth0 netns "$STORM"
ip -n "$SRV" link set "$VS" master br0
ip -n "$SRV" link set "$VS" up
ip -n "$STORM" link set lo up
ip -n "$STORM" link set eth0 address 02:00:00:95:00:fe
ip -n "$STORM" link set eth0 up
# An address of the storm's own (none of the nodes'): for the admin API and the bandwidth test.
ip -n "$STORM" addr add 10.95.0.250/16 dev eth0
log "namespaces $SRV (br0 10.95.0.1/16) and $STORM (eth0 10.95.0.250/16 on br0)"
ulimit -n 65536 || true

# ---------------------------------------------------------------- files
log "making a ${IMAGE_MIB} MiB image, 4 MiB kernel and initramfs, a 1 GiB file for the bandwidth"
mkdir -p "$TMP/root/sbin"
head -c $((IMAGE_MIB << 20)) /dev/urandom >"$TMP/root/data.bin"
printf '#!/bin/sh\n' >"$TMP/root/sbin/init"
head -c $((4 << 20)) /dev/urandom >"$TMP/vmlinuz"
head -c $((4 << 20)) /dev/urandom >"$TMP/initrd"
head -c $((1 << 30)) /dev/urandom >"$TMP/big"

CLK_TCK=$(getconf CLK_TCK)
ns_wulf() { WULF_DATA_DIR="$DATA" ip netns exec "$SRV" "$WULF" "$@"; }

start_head() { # N
  DATA="$TMP/data-$1"
  mkdir -p "$DATA"
  cat >"$TMP/wulfd-$1.toml" <<EOC
data_dir = "$DATA"
listen = "0.0.0.0:8740"

[dhcp]
lease_secs = 3600

[dns]
enabled = false
EOC
  ip netns exec "$SRV" "$WULFD" --config "$TMP/wulfd-$1.toml" --log info >"$TMP/wulfd-$1.log" 2>&1 &
  HEAD_PID=$!
  local i
  for ((i = 0; i < 300; i++)); do
    [[ -f "$DATA/admin.token" ]] && ns_wulf info >/dev/null 2>&1 && break
    kill -0 "$HEAD_PID" 2>/dev/null || die "wulfd exited: $(tail -5 "$TMP/wulfd-$1.log")"
    sleep 0.1
  done
  ns_wulf net create name=cluster first_ip=10.95.1.0 ip_count=4000 mask_bits=16 >/dev/null
  ns_wulf image create name=img --from-dir "$TMP/root" >/dev/null
  ns_wulf boot create name=storm image=img "kernel=@$TMP/vmlinuz" "initramfs=@$TMP/initrd" >/dev/null
  ns_wulf boot create name=bandwidth "kernel=@$TMP/big" >/dev/null
  for ((i = 0; i < 100; i++)); do
    grep -q "DHCP serving br0" "$TMP/wulfd-$1.log" && grep -q "TFTP ready" "$TMP/wulfd-$1.log" && return 0
    sleep 0.1
  done
  die "wulfd does not serve DHCP and TFTP on br0: $(tail -5 "$TMP/wulfd-$1.log")"
}

stop_head() {
  if [[ -n "$HEAD_PID" ]]; then
    kill "$HEAD_PID" 2>/dev/null || true
    wait_gone "$HEAD_PID" 100
    wait "$HEAD_PID" 2>/dev/null || true
    HEAD_PID=""
  fi
}

# Bytes/s of one bulk HTTP download of the 1 GiB file, STORM → head over the bridge.
bandwidth() {
  local sha url
  sha=$(ns_wulf boot ls bandwidth --json | jq -r '.[0].kernel.sha256')
  url="http://10.95.0.1:8740/boot/file/$sha"
  ip netns exec "$STORM" curl -sS -o /dev/null -w '%{speed_download}\n' "$url" >/dev/null # warm the page cache
  ip netns exec "$STORM" curl -sS -o /dev/null -w '%{speed_download}\n' "$url"
}

declare -a ROWS
ALL_OK=1
for N in "${NODE_LIST[@]}"; do
for MODE in "${PEER_MODES[@]}"; do
  [[ "$MODE" == on || "$MODE" == off ]] || die "PEERS: '$MODE' is not on or off"
  log "N=$N, peers $MODE: fresh head"
  start_head "$N-$MODE"
  [[ "$MODE" == on ]] && ns_wulf attrib -i DefaultAttribs set _image_peers=yes >/dev/null
  BW=$(bandwidth)
  log "N=$N: bridge bandwidth $(awk -v b="$BW" 'BEGIN { printf "%.2f GB/s", b / 1e9 }') (one curl download of 1 GiB)"
  sample_interference "storm N=$N peers $MODE"
  c0=$(cpu_ticks "$HEAD_PID")
  t0=$(now)
  rc=0
  OUT="$TMP/storm-$N-$MODE"
  ip netns exec "$STORM" "$WULF" --url https://10.95.0.1:8740 --ca "$DATA/tls/ca.pem" \
    --token "$(cat "$DATA/admin.token")" --json sim --boot-storm "$N" --boot-config storm \
    --spread "$SPREAD" --node-timeout "$NODE_TIMEOUT" --iface eth0 \
    >"$OUT.json" 2>"$OUT.err" || rc=$?
  t1=$(now)
  c1=$(cpu_ticks "$HEAD_PID")
  sample_interference "after storm N=$N peers $MODE"
  RSS=$(awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$HEAD_PID/status")
  HWM=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$HEAD_PID/status")
  UP_AT_HEAD=$(ns_wulf node status --json | jq '[.[] | select(.state == "up")] | length')
  SENT=$(grep -c "sending image img to " "$TMP/wulfd-$N-$MODE.log" || true)
  stop_head
  [[ -s "$OUT.json" ]] && jq -e .nodes "$OUT.json" >/dev/null 2>&1 || die "N=$N: no figures (exit $rc): $(tail -5 "$OUT.err")"
  read -r up failed allup p50 p99 retries bytes simcpu fromhead frompeers imgbytes pfail pwaits <<<"$(jq -r '"\(.up) \(.failed) \(.all_up_secs) \(.p50_secs) \(.p99_secs) \(.dhcp_retries) \(.bytes) \(.sim_cpu_secs) \(.image_from_head_bytes) \(.image_from_peers_bytes) \(.image_bytes) \(.piece_failures) \(.piece_waits)"' "$OUT.json")"
  jq -r '.piece_failure_examples[:5][] | "  failed piece request: \(.)"' "$OUT.json" >&2
  ((failed == 0)) || { ALL_OK=0; jq -r '.failures[:5][] | "  \(.node): \(.reason)"' "$OUT.json" >&2; }
  cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", (b - a) / hz }')
  copies=$(awk -v h="$fromhead" -v i="$imgbytes" 'BEGIN { printf "%.1f", (i > 0) ? h / i : 0 }')
  if [[ "$MODE" == off ]]; then
    lb=$(awk -v b="$bytes" -v bw="$BW" 'BEGIN { printf "%.2f", b / bw }')
    ratio=$(awk -v a="$allup" -v l="$lb" 'BEGIN { printf "%.2f", a / l }')
    verdict=$(awk -v r="$ratio" 'BEGIN { print (r <= 1.3) ? "meets" : "MISSES" }')
    ratio_cell="$ratio ($verdict)"
  else
    # Peer bytes go between the storm's own addresses (its namespace's loopback), not
    # over the bridge: the bridge bound does not apply.
    lb="—"
    ratio_cell="—"
  fi
  log "N=$N peers $MODE: $up up, $failed failed, all up in $allup s, p50 $p50 s, p99 $p99 s, DHCP retries $retries, $bytes bytes, image from the head $fromhead bytes ($copies copies), from peers $frompeers, piece failures $pfail, piece waits $pwaits, head CPU $cpu s, storm CPU $simcpu s, VmRSS $RSS MiB, VmHWM $HWM MiB, lower bound $lb s, ratio $ratio_cell; head: $UP_AT_HEAD up, $SENT image downloads; wall $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
  ROWS+=("| $N | $MODE | $up | $failed | $(printf %.2f "$allup") | $(printf %.2f "$p50") | $(printf %.2f "$p99") | $retries | $(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1e9 }') | $(awk -v b="$fromhead" 'BEGIN { printf "%.2f", b / 1e9 }') ($copies copies) | $(awk -v b="$frompeers" 'BEGIN { printf "%.2f", b / 1e9 }') | $pfail | $(awk -v b="$BW" 'BEGIN { printf "%.2f", b / 1e9 }') | $lb | $ratio_cell | $cpu | $(printf %.1f "$simcpu") | $RSS / $HWM | $UP_AT_HEAD / $SENT |")
done
done
T_END=$(date +%s)
machine_facts

SEC="$TMP/section.md"
{
  echo "$HEADING"
  echo
  echo "- Date: $DATE"
  echo "- Machine: $(nproc) cores (\`nproc\`), $CPU_MODEL, $MEM_TOTAL RAM, kernel $(uname -r). The storm (every node's downloads and SHA-256 checks) and wulfd share the cores."
  echo "- Command: \`$CMD\` (from the repository root), $((T_END - T_START)) s in all"
  echo "- Software: $WULF_VERSION (target/release)"
  echo "- Interference: $(interference)"
  echo
  echo "N nodes power on within $SPREAD s; image $IMAGE_MIB MiB of random data (packed by \`wulf image create --from-dir\`), kernel and initramfs 4 MiB each; GB = 10^9 bytes. Lower bound = bytes / bridge bandwidth; goal: time to all up / lower bound ≤ 1.3."
  echo
  echo "| N | peers | up | failed boots | time to all up (s) | p50 boot (s) | p99 boot (s) | DHCP retries beyond the first | bytes received by the nodes (GB) | image from the head (GB) | image from peers (GB) | failed piece requests | bridge bandwidth (GB/s) | lower bound (s) | all up / lower bound | head CPU (s) | storm CPU (s) | head VmRSS / VmHWM (MiB) | head: nodes up / whole-image downloads logged |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Reading the figures: the storm receives and SHA-256-checks every byte it is served, on the same $(nproc) cores as the head; when its CPU seconds approach time to all up × cores, the simulator, not the head, sets the pace, and the bandwidth bound (one curl stream that checks nothing) is out of reach. Time to all up includes the power-on spread ($SPREAD s)."
  echo
  echo "\"Head: nodes up\" is \`wulf node status\` read after the storm has ended: the nodes that are up keep reporting through the storm's one reporting thread, and under load that thread falls behind, so nodes up early can be overdue (not up) at the head by then; the storm's own \"up\" counts each node's first accepted report."
  echo
  echo "Peers on (\`_image_peers=yes\` on every node, \`[boot] peers_from_head\` and \`peers_per_node\` at their defaults of 4): each node asks the head for its image's plan (GET /boot/swarm/SHA), gets the 4 MiB pieces in order from the head (the first 4 nodes) or from the peer the head names, checks each piece's SHA-256, and serves what it holds on its own address. Goal: at most 10 copies of the image from the head. The peer bytes travel between the storm's own addresses inside its namespace (loopback), not over the bridge, so the bridge's lower bound is given for peers off only; with peers on the figure that counts is the head's bytes."
  echo
  echo "No peer program simulates a PXE boot storm end to end (DHCP, TFTP, iPXE script, HTTP downloads, enrollment), so the comparison is against the bandwidth lower bound, not against another tool."
  echo
  echo "Method:"
  echo
  echo "- Topology: namespace SRV with bridge br0 10.95.0.1/16 (wulfd: DHCP, TFTP and the HTTP(S) port 8740 on it), namespace STORM with eth0 10.95.0.250/16 (the storm's own address, for the admin API), a veth on br0. Per N a fresh \`wulfd --config CFG --log info\` (DNS off), \`wulf net create name=cluster first_ip=10.95.1.0 ip_count=4000 mask_bits=16\`, the image and boot config \`storm\` (kernel, initramfs, image)."
  echo "- Storm: \`ip netns exec STORM wulf --url https://10.95.0.1:8740 --ca CA --token T --json sim --boot-storm N --boot-config storm --spread $SPREAD --node-timeout $NODE_TIMEOUT --iface eth0\`. It creates the N nodes (normal nodes, MACs 02:53:…, before the clock starts), then each node: DHCP DISCOVER/REQUEST as BIOS PXE (broadcast flag, its own chaddr) → undionly.kpxe over TFTP from its address → DHCP as iPXE (user class iPXE) → GET /boot/ipxe?mac=MAC → kernel, initramfs, image (Authorization: Bearer enroll:UID:TOKEN), each SHA-256 checked → enrollment (HTTPS, from its address) → status report; up = the head took the report. Time to all up: from the first power-on moment to the last node up. Per-node boot time: its power-on moment to up."
  echo "- Bridge bandwidth: one \`curl -o /dev/null\` of a 1 GiB boot file from STORM (page cache warmed by a first download), its speed_download. Bytes served: what the storm received (TFTP + HTTP)."
  echo "- Head CPU: utime+stime of wulfd (/proc/PID/stat) over the storm; storm CPU: what \`wulf sim --boot-storm\` itself used (getrusage; receiving and SHA-256 checking every byte), on the same cores; VmRSS and VmHWM from /proc/PID/status right after it. \"Nodes up / image downloads logged\": \`wulf node status\` nodes up after the storm, and the head's \"sending image img to ADDRESS (node UID)\" log lines."
  echo
} >"$SEC"
cat "$SEC"
write_section "$HEADING" "$SEC"
((ALL_OK)) || exit 1
