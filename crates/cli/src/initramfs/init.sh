#!/bin/sh
# wulf-init: /init of an initramfs made by `wulf initramfs build`.
#
# Brings up the network, downloads the node's image (wulf.image, with the boot's enrollment
# token wulf.enroll: the head gives an image only to a node that boots it), checks its sha256
# (wulf.image_sha256), unpacks it into RAM, puts wulf-agent in it, and switches root to it.
# With wulf.disk_cache it keeps the image on a local disk and reuses it while its sha256
# still matches (disk.sh). Boot style roram: the unpacked image is a read-only overlayfs
# lower layer under a tmpfs upper one. Boot style disked: the image is installed on a local
# disk (wulf.disk_root) with extlinux, which boots the disk later with wulf.local=1: the
# init then mounts the disk's root instead (disk.sh). See docs/admin/boot-styles.md.
# Every failure prints "wulf-init: ERROR: <what>" on the console, waits and reboots (the
# node boots again and retries); with wulf.debug on the kernel command line it gives a
# shell instead. See docs/admin/initramfs.md.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
umask 022

DEBUG=
RETRY_SECS=20
DHCP_ROUNDS=10
INIT=/sbin/init
HEAD= NODE= NAME= STYLE=rwram ENROLL= IMAGE= SHA= ROOTSIZE= CA= DISK_CACHE= DISK_WIPE=
DISK_ROOT= LOCAL= KERNEL_URL= INITRD_URL= BOOT_URL= SWARM= SWARMED= SWARM_PID=

log() { echo "wulf-init: $*"; }
warn() { echo "wulf-init: WARNING: $*"; }

fail() {
    echo "wulf-init: ERROR: $*"
    if [ -n "$DEBUG" ]; then
        log "wulf.debug is set: here is a shell (leave it to reboot)"
        setsid cttyhack sh || sh
    else
        log "rebooting in $RETRY_SECS seconds to try again (boot with wulf.debug for a shell instead)"
        sleep "$RETRY_SECS"
    fi
    log "rebooting"
    reboot -f
    echo b > /proc/sysrq-trigger
    while :; do sleep 60; done
}

mkdir -p /proc /sys /dev /run /tmp /newroot
mount -t proc proc /proc || fail "cannot mount /proc"
mount -t sysfs sysfs /sys || fail "cannot mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "cannot mount /dev (the kernel needs CONFIG_DEVTMPFS)"
ln -sf /proc/mounts /etc/mtab

set -f # no globbing of kernel command line words
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    wulf.head=*) HEAD=${arg#*=} ;;
    wulf.node=*) NODE=${arg#*=} ;;
    wulf.ca=*) CA=${arg#*=} ;;
    wulf.name=*) NAME=${arg#*=} ;;
    wulf.style=*) STYLE=${arg#*=} ;;
    wulf.enroll=*) ENROLL=${arg#*=} ;;
    wulf.image=*) IMAGE=${arg#*=} ;;
    wulf.image_sha256=*) SHA=${arg#*=} ;;
    wulf.swarm=*) SWARM=${arg#*=} ;;
    wulf.rootsize=*) ROOTSIZE=${arg#*=} ;;
    wulf.disk_cache=*) DISK_CACHE=${arg#*=} ;;
    wulf.disk_wipe=*) DISK_WIPE=${arg#*=} ;;
    wulf.disk_root=*) DISK_ROOT=${arg#*=} ;;
    wulf.local=1) LOCAL=1 ;;
    wulf.kernel=*) KERNEL_URL=${arg#*=} ;;
    wulf.initrd=*) INITRD_URL=${arg#*=} ;;
    wulf.boot=*) BOOT_URL=${arg#*=} ;;
    wulf.retry=*) RETRY_SECS=${arg#*=} ;;
    wulf.debug | wulf.debug=1 | wulf.debug=yes | wulf.debug=true) DEBUG=1 ;;
    init=* | wulf.init=*) INIT=${arg#*=} ;;
    esac
done
set +f
case "$RETRY_SECS" in '' | *[!0-9]*) RETRY_SECS=20 ;; esac

log "$(cat /etc/wulf/initramfs.info 2>/dev/null)"
log "node ${NAME:-?} (${NODE:-?}), boot style $STYLE, head ${HEAD:-?}"

