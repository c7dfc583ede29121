#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-restart.sh: kill -9 of knibd with one backup running and one
# queued: the next knibd adopts the running job (its process lives, pid
# and start time match), runs the queued one after it, and both succeed.
# Then kill -9 of knibd and of the running job together: the next knibd
# finds it gone, marks it interrupted and runs it again, and the
# backup's own recovery cleans what the killed run left.  Every backup
# equals its oracle, the repository verifies, QEMU and the repository
# hold nothing else.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/agent-functions.sh"

cd "$TMPDIR_TEST"
head -c 6M /dev/urandom >random.bin
qemu-img create -q -f qcow2 disk.qcow2 64M
qemu-io -f qcow2 -c "write -s random.bin 0 6M" disk.qcow2 >/dev/null
start_qemu vm "$TMPDIR_TEST/disk.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
mkdir -p "$SCRATCH"
start_knibd

# slow_backup [KEY=VALUE...]: a full backup at 1 MiB/s (seconds long).
slow_backup () {
  agent_job backup vm=vm "repo=$REPO" "qmp=$S" "scratch=$SCRATCH" mode=full \
    rate-limit=1 "$@"
}
alive () {
  kill -0 "$1" 2>/dev/null && [ "$(proc_state "$1")" != Z ]
}

# 1. One running, one queued (the same VM: it waits); kill -9 of knibd.
oracle "$S2" disk.qcow2 oracle.qcow2
a=$(slow_backup)
b=$(agent_job backup vm=vm "repo=$REPO" "qmp=$S" "scratch=$SCRATCH")
wait_job_status "$a" running 60
[ "$(job_field "$b" status)" = queued ] || fail "job $b is $(job_field "$b" status), not queued"
pid=$(job_field "$a" pid)
kill -9 "$KNIBD_PID"
wait "$KNIBD_PID" 2>/dev/null || :
alive "$pid" || fail "the running job died with knibd"
start_knibd
grep -q "job $a: adopted (pid $pid)" "$AGENT_LOG" || fail "job $a was not adopted: $(tail "$AGENT_LOG")"
job_wait_ok "$a"
job_wait_ok "$b"
[ "$(job_field "$a" attempts)" = 1 ] || fail "the adopted job ran again"
b_started=$(job_field "$b" started)
a_finished=$(job_field "$a" finished)
awk -v s="$b_started" -v f="$a_finished" 'BEGIN { exit !(s >= f) }' \
  || fail "job $b started ($b_started) before job $a ended ($a_finished)"
ida=$(job_field "$a" backup)
idb=$(job_field "$b" backup)
check_image vm "$ida" vda oracle.qcow2
check_image vm "$idb" vda oracle.qcow2
printf '%s\n%s\n' "$ida" "$idb" >"$TMPDIR_TEST/ids-vm"

# 2. kill -9 of knibd and of the running job: interrupted, run again.
hmp_write "$S2" vda 0x5a 8M 2M
oracle "$S2" disk.qcow2 oracle2.qcow2
d=$(slow_backup)
wait_job_status "$d" running 60
pid=$(job_field "$d" pid)
sleep 1
kill -9 "$KNIBD_PID"
wait "$KNIBD_PID" 2>/dev/null || :
kill -9 -- "-$pid"
n=0
while alive "$pid"; do
  n=$((n + 1))
  [ "$n" -le 100 ] || fail "the job's process $pid did not die"
  sleep 0.1
done
start_knibd
grep -q "job $d: interrupted, queued again" "$AGENT_LOG" \
  || fail "job $d was not found interrupted: $(tail "$AGENT_LOG")"
job_wait_ok "$d"
[ "$(job_field "$d" attempts)" = 1 ] || fail "job $d: $(job_field "$d" attempts) attempts counted"
idd=$(job_field "$d" backup)
check_image vm "$idd" vda oracle2.qcow2
echo "$idd" >>"$TMPDIR_TEST/ids-vm"
knib_run v.out v.err verify --repo "$REPO" vm
[ "$rc" -eq 0 ] || fail "knib verify: $(cat v.out v.err)"
check_qemu_clean "$S" vm vda
check_repo_clean vm vda
[ "$(agent query-jobs status=succeeded | grep -o '"status":"succeeded"' | wc -l)" -eq 3 ] \
  || fail "not every job succeeded: $(agent query-jobs)"
stop_knibd
echo "agent-restart: ok"
