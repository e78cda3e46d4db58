#!/usr/bin/env bash
# Power benchmark: `power status` of 100 nodes whose BMCs are 100 real ipmi_sim processes
# (Debian openipmi), through wulfd with fan-out 64, next to what sites run without a
# cluster manager: `xargs -P 64 ipmitool … chassis power status` over the same 100 BMCs
# (and a plain one-at-a-time bash loop, for scale), in the same run.
#
#   1. 100 ipmi_sim, BMC i on 127.0.1.i port 623 (loopback), user admin, one password, each
#      powering a `sleep` "machine" that is on. Each must answer a real ipmitool first.
#   2. A fresh wulfd (127.0.0.1, DHCP/TFTP/DNS off), 100 nodes (`wulf node create --macs`),
#      and ONE templated power URI for all of them on the default group:
#      `_power_uri=ipmi://admin:{_bmc_pass}@127.0.1.{index}` with `_bmc_pass` beside it.
#   3. RUNS rounds, in turn: wulf (`wulf node --all power status --fanout 64` when the CLI has
#      the verb, else `POST /api/v1/node/power?all=true` with curl), xargs -P 64 ipmitool,
#      and (unless LOOP=0) the bash loop. Each run's wall time; every run must report 100
#      nodes on, else the script fails. Medians, and the ratio wulf / xargs.
# Writes the section "## Power: status of 100 ipmi_sim BMCs (bench/power.sh)" of
# bench/RESULTS.md.
#
# Environment:
#   RUNS=5            rounds
#   FANOUT=64         wulf's --fanout and xargs -P
#   NODES=100         BMCs (at most 250)
#   LOOP=1            also time the one-at-a-time bash loop
#   WRITE_RESULTS=0   do not touch bench/RESULTS.md
#   SKIP_BUILD=1      never build (default: build target/release binaries only if missing)
# Uses only loopback addresses. Runs as root non-interactively.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RESULTS_FILE="$SCRIPT_DIR/RESULTS.md"

CMD=""
for v in RUNS FANOUT NODES LOOP SKIP_BUILD WRITE_RESULTS; do
  if [[ -n "${!v:-}" ]]; then CMD+="$v=$(printf %q "${!v}") "; fi
done
CMD+="bash bench/power.sh"

RUNS=${RUNS:-5}
FANOUT=${FANOUT:-64}
NODES=${NODES:-100}
LOOP=${LOOP:-1}
PASS='bench-Pw-17'

log() { printf '[power.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
source "$SCRIPT_DIR/lib.sh"
[[ $(id -u) == 0 ]] || die "run as root (package installs, port 623)"
[[ "$NODES" =~ ^[0-9]+$ ]] && ((NODES >= 1 && NODES <= 250)) || die "NODES must be 1 to 250"
HEADING="## Power: status of $NODES ipmi_sim BMCs (bench/power.sh)"
T_START=$(date +%s)

install_missing ipmi_sim=openipmi ipmitool=ipmitool curl=curl
cargo_on_path
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ ! -x "$TARGET_DIR/release/wulfd" || ! -x "$TARGET_DIR/release/wulf" ]]; then
  [[ "${SKIP_BUILD:-0}" != 1 ]] || die "binaries not found in $TARGET_DIR/release (SKIP_BUILD=1)"
  log "building release binaries (missing): cargo build --release -p wulfd -p wulf-cli"
  (cd "$ROOT" && cargo build --release -p wulfd -p wulf-cli) || die "cargo build failed"
fi

TMP=$(mktemp -d /tmp/wulf-bench-power.XXXXXX)
mkdir "$TMP/bin"
cp "$TARGET_DIR/release/wulfd" "$TARGET_DIR/release/wulf" "$TMP/bin/"
WULFD="$TMP/bin/wulfd"
WULF="$TMP/bin/wulf"
WULFD_PID=""
SIM_PIDS=()

