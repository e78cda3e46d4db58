# wulf-init's local disk functions, sourced by /init (see docs/admin/boot-styles.md).
#
# The disk cache (wulf.disk_cache=auto|DISK) keeps the downloaded image on a disk wulf
# partitions itself: an MBR partition table whose disk signature is "wulf" (bytes 440-443)
# with one primary partition (type 0x83, from sector 2048 to the end of the disk, at most
# 2 TiB), holding an ext2 filesystem labelled wulf-cache with image.tar.gz and image.sha256.
# A disk whose first MiB is all zeros is blank and gets that layout; any other disk is
# foreign and left alone unless wulf.disk_wipe=yes.
#
# Boot style disked (wulf.disk_root=auto|DISK) uses the same partition table with partition 1
# marked active, holding the image itself on an ext2 filesystem labelled wulf-root, the
# boot config's kernel and initramfs in /boot/wulf, and extlinux (its boot code in the MBR,
# /boot/wulf/extlinux.conf). Later boots from that disk run this init with wulf.local=1: it
# mounts the wulf-root partition instead of downloading the image.

CACHE_LABEL=wulf-cache
CACHE_DIR=/run/wulf/cache
CACHE_DEV=
ROOT_LABEL=wulf-root
ROOT_DISK= ROOT_DEV= WHY=

is_yes() {
    case "$1" in
    1 | [yY] | [yY][eE][sS] | [oO][nN] | [tT] | [tT][rR][uU][eE]) return 0 ;;
    esac
    return 1
}

# The whole disks the kernel sees, in name order (no CD-ROMs, RAM or loop devices).
disks() {
    for d in /sys/block/*; do
        [ -e "$d/device" ] || continue
        case "${d##*/}" in loop* | ram* | zram* | sr* | fd* | md* | dm-* | nbd*) continue ;; esac
        echo "${d##*/}"
    done
}

