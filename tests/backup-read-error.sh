#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-read-error.sh: a live backup whose source disk fails a read (a blkdebug node under the disk, as the soak injects it): QEMU's NBD server drops the connection, knib says so, cleans up, and the next backup succeeds.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
D=$TMPDIR_TEST/a.qcow2
qemu-img create -q -f qcow2 "$D" 64M
# The disk's file node has a name, so that a blkdebug node can be put
# under the qcow2 node with blockdev-reopen.
rm -f vm.qmp vm.qmp2
qemu-system-x86_64 -name vm -machine "accel=$(qemu_accel)" -m 128 \
  -nodefaults -display none -no-user-config \
  -qmp "unix:$TMPDIR_TEST/vm.qmp,server=on,wait=off" \
  -qmp "unix:$TMPDIR_TEST/vm.qmp2,server=on,wait=off" \
  -blockdev "driver=file,node-name=disk0-file,filename=$D" \
  -blockdev driver=qcow2,node-name=disk0,file=disk0-file \
  -device virtio-blk-pci,drive=disk0,id=vda >vm.log 2>&1 &
track_pid $!
wait_for_socket "$TMPDIR_TEST/vm.qmp2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

hmp_write "$S2" vda 0x11 0 4M
backup_ok vm "$S" full.json
expect_kind full.json full

# A guest write, flushed so that qemu-img map sees where it lives.
hmp_write "$S2" vda 0x22 1M 64k
"$KNIB" qmp "$S2" human-monitor-command \
  "command-line=qemu-io -d vda/virtio-backend \"flush\"" >/dev/null
host=$(qemu-img map -U --output=json "$D" | grep '"start": 0,' \
  | sed -n 's/.*"offset": \([0-9]*\).*/\1/p')
[ -n "$host" ] || fail "qemu-img map does not show the first cluster: $(qemu-img map -U --output=json "$D")"
# Reads of the written cluster fail (it is 1 MiB into the first 4 MiB
# extent, which is contiguous in the image).
"$KNIB" qmp "$S2" blockdev-add "{\"driver\":\"blkdebug\",\"node-name\":\"dbg\",\"image\":\"disk0-file\",\"inject-error\":[{\"event\":\"read_aio\",\"sector\":$(((host + 1048576) / 512 + 1)),\"errno\":5}]}" >/dev/null \
  || fail "blockdev-add blkdebug"
"$KNIB" qmp "$S2" blockdev-reopen \
  '{"options":[{"driver":"qcow2","node-name":"disk0","file":"dbg"}]}' >/dev/null \
  || fail "blockdev-reopen onto blkdebug"

knib_run fail.json fail.err backup --json --timeout 60 --qmp "$S" --vm vm \
  --repo "$REPO" --scratch "$SCRATCH"
expect_failure fail.err "a backup reading a failing cluster" \
  "disk vda: nbd read at [0-9]*: lost the connection to the NBD server"
! grep -q "libnbd error" fail.err || fail "the error names no cause: $(cat fail.err)"
echo "ok: $(cat fail.err)"

# The disk reads again: the next backup is an incremental that holds
# the write, and nothing of the failed one is left.
"$KNIB" qmp "$S2" blockdev-reopen \
  '{"options":[{"driver":"qcow2","node-name":"disk0","file":"disk0-file"}]}' >/dev/null \
  || fail "blockdev-reopen back"
"$KNIB" qmp "$S2" blockdev-del node-name=dbg >/dev/null || fail "blockdev-del"
oracle "$S2" "$D" oracle.qcow2
backup_ok vm "$S" next.json
expect_kind next.json incremental "$(sed -n 1p ids-vm)"
check_image vm "$(last_id vm)" vda oracle.qcow2
check_qemu_clean "$S2" vm vda
check_repo_clean vm vda
echo "ok: the next backup is incremental and whole"
