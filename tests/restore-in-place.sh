#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# restore-in-place.sh: restore of backup N onto a stopped VM's images
# (--image): the disks equal N's oracle, carry the bitmap knib-N only,
# and the next backup is an incremental of N (the chain becomes a tree);
# delete on the tree keeps every remaining backup restorable; a running
# VM, a disk the backup lacks and a kill -9 change nothing (what the
# killed restore left beside the images goes at the next recover or
# restore).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
qemu-img create -q -f qcow2 b.qcow2 32M
start_qemu vm "$TMPDIR_TEST/a.qcow2" "$TMPDIR_TEST/b.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

# snap N: oracles of both disks now (paused, flushed).
snap () {
  oracle "$S2" a.qcow2 "oracle-a-$1.qcow2"
  oracle "$S2" b.qcow2 "oracle-b-$1.qcow2"
}


# same FILE ORACLE: qemu-img compare says they read the same.
same () {
  qemu-img compare -q "$2" "$1" || fail "$1 differs from $2: $(qemu-img compare "$2" "$1" 2>&1)"
}

hmp_write "$S" vda 0x11 0 1M
hmp_write "$S" vdb 0x21 0 1M
snap 1
backup_ok vm "$S" b1.json
b1=$(last_id vm)
hmp_write "$S" vda 0x12 1M 1M
hmp_write "$S" vdb 0x22 2M 1M
snap 2
backup_ok vm "$S" b2.json
expect_kind b2.json incremental "$b1"
b2=$(last_id vm)
hmp_write "$S" vda 0x13 4M 1M

# The VM runs: refused, nothing changed (QEMU's disk reads on).
knib_run out err restore --repo "$REPO" "$b1" --image vda=a.qcow2
expect_failure err "restore onto a running VM" "in use" "stop the VM first"
ls -a | grep -q '^\.knib-restore' && fail "a refused restore left files"
quit_qemu vm
! qemu-img compare -q a.qcow2 oracle-a-2.qcow2 2>/dev/null \
  || fail "vda lost the write made after backup 2"
sum_before=$(sha256sum a.qcow2 b.qcow2)

# Bad input: a disk the backup lacks; a malformed --image; no target.
knib_run out err restore --repo "$REPO" "$b1" --image vdz=a.qcow2
expect_failure err "a disk the backup lacks" "has no disk 'vdz'"
knib_run out err restore --repo "$REPO" "$b1" --image a.qcow2
expect_failure err "--image without a disk" "expected DISK=PATH"
knib_run out err restore --repo "$REPO" "$b1" --image vda=a.qcow2 --to x
expect_failure err "--image with --to" "does not go with"
knib_run out err restore --repo "$REPO" "$b1" --image vda=a.qcow2 --start
expect_failure err "--start without a domain" "need --domain"
knib_run out err restore --repo "$REPO" --consolidate --qmp "$S" --vm vm --rate-limit x
expect_failure err "--rate-limit x" "rate-limit"
knib_run out err restore --repo "$REPO" "$b1" --to x --target vdc
expect_failure err "--target without --attach" "goes with --attach"
knib_run out err restore --repo "$REPO" "$b1" --to x --print-xml
expect_failure err "--print-xml without --new-domain" "go with --new-domain"
knib_run out err restore --repo "$REPO" "$b1" --image vda=a.qcow2 --wait
expect_failure err "--wait with --image" "--wait goes with"
knib_run out err restore --repo "$REPO" "$b1" --image vda=missing.qcow2
expect_failure err "a missing image" "missing.qcow2"
[ "$(sha256sum a.qcow2 b.qcow2)" = "$sum_before" ] || fail "bad input changed the images"

# A destination without room: refused before anything is written (a
# 1 MiB tmpfs, when this user may mount one).
mkdir small
if mount -t tmpfs -o size=1M knib-test "$TMPDIR_TEST/small" 2>/dev/null; then
  knib_run out err restore --repo "$REPO" "$b1" --disk vda --to small/vda.qcow2
  left=$(ls -A small)
  umount "$TMPDIR_TEST/small"
  expect_failure err "a restore without room" "bytes free, the restore needs"
  [ -z "$left" ] || fail "a refused restore left files: $left"
