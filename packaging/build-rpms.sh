#!/usr/bin/env bash
# Build wulf's RPM packages from the release binaries, with rpmbuild and packaging/wulf.spec:
#
#   target/rpm/wulf-VERSION-1.ARCH.rpm        the head: wulfd, wulf, wulfd.service, the
#                                             logrotate file, man pages, completions,
#                                             /etc/wulf/wulfd.toml.example
#   target/rpm/wulf-agent-VERSION-1.ARCH.rpm  nodes: wulf-agent, wulf-agent.service,
#                                             wulf-agent-standalone.service,
#                                             /etc/wulf/agent.conf.example
#   target/rpm/nss-wulf-VERSION-1.ARCH.rpm    the NSS module libnss_wulf.so.2 in /usr/lib64
#                                             (getent ethers answered by a head)
#
# VERSION is the workspace's (Cargo.toml [workspace.package]), ARCH `uname -m`'s. Build the
# binaries first:
#
#   cargo build --release --workspace && packaging/build-rpms.sh
#
# Needs rpmbuild (Debian: apt-get install rpm; RHEL-like: dnf install rpm-build), strip
# and gzip. Environment: WULF_RELEASE_DIR (where the binaries are, default target/release),
# WULF_RPM_DIR (where the packages go, default target/rpm), WULF_RPM_PACKAGER (the Packager
# tag; default from DEBFULLNAME and DEBEMAIL, as build-debs.sh does), SOURCE_DATE_EPOCH
# (file and build times; default the last commit's). The same inputs give the same
# packages, byte for byte. Prints the packages it wrote, one a line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
bin_dir=${WULF_RELEASE_DIR:-$top/target/release}
out=${WULF_RPM_DIR:-$top/target/rpm}
packager=${WULF_RPM_PACKAGER:-${DEBFULLNAME:-wulf developers} <${DEBEMAIL:-wulf@localhost}>}

die() {
  echo "build-rpms.sh: $*" >&2
  exit 1
}

command -v rpmbuild >/dev/null 2>&1 ||
  die "rpmbuild not found (Debian: apt-get install rpm; RHEL-like: dnf install rpm-build)"
for tool in strip gzip; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (Debian: apt-get install binutils gzip)"
done
for b in wulfd wulf wulf-agent; do
  [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found: run cargo build --release --workspace first"
done
[ -f "$bin_dir/libnss_wulf.so" ] ||
  die "$bin_dir/libnss_wulf.so not found: run cargo build --release --workspace first"
bin_dir=$(cd "$bin_dir" && pwd)

# The version in [workspace.package]. RPM versions take no '-'.
version=$(awk '
  /^\[/ { section = $0 }
  section == "[workspace.package]" && $1 == "version" { gsub(/"/, "", $3); print $3; exit }
' "$top/Cargo.toml")
[[ $version =~ ^[0-9][A-Za-z0-9.+~^]*$ ]] ||
  die "no version (or one RPM cannot take) in $top/Cargo.toml [workspace.package]: '$version'"
arch=$(uname -m)
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
# %changelog wants "Mon Dec 07 2026".
changelog_date=$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %d %Y')

mkdir -p "$out"
out=$(cd "$out" && pwd)
build=$out/build
rm -rf "$build"
mkdir -p "$build/tmp"

# rpmbuild's whole tree in $build; the packages straight into $out (no ARCH/ subdirectory).
# No ~/.rpmmacros or site macros change what it builds (--macros: rpm's own files only).
rpm_macros=$(rpm --showrc 2>/dev/null | sed -n 's/^Macro path: //p' | tr ':' '\n' |
  grep -v -e '^~' -e '/etc/rpm' | paste -sd: -) || true
log=$build/rpmbuild.log
if ! LC_ALL=C TZ=UTC rpmbuild -bb --quiet \
  ${rpm_macros:+--macros="$rpm_macros"} \
  --target "$arch" \
  --define "_topdir $build" \
  --define "_rpmdir $out" \
  --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
  --define "_tmppath $build/tmp" \
  --define "wulf_version $version" \
  --define "wulf_bin $bin_dir" \
  --define "wulf_src $here" \
  --define "wulf_packager $packager" \
  --define "wulf_date $changelog_date" \
  "$here/wulf.spec" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  die "rpmbuild failed (the whole log: $log)"
fi

for pkg in wulf wulf-agent nss-wulf; do
  rpm=$out/$pkg-$version-1.$arch.rpm
  [ -f "$rpm" ] || die "rpmbuild wrote no $rpm (its log: $log)"
  echo "$rpm"
done
