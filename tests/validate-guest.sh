#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# validate-guest.sh: a backup of the real test guest taken while it writes boots: the agent answers, the screenshot is a PNG, 'cat /proc/version' prints the kernel's version; a command that exits 3 fails --expect-exit 0 and says 3; a stored definition's direct kernel boot is followed; the repository is unchanged.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/guest-functions.sh"
. "$(dirname "$0")/validate-functions.sh"
require file sha256sum pgrep mcopy od

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
[ ! -e "$(validation_dir guest "$id")/screen.png" ] ||
  fail "the earlier screenshot stayed, though this validation took none"

# Direct kernel boot, as a definition stored with the backup asks: the
# guest's own kernel and initramfs (from its boot partition), another
# command line.
qemu-img convert -O raw "$GUEST_BASE" "$TMPDIR_TEST/guest.raw"
boot=$(( $(od -An -tu4 -j 454 -N 4 "$TMPDIR_TEST/guest.raw" | tr -d ' ') * 512 ))
mcopy -i "$TMPDIR_TEST/guest.raw@@$boot" ::/vmlinuz ::/initrd.img "$TMPDIR_TEST/" ||
  fail "cannot copy the guest's kernel"
rm "$TMPDIR_TEST/guest.raw"
cat >"$REPO/vms/guest/$id/domain.xml" <<XML
<domain type='kvm'>
  <name>guest</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$TMPDIR_TEST/vmlinuz</kernel>
    <initrd>$TMPDIR_TEST/initrd.img</initrd>
    <cmdline>console=ttyS0,115200 loglevel=4 no_timer_check knib.direct=1</cmdline>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/guest.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
XML
before=$(repo_hash)
rc=0
vknib validate --repo "$REPO" "$id" --accel tcg --scratch "$SCRATCH" \
  --no-screenshot --expect-output 'knib[.]direct=1' \
  -- cat /proc/cmdline >"$TMPDIR_TEST/direct" 2>&1 || rc=$?
cat "$TMPDIR_TEST/direct"
[ "$rc" -eq 0 ] || fail "direct kernel boot failed ($rc)"
grep -q "^console=ttyS0,115200 loglevel=4 no_timer_check knib.direct=1" "$TMPDIR_TEST/direct" ||
  fail "the guest did not get the definition's command line"

[ "$(repo_hash)" = "$before" ] || fail "a validation changed the repository"
no_leftovers
echo OK