else
  echo "no tmpfs could be mounted: the free-space refusal is not tested"
fi

# kill -9 right before the images are renamed into place: the old disks
# are intact; the temporary files beside them go at the next 'knib
# recover', and at the next restore.
kill_restore () {
  (
    KNIB_TEST_STOP_AT=${1:-restore}
    export KNIB_TEST_STOP_AT
    exec "$KNIB" restore --repo "$REPO" "$b1" --image vda=a.qcow2 \
      --image vdb=b.qcow2 >kill.out 2>kill.err
  ) &
  KNIB_PID=$!
  track_pid $KNIB_PID
  i=0
  until [ "$(proc_state $KNIB_PID)" = T ]; do
    i=$((i + 1))
    [ "$i" -le 600 ] || fail "knib restore did not stop: $(cat kill.err)"
    sleep 0.1
  done
  kill -9 "$KNIB_PID"
  wait "$KNIB_PID" 2>/dev/null || :
  [ -n "${1:-}" ] && return 0
  [ "$(sha256sum a.qcow2 b.qcow2)" = "$sum_before" ] || fail "a killed restore changed the images"
  ls -a | grep -q '^\.knib-restore-a\.qcow2\.' || fail "no temporary file of the killed restore"
  ls -a | grep -q '^\.knib-restore-b\.qcow2\.' || fail "no temporary file of the killed restore"
}
restore_leftovers=""
if [ "${KNIB_TEST_HOOKS:-no}" = yes ]; then
  kill_restore
  knib_run out err recover --repo "$REPO" --vm vm
  [ "$rc" -eq 0 ] || fail "recover after a killed restore exited $rc: $(cat err)"
  grep -q "removed '$TMPDIR_TEST/\.knib-restore-a\.qcow2\.......', left by a restore of backup $b1" out \
    || fail "recover did not say it removed the temporary file: $(cat out)"
  ! ls -a | grep -q '^\.knib-restore' || fail "recover left temporary files: $(ls -a)"
  [ ! -e "$REPO/vms/vm/restoring.json" ] || fail "recover left the restore's record"
  knib_run out err recover --repo "$REPO" --vm vm
  grep -q "nothing to recover" out || fail "a second recover found something: $(cat out)"
  # Killed between the renames: recover says which image holds what.
  cp a.qcow2 a-before.qcow2
  cp b.qcow2 b-before.qcow2
  kill_restore restore-install
  same a.qcow2 oracle-a-1.qcow2
  cmp -s b.qcow2 b-before.qcow2 || fail "the second image was replaced before the stop"
  knib_run out err recover --repo "$REPO" --vm vm
  [ "$rc" -eq 0 ] || fail "recover after a restore killed mid-rename exited $rc: $(cat err)"
  grep -q "warning: the restore of backup $b1 was cut short while it replaced the images: '$TMPDIR_TEST/a.qcow2' hold it, '$TMPDIR_TEST/b.qcow2' do not" out \
    || fail "recover did not say which images hold the backup: $(cat out)"
  ! ls -a | grep -q '^\.knib-restore' || fail "recover left temporary files: $(ls -a)"
  mv a-before.qcow2 a.qcow2
  rm b-before.qcow2
  [ "$(sha256sum a.qcow2 b.qcow2)" = "$sum_before" ] || fail "the images were not put back"
  kill_restore
  restore_leftovers=yes
  # Not what is not knib's: a file of another name, a symbolic link.
  : >.knib-restore-a.qcow2.other
  ln -s "$TMPDIR_TEST/nowhere" .knib-restore-a.qcow2.LINK00
fi

# Restore backup 1 in place.
knib_run out err restore --repo "$REPO" "$b1" --image vda=a.qcow2 --image vdb=b.qcow2
[ "$rc" -eq 0 ] || fail "restore in place exited $rc: $(cat err)"
grep -q "incremental of backup $b1" out || fail "restore did not say the chain goes on: $(cat out)"
[ -z "$restore_leftovers" ] || grep -q "removed '$TMPDIR_TEST/\.knib-restore-b\.qcow2\.......'" out \
  || fail "the restore did not say it removed the killed one's files: $(cat out)"
