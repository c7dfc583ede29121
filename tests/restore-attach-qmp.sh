#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# restore-attach-qmp.sh: one disk of a backup of VM 1 restored to a new
# image and attached to another running plain QEMU VM (--attach-qmp:
# blockdev-add, device_add), after VM 1 is gone; plainly, and quickly with
# its consolidation; a name in use and bad input change nothing.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
qemu-img create -q -f qcow2 b.qcow2 32M
qemu-img create -q -f qcow2 c.qcow2 16M
start_qemu vm1 "$TMPDIR_TEST/a.qcow2" "$TMPDIR_TEST/b.qcow2"
hmp_write "$TMPDIR_TEST/vm1.qmp" vda 0x31 0 4M
hmp_write "$TMPDIR_TEST/vm1.qmp" vdb 0x32 1M 2M
oracle "$TMPDIR_TEST/vm1.qmp2" a.qcow2 oracle-a.qcow2
oracle "$TMPDIR_TEST/vm1.qmp2" b.qcow2 oracle-b.qcow2
backup_ok vm1 "$TMPDIR_TEST/vm1.qmp" b1.json
b1=$(last_id vm1)
# VM 1 goes away; its backups stay.
quit_qemu vm1
rm -f a.qcow2 b.qcow2

start_qemu vm2 "$TMPDIR_TEST/c.qcow2"
S=$TMPDIR_TEST/vm2.qmp

# Bad input: no --to, no --disk, a name in use, an image that exists.
knib_run out err restore --repo "$REPO" "$b1" --disk vdb --attach-qmp "$S"
expect_failure err "--attach-qmp without --to" "needs --to PATH"
knib_run out err restore --repo "$REPO" "$b1" --attach-qmp "$S" --to x.qcow2
expect_failure err "--attach-qmp without --disk" "give --disk DISK"
knib_run out err restore --repo "$REPO" "$b1" --disk vdb --target vda --attach-qmp "$S" --to x.qcow2
expect_failure err "a target name in use" "has a disk 'vda' already"
[ ! -e x.qcow2 ] || fail "a refused attach left its image"
knib_run out err restore --repo "$REPO" "$b1" --disk vdb --target vdz --attach-qmp "$S" --to c.qcow2
expect_failure err "an image that exists" "already exists"

# Plain: volume B of VM 1 as vdb of VM 2.
knib_run out err restore --repo "$REPO" "$b1" --disk vdb --attach-qmp "$S" --to new-b.qcow2
[ "$rc" -eq 0 ] || fail "attach of vdb exited $rc: $(cat err)"
devices "$S" | grep -qx vdb || fail "vdb is not attached: $(devices "$S")"
qemu-img compare -U -q oracle-b.qcow2 new-b.qcow2 || fail "the attached vdb differs from the backup"
# The guest sees it: a write through the new device lands in it.
hmp_write "$S" vdb 0x77 0 64K

# Quick: volume A of VM 1 as vdc of VM 2, consolidated while it runs.
knib_run out err restore --repo "$REPO" "$b1" --disk vda --target vdc --attach-qmp "$S" \
  --to new-a.qcow2 --quick
[ "$rc" -eq 0 ] || fail "quick attach of vda exited $rc: $(cat err)"
devices "$S" | grep -qx vdc || fail "vdc is not attached: $(devices "$S")"
qemu-img info -U new-a.qcow2 | grep -q "backing file: .*/vms/vm1/$b1/vda.qcow2" \
  || fail "the quick image does not read the backup: $(qemu-img info -U new-a.qcow2)"
knib_run out err delete --repo "$REPO" --vm vm1 "$b1"
expect_failure err "delete of a backup a quick attach reads" "is pinned" "disk 'vda'"
"$KNIB" restore --repo "$REPO" --consolidate --qmp "$S" --vm vm2 --disk vdc --wait \
  >c.out 2>&1 || fail "consolidate: $(cat c.out)"
grep -q "vdc: consolidated" c.out || fail "vdc not consolidated: $(cat c.out)"
"$KNIB" qmp "$TMPDIR_TEST/vm2.qmp2" stop >/dev/null
"$KNIB" qmp "$TMPDIR_TEST/vm2.qmp2" human-monitor-command \
  "command-line=qemu-io -d vdc/virtio-backend flush" >/dev/null
qemu-img compare -U -q oracle-a.qcow2 new-a.qcow2 || fail "the consolidated vdc differs from the backup"
"$KNIB" qmp "$TMPDIR_TEST/vm2.qmp2" cont >/dev/null
! qemu-img info -U new-a.qcow2 | grep -q "backing file" || fail "vdc still reads the backup"
"$KNIB" delete --repo "$REPO" --vm vm1 "$b1" >del.out 2>&1 || fail "delete after consolidation: $(cat del.out)"
echo ok
