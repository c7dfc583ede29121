#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# qmp-real-qemu.sh: knib qmp against a real QEMU: commands, errors, bitmaps, events.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img nbdkit

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
qemu-img create -q -f qcow2 target.qcow2 64M
start_qemu vm a.qcow2
S=$TMPDIR_TEST/vm.qmp

# A command: the version QEMU reports is the one installed.
"$KNIB" qmp "$S" query-version > version.json
want=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p')
got=$(tr -d ' \n' < version.json | sed -n 's/.*"minor":\([0-9]*\),"major":\([0-9]*\).*/\2 \1/p')
[ "$want" = "$got" ] || fail "query-version says '$got', qemu-system-x86_64 says '$want'"

# query-block shows the disk on its device.
"$KNIB" qmp --json "$S" query-block > block.json
grep -q '"node-name":"disk0"' block.json || fail "query-block lacks disk0: $(cat block.json)"
grep -q 'vda/virtio-backend' block.json || fail "query-block lacks vda"
[ "$(wc -l < block.json)" -eq 1 ] || fail "--json output is not one line"

# A persistent dirty bitmap, added and listed; a guest write dirties it.
"$KNIB" qmp "$S" block-dirty-bitmap-add node=disk0 name=knib-test persistent=true > /dev/null
hmp_write "$S" vda 0x5a 1M 128k
"$KNIB" qmp --json "$S" query-block > block.json
grep -q '"name":"knib-test","recording":true,"persistent":true' block.json \
  || fail "bitmap knib-test not listed: $(cat block.json)"
grep -q '"count":131072' block.json || fail "bitmap did not count the 128k write"

# An error: non-zero exit with QEMU's class, QEMU's message shown.
set +e
"$KNIB" qmp "$S" block-dirty-bitmap-add node=nosuchnode name=x 2> err.txt
rc=$?
set -e
[ "$rc" -eq 10 ] || fail "GenericError exits $rc, not 10"
grep -q "knib: qmp 'block-dirty-bitmap-add': Cannot find device" err.txt \
  || fail "error text: $(cat err.txt)"
set +e
"$KNIB" qmp "$S" no-such-command 2> err.txt
rc=$?
set -e
[ "$rc" -eq 11 ] || fail "CommandNotFound exits $rc, not 11"

# Events: a watcher on the second monitor sees a real block job's states.
"$KNIB" qmp "$TMPDIR_TEST/vm.qmp2" --events --filter JOB_STATUS_CHANGE > events.txt &
watcher=$!
track_pid $watcher
sleep 0.5
"$KNIB" qmp "$S" blockdev-add driver=qcow2 node-name=knib-target \
  file.driver=file file.filename="$TMPDIR_TEST/target.qcow2" > /dev/null
"$KNIB" qmp "$S" blockdev-backup job-id=knib-job device=disk0 target=knib-target sync=full > /dev/null
wait_for_text events.txt '"status":"concluded"'
for status in created running waiting pending concluded null; do
  grep -q "JOB_STATUS_CHANGE {\"status\":\"$status\",\"id\":\"knib-job\"}" events.txt \
    || fail "no $status event: $(cat events.txt)"
done
grep -v -q JOB_STATUS_CHANGE events.txt && fail "--filter let other events through"
kill "$watcher"

# The shell: commands from stdin, and .wait for an event.
printf '%s\n' \
  'block-dirty-bitmap-remove node=disk0 name=knib-test' \
  "blockdev-backup job-id=knib-job2 device=disk0 target=knib-target sync=full auto-dismiss=false" \
  '.wait JOB_STATUS_CHANGE 30 id=knib-job2 status=concluded' \
  'job-dismiss id=knib-job2' \
  'human-monitor-command command-line="info block-jobs"' \
  | "$KNIB" qmp "$S" > shell.txt
grep -q 'JOB_STATUS_CHANGE {"status":"concluded","id":"knib-job2"}' shell.txt || fail "shell .wait: $(cat shell.txt)"
grep -q '"No active jobs' shell.txt || fail "shell did not run the last command: $(cat shell.txt)"

# Raw traffic under KNIB_DEBUG=qmp.
KNIB_DEBUG=qmp "$KNIB" qmp "$S" query-status > /dev/null 2> debug.txt
grep -q 'debug qmp: -> {"execute":"query-status","id":"knib-2"}' debug.txt \
  || fail "no wire trace: $(cat debug.txt)"

# Not a QMP socket, and no socket at all: clear errors, exit 1.
nbdkit --exit-with-parent -U "$TMPDIR_TEST/nbd.sock" memory 1M &
track_pid $!
wait_for_socket "$TMPDIR_TEST/nbd.sock"
set +e
"$KNIB" qmp --timeout 5 "$TMPDIR_TEST/nbd.sock" query-status 2> err.txt
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "non-QMP socket exits $rc"
grep -q "is this QEMU's QMP socket" err.txt || fail "non-QMP socket: $(cat err.txt)"
set +e
"$KNIB" qmp "$TMPDIR_TEST/missing.sock" query-status 2> err.txt
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "missing socket exits $rc"
grep -q "cannot connect to '$TMPDIR_TEST/missing.sock': No such file or directory" err.txt \
  || fail "missing socket: $(cat err.txt)"

# QEMU quitting ends an event watcher cleanly.
"$KNIB" qmp "$TMPDIR_TEST/vm.qmp2" --events > events2.txt &
watcher=$!
sleep 0.3
"$KNIB" qmp "$S" quit > /dev/null
wait "$watcher" || fail "event watcher did not exit 0 when QEMU quit"
grep -q SHUTDOWN events2.txt || fail "no SHUTDOWN event: $(cat events2.txt)"
echo "qmp-real-qemu: ok"