# Which storage drivers of this kernel would drive this machine's disks and controllers and
# are not loaded. The build wrote the aliases of the kernel's storage modules to
# /etc/wulf/storage.alias ("PATTERN MODULE" lines); they are matched against the modalias of
# each virtio device (a virtio disk, once virtio_pci is loaded) and of each PCI storage
# controller (class 01) that no driver has. A match on the class alone (ata_generic) counts
# only when nothing matches the device itself.
storage_hint() {
    need=
    [ -s /etc/wulf/storage.alias ] || return 0
    for dev in /sys/bus/virtio/devices/* /sys/bus/pci/devices/*; do
        [ -r "$dev/modalias" ] || continue
        case "$dev" in
        /sys/bus/pci/*)
            case "$(cat "$dev/class" 2>/dev/null)" in 0x01*) ;; *) continue ;; esac
            [ -e "$dev/driver" ] && continue
            ;;
        esac
        a=$(cat "$dev/modalias")
        specific= generic=
        while read -r pat mod; do
            # shellcheck disable=SC2254 # the alias is a glob pattern
            case "$a" in
            $pat)
                case "$pat" in
                pci:v\*d\*sv\*sd\**) generic="$generic $mod" ;;
                *) specific="$specific $mod" ;;
                esac
                ;;
            esac
        done </etc/wulf/storage.alias
        for mod in ${specific:-$generic}; do
            [ -d "/sys/module/$mod" ] && continue
            case " $need " in *" $mod "*) ;; *) need="$need $mod" ;; esac
        done
    done
    echo $need
}

# Why no disk appeared, and what fixes it.
no_disk_reason() {
    want=$1
    mods=$(storage_hint)
    if [ -n "$mods" ]; then
        list=$(echo $mods | tr ' ' ',')
        echo "no disk appeared for $want: this machine has disks or storage controllers that kernel module(s) $mods drive, which this initramfs does not have (build it with: wulf initramfs build --drivers $list)"
    else
        echo "no disk appeared for $want (no block device in /sys/block): this initramfs has no driver for this machine's storage controller, or the machine has no disk (add the controller's driver with: wulf initramfs build --drivers NAME, e.g. virtio_blk, ahci, nvme, sd_mod; lspci -k on a running system names it)"
    fi
}

# The disk named by wulf.disk_cache ($1: auto, sda or /dev/sda), waiting up to 10 s for the
# drivers to find it. Prints its kernel name; on failure prints why and returns 1.
pick_disk() {
    want=$1
    name=${want#/dev/}
    n=0
    while :; do
        if [ "$want" = auto ]; then
            d=$(disks | head -n 1)
            if [ -n "$d" ]; then
                echo "$d"
                return 0
            fi
        elif [ -e "/sys/class/block/$name" ]; then
            if [ -e "/sys/class/block/$name/partition" ]; then
                echo "$want is a partition: name the whole disk (wulf partitions it itself)"
                return 1
            fi
            echo "$name"
            return 0
        fi
        n=$((n + 1))
        [ "$n" -ge 10 ] && break
        sleep 1
    done
    if [ "$want" != auto ] && [ -n "$(disks)" ]; then
        echo "there is no disk $want (this machine has: $(echo $(disks)))"
        return 1
    fi
    no_disk_reason "$want"
    return 1
}

# The device of partition $2 of disk $1 (sda → sda1, nvme0n1 → nvme0n1p1).
part_of() {
    case "$1" in
    *[0-9]) echo "$1p$2" ;;
    *) echo "$1$2" ;;
    esac
}

# $3 bytes of device $1 from offset $2, as hex.
peek() {
    dd if="$1" bs=1 skip="$2" count="$3" 2>/dev/null | hexdump -v -e '1/1 "%02x"'
}

# blank, wulf (the layout above, filesystem made or not) or foreign.
disk_state() {
    dev=/dev/$1
    if [ "$(dd if="$dev" bs=65536 count=16 2>/dev/null | tr -d '\000' | wc -c)" = 0 ]; then
        echo blank
    elif [ "$(peek "$dev" 440 4)" = 77756c66 ] && [ "$(peek "$dev" 510 2)" = 55aa ]; then
        echo wulf
    else
        echo foreign
    fi
}

# The ext2/3/4 label of a partition ("" when it holds none).
fs_label() {
    [ "$(peek "$1" 1080 2)" = 53ef ] || return 0
    dd if="$1" bs=1 skip=1144 count=16 2>/dev/null | tr -d '\000'
}

# Four bytes, little-endian.
le32() {
    v=$1
    printf "\\$(printf %03o $((v & 255)))\\$(printf %03o $(((v >> 8) & 255)))\\$(printf %03o $(((v >> 16) & 255)))\\$(printf %03o $(((v >> 24) & 255)))"
}

# Give disk $1 wulf's partition table: signature "wulf", partition 1 from sector 2048 on
# (marked active, for the MBR boot code, when $2 is "active").
partition_disk() {
    d=$1
    status='\000'
    [ "$2" = active ] && status='\200'
    size=$(cat "/sys/block/$d/size")
    [ "$size" -ge $((2048 + 65536)) ] || {
        echo "/dev/$d is too small ($((size / 2048)) MiB; at least 33 MiB)"
        return 1
    }
    count=$((size - 2048))
    [ "$count" -gt 4294967295 ] && count=4294967295
    # No old header may survive: the first MiB and the last (a GPT's backup) are zeroed.
    dd if=/dev/zero of="/dev/$d" bs=65536 count=16 conv=notrunc 2>/dev/null &&
        dd if=/dev/zero of="/dev/$d" bs=65536 seek=$((size / 128 - 16)) count=16 conv=notrunc 2>/dev/null || {
        echo "cannot write to /dev/$d"
        return 1
    }
    {
        printf 'wulf\000\000'
        # status, CHS of sector 2048, type 0x83 (Linux), CHS "beyond", LBA start, sectors
        printf "$status"
        printf '\040\041\000\203\376\377\377'
        le32 2048
        le32 "$count"
        dd if=/dev/zero bs=48 count=1 2>/dev/null
        printf '\125\252'
    } | dd of="/dev/$d" bs=1 seek=440 conv=notrunc 2>/dev/null || {
        echo "cannot write the partition table of /dev/$d"
        return 1
    }
    sync
    blockdev --rereadpt "/dev/$d" 2>/dev/null || partprobe "/dev/$d" 2>/dev/null
    p=$(part_of "$d" 1)
    n=0
    while [ ! -b "/dev/$p" ] && [ "$n" -lt 10 ]; do
        sleep 1
        n=$((n + 1))
    done
    [ -b "/dev/$p" ] || {
        echo "the kernel shows no /dev/$p after partitioning /dev/$d"
        return 1
    }
}

# Make the cache filesystem on $1.
make_cache_fs() {
    out=$(mke2fs -F -m 0 -L "$CACHE_LABEL" "$1" 2>&1) || {
        echo "mke2fs $1 failed: $(echo "$out" | tail -n 1)"
        return 1
    }
}

# Find or make the disk cache and mount it at $CACHE_DIR. Returns 1 (after a WARNING that
# says why) when the node boots without one.
cache_open() {
    want=$DISK_CACHE
    d=$(pick_disk "$want") || {
        warn "disk cache: $d; booting without a disk cache (downloading the image)"
        return 1
    }
    p=$(part_of "$d" 1)
    state=$(disk_state "$d")
    case "$state" in
    blank)
        log "disk cache: /dev/$d is blank: giving it wulf's partition table (one partition, $p)"
        ;;
    foreign)
        if ! is_yes "$DISK_WIPE"; then
            warn "disk cache: /dev/$d has a partition table or data that is not wulf's: leaving it alone, no disk cache (set _disk_wipe=yes to let wulf repartition it, which destroys what is on it, or name another disk in _disk_cache)"
            return 1
        fi
        warn "disk cache: /dev/$d has a partition table that is not wulf's; _disk_wipe=yes: repartitioning it (everything on it is lost)"
        ;;
    esac
    if [ "$state" != wulf ]; then
        why=$(partition_disk "$d") || {
            warn "disk cache: $why; booting without a disk cache"
            return 1
        }
    fi
    [ -b "/dev/$p" ] || {
        warn "disk cache: /dev/$d has wulf's partition table but the kernel shows no /dev/$p; booting without a disk cache"
        return 1
    }
    if [ "$(fs_label "/dev/$p")" != "$CACHE_LABEL" ]; then
        log "disk cache: making an ext2 filesystem ($CACHE_LABEL) on /dev/$p"
        why=$(make_cache_fs "/dev/$p") || {
            warn "disk cache: $why; booting without a disk cache"
            return 1
        }
    fi
    modprobe ext4 2>/dev/null
    mkdir -p "$CACHE_DIR"
    if ! mount -t ext4 "/dev/$p" "$CACHE_DIR" 2>/tmp/mount.err && ! mount -t ext2 "/dev/$p" "$CACHE_DIR" 2>>/tmp/mount.err; then
        warn "disk cache: cannot mount /dev/$p ($(tail -n 1 /tmp/mount.err); the kernel needs ext4 or ext2: wulf initramfs build --drivers ext4); booting without a disk cache"
        return 1
    fi
    CACHE_DEV=/dev/$p
    log "disk cache: /dev/$p mounted ($(df -k "$CACHE_DIR" | awk 'NR==2 {print $4}') KiB free)"
}

# Is the image the node boots ($SHA) in the cache, intact?
cache_hit() {
    [ -f "$CACHE_DIR/image.tar.gz" ] || {
        log "disk cache: $CACHE_DEV holds no image yet"
        return 1
    }
    had=$(cat "$CACHE_DIR/image.sha256" 2>/dev/null)
    if [ "$had" != "$SHA" ]; then
        log "disk cache: $CACHE_DEV holds image ${had:-?}, the node boots $SHA: downloading the new one"
        return 1
    fi
    got=$(sha256sum "$CACHE_DIR/image.tar.gz" | cut -d' ' -f1)
    if [ "$got" != "$SHA" ]; then
        warn "disk cache: the image on $CACHE_DEV is damaged (its sha256 is $got): downloading it again"
        return 1
    fi
    return 0
}

# Replace the cached image with the verified download $1.
cache_store() {
    rm -f "$CACHE_DIR/image.sha256" "$CACHE_DIR/image.tar.gz" "$CACHE_DIR/image.new"
    if cp "$1" "$CACHE_DIR/image.new" && sync && mv "$CACHE_DIR/image.new" "$CACHE_DIR/image.tar.gz" &&
        echo "$SHA" >"$CACHE_DIR/image.sha256" && sync; then
        log "disk cache: saved the image ($SHA) on $CACHE_DEV"
    else
        rm -f "$CACHE_DIR/image.new" "$CACHE_DIR/image.tar.gz" "$CACHE_DIR/image.sha256"
        warn "disk cache: cannot save the image on $CACHE_DEV (full? $(df -k "$CACHE_DIR" | awk 'NR==2 {print $4}') KiB free); the next boot downloads it again"
    fi
}

# --- disked --------------------------------------------------------------------------------

# Mount partition $1 (ext2/3/4) read-write at /newroot.
mount_root() {
    modprobe ext4 2>/dev/null
    if ! mount -t ext4 "$1" /newroot 2>/tmp/mount.err && ! mount -t ext2 "$1" /newroot 2>>/tmp/mount.err; then
        WHY="cannot mount $1 ($(tail -n 1 /tmp/mount.err); the kernel needs ext4 or ext2: wulf initramfs build --drivers ext4)"
        return 1
    fi
}

# Install: give the disk named by wulf.disk_root wulf's partition table (partition 1 active)
# and a fresh ext2 filesystem labelled wulf-root, mounted at /newroot. WHY says why not.
root_prepare() {
    d=$(pick_disk "$DISK_ROOT") || {
        WHY=$d
        return 1
    }
    case "$(disk_state "$d")" in
    blank) log "disked: /dev/$d is blank: giving it wulf's partition table" ;;
    wulf) log "disked: /dev/$d has wulf's partition table: installing afresh (what it holds is replaced)" ;;
    *)
        if ! is_yes "$DISK_WIPE"; then
            WHY="/dev/$d has a partition table or data that is not wulf's: leaving it alone, not installing (set _disk_wipe=yes to let wulf repartition it, which destroys what is on it, or name another disk in _disk_root)"
            return 1
        fi
        warn "disked: /dev/$d has a partition table that is not wulf's; _disk_wipe=yes: repartitioning it (everything on it is lost)"
        ;;
    esac
    WHY=$(partition_disk "$d" active) || return 1
    p=/dev/$(part_of "$d" 1)
    out=$(mke2fs -F -m 1 -L "$ROOT_LABEL" "$p" 2>&1) || {
        WHY="mke2fs $p failed: $(echo "$out" | tail -n 1)"
        return 1
    }
    mount_root "$p" || return 1
    ROOT_DISK=/dev/$d
    ROOT_DEV=$p
}

# Download $1 (a /boot/file/SHA256 URL) to $2 and check it against the SHA256 it names.
fetch_checked() {
    want=${1##*/}
    if ! wget -q --header "Authorization: Bearer enroll:$NODE:$ENROLL" -O "$2" "$1"; then
        WHY="cannot download $1"
        return 1
    fi
    got=$(sha256sum "$2" | cut -d' ' -f1)
    [ "$got" = "$want" ] || {
        WHY="$1 has sha256 $got, not $want"
        return 1
    }
}