[ -n "$HEAD" ] || fail "no wulf.head on the kernel command line (boot the node through its head's iPXE script)"
[ -n "$NODE" ] || fail "no wulf.node on the kernel command line (boot the node through its head's iPXE script)"
if [ -z "$LOCAL" ]; then
    [ -n "$ENROLL" ] || fail "no wulf.enroll on the kernel command line (boot the node through its head's iPXE script)"
    [ -n "$IMAGE" ] || fail "no wulf.image on the kernel command line: the boot config names no image, or the image has no content (wulf boot -i NAME update image=IMAGE; wulf image create name=IMAGE --from-dir DIR)"
fi
[ -n "$SHA" ] || fail "no wulf.image_sha256 on the kernel command line"
case "$STYLE" in
rwram | roram) ;;
disked)
    DISK_ROOT=${DISK_ROOT:-auto}
    if [ -z "$LOCAL" ]; then
        [ -n "$KERNEL_URL" ] && [ -n "$INITRD_URL" ] || fail "boot style disked needs wulf.kernel= and wulf.initrd= (the head's boot script gives them when the boot config has a kernel and an initramfs)"
        [ -x /usr/sbin/extlinux ] && [ -s /usr/lib/wulf/mbr.bin ] || fail "boot style disked: this initramfs has no boot loader to install (build it on a machine with extlinux: apt-get install extlinux; wulf initramfs build)"
    fi
    ;;
*) fail "boot style '$STYLE' is not one this initramfs boots (rwram, roram, disked)" ;;
esac
[ -n "$LOCAL" ] && [ "$STYLE" != disked ] && fail "wulf.local=1 is for boot style disked (this boot is $STYLE)"
[ -n "$NAME" ] || NAME=node-$NODE
. /etc/wulf/disk.sh

# --- drivers -------------------------------------------------------------------------------
KVER=$(uname -r)
if [ -d "/lib/modules/$KVER" ]; then
    loaded=0
    for m in $(cat /etc/wulf/drivers 2>/dev/null); do
        if modprobe "$m" 2>/tmp/modprobe.err; then
            loaded=$((loaded + 1))
        else
            warn "cannot load driver $m: $(cat /tmp/modprobe.err)"
        fi
    done
    log "loaded $loaded driver(s) for kernel $KVER"
else
    warn "this initramfs holds modules for kernel $(cat /etc/wulf/kernel-version 2>/dev/null), not $KVER: no drivers loaded (build one with wulf initramfs build --kernel-version $KVER)"
fi

# --- network -------------------------------------------------------------------------------
nics() {
    for d in /sys/class/net/*; do
        [ -e "$d/device" ] && echo "${d##*/}"
    done
}

LEASE=
round=0
while [ -z "$LEASE" ]; do
    round=$((round + 1))
    list=$(nics)
    for i in $list; do ifconfig "$i" up 2>/dev/null; done
    for i in $list; do
        log "asking for an address by DHCP on $i"
        if udhcpc -i "$i" -f -q -n -t 4 -T 3 -s /etc/wulf/udhcpc.script; then
            LEASE=$i
            break
        fi
    done
    [ -n "$LEASE" ] && break
    if [ "$round" -ge "$DHCP_ROUNDS" ]; then
        if [ -z "$list" ]; then
            fail "no network interface: none of the drivers in this initramfs found a NIC (add yours with wulf initramfs build --drivers NAME)"
        fi
        fail "no DHCP lease on any interface ($(echo $list)) after $round rounds"
    fi
    sleep 2
done
. /run/wulf/lease
log "$interface has address $ip (from DHCP server $serverid)"

# --- image ---------------------------------------------------------------------------------
if [ -n "$LOCAL" ]; then
    local_root || fail "disked: $WHY"
else
case "$IMAGE" in
http://*) ;;
*) fail "image URL '$IMAGE' is not http:// (the initramfs's wget speaks plain HTTP)" ;;
esac
# disked: the disk first (a disk that cannot take the image stops the boot before the
# download).
if [ "$STYLE" = disked ]; then
    root_prepare || fail "disked: $WHY"
    log "disked: installing the image on $ROOT_DEV"
