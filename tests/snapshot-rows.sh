#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# snapshot-rows.sh: the reference's table of disk-only VM snapshots (rows
# 1-8) on a running plain QEMU with two disks, backups in between: layer
# chains checked with qemu-img info --backing-chain after each step,
# contents against oracles taken at each snapshot, and every backup after
# create, revert and delete is an incremental that equals its oracle.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/snapshot-functions.sh"

A=$TMPDIR_TEST/a.qcow2
B=$TMPDIR_TEST/b.qcow2
qemu-img create -q -f qcow2 "$A" 64M
qemu-img create -q -f qcow2 "$B" 32M
start_vm
write vda 0x11 0 4M
write vdb 0x21 0 2M
oracle 0
backup 0
[ "$(kind 0)" = full ] || fail "first backup is not full"
check_backup 0 0

echo "row 1: take a disk-only snapshot"
wr 0x12 8
oracle s1
snap create --qmp "$S" --name s1
[ "$(top vda)" = "$TMPDIR_TEST/a.s1.qcow2" ] || fail "vda runs on $(top vda)"
expect_chain vda "a.s1.qcow2 < a.qcow2"
expect_chain vdb "b.s1.qcow2 < b.qcow2"
[ "$(state s1)" = active ] || fail "s1 is '$(state s1)'"
wr 0x13 12
oracle 1
backup 1
check_backup 1 1
exact 1 131072

echo "row 2: take a disk-only snapshot again"
wr 0x14 16
oracle s2
snap create --qmp "$S" --name s2
expect_chain vda "a.s2.qcow2 < a.s1.qcow2 < a.qcow2"
expect_chain vdb "b.s2.qcow2 < b.s1.qcow2 < b.qcow2"
wr 0x15 20

echo "row 3: stop the VM, revert to snapshot 2, start it"
stop_vm
snap revert s2
expect_chain vda "a.s2-2.qcow2 < a.s1.qcow2 < a.qcow2"
expect_chain vdb "b.s2-2.qcow2 < b.s1.qcow2 < b.qcow2"
[ ! -e a.s2.qcow2 ] || fail "the abandoned layer a.s2.qcow2 was kept"
same vda s2
same vdb s2
A=$(current vda)
B=$(current vdb)
start_vm
wr 0x16 24
oracle 2
backup 2
check_backup 2 2
# The last backup (1) differs from s2 by 0x14; 0x15 was written on the
# abandoned layer; 0x16 since: a superset of at most those.
incremental 2 196608

echo "row 4: stop the VM, revert to snapshot 1, start it"
stop_vm
snap revert s1
expect_chain vda "a.s1-2.qcow2 < a.qcow2"
expect_chain vdb "b.s1-2.qcow2 < b.qcow2"
[ -e a.s1.qcow2 ] || fail "a.s1.qcow2, the layer of snapshot 2, was removed"
[ ! -e a.s2-2.qcow2 ] || fail "the abandoned layer a.s2-2.qcow2 was kept"
same vda s1
same vdb s1
A=$(current vda)
B=$(current vdb)
start_vm
wr 0x17 28
oracle 3
backup 3
check_backup 3 3
# From backup 2 to s1: 0x13, 0x14, 0x16 (and 0x12, in the layer between);
# 0x17 since.
incremental 3 327680

echo "row 5: take a disk-only snapshot"
wr 0x18 32
oracle s3
snap create --qmp "$S" --name s3
expect_chain vda "a.s3.qcow2 < a.s1-2.qcow2 < a.qcow2"
wr 0x19 36
oracle 4
backup 4
check_backup 4 4
exact 4 131072

echo "row 6: remove snapshot 1"
snap delete --qmp "$S" s1
grep -q "snapshot s1: marked removed" snap.out || fail "s1: $(cat snap.out)"
[ "$(state s1)" = removed ] || fail "s1 is '$(state s1)', not removed"
[ -e "$TMPDIR_TEST/a.qcow2" ] || fail "a.qcow2 was removed from storage"
expect_chain vda "a.s3.qcow2 < a.s1-2.qcow2 < a.qcow2"

echo "row 7: remove snapshot 3"
wr 0x1a 40
oracle pre7
snap delete --qmp "$S" s3
grep -q "merged layer '$TMPDIR_TEST/a.s1-2.qcow2' into '$TMPDIR_TEST/a.s3.qcow2'" snap.out \
  || fail "s3 not merged with the current volume: $(cat snap.out)"
[ -z "$(state s3)" ] || fail "s3 is still listed"
expect_chain vda "a.s3.qcow2 < a.qcow2"
expect_chain vdb "b.s3.qcow2 < b.qcow2"
quiesced same vda pre7
quiesced same vdb pre7
oracle 5
backup 5
check_backup 5 5
exact 5 65536

echo "row 8: remove snapshot 2"
wr 0x1b 44
snap delete --qmp "$S" s2
grep -q "removed layer '$TMPDIR_TEST/a.s1.qcow2'" snap.out \
  || fail "a.s1.qcow2 not removed: $(cat snap.out)"
grep -q "merged layer '$TMPDIR_TEST/a.qcow2' into '$TMPDIR_TEST/a.s3.qcow2'" snap.out \
  || fail "snapshot 1 not merged with the current volume: $(cat snap.out)"
grep -q "snapshot s1 (marked removed): its layer is merged away" snap.out \
  || fail "snapshot 1's end is not said: $(cat snap.out)"
[ -z "$(state s1)" ] && [ -z "$(state s2)" ] || fail "snapshots left: $(cat snap.out)"
expect_chain vda "a.s3.qcow2"
expect_chain vdb "b.s3.qcow2"
oracle 6
backup 6
check_backup 6 6
exact 6 65536

# The VM starts again on what knib says, and the images are clean.
restart_and_backup 7 0x1c 48
echo "snapshot-rows: ok"
