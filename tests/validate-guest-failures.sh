#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# validate-guest-failures.sh: the test guest with its root filesystem damaged panics (GUEST_PANICKED or the console says so), and without its guest agent times out showing the console; each with a screenshot.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/guest-functions.sh"
. "$(dirname "$0")/validate-functions.sh"
require qemu-io debugfs od file pgrep

guest_disk
# The ext4 root is partition 2: its first sector from the MBR.
qemu-img dd -f qcow2 -O raw if="$GUEST_DISK" of="$TMPDIR_TEST/mbr" bs=512 count=1 ||
  fail "cannot read the guest's MBR"
root=$(( $(od -An -tu4 -j 470 -N 4 "$TMPDIR_TEST/mbr" | tr -d ' ') * 512 ))
[ "$root" -gt 0 ] || fail "no second partition"

# Damaged: its superblock zeroed, the initramfs finds no root.
qemu-io -f qcow2 -c "write -z $((root + 1024)) 1024" "$GUEST_DISK" >/dev/null ||
  fail "qemu-io"
damaged=$(backup_image damaged "$GUEST_DISK")
rc=0
vknib validate --repo "$REPO" "$damaged" --accel tcg --memory 256 \
  --scratch "$SCRATCH" -- true >"$TMPDIR_TEST/damaged" 2>&1 || rc=$?
cat "$TMPDIR_TEST/damaged"
[ "$rc" -eq 1 ] || fail "a guest without its root filesystem passed ($rc)"
grep -E -q "boot .*FAILED .*(GUEST_PANICKED|Kernel panic)" "$TMPDIR_TEST/damaged" ||
  fail "the boot step does not say the kernel panicked"
grep -q "console: .*no filesystem labelled knib-root" "$TMPDIR_TEST/damaged" ||
  fail "the console's lines do not show why"
grep -q "command .*skipped" "$TMPDIR_TEST/damaged" || fail "command not skipped"
file "$(validation_dir damaged "$damaged")/screen.png" | grep -q "PNG image data" ||
  fail "no screenshot of the panic"

# Without its guest agent: the boot times out; the console's end shows.
# The guest reaches its init in about 20 s under TCG (the panic above),
# so that within 30 s the console's end shows its agent failing to start
# (the boot waits idle for the rest of the timeout: no longer than that).
qemu-img convert -O raw "$GUEST_BASE" "$TMPDIR_TEST/noagent.raw"
debugfs -w -R "rm /usr/sbin/qemu-ga" "$TMPDIR_TEST/noagent.raw?offset=$root" \
  2>/dev/null || fail "debugfs"
noagent=$(backup_image noagent "$TMPDIR_TEST/noagent.raw")
rc=0
vknib validate --repo "$REPO" "$noagent" --accel tcg --memory 256 \
  --scratch "$SCRATCH" --boot-timeout 30 >"$TMPDIR_TEST/noagent" 2>&1 || rc=$?
cat "$TMPDIR_TEST/noagent"
[ "$rc" -eq 1 ] || fail "a guest without its agent passed ($rc)"
grep -q "boot .*FAILED .*did not answer within 30 s" "$TMPDIR_TEST/noagent" ||
  fail "no boot timeout"
grep -q "the serial console's last lines:" "$TMPDIR_TEST/noagent" ||
  fail "the console's lines are not shown"
grep -q "screenshot  passed" "$TMPDIR_TEST/noagent" || fail "no screenshot"
no_leftovers
echo OK
