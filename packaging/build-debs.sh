#!/usr/bin/env bash
# Build wulf's Debian packages from the release binaries, with dpkg-deb:
#
#   target/debian/wulf_VERSION_ARCH.deb        the head: wulfd, wulf, wulfd.service, the
#                                              logrotate file, man pages, completions,
#                                              /etc/wulf/wulfd.toml.example
#   target/debian/wulf-agent_VERSION_ARCH.deb  nodes: wulf-agent, wulf-agent.service,
#                                              wulf-agent-standalone.service,
#                                              /etc/wulf/agent.conf.example
#   target/debian/libnss-wulf_VERSION_ARCH.deb the NSS module libnss_wulf.so.2 (getent
#                                              ethers answered by a head)
#
# VERSION is the workspace's (Cargo.toml [workspace.package]). Build the binaries first:
#
#   cargo build --release && packaging/build-debs.sh
#
# Needs dpkg-deb, dpkg-shlibdeps (Debian: dpkg-dev; Depends comes from the libraries the
# binaries link), strip and gzip. Environment: WULF_RELEASE_DIR (where the binaries are,
# default target/release), WULF_DEB_DIR (where the packages go, default target/debian),
# WULF_DEB_MAINTAINER or DEBFULLNAME and DEBEMAIL (the Maintainer field; set it to your
# site's address), SOURCE_DATE_EPOCH (file times; default the
# last commit's). The same inputs give the same packages, byte for byte.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")
bin_dir=${WULF_RELEASE_DIR:-$top/target/release}
out=${WULF_DEB_DIR:-$top/target/debian}
# Who built them: WULF_DEB_MAINTAINER, else DEBFULLNAME <DEBEMAIL> (Debian's convention).
maintainer=${WULF_DEB_MAINTAINER:-${DEBFULLNAME:-wulf developers} <${DEBEMAIL:-wulf@localhost}>}

die() {
  echo "build-debs.sh: $*" >&2
  exit 1
}

