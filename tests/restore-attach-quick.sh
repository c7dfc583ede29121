#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# restore-attach-quick.sh: the reference's quick rows on libvirt: a volume
# quick-restored and attached to a running domain, then consolidated
# (restoreVolumeFromBackupAndAttachToVM row 5); a volume quick-restored
# and attached to a stopped domain that is started and consolidated (row
# 6, --start); a stopped domain quick-restored in place, started and
# consolidated (restoreBackup row 3), the volumes attached since left
# alone.  Each disk equals the backup's oracle after consolidation and no
# longer reads the repository; its backup is no longer pinned.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/libvirt-functions.sh"
lv_require
require setfacl
lv_setup

cd "$TMPDIR_TEST"
A=$TMPDIR_TEST/a.qcow2
B=$TMPDIR_TEST/b.qcow2
qemu-img create -q -f qcow2 "$A" 64M
qemu-img create -q -f qcow2 "$B" 32M
lv_define "$A" "$B"
"$KNIB" libvirt enable "$DOM" >/dev/null || fail "enable"
virsh start "$DOM" >/dev/null || fail "virsh start"
lv_write vda 0x61 0 4M
lv_write vdb 0x62 1M 3M
lv_oracle 1 vda vdb
lv_backup 1
b1=$(field 1 id)
lv_write vda 0x63 8M 1M
lv_write vdb 0x64 8M 1M
# QEMU's user reaches the backup's images (libvirt gives it the images,
# not the directories above them).
setfacl -m u:libvirt-qemu:x "$REPO" "$REPO/vms" "$REPO/vms/$DOM" \
  "$REPO/vms/$DOM/$b1" || fail "setfacl"

# attached TARGET [--inactive]: the image of TARGET in the domain's
# (live or persistent) definition.
attached () {
  virsh domblklist "$DOM" ${2:-} | awk -v d="$1" '$1 == d { print $2 }'
}

# consolidated IMAGE ORACLE: IMAGE reads as ORACLE without a backing file.
consolidated () {
  ! qemu-img info -U "$1" | grep -q "backing file" \
    || fail "$1 still reads the repository: $(qemu-img info -U "$1")"
  qemu-img compare -U -q "$2" "$1" || fail "$1 differs from $2"
}

# Bad input: --wait without --quick, --start with --attach-qmp.
if "$KNIB" restore --repo "$REPO" "$b1" --disk vdb --target vdc --attach "$DOM" \
  --wait >out 2>err; then
  fail "--attach --wait without --quick was taken"
fi
grep -q "wait goes with --quick" err || fail "unexpected error: $(cat err)"
if "$KNIB" restore --repo "$REPO" "$b1" --disk vdb --attach-qmp x.qmp --to x.qcow2 \
  --start >out 2>err; then
  fail "--attach-qmp --start was taken"
fi
grep -q "start" err || fail "unexpected error: $(cat err)"

# Row 5: volume B to the running domain, quickly: attached at once (live
# and persistent), consolidated.
img5=$TMPDIR_TEST/$DOM-vdb-$b1.qcow2
"$KNIB" restore --repo "$REPO" "$b1" --disk vdb --target vdc --attach "$DOM" \
  --quick --wait >out 2>err || fail "row 5: $(cat err)"
[ "$(attached vdc)" = "$img5" ] || fail "row 5: not attached live: $(virsh domblklist "$DOM")"
[ "$(attached vdc --inactive)" = "$img5" ] || fail "row 5: not persistent"
grep -q "vdc: consolidated" out || fail "row 5: not consolidated: $(cat out)"
consolidated "$img5" oracle-1-vdb.qcow2

# Row 6: volume A to the stopped domain, quickly, --start: attached
# persistently, the domain started, the volume consolidated.
virsh destroy "$DOM" >/dev/null
img6=$TMPDIR_TEST/$DOM-vda-$b1.qcow2
"$KNIB" restore --repo "$REPO" "$b1" --disk vda --target vdd --attach "$DOM" \
  --quick --start --wait >out 2>err || fail "row 6: $(cat err)"
[ "$(lv_state)" = running ] || fail "row 6: the domain does not run"
grep -q "started domain '$DOM'" out || fail "row 6: no start said: $(cat out)"
[ "$(attached vdd)" = "$img6" ] || fail "row 6: not attached: $(virsh domblklist "$DOM")"
[ "$(attached vdd --inactive)" = "$img6" ] || fail "row 6: not persistent"
grep -q "vdd: consolidated" out || fail "row 6: not consolidated: $(cat out)"
consolidated "$img6" oracle-1-vda.qcow2

# restoreBackup row 3: the stopped domain restored in place, quickly,
# and started; the volumes attached since (vdc, vdd) are left alone.
virsh destroy "$DOM" >/dev/null
qemu-img convert -O qcow2 "$img5" vdc-before.qcow2
"$KNIB" restore --repo "$REPO" "$b1" --domain "$DOM" --quick --start --wait \
  >out 2>err || fail "VM row 3: $(cat err)"
[ "$(lv_state)" = running ] || fail "VM row 3: the domain does not run"
grep -q "vda: consolidated" out || fail "VM row 3: vda not consolidated: $(cat out)"
grep -q "vdb: consolidated" out || fail "VM row 3: vdb not consolidated: $(cat out)"
consolidated "$A" oracle-1-vda.qcow2
consolidated "$B" oracle-1-vdb.qcow2
qemu-img compare -U -q vdc-before.qcow2 "$img5" \
  || fail "VM row 3: vdc, attached after the backup, was changed"
# Nothing reads the backup any more: no pin is left.
[ ! -e "$REPO/vms/$DOM/pins.json" ] \
  || fail "pins left after the consolidations: $(cat "$REPO/vms/$DOM/pins.json")"
echo ok