# Install: the kernel, the initramfs and extlinux on the new root, the boot code in the MBR.
# The disk boots with this boot's kernel command line minus what is for this boot only (the
# enrollment token, the download URLs), plus wulf.local=1 and where the head's boot URLs
# are (wulf.boot=, for the next boot's enrollment token).
install_loader() {
    b=/newroot/boot/wulf
    mkdir -p "$b" /newroot/etc/wulf || {
        WHY="cannot make $b on $ROOT_DEV"
        return 1
    }
    fetch_checked "$KERNEL_URL" "$b/vmlinuz" || return 1
    fetch_checked "$INITRD_URL" "$b/initramfs" || return 1
    args=
    set -f
    for a in $(cat /proc/cmdline); do
        case "$a" in
        initrd=* | BOOT_IMAGE=* | wulf.enroll=* | wulf.image=* | wulf.kernel=* | wulf.initrd=* | wulf.boot=* | wulf.local=* | wulf.disk_wipe=*) ;;
        *) args="$args $a" ;;
        esac
    done
    set +f
    {
        echo "# written by wulf-init when it installed image $SHA on $ROOT_DEV"
        echo "DEFAULT wulf"
        echo "PROMPT 0"
        echo "TIMEOUT 0"
        echo "LABEL wulf"
        echo "    LINUX /boot/wulf/vmlinuz"
        echo "    INITRD /boot/wulf/initramfs"
        echo "    APPEND$args wulf.local=1 wulf.boot=${IMAGE%/boot/file/*}"
    } >"$b/extlinux.conf"
    out=$(extlinux --install "$b" 2>&1) || {
        WHY="extlinux --install $b failed: $(echo "$out" | tail -n 1)"
        return 1
    }
    dd if=/usr/lib/wulf/mbr.bin of="$ROOT_DISK" bs=440 count=1 conv=notrunc 2>/dev/null || {
        WHY="cannot write the boot code to $ROOT_DISK"
        return 1
    }
    echo "$SHA" >/newroot/etc/wulf/disk-image
    sync
}

