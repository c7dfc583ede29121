#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# validate-guest.sh: a backup of the real test guest taken while it writes boots: the agent answers, the screenshot is a PNG, 'cat /proc/version' prints the kernel's version; a command that exits 3 fails --expect-exit 0 and says 3; the repository is unchanged.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/guest-functions.sh"
. "$(dirname "$0")/validate-functions.sh"
require file sha256sum pgrep

guest_disk
GUEST_MODE=writer start_guest "$GUEST_DISK"
wait_for_guest_agent
wait_for_text "$GUEST_CONSOLE" "knib-writer: complete" 120
"$KNIB" backup --qmp "$GUEST_QMP" --vm guest --repo "$REPO" \
  --scratch "$SCRATCH" >"$TMPDIR_TEST/backup.out" 2>&1 ||
  fail "backup: $(cat "$TMPDIR_TEST/backup.out")"
id=$(ls "$REPO/vms/guest" | grep '^2' | tail -n 1)
guest_kill # the validations have the CPU to themselves
before=$(repo_hash)

rc=0
vknib validate --repo "$REPO" "$id" --accel tcg --memory 256 \
  --scratch "$SCRATCH" --expect-output '^Linux version ' \
  -- cat /proc/version >"$TMPDIR_TEST/out" 2>&1 || rc=$?
cat "$TMPDIR_TEST/out"
[ "$rc" -eq 0 ] || fail "the validation of the guest's backup failed ($rc)"
grep -q "boot .*passed .*the guest agent answered" "$TMPDIR_TEST/out" || fail "boot"
grep -q "screenshot  passed" "$TMPDIR_TEST/out" || fail "screenshot"
grep -q "command .*passed .*'cat /proc/version' exited with 0" "$TMPDIR_TEST/out" ||
  fail "command"
grep -q "^Linux version " "$TMPDIR_TEST/out" || fail "the command's output is not shown"
file "$(validation_dir guest "$id")/screen.png" | grep -q "PNG image data" ||
  fail "the screenshot is not a PNG"
"$KNIB" info --repo "$REPO" "$id" >"$TMPDIR_TEST/info"
cat "$TMPDIR_TEST/info"
grep -q "^validation  *passed" "$TMPDIR_TEST/info" || fail "info: not passed"
grep -q "^recovery time  *[0-9][0-9.]* s (power-on to the guest agent" \
  "$TMPDIR_TEST/info" || fail "info: no recovery time"
"$KNIB" list --repo "$REPO" guest | grep -q "$id .* passed [0-9]*s" ||
  fail "list: $("$KNIB" list --repo "$REPO" guest)"

# A command that exits 3, expected to exit 0; argv as given, no shell
# around it (the comma stays in its argument).
rc=0
vknib validate --repo "$REPO" "$id" --accel tcg --memory 256 \
  --scratch "$SCRATCH" --no-screenshot --expect-exit 0 --json \
  -- sh -c 'echo a,b; exit 3' >"$TMPDIR_TEST/json" 2>&1 || rc=$?
cat "$TMPDIR_TEST/json"
[ "$rc" -eq 1 ] || fail "a command that exits 3 passed --expect-exit 0 ($rc)"
grep -q "exited with 3, not 0" "$TMPDIR_TEST/json" || fail "it does not say 3"
grep -q '"exit-code": 3' "$TMPDIR_TEST/json" || fail "no exit-code 3 in the JSON"
grep -q '"stdout": "a,b' "$TMPDIR_TEST/json" || fail "the argument was split"
"$KNIB" info --repo "$REPO" "$id" | grep -q "^validation  *FAILED" ||
  fail "the manifest does not hold the last result"

[ "$(repo_hash)" = "$before" ] || fail "a validation changed the repository"
no_leftovers
echo OK
