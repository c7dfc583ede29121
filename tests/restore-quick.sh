#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# restore-quick.sh: quick restore of backup N onto a stopped VM's image
# (--image --quick): an overlay on N's image in the repository that reads
# as N at once; N and its ancestors are pinned (delete, merge and
# compress refuse them) until block-stream on the VM's QEMU has pulled
# the data in (--consolidate), which survives a kill -9 of knib (the job
# is adopted) and of QEMU (it resumes), and keeps the guest's writes made
# meanwhile; a backup while it runs is refused; then the next backup is
# an incremental of N.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img qemu-io

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
start_qemu vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2



same () {
  qemu-img compare -U -q "$2" "$1" || fail "$1 differs from $2: $(qemu-img compare -U "$2" "$1" 2>&1)"
}

# status: "DISK STATE" of vda from knib restore --status --json.
status () {
  "$KNIB" restore --repo "$REPO" --status --qmp "$S" --vm vm --json >st.json \
    || fail "restore --status: $(cat st.json)"
  tr -d ' \n' <st.json | sed -n 's/.*"name":"vda","state":"\([^"]*\)".*/\1/p' 
}

# wait_state STATE: until vda's consolidation is in STATE.
wait_state () {
  _i=0
  until [ "$(status)" = "$1" ]; do
    _i=$((_i + 1))
    [ "$_i" -le 600 ] || fail "vda never reached state $1: $(cat st.json)"
    sleep 0.1
  done
}

flush () {
  "$KNIB" qmp "$S2" human-monitor-command \
    "command-line=qemu-io -d vda/virtio-backend flush" >/dev/null
}

# 24 MiB of data, so that a consolidation at 2 MiB/s takes a while.
hmp_write "$S" vda 0x11 0 8M
hmp_write "$S" vda 0x12 16M 8M
backup_ok vm "$S" b1.json
b1=$(last_id vm)
hmp_write "$S" vda 0x13 32M 8M
oracle "$S2" a.qcow2 oracle-2.qcow2
backup_ok vm "$S" b2.json
expect_kind b2.json incremental "$b1"
b2=$(last_id vm)
hmp_write "$S" vda 0x14 48M 1M
quit_qemu vm

# Bad input.
knib_run out err restore --repo "$REPO" --status --qmp "$S" --vm vm --wait
expect_failure err "--status --wait" "go with --consolidate"
knib_run out err restore --repo "$REPO" --consolidate --qmp "$S"
expect_failure err "--qmp without --vm" "needs --vm"
knib_run out err restore --repo "$REPO" --consolidate --vm vm
expect_failure err "no VM given" "give --domain NAME, or --qmp"
knib_run out err restore --repo "$REPO" --consolidate --qmp "$S" --vm vm "$b2"
expect_failure err "a BACKUP with --consolidate" "take no BACKUP"

# ---- Phase 1: kills during consolidation ----
knib_run out err restore --repo "$REPO" "$b2" --image vda=a.qcow2 --quick
[ "$rc" -eq 0 ] || fail "quick restore exited $rc: $(cat err)"
grep -q -- "--consolidate" out || fail "quick restore did not say what next: $(cat out)"
qemu-img info --output=json a.qcow2 | tr -d ' \n' >info.json
real_b2=$(realpath "$REPO/vms/vm/$b2/vda.qcow2")
grep -q "\"full-backing-filename\":\"$real_b2\"" info.json \
  || grep -q "\"backing-filename\":\"$real_b2\"" info.json \
  || fail "the overlay's backing file is not $real_b2: $(cat info.json)"
grep -q '"backing-filename-format":"qcow2"' info.json \
  || fail "the overlay's backing format is not qcow2: $(cat info.json)"
grep -q "\"name\":\"knib-$(rid)-$b2\"" info.json || fail "the overlay lacks bitmap knib-$(rid)-$b2"
same a.qcow2 oracle-2.qcow2

