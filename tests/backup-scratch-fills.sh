#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-scratch-fills.sh: when the scratch fills up during a live backup, the guest's writes go on (copy-before-write with on-cbw-error=break-snapshot), the backup fails saying so and leaves nothing; a killed backup's filter is taken out again.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io
require_test_hooks
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: mounting a small file system needs root" >&2
  exit 77
fi

cd "$TMPDIR_TEST" || exit 1
qemu-img create -q -f qcow2 a.qcow2 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 64M" a.qcow2 >/dev/null
# A read-only disk too: no filter goes on it (it needs a writable node).
qemu-img create -q -f qcow2 ro.qcow2 16M
qemu-io -f qcow2 -c "write -P 0x3c 1M 2M" ro.qcow2 >/dev/null
START_QEMU_ARGS="-blockdev driver=qcow2,node-name=ro0,read-only=on,file.driver=file,file.filename=$TMPDIR_TEST/ro.qcow2
  -device virtio-blk-pci,drive=ro0,id=vdz"
start_qemu vm "$TMPDIR_TEST/a.qcow2"
START_QEMU_ARGS=""
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
REPO=$TMPDIR_TEST/repo

# This QEMU must have the filter with on-cbw-error (7.1 and later).
"$KNIB" qmp --json "$S2" query-qmp-schema | grep -q '"on-cbw-error"' || {
  echo "SKIP: this QEMU has no copy-before-write filter with on-cbw-error" >&2
  exit 77
}

# The scratch on a 96 MiB tmpfs: room for the disk's worst case at the
# start (the free-space check passes); something else fills it later.
MNT=$TMPDIR_TEST/small
mkdir -m 0700 "$MNT"
mount -t tmpfs -o size=96m,mode=0700 knib-test "$MNT" \
  || { echo "SKIP: cannot mount a tmpfs" >&2; exit 77; }
# QEMU holds the fleecing files open there: it goes before the umount.
trap '_st=$?; for _p in $_pids; do kill -9 "$_p" 2>/dev/null || :; wait "$_p" 2>/dev/null || :; done; umount "$MNT" 2>/dev/null || :; (exit $_st); _cleanup' EXIT

# nothing_left: no node of knib's, the device back on its own node.
nothing_left () {
  "$KNIB" qmp --json "$S2" query-named-block-nodes > nodes.json
  ! grep -q '"node-name":"knib-' nodes.json ||
    fail "$1: knib's nodes are left: $(grep -o '"node-name":"knib-[a-z0-9-]*"' nodes.json)"
  "$KNIB" qmp --json "$S2" query-block > block.json
  grep -q '"node-name":"disk0"' block.json ||
    fail "$1: the device is not on its node: $(cat block.json)"
  grep -q '"status":"running"' "$(status_json)" || fail "$1: the VM is not running"
}
status_json () {
  "$KNIB" qmp --json "$S2" query-status > status.json
  echo status.json
}

# 1. A backup killed while it copies leaves the device on knib's filter;
# the next backup's recovery puts it back and takes the filter out.
KNIB_TEST_STOP_AT=copy "$KNIB" -v backup --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$MNT" --full --timeout 120 > kill.out 2> kill.err &
pid=$!
track_pid $pid
kill_stopped $pid kill.err
grep -q "fleecing: copy-before-write filters (on-cbw-error=break-snapshot)" kill.err ||
  fail "-v does not say which fleecing was used: $(grep fleecing kill.err)"
"$KNIB" qmp --json "$S2" query-block | grep -q '"node-name":"knib-cbw-vda"' ||
  fail "the device is not on the filter during the backup"
grep -q '"status":"running"' "$(status_json)" ||
  fail "the VM is not running during the backup: $(cat status.json)"
"$KNIB" backup --qmp "$S" --vm vm --repo "$REPO" --scratch "$MNT" --full \
  --timeout 120 --json > after-kill.json 2> after-kill.err ||
  fail "the backup after the kill failed: $(cat after-kill.err)"
grep -q "moved device /machine/peripheral/vda/virtio-backend back from knib-cbw-vda onto disk0" after-kill.json ||
  fail "the recovery does not say it moved the device back: $(cat after-kill.json)"
