#!/usr/bin/env bash
# Runs every wulf test. Installs what the tests need when it is missing (Debian packages),
# so it works on a fresh machine, as root, with no input.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\n==> %s\n' "$*"; }

# Debian packages the tests use, by the command that proves each is there.
declare -A NEED=(
  [curl]=curl
  [sha256sum]=coreutils
  [ip]=iproute2
  [dhclient]=isc-dhcp-client
  [busybox]=busybox-static
  [cpio]=cpio
  [apt-get]=apt
  [dpkg]=dpkg
  [tftp]=tftp-hpa
  [dig]=dnsutils
  [perfdhcp]=kea-admin
  [qemu-system-x86_64]=qemu-system-x86
  [etcd]=etcd-server
  [protoc]=protobuf-compiler
  [openssl]=openssl
  [ipmi_sim]=openipmi
  [ipmitool]=ipmitool
)
# Debian packages the tests use, by a file that proves each is there.
declare -A NEED_FILE=(
  [/usr/lib/ipxe/undionly.kpxe]=ipxe
  [/usr/lib/ipxe/qemu/pxe-e1000.rom]=ipxe-qemu
  [/usr/include/google/protobuf/descriptor.proto]=libprotobuf-dev
  [/usr/bin/python3]=python3
)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
for f in "${!NEED_FILE[@]}"; do
  [ -e "$f" ] || missing+=("${NEED_FILE[$f]}")
done
# An initramfs needs a static busybox: Debian's busybox-static (it replaces busybox, and
# still gives the tests `busybox udhcpc` and the rest).
bb_ldd=$(ldd /bin/busybox 2>&1 || true)
if [[ $bb_ldd != *"not a dynamic executable"* ]]; then
  [[ " ${missing[*]} " == *" busybox-static "* ]] || missing+=(busybox-static)
fi
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: need root to install ${missing[*]} (or install them yourself)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Redfish emulator the power tests drive (PyPI sushy-tools, its fake driver), in a
# virtualenv of Debian's python3 (the tests find it there).
SUSHY_VENV=/opt/wulf-test/sushy
if [ ! -x "$SUSHY_VENV/bin/sushy-emulator" ]; then
  log "installing sushy-tools into $SUSHY_VENV"
  if ! /usr/bin/python3 -m venv --help >/dev/null 2>&1 || ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv
  fi
  mkdir -p "$(dirname "$SUSHY_VENV")"
  /usr/bin/python3 -m venv "$SUSHY_VENV"
  "$SUSHY_VENV/bin/pip" install -q sushy-tools
fi

# schemathesis (PyPI), which fuzzes the API as docs/openapi.json describes it
# (crates/cli/tests/openapi_fuzz.rs), in a virtualenv of its own.
ST_VENV=/opt/wulf-test/schemathesis
if [ ! -x "$ST_VENV/bin/st" ]; then
  log "installing schemathesis into $ST_VENV"
  mkdir -p "$(dirname "$ST_VENV")"
  /usr/bin/python3 -m venv "$ST_VENV"
  "$ST_VENV/bin/pip" install -q schemathesis
fi

# Further parts the tests need, one script each (a browser, Prometheus, a Debian chroot…);
# each installs what it needs when missing, as above.
for part in test.d/*.sh; do
  [ -e "$part" ] || continue
  # shellcheck source=/dev/null
  source "$part"
done

log "cargo fmt --check"
cargo fmt --all -- --check

# Everything is built, linted and tested with the etcd store backend (its build runs protoc);
# the default build (the README's quick start) must not need protoc.
FEATURES=(--features wulfd/etcd,wulf-store/etcd)
if cargo tree --workspace -e normal -i etcd-client >/dev/null 2>&1; then
  echo "test.sh: the default build depends on etcd-client (and so on protoc)" >&2
  exit 1
fi

log "cargo clippy"
cargo clippy --release --workspace --all-targets -q "${FEATURES[@]}" -- -D warnings

log "build"
cargo build --release --workspace -q "${FEATURES[@]}"

log "tests"
cargo test --release --workspace "${FEATURES[@]}" 2>&1 | tee target/test-output.txt
# cargo test exits non-zero on a failure (pipefail carries it); also refuse a run with no tests.
if ! grep -qE '^test result: ok\. [1-9]' target/test-output.txt; then
  echo "test.sh: no tests ran" >&2
  exit 1
fi
log "all tests passed"
