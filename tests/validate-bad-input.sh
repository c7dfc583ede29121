#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# validate-bad-input.sh: usage errors, and backups that cannot be validated (unknown, deleted, an image missing, an unknown or missing firmware, a disk bus, too little memory) fail clearly before any VM starts.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/validate-functions.sh"
require qemu-system-x86_64 qemu-img pgrep

blank_disk "$TMPDIR_TEST/blank.qcow2"
id=$(backup_image blank "$TMPDIR_TEST/blank.qcow2")

# expect_error STATUS TEXT ARGS...: knib validate ARGS exits STATUS and
# says TEXT on stderr.
expect_error () {
  want=$1
  text=$2
  shift 2
  rc=0
  vknib validate "$@" >"$TMPDIR_TEST/err.out" 2>"$TMPDIR_TEST/err" || rc=$?
  [ "$rc" -eq "$want" ] || fail "validate $*: exit $rc, not $want: $(cat "$TMPDIR_TEST/err")"
  grep -q -- "$text" "$TMPDIR_TEST/err" ||
    fail "validate $*: '$text' not in: $(cat "$TMPDIR_TEST/err")"
}

r="--repo $REPO --scratch $SCRATCH --accel tcg"
# shellcheck disable=SC2086
{
  expect_error 2 "no BACKUP given" $r
  expect_error 2 "--repo is required" "$id"
  expect_error 2 "'cat' is not a backup id" $r cat /proc/version
  expect_error 2 "accelerator 'xen' is not auto, kvm or tcg" $r "$id" --accel xen
  expect_error 2 "not both" $r "$id" --expect-exit 0 --expect-output x -- true
  expect_error 2 "give it after --" $r "$id" --expect-exit 0
  expect_error 2 "--memory" $r "$id" --memory lots
  expect_error 2 "--boot-timeout" $r "$id" --boot-timeout 0
  expect_error 2 "--expect-exit" $r "$id" --expect-exit 256 -- true
  expect_error 1 "not a regular expression" $r "$id" --expect-output "(" -- true
  expect_error 1 "20990101T000000Z" $r 20990101T000000Z
  expect_error 1 "not enough free memory for the VM: it needs 16000000 MiB" \
    $r "$id" --memory 16000000
}
printf 'validation-jobs-per-host = many\n' >"$TMPDIR_TEST/bad.conf"
rc=0
"$KNIB" --config "$TMPDIR_TEST/bad.conf" validate $r "$id" 2>"$TMPDIR_TEST/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "validation-jobs-per-host" "$TMPDIR_TEST/err" ||
  fail "a bad validation-jobs-per-host: $(cat "$TMPDIR_TEST/err")"

# A deleted backup that a later one still needs (marked removed).
id2=$(backup_image blank "$TMPDIR_TEST/blank.qcow2")
[ "$id2" != "$id" ] || fail "no second backup"
grep -q '"kind": "incremental"' "$REPO/vms/blank/$id2/manifest.json" ||
  fail "the second backup is not incremental"
"$KNIB" delete --repo "$REPO" "$id" >/dev/null || fail "delete $id"
grep -q '"state": "removed"' "$REPO/vms/blank/$id/manifest.json" ||
  fail "the deleted backup was not kept as removed"
# shellcheck disable=SC2086
expect_error 1 "backup '$id' of vm 'blank' was deleted" $r "$id"

# An image missing from the chain: the structural check refuses.
cp -a "$REPO" "$TMPDIR_TEST/repo2"
rm "$TMPDIR_TEST/repo2/vms/blank/$id/vda.qcow2"
expect_error 1 "backup '$id2' of vm 'blank' fails its structural check" \
  --repo "$TMPDIR_TEST/repo2" --scratch "$SCRATCH" "$id2"

# Definitions stored with the backup that this host cannot give.
def () {
  cat >"$REPO/vms/blank/$id2/domain.xml" <<XML
<domain type='kvm'>
  <name>blank</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os $1><type arch='x86_64' machine='pc'>hvm</type>$2</os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/blank.qcow2'/>
      <target dev='vda' bus='$3'/>
    </disk>
  </devices>
</domain>
XML
}
# shellcheck disable=SC2086
{
  def "firmware='coreboot'" "" virtio
  expect_error 1 "firmware 'coreboot', which knib does not know" $r "$id2"
  def "" "<loader readonly='yes' type='pflash'>/nonexistent/OVMF_CODE.fd</loader>" virtio
  expect_error 1 "its firmware '/nonexistent/OVMF_CODE.fd' is not installed" $r "$id2"
  def "" "<loader>/nonexistent/bios.bin</loader>" virtio
  expect_error 1 "the VM's firmware '/nonexistent/bios.bin' is not installed" $r "$id2"
  def "" "" usb
  expect_error 1 "disk 'vda' is on bus 'usb'" $r "$id2"
  # A machine type this QEMU does not have, of no family it knows (a
  # newer pc-q35-* or pc-i440fx-* falls back: validate-hardware.sh):
  # QEMU's own message.
  def "" "" virtio
  sed -i "s/machine='pc'/machine='frob-99.0'/" "$REPO/vms/blank/$id2/domain.xml"
  expect_error 1 "machine 'frob-99.0' (tcg, 256 MiB, 1 vCPUs): qemu-system-x86_64 exited with status 1: .*unsupported machine type" \
    $r "$id2"
}
rm "$REPO/vms/blank/$id2/domain.xml"
no_leftovers
echo OK
