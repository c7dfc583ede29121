#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-offline.sh: one incremental chain across a VM's states: backups
# of the stopped VM (--image, through qemu-storage-daemon), then of the
# running VM (--qmp: QEMU found the bitmap the daemon stored), then of
# the stopped VM again (the daemon finds the bitmap QEMU stored).  Each
# backup equals a copy of the disks taken at its point in time.  While an
# offline backup runs the image locks keep QEMU from starting; an image
# that a running QEMU holds is refused with a pointer to --qmp.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/offline-functions.sh"
require qemu-system-x86_64 qemu-storage-daemon qemu-img qemu-io pgrep

cd "$TMPDIR_TEST"
VM=vm
A=$TMPDIR_TEST/a.qcow2
B=$TMPDIR_TEST/b.qcow2
qemu-img create -q -f qcow2 "$A" 128M
qemu-img create -q -f qcow2 "$B" 64M
OFFLINE="--vm $VM --image vda=$A --image vdb=$B"

# 1: stopped, full.
img_write "$A" qcow2 0x11 0 8M
img_write "$A" qcow2 0x12 64M 4M
img_write "$B" qcow2 0x21 1M 2M
offline_oracle 1 "$A" "$B"
# shellcheck disable=SC2086
backup 1 $OFFLINE
expect_kind 1 full
check 1 vda "$A"
check 1 vdb "$B"
no_daemon || fail "qemu-storage-daemon still runs after backup 1"
[ "$(image_bitmaps "$A")" = "knib-$(top 1 id) auto" ] \
  || fail "the daemon did not store the bitmap in $A: $(image_bitmaps "$A")"

# 2: stopped, incremental: qemu-io's writes went into the stored bitmap.
img_write "$A" qcow2 0x13 3M 256k
img_write "$B" qcow2 0x22 40M 64k
offline_oracle 2 "$A" "$B"
# shellcheck disable=SC2086
backup 2 $OFFLINE
expect_kind 2 incremental 1
check 2 vda "$A"
check 2 vdb "$B"
[ "$(disk 2 vda bytes_read)" -eq 262144 ] \
  || fail "backup 2 read $(disk 2 vda bytes_read) bytes of vda, not 256k"
[ "$(disk 2 vdb bytes_read)" -eq 65536 ] \
  || fail "backup 2 read $(disk 2 vdb bytes_read) bytes of vdb, not 64k"

# 3: running, incremental: QEMU loaded the bitmap from the images.
start_vm "$VM" "qcow2:$A" "qcow2:$B"
"$KNIB" qmp --json "$TMPDIR_TEST/$VM.qmp2" query-block >block.json
grep -q "\"name\":\"knib-$(top 2 id)\",\"recording\":true,\"persistent\":true" block.json \
  || fail "QEMU did not load the bitmap of backup 2: $(cat block.json)"
vm_write "$VM" vda 0x14 100M 1M
vm_write "$VM" vdb 0x23 0 128k
live_oracle "$VM" 3 "vda:$A" "vdb:$B"
backup 3 --qmp "$TMPDIR_TEST/$VM.qmp" --vm "$VM"
expect_kind 3 incremental 2
check 3 vda "$A"
check 3 vdb "$B"
[ "$(disk 3 vda bytes_read)" -eq 1048576 ] \
  || fail "backup 3 read $(disk 3 vda bytes_read) bytes of vda, not 1M"

# The running VM's images cannot be backed up offline: knib says so and
# points to --qmp.
# shellcheck disable=SC2086
backup_fails 3b $OFFLINE
grep -q "disk 'vda': image '$A' is in use by another process, which holds its lock (Failed to get \"write\" lock): if the VM is running, back it up live with --qmp SOCKET" b3b.err \
  || fail "unclear refusal of a running VM's images: $(cat b3b.err)"
no_daemon || fail "qemu-storage-daemon left running after the refusal"

# 4: stopped again, incremental: QEMU stored the bitmap at shutdown.
vm_write "$VM" vda 0x15 120M 64k
vm_write "$VM" vdb 0x24 60M 192k
stop_vm "$VM"
offline_oracle 4 "$A" "$B"
# shellcheck disable=SC2086
backup 4 $OFFLINE
expect_kind 4 incremental 3
check 4 vda "$A"
check 4 vdb "$B"
[ "$(disk 4 vda bytes_read)" -eq 65536 ] \
  || fail "backup 4 read $(disk 4 vda bytes_read) bytes of vda, not 64k"
[ "$(disk 4 vdb bytes_read)" -eq 196608 ] \
  || fail "backup 4 read $(disk 4 vdb bytes_read) bytes of vdb, not 192k"

# 5: while an offline backup runs, QEMU cannot start on its images, and
# says that it is the lock.
img_write "$A" qcow2 0x16 5M 64k
offline_oracle 5 "$A" "$B"
require_test_hooks
# shellcheck disable=SC2086
( KNIB_TEST_STOP_AT=copy exec "$KNIB" backup --json --timeout 60 --repo "$REPO" \
    --scratch "$SCRATCH" $OFFLINE >b5.json 2>b5.err ) &
KNIB_PID=$!
track_pid $KNIB_PID
i=0
until [ "$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$KNIB_PID/stat" 2>/dev/null)" = T ]; do
  i=$((i + 1))
  [ "$i" -le 300 ] || fail "backup 5 did not stop at copy: $(cat b5.err)"
  sleep 0.1
done
rc=0
timeout 20 qemu-system-x86_64 -machine "accel=$(qemu_accel)" -m 64 -nodefaults \
  -display none -no-user-config -S \
  -blockdev "driver=qcow2,node-name=disk0,file.driver=file,file.filename=$A" \
  -device virtio-blk-pci,drive=disk0,id=vda >qemu-locked.log 2>&1 </dev/null || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] \
  || fail "QEMU started on an image that an offline backup holds (status $rc)"
grep -q "Failed to get \"write\" lock" qemu-locked.log \
  || fail "QEMU's error does not name the lock: $(cat qemu-locked.log)"
kill -CONT $KNIB_PID
wait $KNIB_PID || fail "backup 5 failed: $(cat b5.err)"
expect_kind 5 incremental 4
check 5 vda "$A"
check 5 vdb "$B"
no_daemon || fail "qemu-storage-daemon still runs after backup 5"

# One chain of five, positions 1..5; nothing left behind.
for n in 2 3 4 5; do
  grep -q "\"position\": *$n" "$REPO/vms/$VM/$(top $n id)/manifest.json" \
    || fail "backup $n is not at position $n of the chain"
  grep -q "\"chain\": *\"$(top 1 id)\"" "$REPO/vms/$VM/$(top $n id)/manifest.json" \
    || fail "backup $n is not in the chain of backup 1"
done
[ -z "$(ls -A "$SCRATCH")" ] || fail "scratch left: $(ls -A "$SCRATCH")"
qemu-img info "$A" >/dev/null || fail "$A is still locked"
echo "backup-offline: ok"