fi
# The image: from the disk cache when it holds this one, else downloaded (and then cached).
IMAGE_FILE=/image.tar.gz
CACHED=
if [ -n "$DISK_CACHE" ] && cache_open && cache_hit; then
    IMAGE_FILE=$CACHE_DIR/image.tar.gz
    CACHED=1
    log "disk cache hit: image $SHA is on $CACHE_DEV; not downloading it"
fi
# wulf.swarm=PORT (_image_peers): wulf-agent gets the pieces from the head or the peer
# node the head names, checks each, and serves what it holds to other booting nodes on PORT;
# it goes on serving after the switch to the image until no one asks for a while.
if [ -z "$CACHED" ] && [ -n "$SWARM" ]; then
    if [ -x /usr/sbin/wulf-agent ] && /usr/sbin/wulf-agent --version >/dev/null 2>&1; then
        log "fetching the image with its peers (serving it on port $SWARM)"
        mkdir -p /run/wulf
        /usr/sbin/wulf-agent fetch-image --url "$IMAGE" --sha256 "$SHA" --token "enroll:$NODE:$ENROLL" \
            --port "$SWARM" --out /image.tar.gz --status /run/wulf/swarm.status &
        SWARM_PID=$!
        while [ ! -s /run/wulf/swarm.status ] && kill -0 "$SWARM_PID" 2>/dev/null; do sleep 1; done
        st=$(cat /run/wulf/swarm.status 2>/dev/null)
        case "$st" in
        ok:*) log "image: ${st#ok: }"; SWARMED=1 ;;
        *)
            warn "the download with peers failed (${st:-wulf-agent stopped}); downloading the image from the head"
            kill "$SWARM_PID" 2>/dev/null
            rm -f /image.tar.gz
            ;;
        esac
    else
        warn "wulf.swarm is set but wulf-agent does not run in this initramfs; downloading the image from the head"
    fi
fi
if [ -z "$CACHED" ] && [ -z "$SWARMED" ]; then
    tries=0
    # The token proves this is the node the head sent its boot script to (it stays good for
    # the agent, which trades it for the node's credential).
    until wget -q --header "Authorization: Bearer enroll:$NODE:$ENROLL" -O /image.tar.gz "$IMAGE"; do
        tries=$((tries + 1))
        [ "$tries" -ge 5 ] && fail "cannot download the image from $IMAGE (a 403 Forbidden means the head gives the image only to the node its boot script was for, from the node's own address, within 10 minutes of the script: see the head's log)"
        warn "image download failed; trying again ($tries/5)"
        rm -f /image.tar.gz
        sleep 3
    done
    log "downloaded the image ($(wc -c </image.tar.gz) bytes); checking its sha256"
fi
if [ -z "$CACHED" ]; then
    got=$(sha256sum /image.tar.gz | cut -d' ' -f1)
    [ "$got" = "$SHA" ] || fail "image checksum mismatch: expected $SHA, got $got (from $IMAGE)"
    [ -n "$CACHE_DEV" ] && cache_store /image.tar.gz
fi

# roram: the image in a tmpfs of its own, read-only, as the lower layer of an overlayfs
# whose upper layer is another tmpfs. Without overlayfs, the old way (below).
IMGDIR=/newroot
OVERLAY=
if [ "$STYLE" = roram ]; then
    modprobe overlay 2>/dev/null
    if grep -qw overlay /proc/filesystems; then
        OVERLAY=1
        IMGDIR=/run/wulf/image
        mkdir -p "$IMGDIR" /run/wulf/rw
    else
        warn "the kernel has no overlay filesystem (module overlay, which wulf initramfs build includes by default; CONFIG_OVERLAY_FS): roram falls back to a read-only tmpfs root with writable /tmp, /var, /run and /etc/wulf"
    fi
fi

opts=mode=0755
[ -n "$ROOTSIZE" ] && opts=$opts,size=$ROOTSIZE
if [ "$STYLE" != disked ]; then
    mount -t tmpfs -o "$opts" rootfs "$IMGDIR" || fail "cannot mount a tmpfs for the root (wulf.rootsize=$ROOTSIZE)"
fi
if [ "$STYLE" = disked ]; then
    tar -xzf "$IMAGE_FILE" -C "$IMGDIR" || fail "disked: cannot unpack the image onto $ROOT_DEV (disk full? $(df -k "$IMGDIR" | awk 'NR==2 {print $4}') KiB free)"
