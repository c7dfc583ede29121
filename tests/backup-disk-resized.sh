#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-disk-resized.sh: a disk grown while the VM runs (QMP
# block_resize) is backed up in full, saying why, while the other disk
# stays incremental; both restore to their oracles, and the chain goes
# on incrementally after it.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/chain-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 32M
qemu-img create -q -f qcow2 b.qcow2 16M
start_qemu vm "$TMPDIR_TEST/a.qcow2" "$TMPDIR_TEST/b.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
DISKS="vda:$TMPDIR_TEST/a.qcow2 vdb:$TMPDIR_TEST/b.qcow2"

hmp_write "$S2" vda 0x11 0 1M
hmp_write "$S2" vdb 0x21 0 1M
backup_ok vm "$S" b1.json
b1=$(json_top b1.json id)

"$KNIB" qmp "$S2" block_resize node-name=disk0 size=50331648 >/dev/null \
  || fail "block_resize"
hmp_write "$S2" vda 0x12 40M 1M
hmp_write "$S2" vdb 0x22 2M 64k
# shellcheck disable=SC2086
snap 2 "$S2" $DISKS
backup_ok vm "$S" b2.json
b2=$(json_top b2.json id)
expect_kind b2.json incremental "$b1"
[ "$(json_disk b2.json vda kind)" = full ] || fail "vda is not full: $(cat b2.json)"
[ "$(json_disk b2.json vda reason)" = "disk vda was resized from 33554432 to 50331648 bytes" ] \
  || fail "vda: wrong reason: $(cat b2.json)"
[ "$(json_disk b2.json vdb kind)" = incremental ] || fail "vdb is not incremental: $(cat b2.json)"
restore_check vm "$b2" vda oracle-2-vda.qcow2
restore_check vm "$b2" vdb oracle-2-vdb.qcow2
qemu-img info "$REPO/vms/vm/$b2/vda.qcow2" | grep -q "^virtual size: 48 MiB" \
  || fail "the image of vda is not 48 MiB"

# The next one is incremental again, on the new size.
hmp_write "$S2" vda 0x13 44M 64k
# shellcheck disable=SC2086
snap 3 "$S2" $DISKS
backup_ok vm "$S" b3.json
expect_kind b3.json incremental "$b2"
[ "$(json_disk b3.json vda kind)" = incremental ] || fail "vda is not incremental: $(cat b3.json)"
restore_check vm "$(json_top b3.json id)" vda oracle-3-vda.qcow2
verify_ok vm
check_qemu_clean "$S2" vm vda vdb
echo "backup-disk-resized: ok"
