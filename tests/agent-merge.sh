#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-merge.sh: knibd's merge job runs knib merge: an incremental
# backup becomes standalone (full, a chain of its own) and still reads
# as its oracle; a merge queued while a backup of the VM runs waits for
# it (queued, not failed) and the two never overlap; knib merge --agent
# --wait.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/agent-functions.sh"

cd "$TMPDIR_TEST"
head -c 4M /dev/urandom >random.bin
qemu-img create -q -f qcow2 disk.qcow2 64M
qemu-io -f qcow2 -c "write -s random.bin 0 4M" disk.qcow2 >/dev/null
start_qemu vm "$TMPDIR_TEST/disk.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
mkdir -p "$SCRATCH"
start_knibd

backup () {
  agent_job backup vm=vm "repo=$REPO" "qmp=$S" "scratch=$SCRATCH" "$@"
}
kind () {
  "$KNIB" info --repo "$REPO" --vm vm "$1" --json | sed -n 's/^  "kind": "\([a-z]*\)",$/\1/p'
}

# A full backup and two incremental ones, each with its oracle.
for n in 1 2 3; do
  hmp_write "$S2" vda "0x$((n + 40))" "$((n * 4))M" 1M
  oracle "$S2" disk.qcow2 "oracle$n.qcow2"
  j=$(backup)
  job_wait_ok "$j"
  eval "b$n=\$(job_field $j backup)"
done
# shellcheck disable=SC2154 # set through eval
[ "$(kind "$b3")" = incremental ] || fail "backup $b3 is $(kind "$b3"), not incremental"

# A slow backup (1 MiB/s), then a merge of b3 queued behind it: the
# merge waits for the VM's backup, queued, and runs after it.
hmp_write "$S2" vda 0x55 20M 3M
oracle "$S2" disk.qcow2 oracle4.qcow2
slow=$(backup mode=full rate-limit=1)
wait_job_status "$slow" running 60
m=$(agent_job merge vm=vm "repo=$REPO" "backup=$b3")
sleep 1
[ "$(job_field "$m" status)" = queued ] \
  || fail "a merge is $(job_field "$m" status) while a backup of the VM runs"
job_wait_ok "$slow"
job_wait_ok "$m"
agent query-jobs "id=$m" | grep -q '"argv":\[[^]]*"merge","--vm","vm","--repo","[^"]*","'"$b3"'"\]' \
  || fail "the job does not run knib merge: $(agent query-jobs "id=$m")"
awk -v f="$(job_field "$slow" finished)" -v s="$(job_field "$m" started)" \
  'BEGIN { exit !(f + 0 > 0 && f + 0 <= s + 0) }' \
  || fail "the merge started before the backup ended: $(agent query-jobs vm=vm)"
[ "$(kind "$b3")" = full ] || fail "merged backup $b3 is $(kind "$b3"), not full"
qemu-img info "$REPO/vms/vm/$b3/vda.qcow2" | grep -q '^backing file' \
  && fail "merged backup $b3 still has a backing file"
check_image vm "$b3" vda oracle3.qcow2
check_image vm "$b2" vda oracle2.qcow2
check_image vm "$(job_field "$slow" backup)" vda oracle4.qcow2

# knib merge --agent --wait: b2 (incremental of b1).
knib_run m.out m.err merge --agent --wait --repo "$REPO" --vm vm "$b2"
[ "$rc" -eq 0 ] || fail "knib merge --agent --wait: $rc $(cat m.out m.err)"
grep -q "^job [0-9]*: succeeded" m.out || fail "knib merge --agent --wait said: $(cat m.out)"
[ "$(kind "$b2")" = full ] || fail "merged backup $b2 is $(kind "$b2"), not full"
check_image vm "$b2" vda oracle2.qcow2
# A full backup is standalone already; a merge of a backup that is not
# there fails with knib merge's error.
knib_run m.out m.err merge --agent --wait --repo "$REPO" --vm vm "$b1"
[ "$rc" -eq 0 ] || fail "knib merge --agent --wait of a full backup: $rc $(cat m.out m.err)"
knib_run m.out m.err merge --agent --wait --repo "$REPO" --vm vm 20200101T000000Z
[ "$rc" -eq 1 ] || fail "knib merge --agent --wait of no backup exited $rc: $(cat m.out m.err)"
grep -q "knib: job [0-9]*: failed: knib: .*20200101T000000Z" m.err || fail "no error said: $(cat m.err)"
knib_run v.out v.err verify --repo "$REPO" vm
[ "$rc" -eq 0 ] || fail "knib verify after the merges: $(cat v.out v.err)"
stop_knibd
echo "agent-merge: ok"
