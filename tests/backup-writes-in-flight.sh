#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-writes-in-flight.sh: a full backup written with O_DIRECT keeps several writes in flight and is a good image; one of them failing (an injected EIO, a full ext4) fails the backup with that write's error and leaves nothing behind; without O_DIRECT (ramfs) the writes go one at a time.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io unshare mkfs.ext4 losetup
require_test_hooks
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: mounting file systems needs root" >&2
  exit 77
fi

cd "$TMPDIR_TEST" || exit 1
qemu-img create -q -f qcow2 a.qcow2 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 24M" -c "write -P 0xa5 32M 16M" a.qcow2 >/dev/null
start_qemu vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp

# The test directory must take O_DIRECT: a small ext4 on a loop device
# does everywhere.  It lives in a mount namespace of its own.
dd if=/dev/zero of=ext4.img bs=1M count=0 seek=128 status=none
mkfs.ext4 -q -F ext4.img || fail "mkfs.ext4"
mkdir mnt
# in_ext4 SCRIPT: run SCRIPT with the ext4 mounted at $M.
in_ext4 () {
  M=$TMPDIR_TEST/mnt unshare -m sh -c '
    mount -o loop "$1" "$M" || exit 99
    eval "$2"' sh "$TMPDIR_TEST/ext4.img" "$1"
}
export KNIB S TMPDIR_TEST

# Several writes in flight (the test hook starts them together once
# four are queued), and the image QEMU reads is the disk.
rc=0
in_ext4 '
  KNIB_TEST_HOLD_WRITES=1 "$KNIB" -v backup --qmp "$S" --vm vm --repo "$M/repo" \
    --scratch "$TMPDIR_TEST/scratch" --full --timeout 120 --json > ok.json 2> ok.err || exit 1
  cp -r "$M/repo" "$TMPDIR_TEST/repo" && rm -rf "$M/repo"' || rc=$?
[ "$rc" -ne 99 ] || fail "cannot mount an ext4 on a loop device"
[ "$rc" -eq 0 ] || fail "the backup failed: $(cat ok.err)"
grep -q "written O_DIRECT with writes in flight" ok.err ||
  fail "-v does not say O_DIRECT with writes in flight: $(grep 'new image' ok.err)"
grep -q "O_DIRECT writes in flight: .* up to 4 at once (of 4)" ok.err ||
  fail "not four writes in flight: $(grep 'writes in flight' ok.err)"
grep "O_DIRECT writes in flight" ok.err | sed 's/^knib: debug qcow2: /shown: /'
id=$(json_top ok.json id)
"$KNIB" qmp "$S" stop > /dev/null
img=$TMPDIR_TEST/repo/vms/vm/$id/vda.qcow2
qemu-img check -q -f qcow2 "$img" || fail "qemu-img check $img"
qemu-img compare -U -q -f qcow2 -F qcow2 a.qcow2 "$img" || fail "the backup differs from the disk"
"$KNIB" verify --repo "$TMPDIR_TEST/repo" "$id" > verify.out 2>&1 || fail "verify: $(cat verify.out)"
"$KNIB" qmp "$S" cont > /dev/null

# failing NAME PREPARE MESSAGE: a -v backup into the ext4 (after the
# shell commands PREPARE) fails saying MESSAGE (a regular expression of
# the whole line), written with writes in flight, and leaves no image
# and no backup.
failing () {
  name=$1
  in_ext4 "$2"'
    KNIB_TEST_HOLD_WRITES=1 "$KNIB" -v backup --qmp "$S" --vm vm --repo "$M/repo" \
      --scratch "$TMPDIR_TEST/scratch" --full --timeout 120 > '"$name"'.out 2> '"$name"'.err
    echo $? > '"$name"'.rc
    find "$M/repo" -name "*.qcow2" > '"$name"'.left
    "$KNIB" list --repo "$M/repo" --json > '"$name"'.list 2>&1 || :'
  [ "$(cat "$name.rc")" = 1 ] || fail "$name: the backup exited $(cat "$name.rc"): $(cat "$name.err")"
  grep -q "written O_DIRECT with writes in flight" "$name.err" ||
    fail "$name: not written with writes in flight: $(grep 'new image' "$name.err")"
  grep -qx "knib: backup of vm 'vm': disk vda: $3" "$name.err" ||
    fail "$name: the backup did not say which write failed and why: $(grep -v debug "$name.err")"
  echo "$name: $(grep -v debug "$name.err")"
  [ ! -s "$name.left" ] || fail "$name: the failed backup left $(cat "$name.left")"
  ! grep -q '"id"' "$name.list" || fail "$name: the failed backup is listed: $(cat "$name.list")"
}

# The third write fails while others are in flight.
failing eio 'export KNIB_TEST_FAIL_WRITE=3;' \
  'write at file offset [0-9]* (test hook): Input/output error'
# A full file system: about 16 MiB left, the backup needs 40.
failing full '
  avail=$(df --output=avail -k "$M" | tail -1)
  fallocate -l $((avail - 16384))K "$M/filler" || exit 1;' \
  'write at file offset [0-9]*: No space left on device'

# No O_DIRECT (ramfs): flushed and dropped, one write at a time.
rc=0
mkdir ram
unshare -m sh -c '
  mount -t ramfs knib-test "$1" || exit 99
  "$KNIB" -v backup --qmp "$S" --vm vm --repo "$1/repo" \
    --scratch "$TMPDIR_TEST/scratch" --full --timeout 120 --json > ram.json 2> ram.err || exit 1
  cp -r "$1/repo" "$TMPDIR_TEST/ramrepo"' sh "$TMPDIR_TEST/ram" || rc=$?
[ "$rc" -ne 99 ] || fail "cannot mount a ramfs"
[ "$rc" -eq 0 ] || fail "the backup into ramfs failed: $(cat ram.err)"
grep -q "written buffered, flushed and dropped per chunk, digest" ram.err ||
  fail "ramfs was not written flushed and dropped: $(grep 'new image' ram.err)"
! grep -q "writes in flight" ram.err || fail "writes in flight without O_DIRECT"
id=$(json_top ram.json id)
"$KNIB" qmp "$S" stop > /dev/null
img=$TMPDIR_TEST/ramrepo/vms/vm/$id/vda.qcow2
qemu-img check -q -f qcow2 "$img" || fail "qemu-img check $img"
qemu-img compare -U -q -f qcow2 -F qcow2 a.qcow2 "$img" || fail "the ramfs backup differs from the disk"
exit 0
