#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-disk-hotplugged.sh: a disk added to the running VM (blockdev-add,
# device_add virtio-blk-pci with an id) is backed up in full, saying
# why, while the disk that was there stays incremental; the next backup
# takes both incrementally, and everything restores to its oracle.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/chain-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 32M
qemu-img create -q -f qcow2 b.qcow2 16M
start_qemu vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
DISKS="vda:$TMPDIR_TEST/a.qcow2 vdb:$TMPDIR_TEST/b.qcow2"

hmp_write "$S2" vda 0x11 0 1M
backup_ok vm "$S" b1.json
b1=$(json_top b1.json id)

"$KNIB" qmp "$S2" blockdev-add driver=qcow2 node-name=disk1 file.driver=file \
  "file.filename=$TMPDIR_TEST/b.qcow2" >/dev/null || fail "blockdev-add"
"$KNIB" qmp "$S2" device_add driver=virtio-blk-pci drive=disk1 id=vdb >/dev/null \
  || fail "device_add"
hmp_write "$S2" vda 0x12 2M 64k
hmp_write "$S2" vdb 0x21 1M 512k
# shellcheck disable=SC2086
snap 2 "$S2" $DISKS
backup_ok vm "$S" b2.json
b2=$(json_top b2.json id)
expect_kind b2.json incremental "$b1"
[ "$(json_disk b2.json vdb kind)" = full ] || fail "vdb is not full: $(cat b2.json)"
[ "$(json_disk b2.json vdb reason)" = "disk vdb is not in backup $b1" ] \
  || fail "vdb: wrong reason: $(cat b2.json)"
[ "$(json_disk b2.json vda kind)" = incremental ] || fail "vda is not incremental: $(cat b2.json)"
restore_check vm "$b2" vda oracle-2-vda.qcow2
restore_check vm "$b2" vdb oracle-2-vdb.qcow2

hmp_write "$S2" vdb 0x22 3M 64k
# shellcheck disable=SC2086
snap 3 "$S2" $DISKS
backup_ok vm "$S" b3.json
b3=$(json_top b3.json id)
expect_kind b3.json incremental "$b2"
[ "$(json_disk b3.json vdb kind)" = incremental ] || fail "vdb is not incremental: $(cat b3.json)"
restore_check vm "$b3" vda oracle-3-vda.qcow2
restore_check vm "$b3" vdb oracle-3-vdb.qcow2
verify_ok vm
check_qemu_clean "$S2" vm vda vdb
echo "backup-disk-hotplugged: ok"
