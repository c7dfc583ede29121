#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# validate-kill.sh: kill -9 of knib mid-boot: its QEMU dies with it, the next validation removes the scratch it left, and the repository is unchanged.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/validate-functions.sh"
require qemu-system-x86_64 qemu-img sha256sum pgrep

spinning_disk "$TMPDIR_TEST/spin.raw"
id=$(backup_image spin "$TMPDIR_TEST/spin.raw")
before=$(repo_hash)

# knib itself, not a shell function around it: its pid is the one killed.
"$KNIB" --config "$CONF" validate --repo "$REPO" "$id" --accel tcg \
  --memory 256 --scratch "$SCRATCH" --boot-timeout 600 >"$TMPDIR_TEST/out" 2>&1 &
knib_pid=$!
track_pid $knib_pid
# Mid-boot: its QEMU runs.
qemu_started $knib_pid "$TMPDIR_TEST/out"
sleep 2
kill -9 $knib_pid
wait $knib_pid 2>/dev/null || :

# QEMU dies with knib; the scratch directory stays until the next run.
qemu_gone 30
ls -d "$SCRATCH"/vm-* >/dev/null 2>&1 || fail "the killed run left no scratch to find"
[ "$(repo_hash)" = "$before" ] || fail "the killed validation changed the repository"
[ ! -d "$(validation_dir spin "$id")" ] || fail "a killed validation wrote its files"

# The next run removes it (and fails on the blank screen as it should).
rc=0
vknib validate --repo "$REPO" "$id" --accel tcg --memory 256 \
  --scratch "$SCRATCH" --boot-timeout 5 >"$TMPDIR_TEST/out2" 2>&1 || rc=$?
cat "$TMPDIR_TEST/out2"
[ "$rc" -eq 1 ] || fail "validate exited $rc"
grep -q "removed the VM scratch files of a killed run" "$TMPDIR_TEST/out2" ||
  fail "the next run did not say it removed the leftovers"
grep -q "did not answer within 5 s" "$TMPDIR_TEST/out2" || fail "no boot timeout"
grep -q "screen: Booting from Hard Disk" "$TMPDIR_TEST/out2" ||
  fail "the screen's last lines are not shown"
no_leftovers
[ "$(repo_hash)" = "$before" ] || fail "the repository changed"
echo OK
