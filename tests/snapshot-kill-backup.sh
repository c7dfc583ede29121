#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# snapshot-kill-backup.sh: a snapshot create killed before and after its
# QMP transaction (and one of a stopped VM) is repaired by the next
# "knib backup" and "knib recover", not only by the next snapshot
# command: the leftover overlay and its node go, or the snapshot is
# recorded; the backups stay incremental and equal their oracles.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/snapshot-functions.sh"
require_test_hooks

new_disks
start_vm
wr 0x11 0
backup 0

# layer_nodes: knib's overlay nodes in the running QEMU.
layer_nodes () {
  "$K" qmp --json "$S2" query-named-block-nodes \
    | jq -r '.[]["node-name"]' | grep -c knib-layer || :
}

echo "killed before the transaction, repaired by knib backup"
wr 0x12 2
killed_at snapshot-transaction create --qmp "$S" --name s1
[ -e a.s1.qcow2 ] || fail "no overlay was made before the kill"
[ "$(layer_nodes)" = 2 ] || fail "the killed create added no nodes"
wr 0x13 4
oracle 1
backup 1
grep -q "removed '$TMPDIR_TEST/a.s1.qcow2' of a snapshot that a killed knib did not finish" b1.err \
  || fail "backup did not repair: $(cat b1.err)"
jq -e '.notes[] | select(test("a killed knib did not finish"))' b1.json >/dev/null \
  || fail "the repair is not in the backup's notes: $(cat b1.json)"
[ ! -e a.s1.qcow2 ] && [ ! -e b.s1.qcow2 ] || fail "the leftover overlays are kept"
[ "$(layer_nodes)" = 0 ] || fail "knib-layer nodes left in QEMU"
[ "$(top vda)" = "$A" ] || fail "vda runs on $(top vda)"
[ "$(jq -r .pending "$R/vms/vm/snapshots.json")" = null ] \
  || fail "the journal is left: $(cat "$R/vms/vm/snapshots.json")"
check_backup 1 1
exact 1 131072

echo "killed after the transaction, repaired by knib recover"
wr 0x14 6
killed_at snapshot-record create --qmp "$S" --name s2
[ "$(top vda)" = "$TMPDIR_TEST/a.s2.qcow2" ] || fail "vda runs on $(top vda)"
[ -z "$(state s2)" ] || fail "s2 was recorded before the kill"
"$K" recover --qmp "$S" --vm vm --repo "$R" > rec.out 2> rec.err \
  || fail "knib recover failed: $(cat rec.err)"
cat rec.out
grep -q "snapshot s2: finished what a killed knib started" rec.out \
  || fail "recover did not repair: $(cat rec.out)"
[ "$(state s2)" = active ] || fail "s2 is '$(state s2)'"
expect_chain vda "a.s2.qcow2 < a.qcow2"
expect_chain vdb "b.s2.qcow2 < b.qcow2"
wr 0x15 8
oracle 2
backup 2
check_backup 2 2
exact 2 131072

echo "killed after the transaction, repaired by knib backup"
killed_at snapshot-record create --qmp "$S" --name s3
wr 0x16 10
oracle 3
backup 3
grep -q "snapshot s3: finished what a killed knib started" b3.err \
  || fail "backup did not repair: $(cat b3.err)"
[ "$(state s3)" = active ] || fail "s3 is '$(state s3)'"
expect_chain vda "a.s3.qcow2 < a.s2.qcow2 < a.qcow2"
check_backup 3 3
exact 3 65536

echo "a stopped VM: killed before its record, repaired by knib recover"
stop_vm
A=$(current vda)
B=$(current vdb)
killed_at snapshot-record create --image "vda=$A" --image "vdb=$B" --name s4
[ -e a.s4.qcow2 ] || fail "no overlay was made before the kill"
"$K" recover --image "vda=$A" --image "vdb=$B" --vm vm --repo "$R" \
  > rec.out 2> rec.err || fail "knib recover failed: $(cat rec.err)"
grep -q "removed '$TMPDIR_TEST/a.s4.qcow2' of a snapshot that a killed knib did not finish" rec.out \
  || fail "recover did not repair: $(cat rec.out)"
[ ! -e a.s4.qcow2 ] || fail "the leftover overlay is kept"
[ -z "$(state s4)" ] || fail "s4 is listed"

# A running VM again, on what knib records; its chain opens, and the
# next backup is an incremental of exactly the write since.
restart_and_backup 4 0x17 12
echo "snapshot-kill-backup: ok"
