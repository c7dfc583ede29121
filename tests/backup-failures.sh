#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-failures.sh: knib backup of a running VM (two qcow2 disks) that is
# killed at each stop point, sees guest writes while it copies, loses
# QEMU's NBD server, runs out of file size, and loses QEMU itself.  After
# each, the next backup succeeds and equals its oracle (the disks copied
# with the VM paused), and nothing is left behind in QEMU, the repository
# or the scratch directory.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
qemu-img create -q -f qcow2 b.qcow2 64M
start_qemu vm a.qcow2 b.qcow2
S=$TMPDIR_TEST/vm.qmp   # knib's
S2=$TMPDIR_TEST/vm.qmp2 # the test's, usable while knib holds the first

# dirty PATTERN: guest writes all over both disks, several extents each.
dirty () {
  hmp_write "$S2" vda "$1" 0 1M
  hmp_write "$S2" vda "$1" 9M 3M
  hmp_write "$S2" vda "$1" 40M 192k
  hmp_write "$S2" vdb "$1" 2M 1M
  hmp_write "$S2" vdb "$1" 30M 4M
  hmp_write "$S2" vdb "$1" 63M 64k
}

# dirty_more PATTERN: other guest writes, on clusters the backup copied
# already and on clusters it did not copy yet, on both disks.
dirty_more () {
  hmp_write "$S2" vda "$1" 0 64k
  hmp_write "$S2" vda "$1" 11M 128k
  hmp_write "$S2" vda "$1" 20M 64k
  hmp_write "$S2" vdb "$1" 2M 64k
  hmp_write "$S2" vdb "$1" 50M 64k
}

# take_oracles N: the disks as they are now, in oa-N.qcow2 and ob-N.qcow2.
take_oracles () {
  oracle "$S2" a.qcow2 "oa-$1.qcow2"
  oracle "$S2" b.qcow2 "ob-$1.qcow2"
}

# verify N WHAT: the latest backup equals oracles N, nothing is left over.
verify () {
  check_image vm "$(last_id vm)" vda "oa-$1.qcow2"
  check_image vm "$(last_id vm)" vdb "ob-$1.qcow2"
  check_qemu_clean "$S2" vm vda vdb
  check_repo_clean vm vda vdb
  echo "ok: $2"
}

# expect_note OUT TEXT: the backup of summary OUT reported repairing TEXT.
expect_note () {
  sed -n 's/.*"notes":\[\(.*\)\].*/\1/p' "$1" | grep -q -- "$2" \
    || fail "expected a note about '$2' in: $(cat "$1")"
}

# The first backup: full.
dirty 0x01
take_oracles 0
backup_ok vm "$S" full.json --chain-size 0
expect_kind full.json full
verify 0 "first backup, full"

# ---- knib killed (kill -9) at each stop point ----

