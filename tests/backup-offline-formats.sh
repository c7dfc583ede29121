#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-offline-formats.sh: a raw disk and a qcow2 v2 (compat=0.10) disk
# beside a qcow2 v3 disk in one VM.  Offline, the raw and v2 disks cannot
# hold a persistent bitmap: every backup of them is full, sparse (only
# what is allocated is read), and says why, while the v3 disk goes on
# incrementally.  Live, they get a bitmap that is not persistent:
# incremental while that QEMU runs, full with the reason after a restart.
# Every backup equals its oracle.  --image-format keeps a raw image raw
# whatever it holds.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/offline-functions.sh"
require qemu-system-x86_64 qemu-storage-daemon qemu-img qemu-io pgrep

cd "$TMPDIR_TEST"
VM=mixed
A=$TMPDIR_TEST/a.qcow2
B=$TMPDIR_TEST/b.img
C=$TMPDIR_TEST/c.qcow2
qemu-img create -q -f qcow2 "$A" 64M
qemu-img create -q -f raw "$B" 64M
qemu-img create -q -f qcow2 -o compat=0.10 "$C" 64M
OFFLINE="--vm $VM --image vda=$A --image vdb=$B --image vdc=$C"
LIVE="--vm $VM --qmp $TMPDIR_TEST/$VM.qmp"
RAW_WHY="vdb is a raw image, which cannot store a persistent dirty bitmap"
V2_WHY="vdc is a qcow2 v2 (compat=0.10) image, which cannot store a persistent dirty bitmap"

check_all () {
  check "$1" vda "$A"
  check "$1" vdb "$B"
  check "$1" vdc "$C"
}

# 1: offline, the first backup; the raw and v2 disks say why they will
# always be full offline.
img_write "$A" qcow2 0x11 0 2M
img_write "$B" raw 0x21 8M 2M
img_write "$C" qcow2 0x31 16M 1M
offline_oracle 1 "$A" "$B" "$C"
# shellcheck disable=SC2086
backup 1 $OFFLINE
expect_kind 1 full
expect_disk 1 vdb full "$RAW_WHY: every backup of it while the VM is stopped is full"
expect_disk 1 vdc full "$V2_WHY: every backup of it while the VM is stopped is full"
check_all 1
# Sparse: of the 64M raw disk only its 2M of data (and the first
# cluster, which qemu-img create allocates) are read.
[ "$(disk 1 vdb bytes_read)" -le $((2 * 1048576 + 65536)) ] \
  || fail "backup 1 read $(disk 1 vdb bytes_read) bytes of the sparse raw disk"
[ "$(disk 1 vdc bytes_read)" -eq 1048576 ] \
  || fail "backup 1 read $(disk 1 vdc bytes_read) bytes of vdc, not 1M"
[ "$(image_bitmaps "$C")" = "" ] || fail "a bitmap in the v2 image: $(image_bitmaps "$C")"

# 2: offline again: vda incremental, the others full again, sparse again.
img_write "$A" qcow2 0x12 1M 64k
img_write "$B" raw 0x22 20M 64k
img_write "$C" qcow2 0x32 30M 64k
offline_oracle 2 "$A" "$B" "$C"
# shellcheck disable=SC2086
backup 2 $OFFLINE
expect_kind 2 incremental 1
expect_disk 2 vda incremental
expect_disk 2 vdb full "$RAW_WHY"
expect_disk 2 vdc full "$V2_WHY"
check_all 2
[ "$(disk 2 vda bytes_read)" -eq 65536 ] || fail "backup 2 read $(disk 2 vda bytes_read) bytes of vda"
[ "$(disk 2 vdb bytes_read)" -le $((2 * 1048576 + 2 * 65536)) ] \
  || fail "backup 2 read $(disk 2 vdb bytes_read) bytes of the sparse raw disk"
[ "$(disk 2 vdc bytes_read)" -eq $((1048576 + 65536)) ] \
  || fail "backup 2 read $(disk 2 vdc bytes_read) bytes of vdc"
# --incremental cannot be: it says why.
# shellcheck disable=SC2086
backup_fails 2b $OFFLINE --incremental
grep -q "an incremental backup is not possible: $RAW_WHY" b2b.err \
  || fail "unclear refusal of --incremental: $(cat b2b.err)"

