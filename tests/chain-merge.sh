#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# chain-merge.sh: "knib merge" makes a backup standalone: b1..b4 (F I I
# I, unlimited chain), b2 deleted (removed: b3 needs it); merging b3
# rewrites its image as a full one of the same point in time, b4 moves
# to its chain, and b2, which nothing needs any more, goes.  Every
# remaining backup restores to its oracle, verify passes, and the next
# backup continues the new chain incrementally.
# shellcheck disable=SC2154 # bN and id are set through eval
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/chain-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 32M
qemu-img create -q -f qcow2 b.qcow2 16M
start_qemu vm "$TMPDIR_TEST/a.qcow2" "$TMPDIR_TEST/b.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
DISKS="vda:$TMPDIR_TEST/a.qcow2 vdb:$TMPDIR_TEST/b.qcow2"

take () {
  hmp_write "$S2" vda "0x$(($1 + 16))" "$(($1 * 2))M" 512k
  hmp_write "$S2" vdb "0x$(($1 + 32))" "$(($1))M" 64k
  # shellcheck disable=SC2086
  snap "$1" "$S2" $DISKS
  backup_ok vm "$S" "b$1.json" --chain-size 0
  eval "b$1=\$(json_top b$1.json id)"
}

# check N...: verify passes, each backup N restores to its oracle.
check () {
  verify_ok vm
  for n in "$@"; do
    eval "id=\$b$n"
    for d in vda vdb; do
      restore_check vm "$id" $d "oracle-$n-$d.qcow2"
    done
  done
}

take 1
take 2
take 3
take 4
knib_ok del.out delete --repo "$REPO" "$b2"
expect_state vm removed "$b2"

knib_ok merge.out merge --repo "$REPO" "$b3"
grep -qx "backup $b3: 2 images rewritten from chain $b1 (3 backups) as standalone images" merge.out \
  || fail "merge said: $(cat merge.out)"
grep -qx "backup $b4: now backup 2 of chain $b3" merge.out || fail "merge said: $(cat merge.out)"
grep -qx "backup $b2: deleted (it was removed and no backup needs it any more)" merge.out \
  || fail "merge said: $(cat merge.out)"
expect_state vm gone "$b2"
expect_state vm complete "$b1" "$b3" "$b4"
for d in vda vdb; do
  qemu-img info "$REPO/vms/vm/$b3/$d.qcow2" | grep -q "^backing file" \
    && fail "the merged image of $d still has a backing file"
done
grep -q '"kind": "full"' "$REPO/vms/vm/$b3/manifest.json" || fail "b3 is not full"
show_list "after delete b2, merge b3"
check 1 3 4

# Merging again, or a full backup, changes nothing.
repo_state before.txt
knib_ok again.out merge --repo "$REPO" --vm vm "$b3"
knib_ok full.out merge --repo "$REPO" "$b1"
repo_state after.txt
cmp -s before.txt after.txt || fail "a merge with nothing to do changed the repository"

# The chain goes on from b4, now at position 2 of b3's chain.
take 5
expect_kind b5.json incremental "$b4"
grep -q '"reason":"backup 3 of chain '"$b3"' (chain size unlimited)"' b5.json \
  || fail "b5: $(cat b5.json)"
check 1 3 4 5
echo "chain-merge: ok"
