#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# chain-delete-seed.sh: the seed system's delete scenario with chain size
# 3 on a running VM with two disks.  b1..b6 are FULL, INC, INC, FULL,
# INC, INC; delete b6 (its parent takes over); delete b4 and b5 (both
# kept as removed, files present: b5 stays the chain's tip); delete b1,
# b2 and b3 in one call (all gone); a new backup (an incremental of the
# removed tip b5); end the chain (the next backup would be full); delete
# the new backup (it goes with the removed ancestry).  After every step
# "knib verify" passes on what remains, every complete backup restores
# to its oracle and every removed one's images read as their oracle.
# shellcheck disable=SC2154 # b1..b8 and id are set through eval
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/chain-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
qemu-img create -q -f qcow2 b.qcow2 32M
start_qemu vm "$TMPDIR_TEST/a.qcow2" "$TMPDIR_TEST/b.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
DISKS="vda:$TMPDIR_TEST/a.qcow2 vdb:$TMPDIR_TEST/b.qcow2"

# take N KIND [PARENT-VAR]: write, snap, back up as bN, check the kind.
take () {
  hmp_write "$S2" vda "0x$(($1 + 10))" "$(($1 * 2))M" 1M
  hmp_write "$S2" vdb "0x$(($1 + 20))" "$(($1))M" 128k
  # shellcheck disable=SC2086
  snap "$1" "$S2" $DISKS
  backup_ok vm "$S" "b$1.json" --chain-size 3
  eval "b$1=\$(json_top b$1.json id)"
  if [ $# -ge 3 ]; then
    eval "expect_kind b$1.json $2 \$$3"
  else
    expect_kind "b$1.json" "$2"
  fi
}

# check_remaining N...: verify passes; complete backups restore to their
# oracles, removed ones read as their oracles.
check_remaining () {
  verify_ok vm
  for n in "$@"; do
    eval "id=\$b$n"
    for d in vda vdb; do
      case $(state vm "$id") in
        complete) restore_check vm "$id" $d "oracle-$n-$d.qcow2" ;;
        removed) check_image vm "$id" $d "oracle-$n-$d.qcow2" ;;
        gone) fail "backup b$n ($id) is gone" ;;
      esac
    done
  done
}

take 1 full
take 2 incremental b1
take 3 incremental b2
take 4 full
take 5 incremental b4
take 6 incremental b5
show_list "b1..b6 (chain size 3)"
check_remaining 1 2 3 4 5 6

# Delete b6, the tip: its files go, b5 takes over.
knib_ok del6.out delete --repo "$REPO" "$b6"
grep -q "^backup $b6: deleted; it was the chain's latest backup: the next backup continues the chain from $b5" del6.out \
  || fail "delete b6 said: $(cat del6.out)"
expect_state vm gone "$b6"
show_list "after delete b6"
check_remaining 1 2 3 4 5

# Delete b4 and b5: b5 is the tip and b4, its parent, goes in the same
# call, so b5 stays (removed) and so does b4, which it needs.
knib_ok del45.out delete --repo "$REPO" --vm vm "$b4" "$b5"
grep -q "^backup $b4: marked removed, its files kept: backup $b5 depends on it" del45.out \
  || fail "delete b4 said: $(cat del45.out)"
grep -q "^backup $b5: marked removed, its files kept: it is the chain's latest backup and the backup before it, $b4, is deleted too" del45.out \
  || fail "delete b5 said: $(cat del45.out)"
expect_state vm removed "$b4" "$b5"
"$KNIB" list --repo "$REPO" vm >list.out
! grep -q -e "$b4" -e "$b5" list.out || fail "knib list shows removed backups: $(cat list.out)"
show_list "after delete b4 b5"
check_remaining 1 2 3 4 5

# Delete the rest in one call: nothing needs them.
knib_ok del123.out delete --repo "$REPO" "$b1" "$b2" "$b3"
[ "$(grep -c ": deleted$" del123.out)" -eq 3 ] || fail "delete b1 b2 b3 said: $(cat del123.out)"
expect_state vm gone "$b1" "$b2" "$b3"
show_list "after delete b1 b2 b3"
check_remaining 4 5

# A new backup: an incremental of the removed tip b5, whose bitmap got
# b6's tracking back.
take 7 incremental b5
for d in vda vdb; do
  [ "$(disk_kind b7.json $d)" = incremental ] || fail "b7's $d is not incremental: $(cat b7.json)"
done
grep -q "merged bitmap knib-$b6 of vda into knib-$b5" b7.json \
  || fail "b7 did not merge b6's bitmap back: $(cat b7.json)"
show_list "after a new backup b7"
check_remaining 4 5 7

# End the chain: knib's bitmaps leave the VM, the next backup is full.
knib_ok end.out chain end --repo "$REPO" --vm vm --qmp "$S" --reason "detached from the offering"
grep -q "the chain ends after backup $b7" end.out || fail "chain end said: $(cat end.out)"
bitmaps "$S2" >bitmaps.txt
! grep -q knib- bitmaps.txt || fail "bitmaps left after chain end: $(cat bitmaps.txt)"
knib_run inc.out inc.err backup --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$SCRATCH" --incremental --chain-size 3
expect_failure inc.err "an incremental after chain end" \
  "an incremental backup is not possible: the chain was ended: detached from the offering"
show_list "after chain end"
check_remaining 4 5 7

# Delete b7: it goes, and so does the removed ancestry b5, b4.
knib_ok del7.out delete --repo "$REPO" "$b7"
grep -q "^backup $b7: deleted$" del7.out || fail "delete b7 said: $(cat del7.out)"
grep -q "^backup $b5: deleted (it was removed and no backup needs it any more)" del7.out \
  || fail "delete b7 said: $(cat del7.out)"
grep -q "^backup $b4: deleted (it was removed and no backup needs it any more)" del7.out \
  || fail "delete b7 said: $(cat del7.out)"
expect_state vm gone "$b4" "$b5" "$b7"
show_list "after delete b7"
for f in "$REPO"/vms/vm/*; do
  [ "$f" = "$REPO/vms/vm/vm.json" ] || fail "the repository still holds $f"
done

# And the VM can be backed up again.
take 8 full
check_remaining 8
echo "chain-delete-seed: ok"
