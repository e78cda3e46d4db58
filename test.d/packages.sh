# The Debian packages test (crates/cli/tests/packages.rs): what packaging/build-debs.sh needs
# (dpkg-deb, dpkg-shlibdeps from dpkg-dev), what checks the packages (lintian, logrotate,
# groff, systemd-analyze), and a minimal Debian chroot to install them into: built once with
# debootstrap and kept as a tarball, so later runs only unpack it. Sourced by test.sh;
# installs only what is missing.
pkg_need=()
for pair in dpkg-deb:dpkg dpkg-shlibdeps:dpkg-dev debootstrap:debootstrap lintian:lintian \
  logrotate:logrotate groff:groff-base systemd-analyze:systemd gzip:gzip; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || pkg_need+=("${pair#*:}")
done
if ((${#pkg_need[@]})); then
  log "installing ${pkg_need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkg_need[@]}"
fi
unset pkg_need pair

# The chroot: Debian's minimal base with what a head has besides: systemd (its units are
# what systemd-analyze verifies wulf's against), procps (/bin/kill, pkill), man-db (its
# trigger indexes the installed man pages) and logrotate. Kept in /opt/wulf-test; the test
# unpacks a fresh copy for each run. The name's number changes with the list (the test
# names the same file).
WULF_CHROOT_SUITE=bookworm
WULF_CHROOT_TAR=/opt/wulf-test/chroot-$WULF_CHROOT_SUITE-2.tar.gz
if [ ! -s "$WULF_CHROOT_TAR" ]; then
  log "building a $WULF_CHROOT_SUITE chroot into $WULF_CHROOT_TAR (once)"
  mkdir -p /opt/wulf-test
  chroot_tmp=$(mktemp -d /opt/wulf-test/chroot-build.XXXXXX)
  # Bounded: a mirror that stalls fails the run instead of hanging it.
  if ! timeout 1200 debootstrap --variant=minbase --include=systemd,procps,man-db,logrotate \
    "$WULF_CHROOT_SUITE" "$chroot_tmp/root" http://deb.debian.org/debian \
    >"$chroot_tmp/debootstrap.log" 2>&1; then
    tail -n 30 "$chroot_tmp/debootstrap.log" >&2
    for m in proc sys dev/pts dev; do umount "$chroot_tmp/root/$m" 2>/dev/null || true; done
    rm -rf "$chroot_tmp"
    echo "test.d/packages.sh: debootstrap of $WULF_CHROOT_SUITE failed" >&2
    exit 1
  fi
  # Downloaded .debs are not needed to install ours.
  rm -rf "$chroot_tmp/root/var/cache/apt/archives/"*.deb
  tar -C "$chroot_tmp/root" --numeric-owner -czf "$chroot_tmp/chroot.tar.gz" .
  mv "$chroot_tmp/chroot.tar.gz" "$WULF_CHROOT_TAR"
  rm -rf "$chroot_tmp"
fi
unset WULF_CHROOT_SUITE WULF_CHROOT_TAR chroot_tmp