# 3: live: vda goes on from the stored bitmap; vdb and vdc have none yet.
start_vm "$VM" "qcow2:$A" "raw:$B" "qcow2:$C"
vm_write "$VM" vda 0x13 5M 64k
live_oracle "$VM" 3 "vda:$A" "vdb:$B" "vdc:$C"
# shellcheck disable=SC2086
backup 3 $LIVE
expect_kind 3 incremental 2
expect_disk 3 vda incremental
expect_disk 3 vdb full "bitmap knib-$(top 2 id) of vdb is missing: $RAW_WHY, so the bitmap went when QEMU stopped"
expect_disk 3 vdc full "bitmap knib-$(top 2 id) of vdc is missing: $V2_WHY"
check_all 3

# 4: live: now all three are incremental; vdb and vdc's bitmaps are not
# persistent.
vm_write "$VM" vda 0x14 6M 64k
vm_write "$VM" vdb 0x24 40M 128k
vm_write "$VM" vdc 0x34 50M 64k
live_oracle "$VM" 4 "vda:$A" "vdb:$B" "vdc:$C"
# shellcheck disable=SC2086
backup 4 $LIVE
expect_kind 4 incremental 3
expect_disk 4 vda incremental
expect_disk 4 vdb incremental
expect_disk 4 vdc incremental
check_all 4
[ "$(disk 4 vdb bytes_read)" -eq 131072 ] || fail "backup 4 read $(disk 4 vdb bytes_read) bytes of vdb"
[ "$(disk 4 vdc bytes_read)" -eq 65536 ] || fail "backup 4 read $(disk 4 vdc bytes_read) bytes of vdc"
"$KNIB" qmp --json "$TMPDIR_TEST/$VM.qmp2" query-block >block.json
[ "$(grep -o "\"name\":\"knib-$(top 4 id)\",\"recording\":true,\"persistent\":false" block.json | wc -l)" -eq 2 ] \
  || fail "vdb and vdc should have a bitmap that is not persistent: $(cat block.json)"

# 5: QEMU restarted: the transient bitmaps are gone; full, with why.
vm_write "$VM" vdb 0x25 41M 64k
stop_vm "$VM"
start_vm "$VM" "qcow2:$A" "raw:$B" "qcow2:$C"
live_oracle "$VM" 5 "vda:$A" "vdb:$B" "vdc:$C"
# shellcheck disable=SC2086
backup 5 $LIVE
expect_kind 5 incremental 4
expect_disk 5 vda incremental
expect_disk 5 vdb full "bitmap knib-$(top 4 id) of vdb is missing: $RAW_WHY, so the bitmap went when QEMU stopped"
expect_disk 5 vdc full "bitmap knib-$(top 4 id) of vdc is missing: $V2_WHY"
check_all 5
stop_vm "$VM"

# 6: offline after it all: vda still incremental.
img_write "$A" qcow2 0x16 7M 64k
offline_oracle 6 "$A" "$B" "$C"
# shellcheck disable=SC2086
backup 6 $OFFLINE
expect_kind 6 incremental 5
expect_disk 6 vda incremental
check_all 6
[ "$(disk 6 vda bytes_read)" -eq 65536 ] || fail "backup 6 read $(disk 6 vda bytes_read) bytes of vda"
# A raw image that holds what looks like a qcow2 image (a guest can write
# that): --image-format keeps it raw, byte for byte.
qemu-img create -q -f qcow2 "$TMPDIR_TEST/inner.qcow2" 1G
D=$TMPDIR_TEST/d.img
qemu-img create -q -f raw "$D" 16M
dd if="$TMPDIR_TEST/inner.qcow2" of="$D" conv=notrunc status=none
# shellcheck disable=SC2086
backup 7 --vm other --image "vdd=$D" --image-format vdd=raw
expect_disk 7 vdd full "vdd is a raw image"
[ "$(disk 7 vdd virtual_size)" -eq 16777216 ] \
  || fail "--image-format raw was not used: $(cat b7.json)"
qemu-img compare -q -f raw "$D" "$REPO/vms/other/$(top 7 id)/vdd.qcow2" \
  || fail "the raw image was not backed up byte for byte"

no_daemon || fail "qemu-storage-daemon left running"
[ -z "$(ls -A "$SCRATCH")" ] || fail "scratch left: $(ls -A "$SCRATCH")"
echo "backup-offline-formats: ok"
