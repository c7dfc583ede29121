#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# validate-hardware.sh: the validation VM's CPU, disk bus and machine follow the stored definition: an ide disk on an i440FX machine is on its own IDE controller, on q35 a SATA disk with a note; a machine type this QEMU lacks is its family's current one, with a note; a custom CPU model keeps its features; host-passthrough under TCG falls back to QEMU's default with a note.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/validate-functions.sh"
require qemu-system-x86_64 qemu-img pgrep

# A disk whose boot sector spins, backed up as disk hda.
spinning_disk "$TMPDIR_TEST/spin.raw"
"$KNIB" backup --image "hda=$TMPDIR_TEST/spin.raw" --vm spin --repo "$REPO" \
  --scratch "$SCRATCH" >"$TMPDIR_TEST/backup" 2>&1 ||
  fail "backup: $(cat "$TMPDIR_TEST/backup")"
id=$(ls "$REPO/vms/spin" | grep '^2' | sort | tail -n 1)

# definition MACHINE CPU: the domain XML stored with the backup.
definition () {
  cat >"$REPO/vms/spin/$id/domain.xml" <<XML
<domain type='kvm'>
  <name>spin</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='$1'>hvm</type></os>
  $2
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/libvirt/images/spin.raw'/>
      <target dev='hda' bus='ide'/>
    </disk>
  </devices>
</domain>
XML
}

# run NAME: validate (tcg, 8 s: the BIOS reaches the disk within a
# second) in the background; QEMU's command line
# goes to NAME.cmdline while it runs, knib's output to NAME.
run () {
  "$KNIB" --config "$CONF" validate --repo "$REPO" "$id" --accel tcg \
    --scratch "$SCRATCH" --boot-timeout 8 >"$TMPDIR_TEST/$1" 2>&1 &
  pid=$!
  track_pid $pid
  qemu_started $pid "$TMPDIR_TEST/$1"
  qpid=$(pgrep -f "qemu-system-x86_64.*$SCRATCH" | head -n 1)
  tr '\0' ' ' <"/proc/$qpid/cmdline" >"$TMPDIR_TEST/$1.cmdline"
  rc=0
  wait $pid || rc=$?
  cat "$TMPDIR_TEST/$1"
  [ "$rc" -eq 1 ] || fail "$1: validate exited $rc"
  # The BIOS found the disk on its bus and booted from it.
  grep -q "screen: Booting from Hard Disk" "$TMPDIR_TEST/$1" ||
    fail "$1: the BIOS did not boot from the disk"
  grep -q "did not answer within 8 s" "$TMPDIR_TEST/$1" ||
    fail "$1: no boot timeout"
  no_leftovers
}

# i440FX: the machine's own IDE controller, hda the first channel's
# master; a custom model with the features it requires and forbids.
definition pc "<cpu mode='custom' match='exact'><model fallback='forbid'>Haswell-noTSX</model><feature policy='require' name='pcid'/><feature policy='disable' name='hle'/></cpu>"
run pc
grep -q -- "-device ide-hd,drive=knib-disk-0,bus=ide.0,unit=0," "$TMPDIR_TEST/pc.cmdline" ||
  fail "pc: hda is not on the IDE controller: $(cat "$TMPDIR_TEST/pc.cmdline")"
grep -q "ich9-ahci" "$TMPDIR_TEST/pc.cmdline" && fail "pc: an AHCI controller was added"
grep -q -- "-cpu Haswell-noTSX,pcid=on,hle=off " "$TMPDIR_TEST/pc.cmdline" ||
  fail "pc: not the definition's CPU: $(cat "$TMPDIR_TEST/pc.cmdline")"

# q35 has no IDE: a SATA disk, said; host-passthrough needs KVM, said.
# A machine type of a newer QEMU: its family's current one, said.
definition pc-q35-99.0 "<cpu mode='host-passthrough' check='none'/>"
run q35
grep -q "this QEMU has no machine type 'pc-q35-99.0' (the VM's definition asks for it): the validation VM is a 'q35'" \
  "$TMPDIR_TEST/q35" || fail "q35: no note on the machine type"
grep -q -- "-machine q35," "$TMPDIR_TEST/q35.cmdline" || fail "q35: not a q35 machine"
grep -q "disk 'hda' is on bus ide, which the q35 machine 'q35' does not have: the validation VM gives it as a SATA disk" \
  "$TMPDIR_TEST/q35" || fail "q35: no note on the IDE disk"
grep -q "asks for CPU mode 'host-passthrough', which needs KVM (this VM runs under TCG): the validation VM has QEMU's default CPU model" \
  "$TMPDIR_TEST/q35" || fail "q35: no note on the CPU"
grep -q -- "-device ide-hd,drive=knib-disk-0,bus=knib-ahci.0," "$TMPDIR_TEST/q35.cmdline" ||
  fail "q35: hda is not a SATA disk: $(cat "$TMPDIR_TEST/q35.cmdline")"
grep -q -- "-cpu " "$TMPDIR_TEST/q35.cmdline" && fail "q35: a -cpu under TCG"

# A model QEMU does not know: QEMU's own message.
definition pc "<cpu mode='custom'><model>Pentium9000</model></cpu>"
rc=0
vknib validate --repo "$REPO" "$id" --accel tcg --scratch "$SCRATCH" \
  >"$TMPDIR_TEST/bad" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "Pentium9000" "$TMPDIR_TEST/bad" ||
  fail "an unknown CPU model: $(cat "$TMPDIR_TEST/bad")"
no_leftovers
echo OK
