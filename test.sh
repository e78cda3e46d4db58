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
  [atftp]=atftp
  [extlinux]=extlinux
  [dig]=dnsutils
  [perfdhcp]=kea-admin
  [qemu-system-x86_64]=qemu-system-x86
  [mkfs.ext4]=e2fsprogs
  [etcd]=etcd-server
  [protoc]=protobuf-compiler
  [openssl]=openssl
  [ipmi_sim]=openipmi
  [ipmitool]=ipmitool
)
# Debian packages the tests use, by a file that proves each is there.
declare -A NEED_FILE=(
  [/usr/lib/EXTLINUX/mbr.bin]=syslinux-common
  [/usr/lib/ipxe/undionly.kpxe]=ipxe
  [/usr/lib/ipxe/qemu/pxe-e1000.rom]=ipxe-qemu
  [/usr/share/OVMF/OVMF_CODE_4M.fd]=ovmf
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

# Every build has the etcd store backend; the features are kept (no-ops) for the commands
# that name them.
FEATURES=(--features wulfd/etcd,wulf-store/etcd)

# Builds stay reproducible on a machine without protoc: etcd-client is vendored with its
# generated code (vendor/etcd-client), so no crate the build compiles may generate code from
# .proto files in its build script, and clippy and the build below (which compile every
# build script, dev-dependencies' too) run with a protoc that fails. protoc is installed for
# crates/store/tests/generated.rs only, which checks vendor/etcd-client/generated/ against it.
for gen in prost-build protobuf-codegen protoc-bin-vendored protobuf-src; do
  for features in "" "${FEATURES[*]}"; do
    # shellcheck disable=SC2086 # $features: no flags, or --features and its list
    if [ -n "$(cargo tree --workspace -e normal,build $features -i "$gen" 2>/dev/null)" ]; then
      echo "test.sh: the build (${features:-default features}) depends on $gen, which runs protoc" >&2
      exit 1
    fi
  done
done
NO_PROTOC=$PWD/target/no-protoc
mkdir -p "$NO_PROTOC"
printf '#!/bin/sh\necho "protoc ran during the build: it must need no protoc" >&2\nexit 1\n' >"$NO_PROTOC/protoc"
chmod +x "$NO_PROTOC/protoc"
no_protoc() { PATH="$NO_PROTOC:$PATH" PROTOC="$NO_PROTOC/protoc" "$@"; }

log "cargo clippy"
no_protoc cargo clippy --release --workspace --all-targets -q "${FEATURES[@]}" -- -D warnings

log "build"
no_protoc cargo build --release --workspace -q "${FEATURES[@]}"

log "tests"
cargo test --release --workspace "${FEATURES[@]}" 2>&1 | tee target/test-output.txt
# cargo test exits non-zero on a failure (pipefail carries it); also refuse a run with no tests,
# and any integration test file (tests/*.rs) that ran none (all filtered out or cfg'd away).
if ! grep -qE '^test result: ok\. [1-9]' target/test-output.txt; then
  echo "test.sh: no tests ran" >&2
  exit 1
fi
empty=$(awk '/^ +Running /{bin=$2} /^running [0-9]+ tests?$/{if (bin ~ /^tests\// && $2 == 0) print bin; bin=""}' \
  target/test-output.txt)
if [ -n "$empty" ]; then
  echo "test.sh: these test files ran no tests:" $empty >&2
  exit 1
fi
log "all tests passed"