# Before the transaction: fleecing nodes and an unfinished backup exist,
# no bitmap was touched.
dirty 0x02
start_stopping transaction vm "$S" kill-tx.json --chain-size 0
ls -d "$REPO"/vms/vm/*.partial >/dev/null 2>&1 \
  || fail "stopped before the transaction, yet no .partial directory"
"$KNIB" qmp --json "$S2" query-named-block-nodes | grep -q '"node-name":"knib-fleece-vda"' \
  || fail "stopped before the transaction, yet no fleecing node"
dirty_more 0x03
kill_stopped
take_oracles 1
prev=$(last_id vm)
backup_ok vm "$S" after-tx.json --chain-size 0
expect_kind after-tx.json incremental "$prev"
expect_note after-tx.json "removed unfinished backup"
expect_note after-tx.json "removed fleecing node knib-fleece-vda"
expect_note after-tx.json "removed scratch files of a killed run"
verify 1 "kill -9 at transaction"

# While copying: the transaction disabled the old bitmap and added a new
# one; what the guest writes now is tracked by the new one only, and must
# be merged back into the old one.
dirty 0x04
start_stopping copy vm "$S" kill-copy.json --chain-size 0
dirty_more 0x05
kill_stopped
take_oracles 2
prev=$(last_id vm)
backup_ok vm "$S" after-copy.json --chain-size 0
expect_kind after-copy.json incremental "$prev"
expect_note after-copy.json "removed unfinished backup"
expect_note after-copy.json "export knib-export-vd"
if qemu_has_cbw "$S2"; then
  expect_note after-copy.json "moved device /machine/peripheral/vda/virtio-backend back from knib-cbw-vda onto disk0"
  expect_note after-copy.json "removed copy-before-write filter knib-cbw-vda"
else
  expect_note after-copy.json "cancelled job knib-job-vda"
fi
expect_note after-copy.json "merged bitmap knib-"
verify 2 "kill -9 at copy"

# Before the commit: the images are written, the manifest is not.
dirty 0x06
start_stopping commit vm "$S" kill-commit.json --chain-size 0
dirty_more 0x07
ls "$REPO"/vms/vm/*.partial/vdb.qcow2 >/dev/null 2>&1 \
  || fail "stopped before the commit, yet no image in a .partial directory"
kill_stopped
take_oracles 3
prev=$(last_id vm)
backup_ok vm "$S" after-commit.json --chain-size 0
expect_kind after-commit.json incremental "$prev"
expect_note after-commit.json "removed unfinished backup"
expect_note after-commit.json "merged bitmap knib-"
verify 3 "kill -9 at commit"

# ---- The point in time ----
# Writes after the transaction (knib stopped while copying) are not in
# the backup; the next incremental has them.
dirty 0x08
take_oracles 4
prev=$(last_id vm)
start_stopping copy vm "$S" pit.json --chain-size 0
dirty_more 0x09
hmp_write "$S2" vdb 0x09 30M 64k
resume_stopped
[ "$rc" -eq 0 ] || fail "backup with writes during the copy exited $rc: $(cat pit.json.err)"
id=$(json_top pit.json id)
echo "$id" >>"$TMPDIR_TEST/ids-vm"
expect_kind pit.json incremental "$prev"
verify 4 "writes during the copy are not in the backup"
take_oracles 5
prev=$(last_id vm)
backup_ok vm "$S" pit-next.json --chain-size 0
expect_kind pit-next.json incremental "$prev"
verify 5 "writes during the copy are in the next backup"

# ---- QEMU's NBD server stops while knib reads ----
# nbd-server-stop waits for the clients of the exports to go (and knib is
# stopped), so it runs in the background until knib goes on.
dirty 0x0a
start_stopping copy vm "$S" nbd.json --chain-size 0
dirty_more 0x0b
KNIB_DEBUG=qmp "$KNIB" qmp "$S2" nbd-server-stop >nbd-stop.out 2>nbd-stop.err &
stopper=$!
track_pid $stopper
wait_for_text nbd-stop.err '"execute":"nbd-server-stop"'
sleep 0.5
resume_stopped
wait $stopper || fail "nbd-server-stop failed: $(cat nbd-stop.err)"
expect_failure nbd.json.err "NBD server stopped mid-backup" "backup of vm 'vm'" "disk vd"
check_qemu_clean "$S2" vm vda vdb
check_repo_clean vm vda vdb
echo "ok: NBD server stopped: clear error, rolled back: $(cat nbd.json.err)"
take_oracles 6
prev=$(last_id vm)
backup_ok vm "$S" after-nbd.json --chain-size 0
expect_kind after-nbd.json incremental "$prev"
verify 6 "after the NBD server stopped, an incremental"

# ---- The repository runs out of space (file size limit) ----
# 4 MiB (sh) or 8 MiB (bash) for files knib writes: the fleecing images
# fit, the backup images do not.  Writes during the copy must survive the
# failure too.
dirty 0x0c
hmp_write "$S2" vda 0x0c 16M 8M
hmp_write "$S2" vdb 0x0c 16M 8M
FSIZE_LIMIT=8192
start_stopping copy vm "$S" efbig.json --chain-size 0
FSIZE_LIMIT=
dirty_more 0x0d
resume_stopped
expect_failure efbig.json.err "file size limit" "backup of vm 'vm'" "File too large"
check_qemu_clean "$S2" vm vda vdb
check_repo_clean vm vda vdb
echo "ok: file size limit: clear error, rolled back: $(cat efbig.json.err)"
take_oracles 7
prev=$(last_id vm)
backup_ok vm "$S" after-efbig.json --chain-size 0
expect_kind after-efbig.json incremental "$prev"
verify 7 "after running out of space, an incremental"

# ---- QEMU restarted cleanly: its persistent bitmaps carry on ----
"$KNIB" qmp "$S2" quit >/dev/null
wait "$QEMU_PID_vm" || :
rm -f "$S" "$S2"
start_qemu vm a.qcow2 b.qcow2
dirty 0x0e
take_oracles 8
prev=$(last_id vm)
backup_ok vm "$S" after-quit.json --chain-size 0
expect_kind after-quit.json incremental "$prev"
verify 8 "after a clean QEMU restart, an incremental"

# ---- QEMU killed while knib copies ----
dirty 0x0f
start_stopping copy vm "$S" qemu-killed.json --chain-size 0
kill -9 "$QEMU_PID_vm"
wait "$QEMU_PID_vm" 2>/dev/null || :
resume_stopped
expect_failure qemu-killed.json.err "QEMU killed mid-backup" "backup of vm 'vm'"
check_repo_clean vm vda vdb
echo "ok: QEMU killed mid-backup: clear error: $(cat qemu-killed.json.err)"
rm -f "$S" "$S2"
start_qemu vm a.qcow2 b.qcow2
take_oracles 9
last=$(last_id vm)
backup_ok vm "$S" after-qemu-killed.json --chain-size 0
expect_kind after-qemu-killed.json full
reason=$(json_top after-qemu-killed.json reason)
case $reason in
  *"knib-$(rid)-$last"*) ;;
  *) fail "the full backup after QEMU was killed does not say why (the bitmap knib-$(rid)-$last): '$reason'" ;;
esac
for disk in vda vdb; do
  case $(json_disk after-qemu-killed.json $disk reason) in
    *"knib-$(rid)-$last of $disk"*) ;;
    *) fail "disk $disk: the full backup does not say why: $(cat after-qemu-killed.json)" ;;
  esac
done
verify 9 "after QEMU was killed mid-backup, a full backup saying why"

# ---- QEMU crashes with the bitmaps stored in the images ----
# A clean restart stores the bitmap; a crash after it leaves it
# inconsistent: the next backup is full and says so.
"$KNIB" qmp "$S2" quit >/dev/null
wait "$QEMU_PID_vm" || :
rm -f "$S" "$S2"
start_qemu vm a.qcow2 b.qcow2
dirty 0x10
kill -9 "$QEMU_PID_vm"
wait "$QEMU_PID_vm" 2>/dev/null || :
rm -f "$S" "$S2"
start_qemu vm a.qcow2 b.qcow2
bitmaps "$S2" | grep -q "knib-$(rid)-$(last_id vm) .*inconsistent" \
  || fail "after a crash, bitmap knib-$(rid)-$(last_id vm) should be inconsistent: $(bitmaps "$S2" | tr '\n' ';')"
take_oracles 10
last=$(last_id vm)
backup_ok vm "$S" after-crash.json --chain-size 0
expect_kind after-crash.json full
reason=$(json_top after-crash.json reason)
case $reason in
  *"knib-$(rid)-$last"*inconsistent* | *"knib-$(rid)-$last"*"shut down"*) ;;
  *) fail "the full backup after a crash should say bitmap knib-$(rid)-$last is inconsistent: '$reason'" ;;
esac
verify 10 "after a QEMU crash, a full backup saying the bitmap is inconsistent"
