#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# build-guest.sh: build the test guest's disk from Debian packages, once per machine, and print its path.
#
# The disk (qcow2, 384 MiB virtual) boots through the BIOS from its MBR:
# syslinux on a FAT partition loads the cloud kernel and a busybox
# initramfs, which mounts the ext4 root (busybox, qemu-guest-agent and
# its libraries, the writer/checker knib-guest).  See tests/guest/README.
#
# The result is cached in $KNIB_GUEST_CACHE (default
# /var/cache/knib/test-guest) under a hash of this directory's files, so
# a change of the build rebuilds it; concurrent callers wait on a lock.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${KNIB_GUEST_CACHE:-/var/cache/knib/test-guest}
DISK_MIB=384
BOOT_MIB=32

say () {
  echo "build-guest: $*" >&2
}

die () {
  say "$*"
  exit 1
}

key=$(cd "$here" && find . -type f ! -name README | LC_ALL=C sort |
  while read -r f; do
    echo "$f"
    cat "$f"
  done | sha256sum | cut -c1-16)
out=$cache/$key/disk.qcow2
if [ -f "$out" ]; then
  echo "$out"
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb depmod readelf cpio gzip mkfs.fat \
  mcopy syslinux mke2fs sfdisk qemu-img flock; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool is not installed (scripts/deps installs what the build needs)"
done
[ -r /usr/lib/SYSLINUX/mbr.bin ] ||
  die "/usr/lib/SYSLINUX/mbr.bin is missing (scripts/deps installs syslinux)"

mkdir -p "$cache" || die "cannot create $cache (set KNIB_GUEST_CACHE)"
exec 9>>"$cache/lock"
flock 9
if [ -f "$out" ]; then
  echo "$out"
  exit 0
fi

# Builds that were killed left their work directories: none runs now.
rm -rf "$cache"/build.*
start=$(date +%s)
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
cd "$work"
mkdir debs pkgs initrd root boot

# Packages: the kernel the cloud metapackage names, busybox, the guest
# agent with what it depends on.
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
  awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
if [ -z "$kpkg" ]; then
  say "no linux-image-cloud-amd64 in the package lists: apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed"
  kpkg=$(apt-cache depends linux-image-cloud-amd64 |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  [ -n "$kpkg" ] || die "linux-image-cloud-amd64 names no kernel package"
fi
qga_pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests \
  --no-conflicts --no-breaks --no-replaces --no-enhances --no-pre-depends \
  qemu-guest-agent | grep -v -e '^ ' -e '^<' | sort -u)
pkgs="$kpkg busybox-static $qga_pkgs"
say "downloading $(echo $pkgs | wc -w) packages"
# shellcheck disable=SC2086
(cd debs && apt-get download -q -o APT::Sandbox::User=root $pkgs >/dev/null) ||
  die "apt-get download failed"
say "downloaded $(du -sm debs | cut -f1) MiB in $(($(date +%s) - start)) s"
for deb in debs/*.deb; do
  dpkg-deb -x "$deb" pkgs
  dpkg-deb -f "$deb" Package Version | paste -d' ' - - | sed 's/^Package: //; s/ Version: / /' >>packages.txt
done

kver=${kpkg#linux-image-}
vmlinuz=pkgs/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || die "$kpkg has no /boot/vmlinuz-$kver"
busybox=pkgs/bin/busybox
[ -x "$busybox" ] || die "busybox-static has no /bin/busybox"

# The initramfs: busybox, the modules in load order, /init.
depmod -b pkgs "$kver"
moddir=pkgs/lib/modules/$kver
: >load-order
add_module () {
  local path dep
  path=$(awk -v m="/$1.ko:" 'index($0, m) { sub(":.*", ""); print; exit }' \
    "$moddir/modules.dep")
  [ -n "$path" ] || die "module $1 is not in $kpkg"
  grep -qx "${path##*/}" load-order && return 0
  for dep in $(awk -v p="$path:" '$1 == p { $1 = ""; print; exit }' \
    "$moddir/modules.dep"); do
    dep=${dep##*/}
    add_module "${dep%.ko}"
  done
  cp "$moddir/$path" initrd/
  echo "${path##*/}" >>load-order
}
# virtio disks and consoles, SCSI/SATA disks for other buses, fw_cfg for
# the mode, pvpanic so QEMU hears of a panic.
for m in virtio_pci virtio_blk virtio_scsi sd_mod ata_piix virtio_console \
  qemu_fw_cfg pvpanic-pci pvpanic-mmio; do
  add_module "$m"
