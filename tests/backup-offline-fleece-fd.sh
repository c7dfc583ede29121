#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-offline-fleece-fd.sh: an offline backup's qemu-storage-daemon gets
# the fleecing image as a file it inherited open from knib, never by its
# path: an image put in the path's place (after knib made it, before the
# daemon opens it) changes nothing, and the backup equals its oracle.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/offline-functions.sh"
require qemu-storage-daemon qemu-img qemu-io
require_test_hooks

cd "$TMPDIR_TEST"
VM=vm
A=$TMPDIR_TEST/a.qcow2
qemu-img create -q -f qcow2 "$A" 64M
img_write "$A" qcow2 0x11 0 4M
img_write "$A" qcow2 0x12 20M 1M
offline_oracle 1 "$A"

state () {
  sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null || :
}

# A backup that stops once the fleecing image is made, before the daemon
# is told to open it.
( KNIB_TEST_STOP_AT=fleece exec "$KNIB" backup --json --timeout 60 \
    --repo "$REPO" --scratch "$SCRATCH" --vm "$VM" --image "vda=$A" \
    >b1.json 2>b1.err ) &
KNIB_PID=$!
track_pid $KNIB_PID
i=0
until [ "$(state $KNIB_PID)" = T ]; do
  i=$((i + 1))
  [ "$i" -le 600 ] || fail "the backup did not stop at fleece: $(cat b1.err)"
  sleep 0.1
done
dir=$(echo "$SCRATCH/$VM.$KNIB_PID".??????)
[ -f "$dir/fleece-vda.qcow2" ] || fail "no fleecing image in $dir: $(ls -la "$dir")"
DAEMON_PID=$(cat "$dir/daemon.pid")
ls -l "/proc/$DAEMON_PID/fd/" | grep -q "$dir/fleece-vda.qcow2" \
  || fail "qemu-storage-daemon does not hold the fleecing image open: $(ls -l "/proc/$DAEMON_PID/fd/")"

# Another image of other bytes in the path's place.
qemu-img create -q -f qcow2 other.qcow2 64M
img_write other.qcow2 qcow2 0x66 0 32M
mv -f other.qcow2 "$dir/fleece-vda.qcow2"

kill -CONT $KNIB_PID
rc=0
wait $KNIB_PID || rc=$?
[ "$rc" -eq 0 ] || fail "the backup exited $rc: $(cat b1.err)"
expect_kind 1 full
check 1 vda "$A"
echo "backup-offline-fleece-fd: ok"