same a.qcow2 oracle-a-1.qcow2
same b.qcow2 oracle-b-1.qcow2
qemu-img check -q a.qcow2 || fail "qemu-img check a.qcow2"
for img in a.qcow2 b.qcow2; do
  qemu-img info --output=json "$img" | tr -d ' \n' >info.json
  grep -q "\"name\":\"knib-$(rid)-$b1\"" info.json || fail "$img lacks bitmap knib-$(rid)-$b1: $(cat info.json)"
  [ "$(grep -o '"name":"knib-[^"]*"' info.json | wc -l)" -eq 1 ] \
    || fail "$img has other knib bitmaps than knib-$b1: $(cat info.json)"
done
if [ "${KNIB_TEST_HOOKS:-no}" = yes ]; then
  [ -e .knib-restore-a.qcow2.other ] && [ -L .knib-restore-a.qcow2.LINK00 ] \
    || fail "the restore removed files that were not a killed restore's"
  rm -f .knib-restore-a.qcow2.other .knib-restore-a.qcow2.LINK00
fi
! ls -a | grep -q '^\.knib-restore' || fail "temporary files left: $(ls -a | grep '^\.knib-restore')"
"$KNIB" list --repo "$REPO" vm >list.out
grep -q "$b1 .* tip " list.out || fail "list does not show $b1 as the tip: $(cat list.out)"
grep -q "$b2 .* - " list.out || fail "list does not show $b2 off the branch: $(cat list.out)"

# The chain survives: write, back up: an incremental of backup 1.
start_qemu vm "$TMPDIR_TEST/a.qcow2" "$TMPDIR_TEST/b.qcow2"
hmp_write "$S" vda 0x14 8M 1M
hmp_write "$S" vdb 0x24 0 64K
snap 3
backup_ok vm "$S" b3.json
expect_kind b3.json incremental "$b1"
b3=$(last_id vm)
check_image vm "$b3" vda oracle-a-3.qcow2
check_image vm "$b3" vdb oracle-b-3.qcow2
echo "list after the restore and backup 3:"
"$KNIB" list --repo "$REPO" vm | tee list.out
grep -q "$b3 .* tip " list.out || fail "list does not show $b3 as the tip: $(cat list.out)"
grep -q "$b1 .* on " list.out || fail "list does not show $b1 on the branch: $(cat list.out)"

# The old branch is still restorable; then delete on the tree.
"$KNIB" restore --repo "$REPO" "$b2" --to r2 >/dev/null || fail "restore of $b2"
same r2/vda.qcow2 oracle-a-2.qcow2
same r2/vdb.qcow2 oracle-b-2.qcow2
"$KNIB" delete --repo "$REPO" --vm vm "$b2" >del.out 2>&1 || fail "delete $b2: $(cat del.out)"
[ ! -d "$REPO/vms/vm/$b2" ] || fail "backup $b2 (a leaf of the old branch) was kept"
"$KNIB" delete --repo "$REPO" --vm vm "$b1" >del.out 2>&1 || fail "delete $b1: $(cat del.out)"
grep -q "depends on it" del.out || fail "delete of $b1 did not keep it for $b3: $(cat del.out)"
"$KNIB" restore --repo "$REPO" "$b3" --to r3 >/dev/null || fail "restore of $b3"
same r3/vda.qcow2 oracle-a-3.qcow2
same r3/vdb.qcow2 oracle-b-3.qcow2
"$KNIB" verify --repo "$REPO" --vm vm >verify.out 2>&1 || fail "verify after deletes: $(cat verify.out)"

# The next backup goes on from backup 3.
hmp_write "$S" vda 0x15 9M 1M
backup_ok vm "$S" b4.json
expect_kind b4.json incremental "$b3"
check_qemu_clean "$S" vm vda vdb
echo ok
