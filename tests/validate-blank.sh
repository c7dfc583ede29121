#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# validate-blank.sh: a backup of a blank disk does not boot: validation fails with "No bootable device" from the text screen and a PNG screenshot, leaves the images as they were and nothing behind.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/validate-functions.sh"
require qemu-system-x86_64 qemu-img file sha256sum pgrep

blank_disk "$TMPDIR_TEST/blank.qcow2"
id=$(backup_image blank "$TMPDIR_TEST/blank.qcow2")
before=$(repo_hash)

rc=0
vknib validate --repo "$REPO" "$id" --accel tcg --memory 256 \
  --scratch "$SCRATCH" --boot-timeout 120 >"$TMPDIR_TEST/out" 2>&1 || rc=$?
cat "$TMPDIR_TEST/out"
[ "$rc" -eq 1 ] || fail "validate of a blank disk exited $rc, not 1"
grep -q "boot .*FAILED.*the screen says: No bootable device" "$TMPDIR_TEST/out" ||
  fail "the boot step does not say 'No bootable device'"
grep -q "screen: Boot failed: not a bootable disk" "$TMPDIR_TEST/out" ||
  fail "the screen's lines are not shown"
grep -q "screenshot  passed" "$TMPDIR_TEST/out" || fail "no screenshot"
dir=$(validation_dir blank "$id")
file "$dir/screen.png" | grep -q "PNG image data" ||
  fail "the screenshot is not a PNG: $(file "$dir/screen.png")"
[ -f "$dir/console.log" ] || fail "no console log beside the screenshot"

# The images are byte for byte what they were; nothing is left.
[ "$(repo_hash)" = "$before" ] || fail "the validation changed the repository"
no_leftovers
qemu-img check -q "$REPO/vms/blank/$id/vda.qcow2" || fail "qemu-img check"

# The manifest holds the result; the backup still verifies; info, list
# and --json show it.
"$KNIB" verify --repo "$REPO" "$id" >/dev/null || fail "verify after validate"
"$KNIB" info --repo "$REPO" "$id" >"$TMPDIR_TEST/info"
grep -q "^validation  *FAILED" "$TMPDIR_TEST/info" || fail "info: $(cat "$TMPDIR_TEST/info")"
grep -q "^recovery time  *unknown" "$TMPDIR_TEST/info" || fail "info: no recovery time"
"$KNIB" list --repo "$REPO" >"$TMPDIR_TEST/list"
grep -q "VALIDATED" "$TMPDIR_TEST/list" && grep -q "$id .* FAILED" "$TMPDIR_TEST/list" ||
  fail "list: $(cat "$TMPDIR_TEST/list")"
"$KNIB" info --repo "$REPO" "$id" --json | grep -q '"status": "failed"' ||
  fail "info --json has no validation"

rc=0
vknib validate --repo "$REPO" "$id" --accel tcg --memory 256 --no-screenshot \
  --scratch "$SCRATCH" --json >"$TMPDIR_TEST/json" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "validate --json exited $rc"
grep -q '"success": false' "$TMPDIR_TEST/json" || fail "json: $(cat "$TMPDIR_TEST/json")"
grep -q '"No bootable device' "$TMPDIR_TEST/json" ||
  grep -q 'No bootable device' "$TMPDIR_TEST/json" || fail "json: no evidence"
[ "$(repo_hash)" = "$before" ] || fail "the second validation changed the repository"
no_leftovers

# Where /dev/kvm works, the same under KVM (a blank disk needs no guest
# kernel, which nested KVM could hang).
if [ "$(qemu_accel)" = kvm ]; then
  rc=0
  vknib validate --repo "$REPO" "$id" --accel kvm --memory 256 \
    --scratch "$SCRATCH" --boot-timeout 120 >"$TMPDIR_TEST/kvm" 2>&1 || rc=$?
  cat "$TMPDIR_TEST/kvm"
  [ "$rc" -eq 1 ] || fail "validate --accel kvm exited $rc"
  grep -q "(kvm)" "$TMPDIR_TEST/kvm" || fail "not run under KVM"
  grep -q "the screen says: No bootable device" "$TMPDIR_TEST/kvm" ||
    fail "KVM: no 'No bootable device'"
  no_leftovers
fi
echo OK