else
    tar -xzf "$IMAGE_FILE" -C "$IMGDIR" ||
        fail "cannot unpack the image into RAM (out of memory? the root tmpfs is ${ROOTSIZE:-half the RAM}: see wulf.rootsize)"
fi
if [ -n "$CACHED" ]; then
    umount "$CACHE_DIR" || warn "cannot unmount the disk cache $CACHE_DEV"
else
    rm -f /image.tar.gz
    [ -n "$CACHE_DEV" ] && { umount "$CACHE_DIR" || warn "cannot unmount the disk cache $CACHE_DEV"; }
fi
if [ "$STYLE" = disked ]; then
    log "image verified and unpacked onto $ROOT_DEV ($(df -k "$IMGDIR" | awk 'NR==2 {print $3}') KiB)"
else
    log "image verified and unpacked into RAM ($(df -k "$IMGDIR" | awk 'NR==2 {print $3}') KiB)"
fi
if [ -n "$OVERLAY" ]; then
    mount -o remount,ro "$IMGDIR" || fail "cannot make the image layer read-only"
    mount -t tmpfs -o "$opts" overlay-rw /run/wulf/rw || fail "cannot mount a tmpfs for the writable layer"
    mkdir -p /run/wulf/rw/upper /run/wulf/rw/work
    mount -t overlay -o lowerdir="$IMGDIR",upperdir=/run/wulf/rw/upper,workdir=/run/wulf/rw/work overlay /newroot ||
        fail "cannot mount the overlayfs root (lower $IMGDIR, upper /run/wulf/rw/upper): $(dmesg | grep -i overlay | tail -n 1)"
    log "roram: the root is an overlayfs: the image read-only below, writes in RAM above"
fi
fi

# The image's path $1, with its symlinks resolved inside the image.
resolve() {
    p=$1
    n=0
    while [ -L "/newroot$p" ] && [ "$n" -lt 20 ]; do
        t=$(readlink "/newroot$p")
        case "$t" in
        /*) p=$t ;;
        *) p=${p%/*}/$t ;;
        esac
        n=$((n + 1))
    done
    echo "$p"
}

INIT_REAL=$(resolve "$INIT")
[ -f "/newroot$INIT_REAL" ] || fail "the image has no $INIT (is it a root filesystem? boot with init=PATH for another init)"

# --- the node's own files ------------------------------------------------------------------
mkdir -p /newroot/etc/wulf /newroot/tmp /newroot/var /newroot/run /newroot/usr/sbin
chmod 1777 /newroot/tmp
(
    umask 077
    {
        echo "# written by wulf-init at boot"
        echo "head=$HEAD"
        echo "node=$NODE"
        echo "name=$NAME"
        echo "ca=$CA"
        echo "enroll=$ENROLL"
    } >/newroot/etc/wulf/agent.conf
)
echo "$NAME" >/newroot/etc/hostname
hostname "$NAME"
if [ -s /etc/resolv.conf ]; then
    rm -f /newroot/etc/resolv.conf
    cp /etc/resolv.conf /newroot/etc/resolv.conf
fi
grep -q "^127.0.0.1" /newroot/etc/hosts 2>/dev/null || echo "127.0.0.1 localhost" >>/newroot/etc/hosts
grep -q "[[:space:]]$NAME\$" /newroot/etc/hosts 2>/dev/null ||
    echo "$ip ${domain:+$NAME.$domain }$NAME" >>/newroot/etc/hosts

# --- wulf-agent ----------------------------------------------------------------------------
agent_runs() { chroot /newroot /usr/sbin/wulf-agent --version >/dev/null 2>&1; }

AGENT=
if [ -x /usr/sbin/wulf-agent ]; then
    # A private copy of the agent and the libraries it was built with, and the libraries
    # at their usual paths where the image has none of its own (never replacing the image's).
    mkdir -p /newroot/usr/lib/wulf
    cp /usr/sbin/wulf-agent /newroot/usr/lib/wulf/wulf-agent
    cp /usr/sbin/wulf-agent /newroot/usr/sbin/wulf-agent
    for f in $(cat /etc/wulf/agent-libs 2>/dev/null); do
        cp "$f" "/newroot/usr/lib/wulf/${f##*/}"
        if [ ! -e "/newroot$f" ] && [ ! -L "/newroot$f" ]; then
            mkdir -p "/newroot${f%/*}" && cp "$f" "/newroot$f"
        fi
    done
    if agent_runs; then
        AGENT=/usr/sbin/wulf-agent
    else
        interp=$(cat /etc/wulf/agent-interp 2>/dev/null)
        if [ -n "$interp" ] && [ -x /newroot/bin/sh ]; then
            # The image's own libraries do not suit the agent: run it with the ones it came with.
            {
                echo "#!/bin/sh"
                echo "exec /usr/lib/wulf/${interp##*/} --library-path /usr/lib/wulf /usr/lib/wulf/wulf-agent \"\$@\""
            } >/newroot/usr/sbin/wulf-agent
            chmod 755 /newroot/usr/sbin/wulf-agent
        fi
        if agent_runs; then
            AGENT=/usr/sbin/wulf-agent
        else
            warn "wulf-agent does not run in this image: $(chroot /newroot /usr/sbin/wulf-agent --version 2>&1 | head -n 1)"
        fi
    fi
