#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# restore-quick-direct.sh: while "knib restore --consolidate --wait" waits
# for QEMU's block-stream, the disk's image is written with O_DIRECT
# (blockdev-reopen with cache.direct=on), and its own cache mode comes
# back after (restore-quick.sh, restore-domain.sh).  Here the other
# paths: a disk that already runs with cache.direct=on stays as it is;
# where QEMU cannot reopen the image (its file was renamed since QEMU
# opened it) the stream runs buffered, -v says why; without --wait
# nothing is switched (no knib would be there to switch back).  Every
# consolidation reads as the backup, and the guest's discard setting is
# kept.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img qemu-io

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
start_qemu vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp
hmp_write "$S" vda 0x11 0 4M
backup_ok vm "$S" b1.json
b1=$(last_id vm)
hmp_write "$S" vda 0x12 8M 4M
backup_ok vm "$S" b2.json
b2=$(last_id vm)
quit_qemu vm
ORACLE=$REPO/vms/vm/$b2/vda.qcow2

# quick_vm NAME IMAGE FILE-OPTIONS: a quick restore of b2 onto IMAGE (a
# new stopped VM's disk) and
# a VM on it whose qcow2 node "disk0" has an inline file child with
# FILE-OPTIONS (",cache.direct=on" say) and discard=unmap.
quick_vm () {
  qemu-img create -q -f qcow2 "$2" 64M
  "$KNIB" restore --repo "$REPO" "$b2" --image "vda=$2" --quick >q.out 2>&1 \
    || fail "quick restore onto $2: $(cat q.out)"
  rm -f "$TMPDIR_TEST/$1.qmp" "$TMPDIR_TEST/$1.qmp2"
  qemu-system-x86_64 -name "$1" -machine "accel=$(qemu_accel)" -m 128 \
    -nodefaults -display none -no-user-config -bios "$(halt_firmware)" \
    -qmp "unix:$TMPDIR_TEST/$1.qmp,server=on,wait=off" \
    -qmp "unix:$TMPDIR_TEST/$1.qmp2,server=on,wait=off" \
    -blockdev "driver=qcow2,node-name=disk0,discard=unmap,file.driver=file,file.filename=$2$3" \
    -device virtio-blk-pci,drive=disk0,id=vda >"$TMPDIR_TEST/$1.log" 2>&1 &
  track_pid $!
  eval "QEMU_PID_$1=$!"
  wait_for_socket "$TMPDIR_TEST/$1.qmp"
}

# consolidate NAME [--wait]: consolidate; print -v's lines about direct
# I/O.
consolidate () {
  "$KNIB" -v restore --repo "$REPO" --consolidate --qmp "$TMPDIR_TEST/$1.qmp" \
    --vm vm ${2:-} >c.out 2>c.err || fail "consolidate $1: $(cat c.err)"
  grep "direct I/O" c.err || :
}

# cache_direct NAME: the cache.direct values of the VM's nodes.
cache_direct () {
  "$KNIB" qmp --json "$TMPDIR_TEST/$1.qmp2" query-named-block-nodes \
    | tr ',' '\n' | sed -n 's/.*"direct": *\([a-z]*\).*/\1/p' | tr '\n' ' '
}

echo "== a VM that runs with cache.direct=on"
quick_vm on "$TMPDIR_TEST/on.qcow2" ",file.cache.direct=on"
consolidate on --wait | tee lines
grep -q "direct I/O: node 'disk0' stays as it is: it already runs with cache.direct=on" lines \
  || fail "no word of the disk's own O_DIRECT"
grep -q "is written with cache.direct=on" lines && fail "a reopen of a disk that had O_DIRECT"
qemu-img compare -U -q "$ORACLE" on.qcow2 || fail "on.qcow2 differs from backup 2"
quit_qemu on

echo "== a VM whose image was renamed after QEMU opened it"
quick_vm renamed "$TMPDIR_TEST/renamed.qcow2" ""
mv renamed.qcow2 renamed-later.qcow2
consolidate renamed --wait | tee lines
grep -q "direct I/O: disk 'vda' stays buffered (blockdev-reopen of 'disk0': .*No such file or directory" lines \
  || fail "no word of the failed reopen"
grep -q '"state": *"consolidated"' c.out || grep -q "vda: consolidated" c.out \
  || fail "not consolidated: $(cat c.out)"
case $(cache_direct renamed) in
*true*) fail "a node runs with cache.direct=on: $(cache_direct renamed)" ;;
esac
quit_qemu renamed
qemu-img compare -q "$ORACLE" renamed-later.qcow2 || fail "renamed-later.qcow2 differs from backup 2"

echo "== without --wait: nothing switched; discard=unmap kept with --wait"
quick_vm nowait "$TMPDIR_TEST/nowait.qcow2" ""
consolidate nowait | tee lines
[ ! -s lines ] || fail "a consolidation that does not wait switched the cache mode"
consolidate nowait --wait >/dev/null
quit_qemu nowait
qemu-img compare -q "$ORACLE" nowait.qcow2 || fail "nowait.qcow2 differs from backup 2"
quick_vm unmap "$TMPDIR_TEST/unmap.qcow2" ""
consolidate unmap --wait | tee lines
grep -q "is written with cache.direct=on" lines || fail "no O_DIRECT stream"
# A guest discard still takes effect (discard=unmap survived both
# reopens; without it QEMU drops the request and the old bytes stay).
"$KNIB" qmp "$TMPDIR_TEST/unmap.qmp2" human-monitor-command \
  "command-line=qemu-io -d vda/virtio-backend \"discard 0 4M\"" >/dev/null \
  || fail "discard"
quit_qemu unmap
qemu-io -r -f qcow2 -c "read -P 0 0 4M" unmap.qcow2 >read.out 2>&1 || :
grep -q "Pattern verification failed" read.out \
  && fail "the guest's discard was dropped: $(cat read.out)"
grep -q "read 4194304/4194304 bytes" read.out || fail "read: $(cat read.out)"
echo PASS