# Pinned: refused, and said by whom.
for cmd in "delete --vm vm $b2" "delete --vm vm $b1" "merge $b2" "compress $b2"; do
  # shellcheck disable=SC2086
  knib_run out err $cmd --repo "$REPO"
  expect_failure err "$cmd of a pinned backup" "is pinned" "disk 'vda' of vm 'vm'" "a.qcow2"
done
[ -f "$REPO/vms/vm/$b2/manifest.json" ] || fail "a pinned backup went"
grep -q '"state": *"complete"' "$REPO/vms/vm/$b1/manifest.json" \
  || fail "a pinned backup's ancestor was marked removed"

start_qemu vm "$TMPDIR_TEST/a.qcow2"
[ "$(status)" = pending ] || fail "a quick-restored disk is not pending: $(cat st.json)"
"$KNIB" restore --repo "$REPO" --consolidate --qmp "$S" --vm vm --rate-limit 2 \
  >c1.out 2>&1 || fail "consolidate: $(cat c1.out)"
grep -q "vda: running" c1.out || fail "consolidate did not start: $(cat c1.out)"
# The guest writes while it runs.
hmp_write "$S" vda 0x55 40M 1M
hmp_write "$S" vda 0x56 2M 64K
flush
cp oracle-2.qcow2 expected.qcow2
qemu-io -f qcow2 -c "write -P 0x55 40M 1M" -c "write -P 0x56 2M 64K" expected.qcow2 >/dev/null

# kill -9 of a waiting knib: QEMU's job runs on, the next knib adopts it.
"$KNIB" restore --repo "$REPO" --consolidate --qmp "$S" --vm vm --wait \
  >c2.out 2>&1 &
KPID=$!
track_pid $KPID
sleep 1
kill -9 "$KPID"
wait "$KPID" 2>/dev/null || :
[ "$(status)" = running ] || fail "the job did not run on after knib was killed: $(cat st.json)"
"$KNIB" restore --repo "$REPO" --consolidate --qmp "$S" --vm vm >c3.out 2>&1 \
  || fail "consolidate again: $(cat c3.out)"
grep -q "vda: running (adopted)" c3.out || fail "the running job was not adopted: $(cat c3.out)"

# kill -9 of QEMU mid-way: the overlay and its backing are intact, and
# the consolidation resumes.
kill -9 "$(eval echo "\$QEMU_PID_vm")"
wait "$(eval echo "\$QEMU_PID_vm")" 2>/dev/null || :
qemu-img info --output=json a.qcow2 | grep -q backing-filename \
  || fail "the overlay lost its backing file when QEMU was killed"
same a.qcow2 expected.qcow2
start_qemu vm "$TMPDIR_TEST/a.qcow2"
[ "$(status)" = pending ] || fail "not pending after QEMU was killed: $(cat st.json)"
"$KNIB" -v restore --repo "$REPO" --consolidate --qmp "$S" --vm vm --wait --json \
  >c4.json 2>c4.err || fail "consolidate --wait: $(cat c4.err)"
tr -d ' \n' <c4.json | grep -q '"state":"consolidated"' || fail "not consolidated: $(cat c4.json)"
# A waiting knib reads the backup's images ahead of the stream.
grep -q "read-ahead: [1-9][0-9]* images below '$REPO/" c4.err \
  || fail "no read-ahead of the backup's images: $(grep read-ahead c4.err)"
# ... and has the disk's image written with O_DIRECT while it streams
# (the VM's own cache mode is buffered), then puts that mode back.
grep -q "direct I/O: disk 'vda' is written with cache.direct=on while it streams (blockdev-reopen of node 'disk0')" c4.err \
  || fail "the stream did not write with O_DIRECT: $(grep 'direct I/O' c4.err)"
grep -q "direct I/O: disk 'vda' back to cache.direct=off" c4.err \
  || fail "the disk's cache mode did not go back: $(grep 'direct I/O' c4.err)"
