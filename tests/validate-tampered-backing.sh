#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# validate-tampered-backing.sh: the validation VM gets the backup's chain layer by layer, as it was checked: a backing file name changed in an image after the check (here: to a disk that boots and spins) is never followed.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/validate-functions.sh"
require qemu-system-x86_64 qemu-img pgrep
require_test_hooks

# A blank disk, backed up twice: an incremental on a full.
blank_disk "$TMPDIR_TEST/blank.qcow2"
id1=$(backup_image blank "$TMPDIR_TEST/blank.qcow2")
id2=$(backup_image blank "$TMPDIR_TEST/blank.qcow2")
grep -q "\"parent\": \"$id1\"" "$REPO/vms/blank/$id2/manifest.json" ||
  fail "the second backup is not an incremental of the first"
# The decoy: a disk whose boot sector spins for ever.
spinning_disk "$TMPDIR_TEST/spin.raw"
qemu-img convert -O qcow2 "$TMPDIR_TEST/spin.raw" "$TMPDIR_TEST/decoy.qcow2"

# Stop knib once it checked the chain, then point the incremental's
# backing file name at the decoy.
( KNIB_TEST_STOP_AT=validate-start exec "$KNIB" --config "$CONF" validate \
    --repo "$REPO" "$id2" --accel tcg --memory 256 --scratch "$SCRATCH" \
    --boot-timeout 120 >"$TMPDIR_TEST/v" 2>&1 ) &
pid=$!
track_pid $pid
i=0
until [ "$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' /proc/$pid/stat 2>/dev/null)" = T ]; do
  i=$((i + 1))
  [ "$i" -le 600 ] || fail "knib did not stop at validate-start: $(cat "$TMPDIR_TEST/v")"
  sleep 0.1
done
image=$REPO/vms/blank/$id2/vda.qcow2
qemu-img rebase -u -f qcow2 -F qcow2 -b "$TMPDIR_TEST/decoy.qcow2" "$image"
qemu-img info --output=json "$image" | grep -q "\"backing-filename\": \"$TMPDIR_TEST/decoy.qcow2\"" ||
  fail "the image was not tampered with: $(qemu-img info "$image")"
kill -CONT $pid

rc=0
wait $pid || rc=$?
cat "$TMPDIR_TEST/v"
[ "$rc" -eq 1 ] || fail "validate exited $rc, not 1"
# The blank chain was booted, not the decoy (which would spin until the
# boot timeout).
grep -q "boot .*FAILED.*the screen says: No bootable device" "$TMPDIR_TEST/v" ||
  fail "the validation VM did not boot the chain that was checked"
no_leftovers
echo OK