# Install done: the head records it (the node's disk_image and boot_stage=local) and sends
# the node's later boots to the disk.
report_installed() {
    if wget -q -O /tmp/installed --header "Authorization: Bearer enroll:$NODE:$ENROLL" \
        --post-data "sha256=$SHA" "${IMAGE%/boot/file/*}/boot/installed?sha256=$SHA" 2>/tmp/installed.err; then
        log "disked: the head recorded the install: $(cat /tmp/installed)"
    else
        warn "disked: the head did not record the install ($(tail -n 1 /tmp/installed.err); see its log): the node installs again at its next boot"
    fi
}

# A boot from the disk (wulf.local=1): mount the partition labelled wulf-root at /newroot
# and get this boot's enrollment token from the head (its answer to the boot script request
# of a node that boots its disk carries one). WHY says why not.
local_root() {
    n=0
    while [ -z "$ROOT_DEV" ]; do
        for d in $(disks); do
            p=/dev/$(part_of "$d" 1)
            if [ -b "$p" ] && [ "$(fs_label "$p")" = "$ROOT_LABEL" ]; then
                ROOT_DISK=/dev/$d
                ROOT_DEV=$p
                break
            fi
        done
        n=$((n + 1))
        [ "$n" -ge 10 ] && break
        [ -z "$ROOT_DEV" ] && sleep 1
    done
    if [ -z "$ROOT_DEV" ]; then
        if [ -z "$(disks)" ]; then
            WHY=$(no_disk_reason "wulf's root")
        else
            WHY="no disk of this machine ($(echo $(disks))) holds wulf's root (partition 1, labelled $ROOT_LABEL)"
        fi
        WHY="$WHY; to install it again: wulf node -i ${NAME:-NODE} update boot_stage=pxe"
        return 1
    fi
    mount_root "$ROOT_DEV" || return 1
    had=$(cat /newroot/etc/wulf/disk-image 2>/dev/null)
    [ "$had" = "$SHA" ] || warn "disked: $ROOT_DEV holds image ${had:-?}, its boot entry names $SHA"
    log "disked: booting image ${had:-?} from $ROOT_DEV"
    mac=$(cat "/sys/class/net/$interface/address" 2>/dev/null)
    if [ -n "$BOOT_URL" ] && wget -q -O /tmp/script "$BOOT_URL/boot/ipxe?mac=$mac" 2>/dev/null; then
        ENROLL=$(sed -n 's/^echo wulf.enroll=\([0-9a-f]*\)$/\1/p' /tmp/script)
    fi
    if [ -n "$ENROLL" ]; then
        log "disked: the head gave this boot's enrollment token"
    else
        warn "disked: no enrollment token from ${BOOT_URL:-the head (no wulf.boot=)} ($(sed -n 's/^echo wulf: //p' /tmp/script 2>/dev/null | head -n 1)): the agent cannot enroll"
    fi
}