nothing_left "after the kill's recovery"

# 2. The scratch fills while the backup copies: the guest's write goes
# on, the backup fails, saying why, and leaves nothing.
KNIB_TEST_STOP_AT=copy "$KNIB" backup --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$MNT" --full --timeout 120 --json > full.json 2> full.err &
pid=$!
track_pid $pid
until [ "$(pstate $pid)" = T ]; do sleep 0.1; done
dd if=/dev/zero of="$MNT/filler" bs=1M 2>/dev/null || :
# HMP's qemu-io says how the write went on QEMU's standard output.
hmp_write "$S2" /machine/peripheral/vda 0x77 32M 8M
wait_for_text vm.log "wrote 8388608/8388608 bytes at offset 33554432\|write failed"
! grep "write failed" vm.log || fail "the guest's write failed: $(cat vm.log)"
kill -CONT $pid
rc=0
wait $pid || rc=$?
[ "$rc" -eq 1 ] || fail "the backup with a full scratch exited $rc: $(cat full.err)"
grep -q "the scratch '$MNT' filled up during the backup" full.err ||
  fail "the backup does not say the scratch filled up: $(cat full.err)"
grep -q "the guest's writes went on; this backup is incomplete" full.err ||
  fail "the backup does not say it is incomplete: $(cat full.err)"
"$KNIB" qmp --json "$S2" query-block | grep -q '"io-status":"ok"' ||
  fail "the guest's disk is not ok: $("$KNIB" qmp --json "$S2" query-block)"
nothing_left "after the broken snapshot"
"$KNIB" list --repo "$REPO" --json > list.json
[ "$(grep -o '"id":' list.json | wc -l)" -eq 1 ] ||
  fail "the incomplete backup was kept: $(cat list.json)"
rm -f "$MNT/filler"
[ -z "$(ls -A "$MNT")" ] || fail "files left in the scratch: $(ls -A "$MNT")"

# Asked for, the read-only disk is backed up by blockdev-backup in the
# same transaction, the other through its filter.
"$KNIB" -v backup --qmp "$S" --vm vm --repo "$REPO" --scratch "$MNT" \
  --disk vda --disk vdz --timeout 120 --json > ro.json 2> ro.err ||
  fail "the backup with a read-only disk failed: $(cat ro.err)"
grep -q "transaction done: 2 disk(s) at one point in time (1 through copy-before-write filters" ro.err ||
  fail "-v does not say how the disks were fleeced: $(grep 'transaction done' ro.err)"
qemu-img compare -q -U -f qcow2 -F qcow2 ro.qcow2 "$REPO/vms/vm/$(json_top ro.json id)/vdz.qcow2" ||
  fail "the read-only disk's backup differs from it"
nothing_left "after the backup with a read-only disk"

# A VM that its user paused stays paused: knib neither stops nor
# resumes it.
"$KNIB" qmp "$S2" stop > /dev/null
"$KNIB" backup --qmp "$S" --vm vm --repo "$REPO" --scratch "$MNT" \
  --timeout 120 --json > paused.json 2> paused.err ||
  fail "the backup of a paused VM failed: $(cat paused.err)"
grep -q '"status":"paused"' "$(status_json)" ||
  fail "the paused VM was resumed: $(cat status.json)"
"$KNIB" qmp --json "$S2" qom-list path=/objects | grep -q knib-paused- &&
  fail "a pause marker was made for a VM knib did not pause"
"$KNIB" qmp "$S2" cont > /dev/null

# A backup killed while it holds the VM paused (between the transaction
# and resuming): its marker in QEMU tells the next recovery that the
# pause was knib's, which resumes the VM; a VM its user pauses later
# stays paused.
KNIB_TEST_STOP_AT=paused "$KNIB" backup --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$MNT" --timeout 120 > kp.out 2> kp.err &
pid=$!
track_pid $pid
kill_stopped $pid kp.err
grep -q '"status":"paused"' "$(status_json)" ||
  fail "the VM is not paused at stop point 'paused': $(cat status.json)"
"$KNIB" qmp --json "$S2" qom-list path=/objects | grep -q "knib-paused-$pid-" ||
  fail "no pause marker of knib $pid in QEMU"
