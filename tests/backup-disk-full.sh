#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-disk-full.sh: a backup whose image fills its file system fails with the writer thread's error, leaves no partial backup and nothing of knib's in QEMU, and the next backup is good.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io unshare
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: mounting a small file system needs root" >&2
  exit 77
fi

cd "$TMPDIR_TEST" || exit 1
qemu-img create -q -f qcow2 a.qcow2 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 40M" a.qcow2 >/dev/null
start_qemu vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp

# The repository on a 16 MiB tmpfs in a mount namespace of knib's own
# (QEMU reaches the scratch directory, outside it).
mkdir small
rc=0
unshare -m sh -c '
  mount -t tmpfs -o size=16m knib-test "$1" || exit 99
  exec "$2" backup --qmp "$3" --vm vm --repo "$1/repo" --scratch "$4" \
    --full --timeout 120 --json' sh "$TMPDIR_TEST/small" "$KNIB" "$S" \
  "$TMPDIR_TEST/scratch" > full.json 2> full.err || rc=$?
[ "$rc" -ne 99 ] || fail "cannot mount a tmpfs"
[ "$rc" -eq 1 ] || fail "the backup into a full file system exited $rc: $(cat full.err)"
grep -q "No space left on device" full.err ||
  fail "the backup did not say the disk is full: $(cat full.err)"

# Nothing of the failed run stays in QEMU.
"$KNIB" qmp --json "$S" query-block-jobs > jobs.json
! grep -q knib jobs.json || fail "a job is left: $(cat jobs.json)"
"$KNIB" qmp --json "$S" query-named-block-nodes > nodes.json
! grep -q knib-fleece nodes.json || fail "a fleecing node is left"

# With room, the next backup is good; -v says how the image was written
# (O_DIRECT where the file system takes it) and that it was hashed then.
"$KNIB" -v backup --qmp "$S" --vm vm --repo "$TMPDIR_TEST/repo" \
  --scratch "$TMPDIR_TEST/scratch" --full --timeout 120 --json > ok.json 2> ok.err ||
  fail "the backup with room failed: $(cat ok.err)"
grep -qE "written (O_DIRECT with writes in flight|buffered, flushed and dropped per chunk), digest while writing" ok.err ||
  fail "-v does not say how the image was written: $(grep 'new image' ok.err)"
grep -q "copy on two threads" ok.err || fail "-v does not show the copy's counters"
id=$(json_top ok.json id)
"$KNIB" qmp "$S" stop > /dev/null
qemu-img compare -U -q -f qcow2 -F qcow2 a.qcow2 "$TMPDIR_TEST/repo/vms/vm/$id/vda.qcow2" ||
  fail "the backup differs from the disk"
"$KNIB" verify --repo "$TMPDIR_TEST/repo" "$id" > verify.out 2>&1 ||
  fail "verify: $(cat verify.out)"