for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found (Debian: apt-get install dpkg-dev binutils gzip)"
done
for b in wulfd wulf wulf-agent; do
  [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found: run cargo build --release first"
done
[ -f "$bin_dir/libnss_wulf.so" ] ||
  die "$bin_dir/libnss_wulf.so not found: run cargo build --release --workspace first"

# The version in [workspace.package].
version=$(awk '
  /^\[/ { section = $0 }
  section == "[workspace.package]" && $1 == "version" { gsub(/"/, "", $3); print $3; exit }
' "$top/Cargo.toml")
[[ $version =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "no version in $top/Cargo.toml [workspace.package]"
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null) ||
  die "cannot tell the multiarch directory (Debian: apt-get install dpkg-dev)"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

build=$out/build
rm -rf "$build"
mkdir -p "$build/debian" "$out"
# dpkg-shlibdeps wants a debian/control to exist; it reads nothing from it here.
: >"$build/debian/control"

# Man pages and completions, from each binary's hidden `generate` subcommand.
gen=$build/generated
for b in wulf wulfd wulf-agent; do
  "$bin_dir/$b" generate "$gen/$b" || die "$b generate failed"
done

# Files into a package tree, root-owned (dpkg-deb --root-owner-group), with these modes.
put() { # put MODE SOURCE DEST
  install -D -m "$1" "$2" "$3"
}
put_bin() { # put_bin SOURCE DEST [MODE]: stripped as dh_strip does
  install -D -m "${3:-0755}" "$1" "$2"
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$2"
}
put_man() { # put_man PKGROOT DIR: every page of DIR, gzip'd (no name or time inside)
  local page section
  for page in "$2"/*; do
    section=${page##*.}
    install -d -m 0755 "$1/usr/share/man/man$section"
    gzip -9n -c "$page" >"$1/usr/share/man/man$section/${page##*/}.gz"
    chmod 0644 "$1/usr/share/man/man$section/${page##*/}.gz"
  done
}
put_completions() { # put_completions PKGROOT GENDIR NAME
  put 0644 "$2/bash/$3" "$1/usr/share/bash-completion/completions/$3"
  put 0644 "$2/zsh/_$3" "$1/usr/share/zsh/vendor-completions/_$3"
  put 0644 "$2/fish/$3.fish" "$1/usr/share/fish/vendor_completions.d/$3.fish"
}
put_doc() { # put_doc PKGROOT PKG
  put 0644 "$here/copyright" "$1/usr/share/doc/$2/copyright"
  local date
  date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
  printf '%s (%s) unstable; urgency=medium\n\n  * wulf %s.\n\n -- %s  %s\n' \
    "$2" "$version" "$version" "$maintainer" "$date" |
    gzip -9n >"$1/usr/share/doc/$2/changelog.gz"
  chmod 0644 "$1/usr/share/doc/$2/changelog.gz"
}
put_scripts() { # put_scripts PKGROOT PKG
  local s
  for s in postinst prerm postrm; do
    put 0755 "$here/maintscripts/$2.$s" "$1/DEBIAN/$s"
  done
}

# Depends from the libraries the binaries link (libc6, libgcc-s1), as dh_shlibdeps does.
shlibdeps() { # shlibdeps BINARY...
  (cd "$build" && dpkg-shlibdeps -O "$@" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
}

control() { # control PKGROOT PKG DEPENDS [FIELD: VALUE lines] < DESCRIPTION
  local root=$1 pkg=$2 depends=$3 size
  shift 3
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  {
    echo "Package: $pkg"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: $maintainer"
    echo "Installed-Size: $size"
    echo "Depends: $depends"
    if (($#)); then printf '%s\n' "$@"; fi
    echo "Section: admin"
    echo "Priority: optional"
    cat
  } >"$root/DEBIAN/control"
  chmod 0644 "$root/DEBIAN/control"
}

finish() { # finish PKGROOT PKG: md5sums, file times, the .deb
  local root=$1 pkg=$2
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum) >"$root/DEBIAN/md5sums"
  chmod 0644 "$root/DEBIAN/md5sums"
  find "$root" -exec touch --no-dereference -d "@$SOURCE_DATE_EPOCH" {} +
  rm -f "$out/${pkg}_${version}_$arch.deb"
  dpkg-deb --root-owner-group -Zxz --build "$root" "$out/${pkg}_${version}_$arch.deb" >/dev/null
  echo "$out/${pkg}_${version}_$arch.deb"
}

# --- wulf: the head ------------------------------------------------------------------------
umask 022
head=$build/debian/wulf
put_bin "$bin_dir/wulfd" "$head/usr/bin/wulfd"
put_bin "$bin_dir/wulf" "$head/usr/bin/wulf"
put 0644 "$here/wulfd.service" "$head/usr/lib/systemd/system/wulfd.service"
put 0644 "$here/wulfd.logrotate" "$head/etc/logrotate.d/wulfd"
put 0644 "$here/wulfd.toml.example" "$head/etc/wulf/wulfd.toml.example"
put_man "$head" "$gen/wulf/man"
put_man "$head" "$gen/wulfd/man"
put_completions "$head" "$gen/wulf" wulf
put_completions "$head" "$gen/wulfd" wulfd
put_doc "$head" wulf
put_scripts "$head" wulf
printf '%s\n' /etc/logrotate.d/wulfd /etc/wulf/wulfd.toml.example >"$head/DEBIAN/conffiles"
chmod 0644 "$head/DEBIAN/conffiles"
# procps: /bin/kill for wulfd.service's ExecReload, pkill for the logrotate file.
control "$head" wulf "$(shlibdeps debian/wulf/usr/bin/wulfd debian/wulf/usr/bin/wulf), procps" \
  "Recommends: ipxe, ipmitool, busybox-static, wulf-agent (= $version)" \
  "Suggests: etcd-server, etcd-client, zstd, xz-utils" <<'EOF'
Description: cluster manager for Beowulf-style HPC clusters (head node)
 wulf provisions diskless and disked compute nodes over the cluster's private
 network (DHCP, PXE/iPXE, kernel and initramfs, root filesystem image), keeps
 the cluster's configuration in a JSON document database (embedded, or etcd
 shared by several heads), watches every node's status and controls power
 through BMCs (IPMI, Redfish).
 .
 This package is the head: wulfd, the daemon (REST API, DHCP, TFTP, HTTP boot,
 DNS, node status) with its systemd unit wulfd.service, enabled but not
 started; and wulf, the administrator's command line in the style of Scyld
 ClusterWare. ipxe gives the TFTP server its boot files, ipmitool drives IPMI
 BMCs, and busybox-static and wulf-agent go into the node initramfs that
 `wulf initramfs build` makes.
EOF
finish "$head" wulf

# --- wulf-agent: nodes ---------------------------------------------------------------------
agent=$build/debian/wulf-agent
put_bin "$bin_dir/wulf-agent" "$agent/usr/sbin/wulf-agent"
put 0644 "$here/wulf-agent.service" "$agent/usr/lib/systemd/system/wulf-agent.service"
put 0644 "$here/wulf-agent-standalone.service" \
  "$agent/usr/lib/systemd/system/wulf-agent-standalone.service"
put 0644 "$here/agent.conf.example" "$agent/etc/wulf/agent.conf.example"
put_man "$agent" "$gen/wulf-agent/man"
put_completions "$agent" "$gen/wulf-agent" wulf-agent
put_doc "$agent" wulf-agent
put_scripts "$agent" wulf-agent
printf '%s\n' /etc/wulf/agent.conf.example >"$agent/DEBIAN/conffiles"
chmod 0644 "$agent/DEBIAN/conffiles"
control "$agent" wulf-agent "$(shlibdeps debian/wulf-agent/usr/sbin/wulf-agent)" <<'EOF'
Description: cluster manager for Beowulf-style HPC clusters (node agent)
 wulf provisions and watches the compute nodes of a Beowulf-style cluster from
 its head nodes.
 .
 This package is wulf-agent, which runs on each node: it reports the node's
 status and hardware to its head, writes the node's attributes to
 /etc/wulf/attributes.ini, and carries out the head's commands (exec, soft
 reboot and shutdown, orphan). Its systemd unit wulf-agent.service, enabled
 but not started, is for disked nodes; nodes booted from a wulf initramfs
 carry their own copy. wulf-agent-standalone.service, not enabled, is for
 servers wulf did not boot: they enroll once with a token and report.
EOF
finish "$agent" wulf-agent

# --- libnss-wulf: the ethers NSS module ----------------------------------------------------
nss=$build/debian/libnss-wulf
put_bin "$bin_dir/libnss_wulf.so" "$nss/usr/lib/$multiarch/libnss_wulf.so.2" 0644
put_doc "$nss" libnss-wulf
# ldconfig runs when the library comes or goes, as for Debian's own libnss-* packages.
mkdir -p "$nss/DEBIAN"
printf 'activate-noawait ldconfig\n' >"$nss/DEBIAN/triggers"
chmod 0644 "$nss/DEBIAN/triggers"
control "$nss" libnss-wulf "$(shlibdeps "debian/libnss-wulf/usr/lib/$multiarch/libnss_wulf.so.2")" \
  "Multi-Arch: same" <<'EOF'
Description: cluster manager for Beowulf-style HPC clusters (NSS module)
 wulf provisions and watches the compute nodes of a Beowulf-style cluster from
 its head nodes.
 .
 This package is libnss_wulf, a module for the ethers database of the Name
 Service Switch: `getent ethers NAME|MAC` answered by a wulf head's DNS server
 (the nameservers of /etc/resolv.conf, or /etc/wulf/nss.conf). Add `wulf` to
 the ethers line of /etc/nsswitch.conf (ethers: files wulf) to use it.
EOF
finish "$nss" libnss-wulf