stop_all() {
  local p
  if [[ -n "$WULFD_PID" ]]; then
    kill "$WULFD_PID" 2>/dev/null || true
    wait_gone "$WULFD_PID"
    wait "$WULFD_PID" 2>/dev/null || true
    WULFD_PID=""
  fi
  for p in "${SIM_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${SIM_PIDS[@]}"; do wait_gone "$p" 20; wait "$p" 2>/dev/null || true; done
  SIM_PIDS=()
  # The machines the simulators started (each wrote its pid).
  if [[ -f "$TMP/machines.pids" ]]; then
    while read -r p; do kill "$p" 2>/dev/null || true; done <"$TMP/machines.pids"
  fi
}
cleanup() {
  local rc=$?
  stop_child
  stop_all
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ipmi() { # HOST ARGS...: the command line a site uses (password from the environment)
  local host=$1; shift
  IPMI_PASSWORD=$PASS ipmitool -I lanplus -H "$host" -U admin -E -N 1 -R 1 -C 3 "$@"
}

# ---------------------------------------------------------------- 100 BMCs
log "starting $NODES ipmi_sim BMCs on 127.0.1.0-$((NODES - 1)):623"
cat >"$TMP/bmc.emu" <<'EOF'
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
EOF
cat >"$TMP/machine.sh" <<EOF
#!/bin/sh
echo \$\$ >> $TMP/machines.pids
exec sleep 100000
EOF
chmod +x "$TMP/machine.sh"
for ((i = 0; i < NODES; i++)); do
  d="$TMP/bmc$i"
  mkdir -p "$d/state"
  cat >"$d/lan.conf" <<EOF
name "bmc$i"
set_working_mc 0x20
  startlan 1
    addr 127.0.1.$i 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  startcmd "$TMP/machine.sh"
  startnow true
  user 2 true "admin" "$PASS" admin 10 none md2 md5 straight
EOF
  ipmi_sim -c "$d/lan.conf" -f "$TMP/bmc.emu" -s "$d/state" -n >"$d/log" 2>&1 &
  SIM_PIDS+=($!)
done
for ((i = 0; i < NODES; i++)); do
  ok=0
  for ((t = 0; t < 100; t++)); do
    if ipmi "127.0.1.$i" chassis power status 2>/dev/null | grep -q 'Chassis Power is on'; then ok=1; break; fi
    sleep 0.1
  done
  ((ok)) || die "BMC 127.0.1.$i does not answer: $(cat "$TMP/bmc$i/log")"
done
log "all $NODES BMCs answer, every machine on"

# ---------------------------------------------------------------- wulfd and the nodes
PORT=$(pick_port)
DATA="$TMP/data"
mkdir -p "$DATA"
cat >"$TMP/wulfd.toml" <<EOF
data_dir = "$DATA"
listen = "127.0.0.1:$PORT"
log = "info"
[dhcp]
enabled = false
[tftp]
enabled = false
[dns]
enabled = false
EOF
"$WULFD" --config "$TMP/wulfd.toml" >"$TMP/wulfd.log" 2>&1 &
WULFD_PID=$!
for ((i = 0; i < 150; i++)); do
  kill -0 "$WULFD_PID" 2>/dev/null || { cat "$TMP/wulfd.log" >&2; die "wulfd exited at start"; }
  [[ -s "$DATA/admin.token" ]] && curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/" && break
  sleep 0.1
done
export WULF_URL="https://127.0.0.1:$PORT" WULF_CA="$DATA/tls/ca.pem" WULF_TOKEN
WULF_TOKEN=$(cat "$DATA/admin.token")
for ((i = 0; i < NODES; i++)); do printf '02:b6:00:00:%02x:%02x\n' $((i / 256)) $((i % 256)); done >"$TMP/macs"
run_child "$WULF" node create --macs "$TMP/macs" >/dev/null
run_child "$WULF" attrib -i DefaultAttribs set '_power_uri=ipmi://admin:{_bmc_pass}@127.0.1.{index}' "_bmc_pass=$PASS" >/dev/null
if "$WULF" node power --help >/dev/null 2>&1; then
  HOW="CLI: \`wulf node --all power status --fanout $FANOUT --json\`"
  wulf_status() { "$WULF" node --all power status --fanout "$FANOUT" --json; }
else
  HOW="API: \`curl -X POST /api/v1/node/power?all=true -d '{\"action\":\"status\",\"fanout\":$FANOUT}'\` (the CLI had no power verb)"
  wulf_status() {
    curl -sS -X POST -H "Authorization: Bearer $WULF_TOKEN" -H 'Content-Type: application/json' \
      -d "{\"action\":\"status\",\"fanout\":$FANOUT,\"timeout_secs\":10}" \
      "$WULF_URL/api/v1/node/power?all=true"
  }
fi
log "wulf side: $HOW"

# ---------------------------------------------------------------- runs
ms_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.0f", (b - a) / 1e6 }'; }
W_MS=() X_MS=() L_MS=()
peer_xargs() {
  for ((i = 0; i < NODES; i++)); do echo "127.0.1.$i"; done |
    IPMI_PASSWORD=$PASS xargs -P "$FANOUT" -I{} \
      ipmitool -I lanplus -H {} -U admin -E -N 1 -R 1 -C 3 chassis power status 2>/dev/null
}
peer_loop() {
  for ((i = 0; i < NODES; i++)); do ipmi "127.0.1.$i" chassis power status 2>/dev/null; done
}
sample_interference "before the runs"
for ((r = 1; r <= RUNS; r++)); do
  t=$(now_ns)
  out=$(wulf_status) || true
  ms=$(ms_since "$t")
  on=$(grep -oE '"result": ?"on"' <<<"$out" | wc -l)
  ((on == NODES)) || die "wulf run $r: $on of $NODES nodes on: ${out:0:600}"
  W_MS+=("$ms")
  t=$(now_ns)
  out=$(peer_xargs) || true
  ms=$(ms_since "$t")
  on=$(grep -c 'Chassis Power is on' <<<"$out" || true)
  ((on == NODES)) || die "xargs run $r: $on of $NODES on"
  X_MS+=("$ms")
  if [[ "$LOOP" == 1 ]]; then
    t=$(now_ns)
    out=$(peer_loop) || true
    ms=$(ms_since "$t")
    on=$(grep -c 'Chassis Power is on' <<<"$out" || true)
    ((on == NODES)) || die "loop run $r: $on of $NODES on"
    L_MS+=("$ms")
  fi
  log "run $r: wulf ${W_MS[-1]} ms, xargs -P $FANOUT ${X_MS[-1]} ms${L_MS:+, loop ${L_MS[-1]} ms}"
done
sample_interference "after the runs"

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
WM=$(median "${W_MS[@]}")
XM=$(median "${X_MS[@]}")
RATIO=$(awk -v a="$WM" -v b="$XM" 'BEGIN { printf "%.2f", a / b }')
LM="-"
LRATIO="-"
if [[ "$LOOP" == 1 ]]; then
  LM=$(median "${L_MS[@]}")
  LRATIO=$(awk -v a="$WM" -v b="$LM" 'BEGIN { printf "%.2f", a / b }')
fi
AUDIT=$(grep -c 'audit: power ' "$TMP/wulfd.log" || true)
LEAK=$(grep -c "$PASS" "$TMP/wulfd.log" || true)
((LEAK == 0)) || die "the BMC password shows in wulfd's log"

machine_facts
IPMITOOL_V=$(ipmitool -V 2>&1 | head -1)
SIM_V=$(dpkg-query -W -f='${Version}' openipmi 2>/dev/null || echo unknown)
cat >"$TMP/section" <<EOF
$HEADING

- Date: $DATE
- Machine: $(nproc) cores (\`nproc\`), $CPU_MODEL, $MEM_TOTAL RAM
- Command: \`$CMD\` (from the repository root), $(($(date +%s) - T_START)) s in all
- Software: wulf $("$WULF" --version | awk '{ print $2 }') ($HOW), $IPMITOOL_V, ipmi_sim from openipmi $SIM_V
- BMCs: $NODES ipmi_sim processes, BMC i on 127.0.1.i:623 (IPMI 2.0 lanplus, cipher suite 3), each powering a running \`sleep\`; one templated \`_power_uri\` for every node on the default group
- Interference: $(interference)

Wall time of one \`power status\` of all $NODES nodes (median of $RUNS runs, each run checked: $NODES nodes on):

| what | fan-out | median (ms) | runs (ms) | wulf / this |
|---|---:|---:|---|---:|
| wulf | $FANOUT | $WM | ${W_MS[*]} | 1.00 |
| \`xargs -P $FANOUT ipmitool … chassis power status\` | $FANOUT | $XM | ${X_MS[*]} | $RATIO |
| bash loop of ipmitool, one at a time | 1 | $LM | ${L_MS[*]:--} | $LRATIO |

Method: the peers run the command line wulf's IPMI driver runs (\`ipmitool -I lanplus -H HOST -U admin -E -N 1 -R 1 -C 3 chassis power status\`, password in IPMI_PASSWORD; wulf adds \`-v\` and sets -N/-R from its timeout, which only matter when a BMC does not answer); wulf's figure is end to end (client start, HTTP, filling in the template for each node, 100 ipmitool runs at most $FANOUT at a time, the JSON answer). The runs take turns (wulf, xargs, loop) so a disturbance hits all of them alike. wulfd wrote $AUDIT AUDIT \`power\` lines; the password appeared in its log 0 times.
EOF
cat "$TMP/section"
write_section "$HEADING" "$TMP/section"