"$KNIB" recover --qmp "$S" --vm vm --repo "$REPO" --scratch "$MNT" > kp-recover.out 2>&1 ||
  fail "knib recover after a kill in the pause: $(cat kp-recover.out)"
grep -q "resumed the VM, which a killed backup had paused (knib-paused-$pid-" kp-recover.out ||
  fail "knib recover does not say it resumed the VM: $(cat kp-recover.out)"
grep -q '"status":"running"' "$(status_json)" ||
  fail "the VM stays paused after knib recover: $(cat status.json)"
nothing_left "after the recovery of a kill in the pause"
"$KNIB" qmp --json "$S2" qom-list path=/objects | grep -q knib-paused- &&
  fail "the pause marker is left: $("$KNIB" qmp --json "$S2" qom-list path=/objects)"
# SIGTERM while knib waits on QEMU in that moment (QEMU itself stopped
# until then): knib resumes the VM first, then stops.
KNIB_TEST_STOP_AT=paused "$KNIB" backup --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$MNT" --timeout 120 > tp.out 2> tp.err &
pid=$!
track_pid $pid
until [ "$(pstate $pid)" = T ]; do sleep 0.1; done
stop_all "$QEMU_PID_vm"
kill -CONT $pid
_i=0
until grep -q poll "/proc/$pid/wchan" 2>/dev/null || [ "$_i" -ge 300 ]; do
  _i=$((_i + 1))
  sleep 0.1
done
kill -TERM $pid
sleep 1
kill -CONT "$QEMU_PID_vm"
rc=0
wait $pid || rc=$?
[ "$rc" -ne 0 ] || fail "a backup sent SIGTERM in the pause succeeded"
grep -q "interrupted" tp.err || fail "SIGTERM in the pause: $(cat tp.err)"
nothing_left "after SIGTERM in the pause"
"$KNIB" qmp --json "$S2" qom-list path=/objects | grep -q knib-paused- &&
  fail "SIGTERM in the pause left the pause marker"
"$KNIB" qmp "$S2" stop > /dev/null
"$KNIB" recover --qmp "$S" --vm vm --repo "$REPO" --scratch "$MNT" > kp-recover2.out 2>&1 ||
  fail "knib recover of a VM its user paused: $(cat kp-recover2.out)"
grep -q '"status":"paused"' "$(status_json)" ||
  fail "knib recover resumed a VM its user paused: $(cat status.json)"
"$KNIB" qmp "$S2" cont > /dev/null

# A QEMU without the filter's on-cbw-error (before 7.1) fleeces with
# blockdev-backup, as before; -v says so.
KNIB_TEST_FLAGS=no-cbw "$KNIB" -v backup --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$MNT" --timeout 120 --json > old.json 2> old.err ||
  fail "the backup by blockdev-backup failed: $(cat old.err)"
grep -q "transaction done: 1 disk(s) at one point in time (blockdev-backup sync=none)" old.err ||
  fail "-v does not say blockdev-backup was used: $(grep -i 'fleecing\|transaction' old.err)"
nothing_left "after the backup by blockdev-backup"

# 3. With room again, the next backup is whole; the guest's write is in
# the disk (QEMU's own tools say so).
"$KNIB" backup --qmp "$S" --vm vm --repo "$REPO" --scratch "$MNT" --full \
  --timeout 120 --json > ok.json 2> ok.err ||
  fail "the backup with room failed: $(cat ok.err)"
id=$(json_top ok.json id)
quit_qemu vm
qemu-io -f qcow2 -r -c "read -P 0x77 32M 8M" a.qcow2 > read.out ||
  fail "the guest's write is not in the disk: $(cat read.out)"
qemu-io -f qcow2 -r -c "read -P 0x5a 0 32M" -c "read -P 0x5a 40M 24M" a.qcow2 > read2.out ||
  fail "the rest of the disk changed: $(cat read2.out)"
qemu-img check -q a.qcow2 || fail "qemu-img check of the disk"
qemu-img compare -q -f qcow2 -F qcow2 a.qcow2 "$REPO/vms/vm/$id/vda.qcow2" ||
  fail "the backup differs from the disk"
umount "$MNT"
echo OK