done
mkdir -p initrd/bin initrd/dev initrd/lib/modules
mv initrd/*.ko initrd/lib/modules/
mv load-order initrd/lib/modules/load-order
cp "$busybox" initrd/bin/busybox
cp "$here/initramfs-init" initrd/init
chmod 755 initrd/init
# The kernel's built-in initramfs has /dev/console too; this one is for
# kernels without it (and needs root).
mknod initrd/dev/console c 5 1 2>/dev/null || :
(cd initrd && find . | cpio --quiet -o -H newc -R 0:0) | gzip -9 >boot/initrd.img
cp "$vmlinuz" boot/vmlinuz

# The root filesystem: busybox, the guest agent and its libraries.
cp -a "$here/root/." root/
chmod 755 root/etc/knib/* root/usr/bin/knib-guest
mkdir -p root/bin root/sbin root/usr/bin root/usr/sbin root/proc root/sys \
  root/dev root/run root/tmp root/root root/data root/var/log \
  root/lib/x86_64-linux-gnu root/lib64
chmod 1777 root/tmp
ln -s /run root/var/run
cp "$busybox" root/bin/busybox
for applet in $("$busybox" --list-full); do
  [ -e "root/$applet" ] || ln -s /bin/busybox "root/$applet"
done
cp pkgs/usr/sbin/qemu-ga root/usr/sbin/qemu-ga
# The shared libraries qemu-ga needs, found as the dynamic linker would
# (NEEDED entries, recursively) in the unpacked packages.
find_lib () {
  for d in pkgs/lib/x86_64-linux-gnu pkgs/usr/lib/x86_64-linux-gnu; do
    [ -e "$d/$1" ] && { echo "$d/$1"; return 0; }
  done
  return 1
}
copy_libs () {
  local so lib
  for so in $(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -e "root/lib/x86_64-linux-gnu/$so" ] && continue
    lib=$(find_lib "$so") || die "no package provides $so (for ${1##*/})"
    cp -L "$lib" "root/lib/x86_64-linux-gnu/$so"
    copy_libs "root/lib/x86_64-linux-gnu/$so"
  done
}
copy_libs root/usr/sbin/qemu-ga
cp -L "$(find_lib ld-linux-x86-64.so.2)" root/lib/x86_64-linux-gnu/
ln -s /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 root/lib64/ld-linux-x86-64.so.2

# The disk: an MBR with syslinux's boot code, a FAT partition with
# syslinux, the kernel and the initramfs, and the ext4 root.
cat >boot/syslinux.cfg <<'EOF'
DEFAULT knib
PROMPT 0
TIMEOUT 0
LABEL knib
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND console=tty0 console=ttyS0,115200 loglevel=4 no_timer_check
EOF
mkfs.fat -C -n KNIBBOOT boot.img $((BOOT_MIB * 1024)) >/dev/null
syslinux --install boot.img
mcopy -i boot.img boot/vmlinuz boot/initrd.img boot/syslinux.cfg ::/
root_mib=$((DISK_MIB - BOOT_MIB - 1))
mke2fs -q -t ext4 -L knib-root -E root_owner=0:0 -d root root.img "${root_mib}M" >/dev/null
truncate -s "${DISK_MIB}M" disk.raw
sfdisk -q disk.raw <<EOF
label: dos
start=2048, size=$((BOOT_MIB * 2048)), type=c, bootable
start=$(((BOOT_MIB + 1) * 2048)), size=$((root_mib * 2048)), type=83
EOF
dd if=/usr/lib/SYSLINUX/mbr.bin of=disk.raw bs=440 count=1 conv=notrunc 2>/dev/null
dd if=boot.img of=disk.raw bs=1M seek=1 conv=notrunc,sparse 2>/dev/null
dd if=root.img of=disk.raw bs=1M seek=$((BOOT_MIB + 1)) conv=notrunc,sparse 2>/dev/null
mkdir -p "$cache/$key"
qemu-img convert -f raw -O qcow2 disk.raw "$cache/$key/disk.qcow2.tmp"
mv packages.txt "$cache/$key/packages.txt"
mv "$cache/$key/disk.qcow2.tmp" "$out"
say "built $out in $(($(date +%s) - start)) s"
echo "$out"
