#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# guest-boot.sh: the test guest boots from its disk, its writer's completed files survive a kill -9 of QEMU, and its checker finds a damaged file.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/guest-functions.sh"

require qemu-io debugfs
guest_disk

# Boot in writer mode; kill QEMU while it writes.
GUEST_MODE=writer start_guest "$GUEST_DISK"
wait_for_guest_agent
echo "the guest's agent answered $GUEST_BOOT_SECONDS s after QEMU started"
guest_exec /bin/cat /proc/version | grep -q '^Linux version .*cloud-amd64' ||
  fail "guest-exec of cat /proc/version did not show the cloud kernel"
wait_for_text "$GUEST_CONSOLE" "complete f-00000020.dat" 120
sleep 2
guest_kill
cp "$GUEST_CONSOLE" "$TMPDIR_TEST/writer.console"
logged=$(guest_logged_last "$TMPDIR_TEST/writer.console")
echo "the writer logged $logged files complete before QEMU was killed"
[ "$logged" -ge 20 ] || fail "the writer logged only $logged files"

# Boot again from the same disk in check mode: every logged file intact.
GUEST_MODE=check start_guest "$GUEST_DISK"
wait_for_guest_agent
wait_for_text "$GUEST_CONSOLE" "^KNIB-CHECK " 180
guest_check || fail "the checker found damage after a kill -9 of QEMU"
[ "$GUEST_CHECK_BAD" -eq 0 ] && [ "$GUEST_CHECK_MISSING" -eq 0 ] ||
  fail "bad or missing files after a kill -9 of QEMU"
[ "$GUEST_CHECK_HIGHEST" -ge "$logged" ] &&
  [ "$GUEST_CHECK_COMPLETE" -ge "$logged" ] ||
  fail "the writer logged $logged files complete, the checker found $GUEST_CHECK_COMPLETE (highest $GUEST_CHECK_HIGHEST)"
grep -q "KNIB-CHECK complete=$GUEST_CHECK_COMPLETE bad=0 missing=0" \
  "$GUEST_CONSOLE" || fail "the boot-time check disagrees: $(grep KNIB-CHECK "$GUEST_CONSOLE")"

# The writer can pause, and its pause holds: nothing more completes.
guest_writer_start 4096
wait_for_text "$GUEST_CONSOLE" "complete f-$(printf %08d $((logged + 5))).dat" 120
guest_writer_pause
before=$(guest_logged_last)
[ "$before" = "$GUEST_WRITER_LAST" ] ||
  fail "the writer paused after $GUEST_WRITER_LAST, the console says $before"
sleep 2
[ "$(guest_logged_last)" = "$before" ] || fail "the paused writer wrote on"
guest_writer_resume
wait_for_text "$GUEST_CONSOLE" "complete f-$(printf %08d $((before + 1))).dat" 120
guest_writer_pause
guest_quit
# The disk saw a kill -9 of QEMU above: leaked clusters (exit status 3)
# are what an unclean stop leaves and harm nothing; corruption (2) or a
# check that cannot run (1) fails.
rc=0
qemu-img check -q "$GUEST_DISK" || rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] \
  || fail "qemu-img check of the guest's disk: exit status $rc"

# Damage one complete file offline: flip the first byte of its payload
# (offset 256 of the file) in the overlay, found through the ext4
# filesystem's own block map.
victim=f-00000007.dat
qemu-img convert -f qcow2 -O raw "$GUEST_DISK" "$TMPDIR_TEST/disk.raw"
start=$(sfdisk -d "$TMPDIR_TEST/disk.raw" |
  sed -n 's/.*disk\.raw2 : start= *\([0-9]*\),.*/\1/p')
[ -n "$start" ] || fail "no second partition on the guest's disk"
fs="$TMPDIR_TEST/disk.raw?offset=$((start * 512))"
bsize=$(debugfs -R stats "$fs" 2>/dev/null | sed -n 's/^Block size: *//p')
block=$(debugfs -R "bmap /data/$victim 0" "$fs" 2>/dev/null)
[ -n "$bsize" ] && [ "${block:-0}" -gt 0 ] ||
  fail "debugfs found no block of /data/$victim (block size '$bsize')"
off=$((start * 512 + block * bsize + 256))
byte=$(od -An -tu1 -j "$off" -N 1 "$TMPDIR_TEST/disk.raw" | tr -d ' ')
rm -f "$TMPDIR_TEST/disk.raw"
qemu-io -f qcow2 -c "write -P $((byte ^ 255)) $off 1" "$GUEST_DISK" >/dev/null ||
  fail "qemu-io could not write into the guest's disk"

GUEST_NAME=damaged GUEST_MODE=idle start_guest "$GUEST_DISK"
wait_for_guest_agent
rc=0
guest_check >"$TMPDIR_TEST/check.out" || rc=$?
out=$(cat "$TMPDIR_TEST/check.out")
echo "$out"
[ "$rc" -ne 0 ] || fail "the checker passed a damaged file"
[ "$GUEST_CHECK_BAD" -eq 1 ] || fail "the checker found $GUEST_CHECK_BAD bad files, not 1"
echo "$out" | grep -q "^knib-check: bad $victim checksum" ||
  fail "the checker did not name $victim"
guest_kill
