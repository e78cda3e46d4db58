#!/usr/bin/env bash
# Acting on nodes at scale: `wulf node exec hostname` on simulated nodes next to ClusterShell
# and pdsh running `hostname` over ssh on as many targets, and `reboot --soft then waitfor up`.
#
# 1. Peers (first, while no wulfd or sim runs): a private sshd on 127.0.0.1:PORT (throwaway
#    ed25519 host key, its own sshd_config under a temp dir; the machine's ssh configuration
#    is not touched) and a throwaway client key. The N targets n0..n(N-1) are aliases in a
#    private ssh_config (`Host n*`, `HostName 127.0.0.1`, `Port PORT`), passed with -F, so
#    every target is this same machine. Each configuration runs `hostname` on all N targets
#    (outputs checked: every target answered with this machine's hostname, exit status 0):
#      - pdsh -R ssh -f 64, and clush -b with each fanout in FANOUTS, one cold run each
#        (a new ssh connection per target, as without connection sharing);
#      - with KEX_VARIANT=1, the same cold runs of pdsh -f 64 and clush -f 64 with
#        KexAlgorithms curve25519-sha256 instead of OpenSSH 9.2's default post-quantum
#        sntrup761x25519 (which costs most of the client's CPU per connection here);
#      - ssh connection sharing (ControlMaster auto, ControlPersist, one ControlPath per
#        target): one clush -f 64 run that opens the N masters (cold), then WARM_RUNS runs of
#        clush for each fanout and of pdsh -f 64 through the open masters (warm). The masters
#        are closed afterwards (`ssh -O exit`).
# 2. wulf: a fresh wulfd (embedded store, new data dir, 127.0.0.1:PORT, DHCP/TFTP/DNS off)
#    and `wulf sim --nodes N --boot-secs BOOT_SECS`; once `wulf node status` prints exactly
#    `up N n[0-(N-1)]` and one untimed `wulf node -i n[0-(N-1)] exec true` has succeeded
#    (every node polls for commands), RUNS timed runs of `wulf node -i n[0-(N-1)] exec hostname`
#    (grouped output, as clush -b) and RUNS of the same with --json (every node must answer
#    its own name with exit 0; per-node latency = each result's `millis`, head sending the
#    command to its result).
# 3. REBOOT_RUNS timed runs of `wulf node -i n[0-(N-1)] reboot --soft then waitfor up`; after
#    each, every node must be up with a new boot (`wulf node status`).
# Prints tables and ratios, and writes the section "## Exec: ..." of bench/RESULTS.md.
#
# Environment:
#   NODES=1000          targets / simulated nodes
#   RUNS=5              timed wulf exec runs (and as many --json runs)
#   WARM_RUNS=3         runs of each warm (ControlMaster) peer configuration
#   FANOUTS="64 256"    clush fanouts (64 is clush's default)
#   KEX_VARIANT=1       also the cold runs with KexAlgorithms curve25519-sha256 (0: skip)
#   REBOOT_RUNS=3       timed `reboot --soft then waitfor up` runs
#   BOOT_SECS=2         wulf sim --boot-secs (a node comes up within this after its boot script)
#   PEER_TIMEOUT=600    seconds one peer run may take before it is killed
#   WULF_TIMEOUT=300    seconds one wulf command may take before it is killed
#   PARTS="peer wulf"   which parts to run (results are written only when both ran)
#   WRITE_RESULTS=0     do not touch bench/RESULTS.md
#   SKIP_BUILD=1        never build (default: build target/release binaries only if missing)
# Uses only 127.0.0.1. Runs as root non-interactively (package installs, sshd).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
RESULTS_FILE="$SCRIPT_DIR/RESULTS.md"
HEADING="## Exec: exec hostname and reboot then waitfor up on simulated nodes vs clush and pdsh over ssh (bench/exec.sh)"

CMD=""
for v in NODES RUNS WARM_RUNS FANOUTS KEX_VARIANT REBOOT_RUNS BOOT_SECS PEER_TIMEOUT WULF_TIMEOUT PARTS SKIP_BUILD WRITE_RESULTS; do
  if [[ -n "${!v:-}" ]]; then CMD+="$v=$(printf %q "${!v}") "; fi
