#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# snapshot-kill.sh: kill -9 of knib in the middle of a snapshot create
# (before and after its QMP transaction) and of a live merge: the next
# knib snapshot command repairs, the VM keeps running, no write is lost
# from the disks nor from the backups' tracking, and the chain opens in
# QEMU.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/snapshot-functions.sh"
require_test_hooks

A=$TMPDIR_TEST/a.qcow2
B=$TMPDIR_TEST/b.qcow2
qemu-img create -q -f qcow2 "$A" 64M
qemu-img create -q -f qcow2 "$B" 32M
start_vm
wr 0x11 0
backup 0

echo "killed before the transaction: the leftover goes"
wr 0x12 2
killed_at snapshot-transaction create --qmp "$S" --name s1
[ -e a.s1.qcow2 ] || fail "no overlay was made before the kill"
[ "$(top vda)" = "$A" ] || fail "vda runs on $(top vda)"
wr 0x13 4
snap create --qmp "$S" --name s1
grep -q "removed '$TMPDIR_TEST/a.s1.qcow2' of a snapshot that a killed knib did not finish" snap.out \
  || fail "no repair: $(cat snap.out)"
expect_chain vda "a.s1.qcow2 < a.qcow2"
"$K" qmp --json "$S2" query-named-block-nodes \
  | jq -r '.[]["node-name"]' | grep -c knib-layer | grep -qx 2 \
  || fail "knib-layer nodes: $("$K" qmp --json "$S2" query-named-block-nodes | jq -r '.[]["node-name"]')"
wr 0x14 6
oracle 1
backup 1
check_backup 1 1
exact 1 196608

echo "killed after the transaction: the snapshot is recorded"
killed_at snapshot-record create --qmp "$S" --name s2
[ "$(top vda)" = "$TMPDIR_TEST/a.s2.qcow2" ] || fail "vda runs on $(top vda)"
[ -z "$(state s2)" ] || fail "s2 was recorded before the kill"
wr 0x15 8
snap create --qmp "$S" --name s3
grep -q "snapshot s2: finished what a killed knib started" snap.out \
  || fail "no repair: $(cat snap.out)"
[ "$(state s2)" = active ] || fail "s2 is '$(state s2)'"
expect_chain vda "a.s3.qcow2 < a.s2.qcow2 < a.s1.qcow2 < a.qcow2"
wr 0x16 10
oracle 2
backup 2
check_backup 2 2
exact 2 131072

echo "killed during a live merge: the next run finishes it"
wr 0x17 12
oracle pre3
killed_at stream delete --qmp "$S" s3
[ "$(state s3)" = removed ] || fail "s3 is '$(state s3)'"
wr 0x18 14
snap delete --qmp "$S" s1
grep -q "a merge of a killed knib (job knib-merge-vda) ended" snap.out \
  || fail "no repair: $(cat snap.out)"
grep -q "removed layer '$TMPDIR_TEST/a.s2.qcow2'" snap.out \
  || fail "the merged layer was not removed: $(cat snap.out)"
[ -z "$(state s3)" ] || fail "s3 is still listed"
expect_chain vda "a.s3.qcow2 < a.s1.qcow2"
expect_chain vdb "b.s3.qcow2 < b.s1.qcow2"
[ "$("$K" qmp --json "$S2" query-jobs)" = "[]" ] || fail "jobs left"
oracle 3
backup 3
check_backup 3 3
# Writes since backup 2: 0x17 and 0x18; the merged layer gave its bitmap
# to the active one.
exact 3 131072

# The VM runs on; stopped, its chain opens in QEMU again.
restart_and_backup 4 0x19 16
echo "snapshot-kill: ok"