else
    warn "this initramfs has no wulf-agent"
fi

is_busybox() {
    [ "${1##*/}" = busybox ] || grep -q "BusyBox v" "/newroot$1" 2>/dev/null
}

if [ -n "$AGENT" ]; then
    if [ "${INIT_REAL##*/}" = systemd ]; then
        mkdir -p /newroot/etc/systemd/system/multi-user.target.wants
        cat >/newroot/etc/systemd/system/wulf-agent.service <<UNIT
[Unit]
Description=wulf node agent (status reports to the head)
After=network.target

[Service]
ExecStart=/usr/sbin/wulf-agent
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
        ln -sf ../wulf-agent.service /newroot/etc/systemd/system/multi-user.target.wants/wulf-agent.service
        log "wulf-agent will start as a systemd service (wulf-agent.service)"
    elif is_busybox "$INIT_REAL"; then
        if [ ! -e /newroot/etc/inittab ]; then
            # busybox init's built-in default, plus the agent
            cat >/newroot/etc/inittab <<TAB
::sysinit:/etc/init.d/rcS
::askfirst:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/umount -a -r
::restart:/sbin/init
TAB
        fi
        grep -q wulf-agent /newroot/etc/inittab || echo "::respawn:/usr/sbin/wulf-agent" >>/newroot/etc/inittab
        log "wulf-agent will start from /etc/inittab (busybox init)"
    elif [ -f /newroot/etc/inittab ]; then
        grep -q wulf-agent /newroot/etc/inittab || echo "wa:2345:respawn:/usr/sbin/wulf-agent" >>/newroot/etc/inittab
        log "wulf-agent will start from /etc/inittab (sysvinit)"
    else
        warn "cannot tell how the image's init ($INIT) starts services: wulf-agent will NOT start; start /usr/sbin/wulf-agent from the image's own startup"
    fi
fi

# --- roram without overlayfs: a read-only root with writable /tmp /var /run /etc/wulf ------
if [ "$STYLE" = roram ] && [ -z "$OVERLAY" ]; then
    n=0
    for d in tmp var run etc/wulf; do
        n=$((n + 1))
        mkdir -p "/run/ro$n"
        mount -t tmpfs -o mode=0755 tmpfs "/run/ro$n" || fail "cannot mount a tmpfs for /$d"
        cp -a "/newroot/$d/." "/run/ro$n/" || fail "cannot copy /$d into its tmpfs"
        mount --move "/run/ro$n" "/newroot/$d" || fail "cannot mount /$d"
    done
    chmod 1777 /newroot/tmp
fi

# --- disked: the boot loader, once the root is complete ------------------------------------
if [ "$STYLE" = disked ] && [ -z "$LOCAL" ]; then
    install_loader || fail "disked: $WHY"
    log "disked: extlinux installed on $ROOT_DISK; later boots come from the disk"
    report_installed
fi

mkdir -p /newroot/dev /newroot/proc /newroot/sys
if [ "$STYLE" = roram ] && [ -z "$OVERLAY" ]; then
    mount -o remount,ro /newroot || fail "cannot make the root read-only"
fi
for m in dev proc sys; do
    mount --move "/$m" "/newroot/$m" || fail "cannot move /$m into the image"
done

log "switching root to the image ($STYLE); its init is $INIT"
exec switch_root -c /dev/console /newroot "$INIT"
