#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# snapshot-restore.sh: a restore in place onto a VM with snapshots is
# refused, says why and changes nothing; with --drop-snapshots the
# snapshots and their layers go with the restore, the restored images
# equal the backup's oracle and open in qemu-img, and the next backup is
# an incremental of the restored backup.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/snapshot-functions.sh"

new_disks
start_vm
wr 0x11 0
oracle 0
backup 0
id0=$(jq -r .id b0.json)
wr 0x12 2
snap create --qmp "$S" --name s1
wr 0x13 4
snap create --qmp "$S" --name s2
wr 0x14 6
backup 1
stop_vm
A=$(current vda)
B=$(current vdb)
[ "$A" = "$TMPDIR_TEST/a.s2.qcow2" ] || fail "vda runs on $A"

# restore ARG...: knib restore of backup 0 into the VM's images.
restore () {
  rc=0
  "$K" restore --repo "$R" --vm vm "$id0" "$@" > rs.out 2> rs.err || rc=$?
}

echo "refused without --drop-snapshots"
sums=$(sha256sum ./*.qcow2 "$R/vms/vm/snapshots.json")
restore --image "vda=$A" --image "vdb=$B"
[ "$rc" -ne 0 ] || fail "a restore onto a VM with snapshots was not refused"
grep -q "vm 'vm' has snapshots (s1, s2)" rs.err || fail "unclear: $(cat rs.err)"
grep -q -- "--drop-snapshots" rs.err || fail "the way out is not said: $(cat rs.err)"
[ "$(sha256sum ./*.qcow2 "$R/vms/vm/snapshots.json")" = "$sums" ] \
  || fail "a refused restore changed images or records"
ls -a | grep -q '^\.knib-restore' && fail "a refused restore left files"

echo "refused with --drop-snapshots when a disk with layers is not restored"
restore --image "vda=$A" --drop-snapshots
[ "$rc" -ne 0 ] || fail "a restore that orphans vdb's layers was not refused"
grep -q "disk vdb runs on them: restore it too" rs.err || fail "unclear: $(cat rs.err)"
[ "$(sha256sum ./*.qcow2 "$R/vms/vm/snapshots.json")" = "$sums" ] \
  || fail "a refused restore changed images or records"

echo "--drop-snapshots only goes with a restore in place"
restore --to x.qcow2 --disk vda --drop-snapshots
[ "$rc" -eq 2 ] && grep -q "goes with a restore in place" rs.err \
  || fail "--drop-snapshots --to: exit $rc: $(cat rs.err)"

echo "restored with --drop-snapshots"
restore --image "vda=$A" --image "vdb=$B" --drop-snapshots
[ "$rc" -eq 0 ] || fail "restore --drop-snapshots failed: $(cat rs.err)"
cat rs.out
for f in a.qcow2 a.s1.qcow2 b.qcow2 b.s1.qcow2; do
  [ ! -e "$f" ] || fail "layer $f of the dropped snapshots is kept"
  grep -q "removed '$TMPDIR_TEST/$f', a layer of the dropped snapshots" rs.out \
    || fail "the removal of $f is not said: $(cat rs.out)"
done
grep -q "snapshot s1: dropped with the restore" rs.out || fail "$(cat rs.out)"
grep -q "snapshot s2: dropped with the restore" rs.out || fail "$(cat rs.out)"
[ "$("$K" snapshot list --vm vm --repo "$R" --json | jq -c '[.snapshots, .disks]')" = '[[],{}]' ] \
  || fail "snapshots left: $("$K" snapshot list --vm vm --repo "$R" --json)"
for d in a b; do
  img=$TMPDIR_TEST/$d.s2.qcow2
  qemu-img check -q "$img" || fail "qemu-img check of $img"
  [ "$(chain "$img")" = "$d.s2.qcow2" ] || fail "$img has backing files: $(chain "$img")"
  qemu-img compare -q "oracle-$d-0.qcow2" "$img" || fail "$img differs from backup 0"
done

echo "the next backup is an incremental of the restored backup"
start_vm
wr 0x15 8
oracle 2
backup 2
[ "$(jq -r .parent b2.json)" = "$id0" ] || fail "backup 2's parent is not backup 0: $(cat b2.json)"
check_backup 2 2
exact 2 65536
"$K" snapshot create --qmp "$S" --vm vm --repo "$R" --name s3 > /dev/null \
  || fail "a snapshot after the restore failed"
expect_chain vda "a.s3.qcow2 < a.s2.qcow2"
echo "snapshot-restore: ok"
