#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# validate-uefi.sh: a backup whose stored definition boots with UEFI on q35 and a SATA disk gets OVMF with a fresh NVRAM copy; a blank disk ends in OVMF's shell, which the console shows; --keep keeps the scratch directory and the next run leaves it alone.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/validate-functions.sh"
require qemu-system-x86_64 qemu-img sha256sum pgrep
for f in /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd; do
  [ -r "$f" ] || { echo "SKIP: $f is missing (the ovmf package)" >&2; exit 77; }
done

blank_disk "$TMPDIR_TEST/blank.qcow2"
id=$(backup_image uefi "$TMPDIR_TEST/blank.qcow2")
cat >"$REPO/vms/uefi/$id/domain.xml" <<'XML'
<domain type='kvm'>
  <name>uefi</name>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/uefi.qcow2'/>
      <target dev='vda' bus='sata'/>
    </disk>
  </devices>
</domain>
XML
before=$(repo_hash)
vars=$(sha256sum /usr/share/OVMF/OVMF_VARS_4M.fd)

rc=0
vknib validate --repo "$REPO" "$id" --accel tcg --scratch "$SCRATCH" \
  --boot-timeout 300 --keep >"$TMPDIR_TEST/out" 2>&1 || rc=$?
cat "$TMPDIR_TEST/out"
[ "$rc" -eq 1 ] || fail "validate exited $rc"
grep -q "boot .*FAILED .*the console says: UEFI Interactive Shell" "$TMPDIR_TEST/out" ||
  fail "the boot step does not say that OVMF ended in its shell"
kept=$(sed -n 's/^kept: *//p' "$TMPDIR_TEST/out")
[ -d "$kept" ] || fail "--keep kept no directory"
[ -s "$kept/nvram.fd" ] || fail "no NVRAM copy in $kept"
cmp -s "$kept/nvram.fd" /usr/share/OVMF/OVMF_VARS_4M.fd &&
  fail "the VM did not write its own NVRAM copy (or it is not used)"
[ "$(sha256sum /usr/share/OVMF/OVMF_VARS_4M.fd)" = "$vars" ] ||
  fail "the NVRAM template changed"
qemu_gone

# A later run (here one refused at once) leaves a kept directory alone.
vknib validate --repo "$REPO" "$id" --scratch "$SCRATCH" --memory 16000000 \
  >/dev/null 2>&1 && fail "a validation with 16 TB of memory ran"
[ -d "$kept" ] || fail "a later run removed the kept directory"
rm -rf "$kept"
[ "$(repo_hash)" = "$before" ] || fail "the repository changed"
no_leftovers
echo OK
