#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-offline-kill.sh: kill -9 of knib during an offline backup: its
# qemu-storage-daemon goes too (it dies with knib and stores the
# bitmaps), the image is not left locked, and the next backup repairs
# the bitmaps and is an incremental that equals its oracle.  SIGTERM
# fails the backup cleanly, with the bitmaps rolled back.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/offline-functions.sh"
require qemu-storage-daemon qemu-img qemu-io pgrep

cd "$TMPDIR_TEST"
VM=vm
A=$TMPDIR_TEST/a.qcow2
qemu-img create -q -f qcow2 "$A" 64M
OFFLINE="--vm $VM --image vda=$A"

state () {
  sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null || :
}

# stopped_backup N: an offline backup that stops itself as it starts
# copying; its pid in $KNIB_PID, its daemon's in $DAEMON_PID.
stopped_backup () {
  require_test_hooks
  # shellcheck disable=SC2086
  ( KNIB_TEST_STOP_AT=copy exec "$KNIB" backup --json --timeout 60 \
      --repo "$REPO" --scratch "$SCRATCH" $OFFLINE >"b$1.json" 2>"b$1.err" ) &
  KNIB_PID=$!
  track_pid $KNIB_PID
  i=0
  until [ "$(state $KNIB_PID)" = T ]; do
    i=$((i + 1))
    [ "$i" -le 300 ] || fail "backup $1 did not stop at copy: $(cat "b$1.err")"
    sleep 0.1
  done
  DAEMON_PID=$(cat "$SCRATCH/$VM.$KNIB_PID/daemon.pid")
  [ "$(state "$DAEMON_PID")" = S ] || [ "$(state "$DAEMON_PID")" = R ] \
    || fail "no qemu-storage-daemon runs for backup $1"
}

# daemon_gone: wait (up to 10 s) until $DAEMON_PID is gone or a zombie.
daemon_gone () {
  i=0
  while [ -n "$(state "$DAEMON_PID")" ] && [ "$(state "$DAEMON_PID")" != Z ]; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "qemu-storage-daemon (pid $DAEMON_PID) outlived its knib"
    sleep 0.1
  done
}

img_write "$A" qcow2 0x11 0 4M
offline_oracle 1 "$A"
# shellcheck disable=SC2086
backup 1 $OFFLINE
expect_kind 1 full
check 1 vda "$A"

# kill -9 while copying.
img_write "$A" qcow2 0x12 1M 128k
offline_oracle 2 "$A"
stopped_backup 2k
kill -9 $KNIB_PID
wait $KNIB_PID 2>/dev/null || :
daemon_gone
# Not locked: qemu-img info without -U opens it.
qemu-img info "$A" >info.txt 2>&1 || fail "$A is left locked: $(cat info.txt)"
# The daemon closed the image cleanly: the frozen bitmap of backup 1 and
# the new recording one are stored, neither in use.
image_bitmaps "$A" | grep -q "in-use" && fail "bitmaps left in use: $(image_bitmaps "$A")"
[ "$(image_bitmaps "$A" | wc -l)" -eq 2 ] \
  || fail "the killed backup's bitmaps are not both stored: $(image_bitmaps "$A")"

# shellcheck disable=SC2086
backup 2 $OFFLINE
expect_kind 2 incremental 1
check 2 vda "$A"
[ "$(disk 2 vda bytes_read)" -eq 131072 ] \
  || fail "backup 2 read $(disk 2 vda bytes_read) bytes, not the 128k written"
grep -q "removed unfinished backup" b2.err || fail "no repair of the partial backup: $(cat b2.err)"
grep -q "removed scratch files of a killed run" b2.err || fail "no repair of the scratch: $(cat b2.err)"
grep -q "merged bitmap knib-.* of vda into knib-$(top 1 id) and removed it" b2.err \
  || fail "the killed backup's bitmap was not merged back: $(cat b2.err)"

# SIGTERM while copying: a clean failure, bitmaps rolled back in the
# daemon, which stores them; the next backup sees every write.
img_write "$A" qcow2 0x13 2M 64k
stopped_backup 3t
kill -TERM $KNIB_PID
kill -CONT $KNIB_PID
rc=0
wait $KNIB_PID || rc=$?
[ "$rc" -ne 0 ] || fail "backup 3t succeeded after SIGTERM"
grep -q "interrupted" b3t.err || fail "backup 3t: $(cat b3t.err)"
daemon_gone
# Rolled back: backup 2's bitmap records again, and no other does.
[ "$(image_bitmaps "$A" | grep ' auto$')" = "knib-$(top 2 id) auto" ] \
  || fail "the bitmaps were not rolled back: $(image_bitmaps "$A")"
image_bitmaps "$A" | grep -v -e "^knib-$(top 1 id) " -e "^knib-$(top 2 id) " \
  && fail "the interrupted backup's bitmap was left: $(image_bitmaps "$A")"
img_write "$A" qcow2 0x14 3M 64k
offline_oracle 3 "$A"
# shellcheck disable=SC2086
backup 3 $OFFLINE
expect_kind 3 incremental 2
check 3 vda "$A"
[ "$(disk 3 vda bytes_read)" -eq 131072 ] \
  || fail "backup 3 read $(disk 3 vda bytes_read) bytes, not the 2 x 64k written"

no_daemon || fail "qemu-storage-daemon left running"
[ -z "$(ls -A "$SCRATCH")" ] || fail "scratch left: $(ls -A "$SCRATCH")"
ls "$REPO/vms/$VM" | grep -q partial && fail "a partial backup was left"
echo "backup-offline-kill: ok"
