#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-jobs.sh: knibd's other jobs and their ends against a real QEMU:
# a queued job cancelled, a running one cancelled and one killed at its
# timeout (each leaves QEMU and the repository clean), and restore,
# validate, delete and prune jobs, each checked by QEMU's tools.
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
: >"$TMPDIR_TEST/ids-vm"

backup () {
  agent_job backup vm=vm "repo=$REPO" "qmp=$S" "scratch=$SCRATCH" "$@"
}
gone () {
  ! kill -0 "$1" 2>/dev/null || [ "$(proc_state "$1")" = Z ]
}

# 1. A first backup, so the failed ones below have a chain to leave be.
oracle "$S2" disk.qcow2 oracle1.qcow2
j=$(backup)
job_wait_ok "$j"
job_field "$j" backup >>ids-vm

# 2. Cancel: a queued job at once, a running one stopped.
a=$(backup mode=full rate-limit=1)
b=$(backup)
wait_job_status "$a" running 60
"$KNIB" job cancel "$b" >c.out 2>&1 || fail "knib job cancel $b: $(cat c.out)"
[ "$(job_field "$b" status)" = cancelled ] || fail "queued job $b is $(job_field "$b" status)"
[ "$(job_field "$b" started)" = 0.0 ] || fail "the cancelled job $b started"
pid=$(job_field "$a" pid)
sleep 1
"$KNIB" job cancel "$a" >c.out 2>&1 || fail "knib job cancel $a: $(cat c.out)"
wait_job_status "$a" cancelled 60
gone "$pid" || fail "the cancelled job's process $pid lives on"
rc=0; "$KNIB" job wait "$a" >w.out 2>&1 || rc=$?
{ [ "$rc" -eq 1 ] && grep -q "job $a: cancelled" w.out; } || fail "knib job wait of a cancelled job: $rc $(cat w.out)"
rc=0; "$KNIB" job cancel "$a" >c.out 2>&1 || rc=$?
{ [ "$rc" -eq 1 ] && grep -q "is not queued or running" c.out; } \
  || fail "cancelling a finished job: $rc $(cat c.out)"
check_qemu_clean "$S" vm vda
check_repo_clean vm vda

# 3. A timeout: killed, failed, nothing left.
t=$(backup mode=full rate-limit=1 timeout=2)
wait_job_status "$t" failed 90
job_field "$t" error | grep -q "timed out after 2 s" || fail "job $t: $(job_field "$t" error)"
check_qemu_clean "$S" vm vda
check_repo_clean vm vda

# 4. Restore, verify, delete, prune as jobs.
hmp_write "$S2" vda 0x33 1M 1M
oracle "$S2" disk.qcow2 oracle2.qcow2
j=$(backup)
job_wait_ok "$j"
id2=$(job_field "$j" backup)
echo "$id2" >>ids-vm
r=$(agent_job restore vm=vm "repo=$REPO" "backup=$id2" "to=$TMPDIR_TEST/restored.qcow2")
job_wait_ok "$r"
qemu-img compare -q oracle2.qcow2 restored.qcow2 || fail "the restore job's image differs from its oracle"
# knib job submit --wait: queued, followed, its exit status the job's.
"$KNIB" job submit verify vm=vm "repo=$REPO" --wait >s.out 2>&1 \
  || fail "knib job submit verify --wait: $(cat s.out)"
v=$(sed -n 's/^job \([0-9]*\): succeeded$/\1/p' s.out)
[ -n "$v" ] || fail "knib job submit --wait said: $(cat s.out)"
rc=0; "$KNIB" job submit frob vm=vm >s.out 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "knib job submit frob exited $rc: $(cat s.out)"
rc=0; "$KNIB" job submit backup vm vm >s.out 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "knib job submit with a word that is not KEY=VALUE exited $rc: $(cat s.out)"
rc=0; "$KNIB" job submit backup vm=a/b "repo=$REPO" "qmp=$S" >s.out 2>&1 || rc=$?
{ [ "$rc" -eq 1 ] && grep -q "invalid vm name 'a/b'" s.out; } \
  || fail "knib job submit of vm a/b: $rc $(cat s.out)"
agent query-jobs "id=$v" | grep -q '"result":{.*"success":true' \
  || fail "verify job: $(agent query-jobs "id=$v")"
# list-backups: knib list's JSON; bad arguments refused.
agent list-backups "repo=$REPO" vm=vm | grep -q "\"id\":\"$id2\"" \
  || fail "list-backups: $(agent list-backups "repo=$REPO" vm=vm)"
for bad in "vm=a/b repo=$REPO" "vm=vm" "repo=$REPO bogus=1"; do
  # shellcheck disable=SC2086
  "$KNIB" qmp "$AGENT" list-backups $bad >bad.out 2>&1 && fail "list-backups $bad was accepted"
  grep -q "invalid vm name\|missing argument 'repo'\|takes 'repo' and 'vm' only" bad.out \
    || fail "list-backups $bad: $(cat bad.out)"
done

# The metrics textfile: node_exporter's format, this VM's figures.
m=$AGENT_METRICS
# (A verify job is no boot validation: agent-validate.sh has those.)
! grep -q '^knib_last_validation' "$m" || fail "metrics of a validation: $(cat "$m")"
grep -q '^knib_jobs{state="cancelled"} 2$' "$m" || fail "metrics (cancelled): $(cat "$m")"
grep -q '^knib_jobs{state="failed"} 1$' "$m" || fail "metrics (failed): $(cat "$m")"
grep -q "^knib_last_backup_info{vm=\"vm\",kind=\"incremental\",id=\"$id2\"} 1\$" "$m" \
  || fail "metrics (last backup): $(cat "$m")"
bytes=$(sed -n 's/^knib_last_backup_bytes{vm="vm"} //p' "$m")
[ "$bytes" -gt 0 ] || fail "metrics (bytes): $(cat "$m")"
grep -q '^knib_last_backup_timestamp_seconds{vm="vm"} [0-9.]*$' "$m" \
  || fail "metrics (time): $(cat "$m")"
for i in 1 2; do
  hmp_write "$S2" vda 0x4$i 2M 64k
  j=$(backup)
  job_wait_ok "$j"
  job_field "$j" backup >>ids-vm
done
last=$(tail -1 ids-vm)
d=$(agent_job delete vm=vm "repo=$REPO" "backups=[\"$last\"]")
job_wait_ok "$d"
[ ! -d "$REPO/vms/vm/$last" ] || fail "the delete job left $last"
sed -i '$d' ids-vm
p=$(agent_job prune vm=vm "repo=$REPO" keep-last=1)
job_wait_ok "$p"
[ "$(ls "$REPO/vms/vm" | grep -c '^2')" -ge 1 ] || fail "prune left no backup"
knib_run v.out v.err verify --repo "$REPO" vm
[ "$rc" -eq 0 ] || fail "knib verify after the jobs: $(cat v.out v.err)"
stop_knibd
echo "agent-jobs: ok"
