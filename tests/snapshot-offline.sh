#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# snapshot-offline.sh: snapshots of a stopped VM (qemu-img create and
# qemu-img bitmap), deletes that merge with qemu-img rebase (one of them
# killed with -9 mid-merge, finished by the next run, its disabled bitmaps
# enabled again), and a revert, each followed by an offline backup that is
# an incremental holding exactly what changed, equal to its oracle.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/snapshot-functions.sh"

A=$TMPDIR_TEST/a.qcow2
B=$TMPDIR_TEST/b.qcow2
qemu-img create -q -f qcow2 "$A" 64M
qemu-img create -q -f qcow2 "$B" 32M
qemu-io -f qcow2 -c "write -P 0x11 0 4M" "$A" >/dev/null
qemu-io -f qcow2 -c "write -P 0x21 0 2M" "$B" >/dev/null
ooracle 0
obackup 0
check_backup 0 0

echo "create s1 on the stopped VM"
owr 0x12 8
ooracle s1
snap create --image "vda=$A" --image "vdb=$B" --name s1
A=$(current vda)
B=$(current vdb)
expect_chain vda "a.s1.qcow2 < a.qcow2"
expect_chain vdb "b.s1.qcow2 < b.qcow2"
qemu-img info --output=json "$A" | jq -e '.["format-specific"].data.bitmaps | length >= 1' >/dev/null \
  || fail "the new layer lacks knib's bitmaps: $(qemu-img info "$A")"
owr 0x13 12
ooracle 1
obackup 1
check_backup 1 1
exact 1 131072

echo "create s2, delete s1: merged offline"
snap create --image "vda=$A" --image "vdb=$B" --name s2
A=$(current vda)
B=$(current vdb)
expect_chain vda "a.s2.qcow2 < a.s1.qcow2 < a.qcow2"
owr 0x14 16
ooracle pre
snap delete s1
grep -q "merged layer '$TMPDIR_TEST/a.qcow2' into '$TMPDIR_TEST/a.s1.qcow2'" snap.out \
  || fail "not merged: $(cat snap.out)"
expect_chain vda "a.s2.qcow2 < a.s1.qcow2"
expect_chain vdb "b.s2.qcow2 < b.s1.qcow2"
same vda pre
same vdb pre
owr 0x15 20
ooracle 2
obackup 2
check_backup 2 2
exact 2 131072

echo "revert to s2"
owr 0x16 24
snap revert s2
A=$(current vda)
B=$(current vdb)
expect_chain vda "a.s2-2.qcow2 < a.s1.qcow2"
[ ! -e "$TMPDIR_TEST/a.s2.qcow2" ] || fail "the abandoned layer was kept"
owr 0x17 28
ooracle 3
obackup 3
check_backup 3 3
# Since backup 2 (0x15) the abandoned state had 0x16, then 0x17.
incremental 3 196608

echo "delete s2, killed in the merge: the next run finishes it"
if [ "${KNIB_TEST_HOOKS:-no}" = yes ]; then
  killed_at rebase delete s2
  [ -e "$A.knib-disabled" ] || fail "no record of the disabled bitmaps"
  [ "$(state s2)" = removed ] || fail "s2 is '$(state s2)'"
  snap create --image "vda=$A" --image "vdb=$B" --name s4
  grep -q "merged layer '$TMPDIR_TEST/a.s1.qcow2' into '$TMPDIR_TEST/a.s2-2.qcow2'" snap.out \
    || fail "the killed merge was not finished: $(cat snap.out)"
  [ ! -e "$TMPDIR_TEST/a.s2-2.qcow2.knib-disabled" ] || fail "the bitmaps stay disabled"
  A=$(current vda)
  B=$(current vdb)
  snap delete s4
  last=s4
else
  snap delete s2
  last=s2-2
fi
expect_chain vda "a.$last.qcow2"
expect_chain vdb "b.$last.qcow2"
qemu-img info --output=json "$A" \
  | jq -e '[.["format-specific"].data.bitmaps[] | select(.flags | index("auto"))] | length >= 1' >/dev/null \
  || fail "no recording bitmap left: $(qemu-img info "$A")"
[ "$("$K" snapshot list --vm vm --repo "$R" --json | jq '.snapshots | length')" = 0 ] \
  || fail "snapshots left"
owr 0x18 32
ooracle 4
obackup 4
check_backup 4 4
exact 4 65536
qemu-img check -q "$A" || fail "qemu-img check of $A"
echo "snapshot-offline: ok"
