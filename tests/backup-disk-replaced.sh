#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-disk-replaced.sh: a disk whose image was swapped while the VM
# runs (device_del, blockdev-del, then another image under the same
# device id) and a disk whose bitmap was removed (as a migration without
# bitmaps leaves it) are backed up in full, saying why; each backup
# restores to its oracle and the chain goes on incrementally after it.
# The disk is a scsi-hd on virtio-scsi, whose unplug needs no guest.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/chain-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 32M
qemu-img create -q -f qcow2 c.qcow2 32M
qemu-system-x86_64 -name vm -machine "accel=$(qemu_accel)" -m 128 \
  -nodefaults -display none -no-user-config \
  -qmp "unix:$TMPDIR_TEST/vm.qmp,server=on,wait=off" \
  -qmp "unix:$TMPDIR_TEST/vm.qmp2,server=on,wait=off" \
  -device virtio-scsi-pci,id=scsi0 \
  -blockdev "driver=qcow2,node-name=disk0,file.driver=file,file.filename=$TMPDIR_TEST/a.qcow2" \
  -device scsi-hd,drive=disk0,id=vda,bus=scsi0.0 >vm.log 2>&1 &
track_pid $!
wait_for_socket "$TMPDIR_TEST/vm.qmp"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

# write PATTERN OFFSET LENGTH: a guest-like write to vda.
write () {
  "$KNIB" qmp "$S2" human-monitor-command \
    "command-line=qemu-io -d vda \"write -P $1 $2 $3\"" >/dev/null \
    || fail "write to vda"
}

write 0x11 0 2M
backup_ok vm "$S" b1.json
b1=$(json_top b1.json id)
write 0x12 1M 64k
backup_ok vm "$S" b2.json
b2=$(json_top b2.json id)
expect_kind b2.json incremental "$b1"

# Swap the image under the device.
"$KNIB" qmp "$S2" device_del id=vda >/dev/null || fail "device_del"
i=0
while "$KNIB" qmp --json "$S2" query-block | grep -q '"qdev":"vda"'; do
  i=$((i + 1))
  [ "$i" -le 100 ] || fail "vda was not unplugged"
  sleep 0.1
done
"$KNIB" qmp "$S2" blockdev-del node-name=disk0 >/dev/null || fail "blockdev-del"
"$KNIB" qmp "$S2" blockdev-add driver=qcow2 node-name=disk1 file.driver=file \
  "file.filename=$TMPDIR_TEST/c.qcow2" >/dev/null || fail "blockdev-add"
"$KNIB" qmp "$S2" device_add driver=scsi-hd drive=disk1 id=vda bus=scsi0.0 \
  >/dev/null || fail "device_add"
write 0x33 3M 1M
snap 3 "$S2" "vda:$TMPDIR_TEST/c.qcow2"
backup_ok vm "$S" b3.json
b3=$(json_top b3.json id)
expect_kind b3.json full
[ "$(json_disk b3.json vda reason)" = "bitmap knib-$b2 of vda is missing (QEMU was restarted without it, or the disk was replaced)" ] \
  || fail "vda: wrong reason: $(cat b3.json)"
restore_check vm "$b3" vda oracle-3-vda.qcow2

write 0x34 5M 64k
snap 4 "$S2" "vda:$TMPDIR_TEST/c.qcow2"
backup_ok vm "$S" b4.json
b4=$(json_top b4.json id)
expect_kind b4.json incremental "$b3"
restore_check vm "$b4" vda oracle-4-vda.qcow2

# The bitmap is gone (a migration without it): full, saying so.
"$KNIB" qmp "$S2" block-dirty-bitmap-remove node=disk1 "name=knib-$b4" >/dev/null \
  || fail "block-dirty-bitmap-remove"
write 0x35 6M 64k
snap 5 "$S2" "vda:$TMPDIR_TEST/c.qcow2"
backup_ok vm "$S" b5.json
b5=$(json_top b5.json id)
expect_kind b5.json full
[ "$(json_disk b5.json vda reason)" = "bitmap knib-$b4 of vda is missing (QEMU was restarted without it, or the disk was replaced)" ] \
  || fail "vda: wrong reason: $(cat b5.json)"
restore_check vm "$b5" vda oracle-5-vda.qcow2
write 0x36 7M 64k
snap 6 "$S2" "vda:$TMPDIR_TEST/c.qcow2"
backup_ok vm "$S" b6.json
expect_kind b6.json incremental "$b5"
restore_check vm "$(json_top b6.json id)" vda oracle-6-vda.qcow2
verify_ok vm
# (bitmaps() knows virtio-blk's qdev paths only: read query-block here.)
"$KNIB" qmp --json "$S2" query-block >block.json
[ "$(grep -o '"name":"knib-[^"]*","recording":[a-z]*' block.json | sort)" \
  = "$(printf '"name":"knib-%s","recording":false\n"name":"knib-%s","recording":true' "$b5" "$(json_top b6.json id)")" ] \
  || fail "bitmaps left: $(grep -o '"name":"knib-[^"]*","recording":[a-z]*' block.json)"
echo "backup-disk-replaced: ok"
