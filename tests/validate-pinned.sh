#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# validate-pinned.sh: a running validation pins the backup it boots instead of locking the VM: backups of the VM (incremental and full) go on meanwhile, delete, merge and compression of the backup or its ancestors refuse and name the validation, and the pin ends with the validation (also when knib is killed).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/validate-functions.sh"
require qemu-system-x86_64 qemu-img pgrep

spinning_disk "$TMPDIR_TEST/spin.raw"
# qcow2: its bitmaps make the offline backups incremental.
qemu-img convert -O qcow2 "$TMPDIR_TEST/spin.raw" "$TMPDIR_TEST/spin.qcow2"
id1=$(backup_image spin "$TMPDIR_TEST/spin.qcow2")
id2=$(backup_image spin "$TMPDIR_TEST/spin.qcow2")
grep -q '"kind": "incremental"' "$REPO/vms/spin/$id2/manifest.json" ||
  fail "the second backup is not incremental"

# retry CMD...: CMD, again while the validation holds the VM's lock
# (briefly: while it checks the backup and starts QEMU on it); its
# output goes to $TMPDIR_TEST/out.
retry () {
  i=0
  while :; do
    rc=0
    "$@" >"$TMPDIR_TEST/out" 2>&1 || rc=$?
    grep -q "is being read by another knib" "$TMPDIR_TEST/out" || return $rc
    i=$((i + 1))
    [ "$i" -le 300 ] || fail "the VM stays locked: $(cat "$TMPDIR_TEST/out")"
    sleep 0.2
  done
}

# expect_refused WHAT CMD...: CMD fails naming the validation.
expect_refused () {
  what=$1
  shift
  rc=0
  retry "$@" || rc=$?
  [ "$rc" -ne 0 ] || fail "$what ran while a validation read the backup"
  grep -q "is pinned: a validation (knib pid $pid) reads backup $id2" \
    "$TMPDIR_TEST/out" || fail "$what: $(cat "$TMPDIR_TEST/out")"
}

# The guest spins for ever: the validation runs until it is killed.
"$KNIB" --config "$CONF" validate --repo "$REPO" "$id2" --accel tcg --memory 256 \
  --scratch "$SCRATCH" --boot-timeout 600 >"$TMPDIR_TEST/v" 2>&1 &
pid=$!
track_pid $pid
qemu_started $pid "$TMPDIR_TEST/v"

expect_refused "delete of the backup" "$KNIB" delete --repo "$REPO" "$id2"
expect_refused "delete of its parent" "$KNIB" delete --repo "$REPO" "$id1"
expect_refused "merge of the backup" "$KNIB" merge --repo "$REPO" "$id2"
expect_refused "compression of the backup" "$KNIB" compress --repo "$REPO" "$id2"

# Backups of the VM go on: an incremental one (on the backup being
# validated), then a full one.
id3=$(backup_image spin "$TMPDIR_TEST/spin.qcow2")
grep -q "\"parent\": \"$id2\"" "$REPO/vms/spin/$id3/manifest.json" ||
  fail "the backup taken meanwhile is not an incremental of $id2"
"$KNIB" backup --full --image "vda=$TMPDIR_TEST/spin.qcow2" --vm spin \
  --repo "$REPO" --scratch "$SCRATCH" >"$TMPDIR_TEST/full" 2>&1 ||
  fail "a full backup while a validation runs: $(cat "$TMPDIR_TEST/full")"
id4=$(ls "$REPO/vms/spin" | grep '^2' | sort | tail -n 1)
[ "$id4" != "$id3" ] || fail "no full backup"
grep -q '"kind": "full"' "$REPO/vms/spin/$id4/manifest.json" ||
  fail "the last backup is not full"
for id in $id3 $id4; do
  qemu-img check -q "$REPO/vms/spin/$id/vda.qcow2" || fail "qemu-img check $id"
  qemu-img compare -q "$REPO/vms/spin/$id/vda.qcow2" "$TMPDIR_TEST/spin.raw" ||
    fail "backup $id differs from the disk"
done
# What the validation does not read is not pinned.
"$KNIB" delete --repo "$REPO" "$id4" >/dev/null || fail "delete of $id4"
kill -0 $pid 2>/dev/null || fail "the validation ended early: $(cat "$TMPDIR_TEST/v")"

# knib killed: its pin counts no more, though its overlay is left until
# the next validation removes it (and the pin).
killed=$pid
kill -9 $pid
wait $pid 2>/dev/null || :
qemu_gone 30
"$KNIB" merge --repo "$REPO" "$id2" >"$TMPDIR_TEST/merge" 2>&1 ||
  fail "merge after the validation was killed: $(cat "$TMPDIR_TEST/merge")"
qemu-img compare -q "$REPO/vms/spin/$id2/vda.qcow2" "$TMPDIR_TEST/spin.raw" ||
  fail "the merged backup differs from the disk"

# A validation that ends by itself records its result (a backup ran
# meanwhile) and leaves no pin behind.
"$KNIB" --config "$CONF" validate --repo "$REPO" "$id3" --accel tcg --memory 256 \
  --scratch "$SCRATCH" --boot-timeout 10 >"$TMPDIR_TEST/v2" 2>&1 &
pid=$!
track_pid $pid
qemu_started $pid "$TMPDIR_TEST/v2"
retry "$KNIB" backup --image "vda=$TMPDIR_TEST/spin.qcow2" --vm spin \
  --repo "$REPO" --scratch "$SCRATCH" ||
  fail "a backup while a validation runs: $(cat "$TMPDIR_TEST/out")"
rc=0
wait $pid || rc=$?
cat "$TMPDIR_TEST/v2"
[ "$rc" -eq 1 ] || fail "the validation exited $rc"
grep -q "did not answer within 10 s" "$TMPDIR_TEST/v2" || fail "no boot timeout"
grep -q "backup $id2 is no longer read by a validation (knib pid $killed)" \
  "$TMPDIR_TEST/v2" || fail "the killed validation's pin was not dropped"
grep -q '"validation"' "$REPO/vms/spin/$id3/manifest.json" ||
  fail "the result is not in the manifest"
[ ! -f "$REPO/vms/spin/pins.json" ] ||
  fail "pins left behind: $(cat "$REPO/vms/spin/pins.json")"
"$KNIB" delete --repo "$REPO" "$id3" >/dev/null || fail "delete of $id3 after the validation"
no_leftovers
echo OK