done
CMD+="bash bench/exec.sh"
if (($#)); then CMD+=" $*"; fi

N=${NODES:-1000}
RUNS=${RUNS:-5}
WARM_RUNS=${WARM_RUNS:-3}
read -r -a FANOUT_LIST <<<"${FANOUTS:-64 256}"
KEX_VARIANT=${KEX_VARIANT:-1}
REBOOT_RUNS=${REBOOT_RUNS:-3}
BOOT_SECS=${BOOT_SECS:-2}
PEER_TIMEOUT=${PEER_TIMEOUT:-600}
WULF_TIMEOUT=${WULF_TIMEOUT:-300}
PARTS=${PARTS:-peer wulf}
TARGET_MS=2000

log() { printf '[exec.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
source "$SCRIPT_DIR/lib.sh"
[[ $(id -u) == 0 ]] || die "run as root (package installs, sshd)"
for v in N RUNS WARM_RUNS REBOOT_RUNS PEER_TIMEOUT WULF_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer"
done
for f in "${FANOUT_LIST[@]}"; do [[ "$f" =~ ^[0-9]+$ && "$f" -gt 0 ]] || die "bad fanout '$f'"; done
[[ "$BOOT_SECS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BOOT_SECS must be a number of seconds"
want_part() { [[ " $PARTS " == *" $1 "* ]]; }
if ! want_part peer || ! want_part wulf; then
  [[ "${WRITE_RESULTS:-1}" == 0 ]] || log "PARTS='$PARTS' is not both parts: bench/RESULTS.md is left alone"
  WRITE_RESULTS=0
fi
T_START=$(date +%s)
LAST=$((N - 1))
RANGE="n[0-$LAST]"

# ---------------------------------------------------------------- tools
install_missing curl=curl jq=jq timeout=coreutils
if want_part peer; then
  install_missing /usr/sbin/sshd=openssh-server ssh=openssh-client ssh-keygen=openssh-client clush=clustershell pdsh=pdsh
fi

if want_part wulf; then
  cargo_on_path
  TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
  if [[ ! -x "$TARGET_DIR/release/wulfd" || ! -x "$TARGET_DIR/release/wulf" ]]; then
    [[ "${SKIP_BUILD:-0}" != 1 ]] || die "binaries not found in $TARGET_DIR/release (SKIP_BUILD=1)"
    log "building release binaries (missing): cargo build --release -p wulfd -p wulf-cli"
    (cd "$ROOT" && cargo build --release -p wulfd -p wulf-cli) || die "cargo build failed"
  fi
  [[ -x "$TARGET_DIR/release/wulfd" && -x "$TARGET_DIR/release/wulf" ]] ||
    die "binaries not found in $TARGET_DIR/release"
fi

# ---------------------------------------------------------------- cleanup
# Short: ControlPath sockets live under it (sun_path holds 108 bytes).
TMP=$(mktemp -d /tmp/wbx.XXXXXX)
SSHD_PID=""
WULFD_PID=""
SIM_PID=""
MADE_RUN_SSHD=0
CMDIR="$TMP/cm"

close_masters() { # every ControlMaster with a socket under $CMDIR
  local s names=()
  [[ -d "$CMDIR" ]] || return 0
  for s in "$CMDIR"/*; do [[ -S "$s" ]] && names+=("${s##*/}"); done
  ((${#names[@]})) || return 0
  log "closing ${#names[@]} ssh ControlMaster connections"
  printf '%s\n' "${names[@]}" |
    timeout 120 xargs -r -P 8 -n 50 sh -c 'for h; do ssh -F "$0" -O exit "$h" 2>/dev/null; done' "$TMP/ssh_config_cm" || true
}
stop_sshd() {
  if [[ -n "$SSHD_PID" ]]; then
    kill "$SSHD_PID" 2>/dev/null || true
    wait_gone "$SSHD_PID"
    wait "$SSHD_PID" 2>/dev/null || true
    SSHD_PID=""
  fi
}
stop_sim() { # SIGTERM lets the sim send its shutdown reports; 10 s at most
  if [[ -n "$SIM_PID" ]]; then
    kill "$SIM_PID" 2>/dev/null || true
    wait_gone "$SIM_PID" 100
    wait "$SIM_PID" 2>/dev/null || true
    SIM_PID=""
  fi
}
stop_wulfd() {
  if [[ -n "$WULFD_PID" ]]; then
    kill "$WULFD_PID" 2>/dev/null || true
    wait_gone "$WULFD_PID"
    wait "$WULFD_PID" 2>/dev/null || true
    WULFD_PID=""
  fi
}
cleanup() {
  local rc=$?
  stop_child
  close_masters
  stop_sshd
  stop_sim
  stop_wulfd
  if ((MADE_RUN_SSHD)); then rmdir /run/sshd 2>/dev/null || true; fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
ms_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.0f", (b - a) / 1e6 }'; }
secs() { awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }'; }
busy_ticks() { cpu_busy_total | cut -d' ' -f1; }
# utime+stime+cutime+cstime of the given processes and all their live descendants: a child
# that ended was reaped by its parent in the tree, so its time is in that parent's cutime.
tree_ticks() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v roots="$*" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) want[r[i]] = 1 }
    { pid = $1; l = $0; sub(/^.*\) /, "", l); split(l, f, " "); pp[pid] = f[2]; t[pid] = f[12] + f[13] + f[14] + f[15] }
    END {
      do { c = 0; for (p in pp) if (!(p in want) && (pp[p] in want)) { want[p] = 1; c = 1 } } while (c)
      for (p in want) if (p in t) s += t[p]
      print s + 0 }'
}
# The run's own processes: this script's tree (the peer, ssh clients, the private sshd and
# its sessions; or wulfd, the sim and the CLI) and the backgrounded ssh ControlMasters.
EXTRA_ROOTS=""
ours_ticks() { tree_ticks "$$" $EXTRA_ROOTS; }
# Start / end one measured interval: RUN_CPU = ticks of the run's processes, RUN_OTHER =
# the machine's other busy ticks over it.
cpu_start() { C_B0=$(busy_ticks); C_O0=$(ours_ticks); }
cpu_end() {
  local b1 o1
  o1=$(ours_ticks); b1=$(busy_ticks)
  RUN_CPU=$((o1 - C_O0))
  RUN_OTHER=$(((b1 - C_B0) - RUN_CPU))
  ((RUN_OTHER >= 0)) || RUN_OTHER=0
}
CLK_TCK=$(getconf CLK_TCK)
ticks_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }
# median / min / max of the numbers given
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { printf '%s\n' "$@" | sort -n | awk 'NR == 1 { a = $1 } { b = $1 } END { printf "%s–%s", a, b }'; }
list_s() { local out="" m; for m in "$@"; do out+="${out:+, }$(secs "$m")"; done; echo "$out"; }
norm() { sed 's/[[:space:]]\+/ /g; s/^ //; s/ $//' "$1" | sed '/^$/d'; }

HOSTNAME_NOW=$(hostname)
NPROC=$(nproc)
machine_facts
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
  GIT_REV+=" with uncommitted changes under crates/"
fi
log "machine: $NPROC cores, $CPU_MODEL, $MEM_TOTAL; loadavg at start $LOAD_START"
sample_interference "start"

# Results of the peer runs, in order: label, configuration, wall ms of each run, CPU ticks
P_LABEL=()
P_CONF=()
P_WALL=()
P_CPU=()
P_OTHER=()

# ================================================================ peers
SSHD_CFG_TEXT=""
SSH_CFG_TEXT=""
if want_part peer; then
  SSH_VERSION=$(ssh -V 2>&1)
  CLUSH_VERSION=$(clush --version 2>&1 | head -n 1)
  PDSH_VERSION=$(pdsh -V 2>&1 | head -n 1)
  log "peers: $CLUSH_VERSION, $PDSH_VERSION, $SSH_VERSION"

  ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$TMP/host_key"
  ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$TMP/id_key"
  cp "$TMP/id_key.pub" "$TMP/authorized_keys"
  SSH_PORT=$(pick_port)
  # sshd needs its privilege separation directory (the package's service would create it).
  if [[ ! -d /run/sshd ]]; then mkdir -m 0755 /run/sshd; MADE_RUN_SSHD=1; fi
  # SetEnv SHLVL=1: bash (as Debian builds it) sources /etc/bash.bashrc and ~/.bashrc for a
  # command run by sshd only in a top-level shell; with SHLVL=1 the shell is at level 2, so
  # each target runs a bare `bash -c hostname` whatever root's rc files do on this machine.
  # MaxStartups: the default 10:30:100 refuses concurrent unauthenticated connections beyond
  # 10 at random, which fanout 64 exceeds.
  SSHD_CFG_TEXT=$(
    cat <<EOF
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $TMP/host_key
PidFile $TMP/sshd.pid
AuthorizedKeysFile $TMP/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxStartups 1024
SetEnv SHLVL=1
LogLevel ERROR
EOF
  )
  printf '%s\n' "$SSHD_CFG_TEXT" >"$TMP/sshd_config"
  echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$TMP/host_key.pub")" >"$TMP/known_hosts"
  SSH_CFG_TEXT=$(
    cat <<EOF
Host n*
  HostName 127.0.0.1
  Port $SSH_PORT
  User root
  IdentityFile $TMP/id_key
  IdentitiesOnly yes
  UserKnownHostsFile $TMP/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
EOF
  )
  printf '%s\n' "$SSH_CFG_TEXT" >"$TMP/ssh_config"
  { printf '%s\n' "$SSH_CFG_TEXT"; echo "  KexAlgorithms curve25519-sha256"; } >"$TMP/ssh_config_kex"
  mkdir -m 0700 "$CMDIR"
  CM_LINES="  ControlMaster auto
  ControlPath $CMDIR/%n
  ControlPersist 600"
  { printf '%s\n' "$SSH_CFG_TEXT"; printf '%s\n' "$CM_LINES"; } >"$TMP/ssh_config_cm"

  /usr/sbin/sshd -t -f "$TMP/sshd_config" || die "sshd -t rejected the private sshd_config"
  /usr/sbin/sshd -D -e -f "$TMP/sshd_config" 2>"$TMP/sshd.log" &
  SSHD_PID=$!
  for ((i = 0; i < 50; i++)); do port_in_use "$SSH_PORT" && break; sleep 0.1; done
  port_in_use "$SSH_PORT" || { cat "$TMP/sshd.log" >&2; die "sshd did not listen on 127.0.0.1:$SSH_PORT"; }
  got=$(timeout 20 ssh -F "$TMP/ssh_config" n0 hostname) || die "ssh to the private sshd failed"
  [[ "$got" == "$HOSTNAME_NOW" ]] || die "ssh n0 hostname printed '$got', expected '$HOSTNAME_NOW'"
  log "private sshd on 127.0.0.1:$SSH_PORT answers"

  # clush configuration directories (CLUSTERSHELL_CFGDIR): one per ssh config
  clush_dir() { # NAME SSH_CONFIG
    mkdir -p "$TMP/$1"
    cat >"$TMP/$1/clush.conf" <<EOF
[Main]
fanout: 64
connect_timeout: 15
command_timeout: 0
color: never
fd_max: 8192
history_size: 0
node_count: yes
verbosity: 1
ssh_user: root
ssh_path: ssh
ssh_options: -F $2
EOF
  }
  for f in "${XDG_CONFIG_HOME:-$HOME/.config}/clustershell/clush.conf" "$HOME/.local/etc/clustershell/clush.conf"; do
    [[ ! -e "$f" ]] || die "$f exists and would override this benchmark's clush.conf"
  done
  clush_dir clush "$TMP/ssh_config"
  clush_dir clush_kex "$TMP/ssh_config_kex"
  clush_dir clush_cm "$TMP/ssh_config_cm"

  # check the output of one run: TOOL OUT ERR RC
  check_peer() {
    local tool=$1 out=$2 err=$3 rc=$4 n bad
    if [[ "$tool" == pdsh ]]; then
      # "nX: HOSTNAME", one line per target
      n=$(awk -v h="$HOSTNAME_NOW" -v last="$LAST" '
        { t = $1; sub(/:$/, "", t); v = $0; sub(/^[^:]*: /, "", v)
          if (t ~ /^n[0-9]+$/ && substr(t, 2) + 0 <= last && v == h && !(t in s)) { s[t] = 1; k++ } }
        END { print k + 0 }' "$out")
      [[ "$rc" == 0 && "$n" == "$N" && ! -s "$err" ]] && return 0
      log "pdsh: exit status $rc, $n of $N targets answered '$HOSTNAME_NOW'; stderr: $(head -c 400 "$err")"
      return 1
    fi
    # clush -b: one group "n[0-LAST] (N)" whose output is the hostname
    bad=$(grep -aE 'clush: n[0-9]' "$err" | head -n 3 || true)
    if [[ "$rc" == 0 && -z "$bad" ]] && grep -qxF "$RANGE ($N)" "$out" && grep -qxF "$HOSTNAME_NOW" "$out" &&
      (($(grep -c '^n.* ([0-9]*)$' "$out") == 1)); then
      return 0
    fi
    log "clush: exit status $rc; output: $(head -c 400 "$out"); errors: $bad"
    return 1
  }

  # one timed run: LABEL CONF TOOL FANOUT (SSH_CONFIG|CLUSH_DIR); appends wall ms and CPU to P_*
  peer_once() {
    local tool=$1 fanout=$2 where=$3 t0 b0 ms rc=0
    sample_interference "$tool -f $fanout ($where)"
    cpu_start
    t0=$(now_ns)
    if [[ "$tool" == pdsh ]]; then
      run_child env PDSH_SSH_ARGS="-F $where -x %h" timeout "$PEER_TIMEOUT" \
        pdsh -R ssh -f "$fanout" -w "$RANGE" hostname >"$TMP/peer.out" 2>"$TMP/peer.err" || rc=$?
    else
      run_child env CLUSTERSHELL_CFGDIR="$where" timeout "$PEER_TIMEOUT" \
        clush -b -f "$fanout" -w "$RANGE" hostname >"$TMP/peer.out" 2>"$TMP/peer.err" || rc=$?
    fi
    ms=$(ms_since "$t0")
    # the ControlMasters alive now (a cold run through ssh_config_cm starts them)
    EXTRA_ROOTS=$(pgrep -f -- "$TMP/ssh_config_cm" | tr '\n' ' ' || true)
    cpu_end
    ((rc != 124)) || die "$tool -f $fanout did not finish within $PEER_TIMEOUT s"
    check_peer "$tool" "$TMP/peer.out" "$TMP/peer.err" "$rc" || die "$tool -f $fanout: wrong output (see above)"
    RUN_MS=$ms
    log "$tool -f $fanout: $(secs "$ms") s, CPU $(ticks_s "$RUN_CPU") s (other processes $(ticks_s "$RUN_OTHER") s)"
  }
  # LABEL CONF RUNS TOOL FANOUT WHERE
  peer_config() {
    local label=$1 conf=$2 runs=$3 walls=() cpus=() others=() r
    shift 3
    for ((r = 0; r < runs; r++)); do
      peer_once "$@"
      walls+=("$RUN_MS")
      cpus+=("$RUN_CPU")
      others+=("$RUN_OTHER")
    done
    P_LABEL+=("$label")
    P_CONF+=("$conf")
    P_WALL+=("${walls[*]}")
    P_CPU+=("${cpus[*]}")
    P_OTHER+=("${others[*]}")
  }

  log "=== peers: $N ssh targets on 127.0.0.1:$SSH_PORT ==="
  peer_config "pdsh" "\`pdsh -R ssh -f 64\`, new connection per target" 1 pdsh 64 "$TMP/ssh_config"
  for f in "${FANOUT_LIST[@]}"; do
    peer_config "clush" "\`clush -b -f $f\`, new connection per target" 1 clush "$f" "$TMP/clush"
  done
  if [[ "$KEX_VARIANT" == 1 ]]; then
    peer_config "pdsh" "\`pdsh -R ssh -f 64\`, new connection per target, KexAlgorithms curve25519-sha256" 1 pdsh 64 "$TMP/ssh_config_kex"
    peer_config "clush" "\`clush -b -f 64\`, new connection per target, KexAlgorithms curve25519-sha256" 1 clush 64 "$TMP/clush_kex"
  fi
  peer_config "clush" "\`clush -b -f 64\`, ControlMaster cold: opens the $N masters" 1 clush 64 "$TMP/clush_cm"
  nm=$(find "$CMDIR" -type s | wc -l)
  ((nm == N)) || log "note: $nm ControlMaster sockets after the cold run, expected $N"
  for f in "${FANOUT_LIST[@]}"; do
    peer_config "clush" "\`clush -b -f $f\`, ControlMaster warm (masters open)" "$WARM_RUNS" clush "$f" "$TMP/clush_cm"
  done
  peer_config "pdsh" "\`pdsh -R ssh -f 64\`, ControlMaster warm (masters open)" "$WARM_RUNS" pdsh 64 "$TMP/ssh_config_cm"
  close_masters
  EXTRA_ROOTS=""
  for ((i = 0; i < 100; i++)); do
    (($(find "$CMDIR" -type s | wc -l) == 0)) && break
    sleep 0.1
  done
  stop_sshd
  # (the readiness probe's bare connect leaves a kex_exchange_identification line)
  if grep -qv 'kex_exchange_identification' "$TMP/sshd.log"; then log "sshd log: $(grep -v kex_exchange_identification "$TMP/sshd.log" | head -c 400)"; fi
fi

# ================================================================ wulf
W_EXEC=()
W_EXEC_CPU=()
W_EXEC_OTHER=()
W_JSON=()
W_JSON_CPU=()
W_JSON_OTHER=()
W_REBOOT=()
W_REBOOT_CPU=()
W_REBOOT_OTHER=()
W_RUNP=()
W_REBOOTED=()
if want_part wulf; then
  mkdir "$TMP/bin"
  cp "$TARGET_DIR/release/wulfd" "$TARGET_DIR/release/wulf" "$TMP/bin/"
  WULFD="$TMP/bin/wulfd"
  WULF="$TMP/bin/wulf"
  WULF_VERSION=$("$WULF" --version 2>/dev/null || echo unknown)
  BUILT=$(date -u -r "$TARGET_DIR/release/wulfd" '+%Y-%m-%d %H:%M UTC')

  DATA="$TMP/data"
  PORT=$(pick_port)
  mkdir -p "$DATA"
  cat >"$DATA.toml" <<EOF
data_dir = "$DATA"
listen = "127.0.0.1:$PORT"
log = "warn"
[dhcp]
enabled = false
[tftp]
enabled = false
[dns]
enabled = false
EOF
  "$WULFD" --config "$DATA.toml" >"$DATA.log" 2>&1 &
  WULFD_PID=$!
  for ((i = 0; i < 150; i++)); do
    kill -0 "$WULFD_PID" 2>/dev/null || { cat "$DATA.log" >&2; WULFD_PID=""; die "wulfd exited at start"; }
    if [[ -s "$DATA/admin.token" ]] && curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/"; then break; fi
    sleep 0.1
  done
  ((i < 150)) || die "wulfd did not come up on 127.0.0.1:$PORT"
  export WULF_URL="https://127.0.0.1:$PORT" WULF_CA="$DATA/tls/ca.pem"
  WULF_TOKEN=$(cat "$DATA/admin.token")
  export WULF_TOKEN
  wulfd_alive() {
    kill -0 "$WULFD_PID" 2>/dev/null && return 0
    WULFD_PID=""
    log "wulfd log tail:"; tail -n 30 "$DATA.log" >&2 || true
    die "wulfd died during the run"
  }

  log "=== wulf: wulf sim --nodes $N --boot-secs $BOOT_SECS ==="
  "$WULF" sim --nodes "$N" --boot-secs "$BOOT_SECS" >"$TMP/sim.out" 2>"$TMP/sim.log" &
  SIM_PID=$!
  want="up $N $RANGE"
  t0=$(now_ns)
  for ((i = 0; ; i++)); do
    kill -0 "$SIM_PID" 2>/dev/null || { tail -n 20 "$TMP/sim.log" >&2; SIM_PID=""; die "wulf sim exited"; }
    wulfd_alive
    "$WULF" node status >"$TMP/status.txt" 2>&1 || true
    [[ "$(norm "$TMP/status.txt")" == "$want" ]] && break
    ((i < 600)) || { cat "$TMP/status.txt" >&2; die "the $N simulated nodes were not all up within 2 min"; }
    sleep 0.2
  done
  W_UP_S=$(secs "$(ms_since "$t0")")
  log "all $N nodes up after $W_UP_S s"
  # every node polls for commands: one untimed exec of `true` (retried for up to 30 s)
  for ((i = 0; ; i++)); do
    rc=0
    run_child timeout "$WULF_TIMEOUT" "$WULF" node -i "$RANGE" exec true >"$TMP/ready.out" 2>&1 || rc=$?
    ((rc == 0)) && break
    ((rc != 2)) || { head -n 20 "$TMP/ready.out" >&2; die "wulf node -i $RANGE exec true: usage error (exit status 2)"; }
    ((i < 30)) || { head -n 20 "$TMP/ready.out" >&2; die "wulf node -i $RANGE exec true failed (exit status $rc) for 30 s"; }
    sleep 1
  done
  log "exec true succeeded on every node (try $((i + 1)))"

  wulf_once() { # OUT ARGS... : timed, bounded; sets RUN_MS RUN_CPU RUN_RC
    local out=$1 t0 b0
    shift
    sample_interference "wulf $*"
    wulfd_alive
    RUN_RC=0
    cpu_start
    t0=$(now_ns)
    run_child timeout "$WULF_TIMEOUT" "$WULF" "$@" >"$out" 2>"$out.err" || RUN_RC=$?
    RUN_MS=$(ms_since "$t0")
    cpu_end
  }

  for ((r = 1; r <= RUNS; r++)); do
    wulf_once "$TMP/exec.out" node -i "$RANGE" exec hostname
    if ((RUN_RC != 0)); then
      head -n 20 "$TMP/exec.out" "$TMP/exec.out.err" >&2
      die "wulf node -i $RANGE exec hostname: exit status $RUN_RC"
    fi
    W_EXEC+=("$RUN_MS")
    W_EXEC_CPU+=("$RUN_CPU")
    W_EXEC_OTHER+=("$RUN_OTHER")
    log "exec hostname run $r: $(secs "$RUN_MS") s, CPU $(ticks_s "$RUN_CPU") s (other processes $(ticks_s "$RUN_OTHER") s)"
  done
  cp "$TMP/exec.out" "$TMP/exec-text.out"
  EXEC_LINES=$(wc -l <"$TMP/exec-text.out")

  : >"$TMP/millis.all"
  for ((r = 1; r <= RUNS; r++)); do
    wulf_once "$TMP/exec.json" node -i "$RANGE" exec --json hostname
    if ((RUN_RC != 0)); then
      head -c 2000 "$TMP/exec.json" >&2; head -n 20 "$TMP/exec.json.err" >&2
      die "wulf node -i $RANGE exec --json hostname: exit status $RUN_RC"
    fi
    # every node once, exit 0, its own name on stdout
    read -r total good < <(jq -r --argjson last "$LAST" '
      (if type == "array" then . else .results end) as $r
      | [$r | length,
         ([$r[] | select(.exit == 0 and (.error == null) and (.skipped | not)
                         and ((.stdout | rtrimstr("\n")) == .name)
                         and (.name | test("^n[0-9]+$")) and ((.name[1:] | tonumber) <= $last))
           | .name] | unique | length)] | @tsv' "$TMP/exec.json") ||
      die "exec --json: output is not the expected JSON ($(head -c 300 "$TMP/exec.json"))"
    [[ "$total" == "$N" && "$good" == "$N" ]] ||
      die "exec --json: $total results, $good distinct nodes answered their own name with exit 0 (expected $N)"
    jq -r '(if type == "array" then . else .results end)[] | .millis' "$TMP/exec.json" >"$TMP/millis.$r"
    cat "$TMP/millis.$r" >>"$TMP/millis.all"
    W_JSON+=("$RUN_MS")
    W_JSON_CPU+=("$RUN_CPU")
    W_JSON_OTHER+=("$RUN_OTHER")
    W_RUNP+=("$(sort -n "$TMP/millis.$r" | awk '{ v[NR] = $1 } END { i = int(NR * 0.5 + 0.999999); j = int(NR * 0.99 + 0.999999); printf "%s/%s/%s", v[i], v[j], v[NR] }')")
    log "exec --json hostname run $r: $(secs "$RUN_MS") s; per-node millis p50/p99/max ${W_RUNP[-1]}"
  done
  read -r LAT_N LAT_P50 LAT_P90 LAT_P99 LAT_MAX < <(sort -n "$TMP/millis.all" | awk '{ v[NR] = $1 }
    function q(p) { i = int(NR * p + 0.999999); if (i < 1) i = 1; return v[i] }
    END { print NR, q(0.5), q(0.9), q(0.99), v[NR] }')
  log "per-node latency over $LAT_N results: p50 $LAT_P50 ms, p90 $LAT_P90 ms, p99 $LAT_P99 ms, max $LAT_MAX ms"

  # reboot --soft then waitfor up; a new boot for every node each time
  # when each node was last served its boot script (head clock, ms)
  boot_times() { "$WULF" node status --json | jq -r '(if type == "array" then . else .nodes end)[] | "\(.name) \(.booted_ms // 0)"' | sort; }
  for ((r = 1; r <= REBOOT_RUNS; r++)); do
    boot_times >"$TMP/boots.before" 2>/dev/null || : >"$TMP/boots.before"
    wulf_once "$TMP/reboot.out" node -i "$RANGE" reboot --soft then waitfor up
    if ((RUN_RC != 0)); then
      head -n 20 "$TMP/reboot.out" "$TMP/reboot.out.err" >&2
      die "wulf node -i $RANGE reboot --soft then waitfor up: exit status $RUN_RC"
    fi
    "$WULF" node status >"$TMP/status.txt" 2>&1 || true
    [[ "$(norm "$TMP/status.txt")" == "$want" ]] ||
      { cat "$TMP/status.txt" >&2; die "after reboot then waitfor up, wulf node status is not '$want'"; }
    boot_times >"$TMP/boots.after" 2>/dev/null || : >"$TMP/boots.after"
    REBOOTED=$(join "$TMP/boots.before" "$TMP/boots.after" | awk '$3 > $2' | wc -l)
    W_REBOOT+=("$RUN_MS")
    W_REBOOT_CPU+=("$RUN_CPU")
    W_REBOOT_OTHER+=("$RUN_OTHER")
    log "reboot --soft then waitfor up run $r: $(secs "$RUN_MS") s; nodes that fetched their boot script again: $REBOOTED"
    W_REBOOTED+=("$REBOOTED")
  done
  cp "$TMP/reboot.out" "$TMP/reboot-text.out"
  wulfd_alive
  W_WULFD_RSS=$(awk '$1 == "VmHWM:" { printf "%.1f", $2 / 1024 }' "/proc/$WULFD_PID/status")
  stop_sim
  stop_wulfd
  [[ ! -s "$DATA.log" ]] || log "wulfd log (warn+): $(head -c 500 "$DATA.log")"
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
sample_interference "end"
T_END=$(date +%s)

# ================================================================ report
# shellcheck disable=SC2086
W_MED=$( ((${#W_EXEC[@]})) && median "${W_EXEC[@]}" || echo 0)
EXEC_TABLE=$(
  printf '| tool | configuration | runs | wall (s): median | min–max (s) | every run (s) | CPU of the run (s, median) | CPU of other processes (s, median) | peer / wulf exec (median wall) |\n'
  printf '|---|---|---:|---:|---:|---|---:|---:|---:|\n'
  if ((${#W_EXEC[@]})); then
    printf '| wulf | `wulf node -i %s exec hostname` (grouped output) | %s | **%s** | %s | %s | %s | %s | 1 |\n' "$RANGE" "${#W_EXEC[@]}" \
      "$(secs "$W_MED")" "$(secs "$(printf '%s\n' "${W_EXEC[@]}" | sort -n | head -n 1)")–$(secs "$(printf '%s\n' "${W_EXEC[@]}" | sort -n | tail -n 1)")" \
      "$(list_s "${W_EXEC[@]}")" "$(ticks_s "$(median "${W_EXEC_CPU[@]}")")" "$(ticks_s "$(median "${W_EXEC_OTHER[@]}")")"
    jm=$(median "${W_JSON[@]}")
    printf '| wulf | `wulf node -i %s exec --json hostname` | %s | %s | %s | %s | %s | %s | %s |\n' "$RANGE" "${#W_JSON[@]}" \
      "$(secs "$jm")" "$(secs "$(printf '%s\n' "${W_JSON[@]}" | sort -n | head -n 1)")–$(secs "$(printf '%s\n' "${W_JSON[@]}" | sort -n | tail -n 1)")" \
      "$(list_s "${W_JSON[@]}")" "$(ticks_s "$(median "${W_JSON_CPU[@]}")")" "$(ticks_s "$(median "${W_JSON_OTHER[@]}")")" "$(awk -v p="$jm" -v w="$W_MED" 'BEGIN { printf "%.2f", p / w }')"
  fi
  for ((k = 0; k < ${#P_LABEL[@]}; k++)); do
    read -r -a ws <<<"${P_WALL[$k]}"
    read -r -a cs <<<"${P_CPU[$k]}"
    read -r -a os <<<"${P_OTHER[$k]}"
    pm=$(median "${ws[@]}")
    ratio="-"
    ((W_MED > 0)) && ratio=$(awk -v p="$pm" -v w="$W_MED" 'BEGIN { printf "%.1f", p / w }')
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${P_LABEL[$k]}" "${P_CONF[$k]}" "${#ws[@]}" "$(secs "$pm")" \
      "$(secs "$(printf '%s\n' "${ws[@]}" | sort -n | head -n 1)")–$(secs "$(printf '%s\n' "${ws[@]}" | sort -n | tail -n 1)")" \
      "$(list_s "${ws[@]}")" "$(ticks_s "$(median "${cs[@]}")")" "$(ticks_s "$(median "${os[@]}")")" "$ratio"
  done
)

BEST_LINE=""
if ((${#P_LABEL[@]} && W_MED > 0)); then
  best_k=0
  best_ms=""
  for ((k = 0; k < ${#P_LABEL[@]}; k++)); do
    read -r -a ws <<<"${P_WALL[$k]}"
    pm=$(median "${ws[@]}")
    if [[ -z "$best_ms" ]] || ((pm < best_ms)); then best_ms=$pm; best_k=$k; fi
  done
  cold_best=""
  for ((k = 0; k < ${#P_LABEL[@]}; k++)); do
    [[ "${P_CONF[$k]}" == *"new connection per target"* ]] || continue
    read -r -a ws <<<"${P_WALL[$k]}"
    pm=$(median "${ws[@]}")
    if [[ -z "$cold_best" ]] || ((pm < cold_best)); then cold_best=$pm; cold_k=$k; fi
  done
  BEST_LINE="Fastest peer: ${P_LABEL[$best_k]}, ${P_CONF[$best_k]}: $(secs "$best_ms") s, $(awk -v p="$best_ms" -v w="$W_MED" 'BEGIN { printf "%.1f", p / w }')× wulf exec's median $(secs "$W_MED") s (wulf / peer = $(awk -v p="$best_ms" -v w="$W_MED" 'BEGIN { printf "%.2f", w / p }'))."
  if [[ -n "$cold_best" ]]; then
    BEST_LINE+=" Fastest without connection sharing: ${P_LABEL[$cold_k]}, ${P_CONF[$cold_k]}: $(secs "$cold_best") s, $(awk -v p="$cold_best" -v w="$W_MED" 'BEGIN { printf "%.1f", p / w }')× (wulf / peer = $(awk -v p="$cold_best" -v w="$W_MED" 'BEGIN { printf "%.3f", w / p }'))."
  fi
fi

VERDICT=""
if ((W_MED > 0)); then
  if ((W_MED < TARGET_MS)); then VERDICT="meets"; else VERDICT="MISSES"; fi
fi

INTERFERENCE=$(interference)
SEC="$TMP/section.md"
{
  echo "$HEADING"
  echo
  echo "- Date: $DATE"
  echo "- Machine: $NPROC cores (\`nproc\`), $CPU_MODEL, $MEM_TOTAL RAM, kernel $(uname -r). Every client, server and target shares the $NPROC cores: each \"target\" is this machine."
  echo "- Command: \`$CMD\` (from the repository root), $((T_END - T_START)) s in all"
  echo "- Software: ${WULF_VERSION:-wulf not run} (target/release as built: wulfd built ${BUILT:-?}, repository at $GIT_REV); ${CLUSH_VERSION:-clush not run}; ${PDSH_VERSION:-pdsh not run}; ${SSH_VERSION:-ssh not run}"
  echo "- Load: loadavg $LOAD_START at start, $LOAD_END at end; concurrent compile/QEMU: $INTERFERENCE"
  echo
  echo "\`hostname\` on $N targets: wulf on $N simulated nodes, the peers over ssh on $N target names that are all this machine (CPU of the run = CPU seconds of every process of the run, client and server side; CPU of other processes = the rest of the machine's busy time over the run, i.e. other jobs disturbing it; peer / wulf > 1: wulf is faster):"
  echo
  echo "$EXEC_TABLE"
  echo
  [[ -z "$BEST_LINE" ]] || { echo "$BEST_LINE"; echo; }
  if ((${#W_EXEC[@]})); then
    echo "wulf exec, per-node latency (each result's \`millis\`: from the head sending the command to the node's result), over the $LAT_N results of the $RUNS --json runs: p50 $LAT_P50 ms, p90 $LAT_P90 ms, p99 $LAT_P99 ms, max $LAT_MAX ms; per run p50/p99/max (ms): $(printf '%s; ' "${W_RUNP[@]}" | sed 's/; $//')."
    echo
    echo "Target: \`exec hostname\` on $N nodes under 2 s end to end on this $NPROC-core machine: median $(secs "$W_MED") s — $VERDICT (ratio median / 2 s = $(awk -v w="$W_MED" 'BEGIN { printf "%.2f", w / 2000 }'))."
    echo
    rm_=$(median "${W_REBOOT[@]}")
    echo "\`wulf node -i $RANGE reboot --soft then waitfor up\` ($N simulated nodes, --boot-secs $BOOT_SECS): $REBOOT_RUNS runs, median **$(secs "$rm_") s**, min–max $(secs "$(printf '%s\n' "${W_REBOOT[@]}" | sort -n | head -n 1)")–$(secs "$(printf '%s\n' "${W_REBOOT[@]}" | sort -n | tail -n 1)") s, every run $(list_s "${W_REBOOT[@]}") s; CPU of the run $(ticks_s "$(median "${W_REBOOT_CPU[@]}")") s, of other processes $(ticks_s "$(median "${W_REBOOT_OTHER[@]}")") s (medians); nodes that fetched their boot script during each run (\`booted_ms\` of \`wulf node status --json\` later than before): $(printf '%s, ' "${W_REBOOTED[@]}" | sed 's/, $//') of $N. No peer: ClusterShell and pdsh have no reboot-and-wait."
    echo
    echo "Diagnostics: all $N sim nodes up $W_UP_S s after \`wulf sim\` started; wulfd VmHWM at the end $W_WULFD_RSS MiB; \`exec hostname\` printed $EXEC_LINES line(s): $(head -n 3 "$TMP/exec-text.out" | sed 's/|/\\|/g' | awk '{ printf "%s`%s`", (NR > 1 ? ", " : ""), $0 }'); the last reboot printed: $(head -n 3 "$TMP/reboot-text.out" | sed 's/|/\\|/g' | awk '{ printf "%s`%s`", (NR > 1 ? ", " : ""), $0 }')."
    echo
  fi
  echo "Method:"
  echo
  echo "- Order: the peers first (no wulfd or sim running), then wulf; one process set at a time. Each run is timed with \`date +%s%N\` around the command, bounded with \`timeout\` ($PEER_TIMEOUT s a peer run, $WULF_TIMEOUT s a wulf command). CPU of the run: utime+stime+cutime+cstime (/proc/PID/stat) of this script and all its live descendants (the CLI, wulfd and \`wulf sim\`; or pdsh/clush and their ssh clients, the private sshd and its sessions) and of the backgrounded ssh ControlMasters, after minus before (a process that ended was reaped inside that tree, so its time is in its parent's cutime). CPU of other processes: the machine's busy ticks in /proc/stat (user, nice, system, irq, softirq, steal) over the run minus that."
  echo "- wulf: \`wulfd --config CFG\` (data_dir = NEW, listen = 127.0.0.1:PORT, log = warn, [dhcp], [tftp] and [dns] enabled = false; embedded redb store), CLI through WULF_URL and WULF_TOKEN (admin token). \`wulf sim --nodes $N --boot-secs $BOOT_SECS\` (one process) creates and boots the nodes; each holds a long poll for commands on the head (see docs/decisions.md, the command channel) and answers \`hostname\` from its built-in command set (no process is started on a simulated node; on the ssh targets sshd starts \`bash -c hostname\`). Once \`wulf node status\` printed exactly \`up $N $RANGE\`, one untimed \`wulf node -i $RANGE exec true\` must succeed; then $RUNS runs of \`exec hostname\` (exit 0 each) and $RUNS of \`exec --json hostname\` (each: $N results, every node answering its own name with exit 0). No other warm-up. Each simulated node answers its own name, so \`exec hostname\` prints $N groups of one node ($((2 * N)) lines), where the ssh targets, all this machine, give clush -b one group."
  echo "- Reboot: each run is one CLI call, \`wulf node -i $RANGE reboot --soft then waitfor up\` (exit 0), after which \`wulf node status\` must print \`up $N $RANGE\`; each node's \`booted_ms\` (when the head last served it its boot script) from \`wulf node status --json\` before and after is compared. A simulated node that is asked to reboot reports going down, fetches its boot script again and comes up at a random moment within --boot-secs ($BOOT_SECS s) of it, so up to $BOOT_SECS s of each run is simulated boot time."
  if want_part peer; then
    echo "- ssh server: a private \`/usr/sbin/sshd -D -e -f \$TMP/sshd_config\` (Debian openssh-server, not the system service; /run/sshd created if missing) with a throwaway ed25519 host key. Its whole sshd_config (\`SetEnv SHLVL=1\` keeps bash from sourcing /etc/bash.bashrc and root's ~/.bashrc, which on this machine runs \`pyenv init\`, whose lock serialised the sessions in a trial run; \`MaxStartups 1024\` because the default 10:30:100 drops concurrent handshakes beyond 10): \`$(printf '%s' "$SSHD_CFG_TEXT" | sed "s#$TMP#\$TMP#g" | paste -sd ';' | sed 's/;/; /g')\`."
    echo "- ssh client: a throwaway ed25519 key and one private ssh_config given with \`-F\` (known_hosts pre-filled with the host key, so the key is checked; every name n0..n$LAST is an alias of 127.0.0.1:PORT): \`$(printf '%s' "$SSH_CFG_TEXT" | sed "s#$TMP#\$TMP#g" | sed 's/^ *//' | paste -sd ';' | sed 's/;/; /g')\`. Other ssh settings are OpenSSH's defaults (key exchange sntrup761x25519-sha512, cipher chacha20-poly1305). The curve25519 rows add \`KexAlgorithms curve25519-sha256\`. The ControlMaster rows add \`ControlMaster auto; ControlPath \$TMP/cm/%n; ControlPersist 600\` (one master per target name, as $N real hosts would have; \`%C\` would have put all $N names on one master, since they share host, port and user)."
    echo "- pdsh: \`PDSH_SSH_ARGS='-F SSH_CONFIG -x %h' pdsh -R ssh -f 64 -w $RANGE hostname\` (fanout 64; pdsh's default is 32); output checked: one \`nX: $HOSTNAME_NOW\` line per target, nothing on stderr."
    echo "- clush: \`CLUSTERSHELL_CFGDIR=DIR clush -b -f F -w $RANGE hostname\` (-b gathers identical outputs, as wulf exec does); DIR/clush.conf: \`[Main] fanout: 64, connect_timeout: 15, command_timeout: 0, color: never, fd_max: 8192, history_size: 0, node_count: yes, verbosity: 1, ssh_user: root, ssh_path: ssh, ssh_options: -F SSH_CONFIG\` (fanout given with -f on each run; 64 is the fanout in the clush.conf ClusterShell ships, the sliding window of active commands in clush.conf(5); in ClusterShell 1.9 \$CLUSTERSHELL_CFGDIR/clush.conf takes the place of /etc/clustershell/clush.conf, and no user clush.conf exists). Output checked: exactly one group \`$RANGE ($N)\` printing \`$HOSTNAME_NOW\`, exit status 0, no per-node error."
    echo "- ControlMaster: one cold clush -f 64 run through ssh_config_cm opens the $N masters (each persists $((600 / 60)) min), then $WARM_RUNS runs of each warm row reuse them; afterwards every master is closed with \`ssh -O exit\`."
  fi
  echo
} >"$SEC"

echo
cat "$SEC"
[[ -z "$VERDICT" ]] || log "target (exec hostname on $N nodes < 2 s): $VERDICT"
write_section "$HEADING" "$SEC"