"$KNIB" qmp --json "$S2" query-named-block-nodes >nodes.json
grep -q '"direct": *true' nodes.json && fail "a node keeps cache.direct=on: $(cat nodes.json)"
! qemu-img info -U --output=json a.qcow2 | grep -q backing-filename \
  || fail "the disk still has a backing file"
# What is on disk is whole even before QEMU flushes again (a kill -9
# now loses nothing: knib flushed before the backing file was dropped).
same a.qcow2 expected.qcow2
"$KNIB" qmp "$S2" stop >/dev/null
flush
qemu-img convert -U -O qcow2 a.qcow2 after.qcow2
"$KNIB" qmp "$S2" cont >/dev/null
same after.qcow2 expected.qcow2
quit_qemu vm

# ---- Phase 2: quick restore, guest writes, consolidation, backup ----
"$KNIB" restore --repo "$REPO" "$b2" --image vda=a.qcow2 --quick >/dev/null \
  || fail "second quick restore"
start_qemu vm "$TMPDIR_TEST/a.qcow2"
hmp_write "$S" vda 0x77 60M 1M
# A backup while the consolidation runs is refused, saying so, and
# changes nothing (the job is paused here so that it cannot end first).
"$KNIB" restore --repo "$REPO" --consolidate --qmp "$S" --vm vm --rate-limit 1 \
  >c5.out 2>&1 || fail "consolidate: $(cat c5.out)"
"$KNIB" qmp "$S2" job-pause id=knib-stream-vda >/dev/null || fail "job-pause"
ls "$REPO/vms/vm" >ls-before
knib_run b-refused.json b-refused.err backup --json --timeout 60 --qmp "$S" \
  --vm vm --repo "$REPO" --scratch "$SCRATCH"
expect_failure b-refused.err "a backup during consolidation" \
  "disk 'vda' is being consolidated" "knib restore --repo $REPO --consolidate --qmp $S --vm vm --wait"
ls "$REPO/vms/vm" | cmp -s - ls-before || fail "the refused backup left something: $(ls "$REPO/vms/vm")"
"$KNIB" qmp "$S2" query-block-jobs | grep -q '"paused": *true' \
  || fail "the refused backup touched the consolidation: $("$KNIB" qmp "$S2" query-block-jobs)"
"$KNIB" qmp "$S2" block-job-set-speed device=knib-stream-vda speed=0 >/dev/null \
  || fail "block-job-set-speed"
"$KNIB" qmp "$S2" job-resume id=knib-stream-vda >/dev/null || fail "job-resume"
"$KNIB" restore --repo "$REPO" --consolidate --qmp "$S" --vm vm --wait \
  >c5.out 2>&1 || fail "consolidate --wait: $(cat c5.out)"
grep -q "vda: consolidated" c5.out || fail "not consolidated: $(cat c5.out)"
[ ! -f "$REPO/vms/vm/pins.json" ] || fail "pins left after consolidation: $(cat "$REPO/vms/vm/pins.json")"
oracle "$S2" a.qcow2 oracle-3.qcow2
cp oracle-2.qcow2 expected3.qcow2
qemu-io -f qcow2 -c "write -P 0x77 60M 1M" expected3.qcow2 >/dev/null
same oracle-3.qcow2 expected3.qcow2
backup_ok vm "$S" b3.json
expect_kind b3.json incremental "$b2"
b3=$(last_id vm)
check_image vm "$b3" vda oracle-3.qcow2
echo "list after quick restore, consolidation and backup 3:"
"$KNIB" list --repo "$REPO" vm --all | tee list.out
grep -q "$b3 .* tip " list.out || fail "list does not show $b3 as the tip"
# Not pinned any more: the delete goes ahead (b2 stays for b3).
"$KNIB" delete --repo "$REPO" --vm vm "$b2" >del.out 2>&1 || fail "delete $b2: $(cat del.out)"
"$KNIB" restore --repo "$REPO" "$b3" --to r3.qcow2 >/dev/null || fail "restore $b3"
same r3.qcow2 oracle-3.qcow2
echo ok
