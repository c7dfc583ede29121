#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-backing-sparse.sh: a full live backup stores the disk's data, not its virtual size, also when the disk's image has a backing file (which a copy-before-write snapshot would show as all data: knib fleeces such a disk with blockdev-backup), and equals the disk (qemu-img compare).
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io

cd "$TMPDIR_TEST"
REPO=$TMPDIR_TEST/repo
qemu-img create -q -f qcow2 base.qcow2 1G
qemu-io -f qcow2 -c "write -P 0x22 4M 1M" base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c "write -P 0x11 0 1M" top.qcow2 >/dev/null
qemu-img create -q -f qcow2 plain.qcow2 1G
qemu-io -f qcow2 -c "write -P 0x33 0 1M" plain.qcow2 >/dev/null
start_qemu layered "$TMPDIR_TEST/top.qcow2"
start_qemu plain "$TMPDIR_TEST/plain.qcow2"

# full VM DISK FLEECING: a full backup of VM, whose -v names FLEECING;
# the image holds about the data (under 16 MiB of a 1 GiB disk) and
# equals the disk.
full () {
  "$KNIB" -v backup --qmp "$TMPDIR_TEST/$1.qmp" --vm "$1" --repo "$REPO" \
    --scratch "$TMPDIR_TEST/scratch" --full --json > "$1.json" 2> "$1.err" ||
    fail "full backup of $1: $(cat "$1.err")"
  grep -q "fleecing: $3" "$1.err" ||
    fail "$1: -v does not say '$3': $(grep 'fleecing:' "$1.err")"
  img=$REPO/vms/$1/$(json_top "$1.json" id)/vda.qcow2
  kib=$(du -k "$img" | cut -f1)
  [ "$kib" -lt 16384 ] || fail "$1: the full backup of 2 MiB of data takes $kib KiB"
  "$KNIB" qmp "$TMPDIR_TEST/$1.qmp2" stop > /dev/null
  "$KNIB" qmp "$TMPDIR_TEST/$1.qmp2" human-monitor-command \
    "command-line=qemu-io -d vda/virtio-backend flush" > /dev/null
  qemu-img compare -q -U "$2" "$img" || fail "$1: the backup differs from the disk"
  "$KNIB" qmp "$TMPDIR_TEST/$1.qmp2" cont > /dev/null
  echo "ok: $1: $kib KiB, $(grep -o 'fleecing: [a-z-]*' "$1.err")"
}

full layered top.qcow2 "blockdev-backup (disk vda has a backing file"
if qemu_has_cbw "$TMPDIR_TEST/plain.qmp2"; then
  full plain plain.qcow2 "copy-before-write filters"
else
  full plain plain.qcow2 "blockdev-backup"
fi
echo OK
