#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# chain-isolated.sh: an isolated backup in the middle of a chain neither
# depends on it nor affects it: the chain's next backup is an incremental
# of the backup before the isolated one and restores correctly (the
# isolated backup's point in time does not cut the tracking), the
# isolated backup restores on its own (a standalone image) and leaves no
# bitmap of its own in QEMU.  Deleting it touches nothing else.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/chain-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 32M
start_qemu vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
D=vda:$TMPDIR_TEST/a.qcow2

hmp_write "$S2" vda 0x11 0 2M
snap 1 "$S2" "$D"
backup_ok vm "$S" b1.json
b1=$(json_top b1.json id)
hmp_write "$S2" vda 0x12 1M 256k
snap 2 "$S2" "$D"
backup_ok vm "$S" b2.json
b2=$(json_top b2.json id)
expect_kind b2.json incremental "$b1"

# The isolated backup, after writes that the next incremental must hold.
hmp_write "$S2" vda 0x13 4M 512k
snap 3 "$S2" "$D"
backup_ok vm "$S" b3.json --isolated
b3=$(json_top b3.json id)
expect_kind b3.json isolated
grep -q '"reason":"--isolated requested"' b3.json || fail "no reason: $(cat b3.json)"
bitmaps "$S2" >bitmaps.txt
! grep -q " knib-$b3 " bitmaps.txt || fail "the isolated backup left its bitmap: $(cat bitmaps.txt)"
grep -qx "vda knib-$b2 recording" bitmaps.txt \
  || fail "the chain's bitmap is not recording after the isolated backup: $(cat bitmaps.txt)"
qemu-img info "$REPO/vms/vm/$b3/vda.qcow2" | grep -q "^backing file" \
  && fail "the isolated image has a backing file"

hmp_write "$S2" vda 0x14 8M 64k
snap 4 "$S2" "$D"
backup_ok vm "$S" b4.json
b4=$(json_top b4.json id)
expect_kind b4.json incremental "$b2"
grep -q '"reason":"backup 3 of chain' b4.json || fail "the isolated backup counted in the chain: $(cat b4.json)"
# It holds what changed since b2, the isolated backup's writes too.
restore_check vm "$b4" vda oracle-4-vda.qcow2
restore_check vm "$b3" vda oracle-3-vda.qcow2
restore_check vm "$b2" vda oracle-2-vda.qcow2
verify_ok vm
bitmaps "$S2" >bitmaps.txt
! grep -q " knib-$b3 " bitmaps.txt || fail "a bitmap of the isolated backup is in QEMU: $(cat bitmaps.txt)"
check_qemu_clean "$S2" vm vda

# Deleting the isolated backup deletes it and nothing else.
knib_ok del.out delete --repo "$REPO" "$b3"
grep -qx "backup $b3: deleted" del.out || fail "delete said: $(cat del.out)"
[ "$(wc -l <del.out)" -eq 1 ] || fail "delete did more: $(cat del.out)"
expect_state vm gone "$b3"
expect_state vm complete "$b1" "$b2" "$b4"
show_list "a chain with an isolated backup deleted"
echo "chain-isolated: ok"
