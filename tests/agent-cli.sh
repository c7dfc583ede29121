#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-cli.sh: "knib COMMAND --agent [--wait]": backup, restore, verify,
# compress, delete and prune run as knibd's jobs from their own command
# lines; --wait follows the job (its progress from the job's knib through
# knibd to the client: events and query-jobs), prints the command's
# --json summary and exits with the job's status; Ctrl-C of the client
# leaves the job running unless --cancel-on-interrupt; options knibd's
# jobs do not take are refused.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/agent-functions.sh"

cd "$TMPDIR_TEST"
head -c 8M /dev/urandom >random.bin
qemu-img create -q -f qcow2 disk.qcow2 64M
qemu-io -f qcow2 -c "write -s random.bin 0 8M" disk.qcow2 >/dev/null
start_qemu vm "$TMPDIR_TEST/disk.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
mkdir -p "$SCRATCH"
start_knibd

# Bad input: refused before anything is queued (exit 2).
for bad in "backup --agent --quiesce --vm vm --repo $REPO --qmp $S" \
  "backup --agent --bogus" "info --agent --repo $REPO --vm vm x" \
  "backup --agent --vm vm --repo $REPO --qmp $S extra" \
  "backup --agent --full --isolated --vm vm --repo $REPO --qmp $S" \
  "backup --agent --chain-size x --vm vm --repo $REPO --qmp $S" \
  "backup --agent --cancel-on-interrupt --vm vm --repo $REPO --qmp $S" \
  "delete --agent --vm vm --repo $REPO"; do
  # shellcheck disable=SC2086
  knib_run bad.out bad.err $bad
  [ "$rc" -eq 2 ] || fail "knib $bad exited $rc: $(cat bad.err)"
done
knib_run bad.out bad.err backup --agent --quiesce --vm vm
grep -q "'--quiesce' does not go with --agent" bad.err || fail "--quiesce: $(cat bad.err)"
knib_run bad.out bad.err info --agent --repo "$REPO" --vm vm x
grep -q "does not run through knibd" bad.err || fail "info --agent: $(cat bad.err)"
# knibd refuses what it does not take: exit 1, its message.
knib_run bad.out bad.err backup --agent --wait --vm a/b --repo "$REPO" --qmp "$S"
{ [ "$rc" -eq 1 ] && grep -q "invalid vm name 'a/b'" bad.err; } \
  || fail "backup --agent of vm a/b: $rc $(cat bad.err)"
[ "$(agent query-jobs)" = "[]" ] || fail "bad input queued jobs: $(agent query-jobs)"

# 1. Without --wait: queued, "job N: queued"; knib job wait follows it.
oracle "$S2" disk.qcow2 oracle1.qcow2
knib_run q.out q.err backup --agent --vm vm --repo "$REPO" --qmp "$S" --scratch "$SCRATCH"
[ "$rc" -eq 0 ] || fail "backup --agent exited $rc: $(cat q.err)"
j=$(sed -n 's/^job \([0-9]*\): queued$/\1/p' q.out)
[ -n "$j" ] || fail "backup --agent said: $(cat q.out)"
job_wait_ok "$j"
b1=$(job_field "$j" backup)
[ "$(job_field "$j" exit-status)" = 0 ] || fail "job $j: exit status $(job_field "$j" exit-status)"

# 2. --wait --json: the backup's own summary; progress flows as
# JOB_PROGRESS events (watched by another client) and in query-jobs.
"$KNIB" qmp --json "$AGENT" --events --filter JOB_PROGRESS \
  --filter DOMAIN_STATE_CHANGE >progress.json 2>&1 &
track_pid $!
# It listens once a notice's event reaches it.
until grep -q '"domain":"marker"' progress.json; do
  "$AGENT_RAW" -d "$TMPDIR_TEST/knibd.notify" "running marker" || fail "agent-raw -d"
  sleep 0.2
done
hmp_write "$S2" vda 0x5a 0 8M
oracle "$S2" disk.qcow2 oracle2.qcow2
knib_run w.out w.err backup --agent --wait --json --full --rate-limit 2 \
  --vm vm --repo "$REPO" --qmp "$S" --scratch "$SCRATCH"
[ "$rc" -eq 0 ] || fail "backup --agent --wait exited $rc: $(cat w.err)"
b2=$(json_top w.out id)
[ -n "$b2" ] && [ "$(json_top w.out kind)" = full ] || fail "backup --agent --wait --json printed: $(cat w.out)"
[ -f "$REPO/vms/vm/$b2/manifest.json" ] || fail "no backup $b2"
grep -q '"event":"JOB_PROGRESS","data":{"id":[0-9]*,"type":"backup","vm":"vm","label":"vda","done":[0-9]*,"total":67108864}' progress.json \
  || fail "no JOB_PROGRESS event of the backup: $(head -c 600 progress.json)"
[ "$(grep -c JOB_PROGRESS progress.json)" -ge 2 ] || fail "one progress event only: $(cat progress.json)"
# The figures grow to the end of the data (8 MiB; the rest reads as zero).
sed -n 's/.*"done":\([0-9]*\).*/\1/p' progress.json >done.txt
[ "$(sort -n done.txt | tail -1)" = "$(tail -1 done.txt)" ] || fail "progress went back: $(cat done.txt)"
[ "$(tail -1 done.txt)" -ge 8388608 ] || fail "progress ended at $(tail -1 done.txt)"

# 3. The bar on a terminal (script gives knib one).
if command -v script >/dev/null; then
  hmp_write "$S2" vda 0x5b 0 8M
  script -qec "'$KNIB' backup --agent='$AGENT' --wait --full --rate-limit 2 --vm vm --repo '$REPO' --qmp '$S' --scratch '$SCRATCH'" tty.out >/dev/null 2>&1 \
    || fail "backup --agent --wait on a terminal: $(cat tty.out)"
  grep -q 'vda  *\[#* *\] [0-9.]* [KMG]*i*B/64.0 MiB' tty.out || fail "no progress bar: $(cat -v tty.out | head -c 800)"
  grep -q 'job [0-9]*: succeeded: backup ' tty.out || fail "no end line: $(cat -v tty.out | tail -c 300)"
fi

# 4. A running job's row carries its progress.
k=$(agent_job backup vm=vm "repo=$REPO" "qmp=$S" "scratch=$SCRATCH" mode=full rate-limit=1)
i=0
until agent query-jobs "id=$k" | grep -q '"progress":{"label":"vda","done":[0-9]*,"total":67108864}'; do
  i=$((i + 1)); [ "$i" -le 300 ] || fail "job $k: no progress in query-jobs: $(agent query-jobs "id=$k")"
  sleep 0.2
done

# catching_term PID: until process PID is knib and has its SIGTERM
# handler (a signal sooner would end it before knib can say anything).
catching_term () {
  until [ "$(readlink "/proc/$1/exe")" = "$(readlink -f "$KNIB")" ] \
    && [ $(( 0x$(sed -n 's/^SigCgt:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null || echo 0) & 0x4000 )) -ne 0 ]; do
    kill -0 "$1" 2>/dev/null || fail "process $1 ended: $(cat cw.out ci.out 2>/dev/null)"
    sleep 0.1
  done
}

# 5. Ctrl-C of the waiting client: the job goes on.  (A background job
# of a script ignores SIGINT: SIGTERM, which knib takes alike, stands in.)
"$KNIB" job wait "$k" >cw.out 2>&1 &
cw=$!
catching_term "$cw"
kill -TERM "$cw"
rc=0; wait "$cw" || rc=$?
[ "$rc" -eq 143 ] || fail "knib job wait after SIGINT exited $rc: $(cat cw.out)"
grep -q "job $k goes on in knibd" cw.out || fail "SIGINT: $(cat cw.out)"
[ "$(job_field "$k" status)" = running ] || fail "job $k after the client's SIGINT: $(job_field "$k" status)"
#    --cancel-on-interrupt: the job is cancelled, the client waits for it.
knib_run c.out c.err job cancel "$k"
wait_job_status "$k" cancelled 60
"$KNIB" backup --agent --wait --cancel-on-interrupt --full --rate-limit 1 --vm vm \
  --repo "$REPO" --qmp "$S" --scratch "$SCRATCH" >ci.out 2>&1 &
ci=$!
k2=""
i=0
until [ -n "$k2" ]; do
  k2=$(agent query-jobs status=running | sed -n 's/.*"id":\([0-9]*\),"type":"backup".*/\1/p')
  i=$((i + 1)); [ "$i" -le 300 ] || fail "the --cancel-on-interrupt backup never ran"
  sleep 0.2
done
catching_term "$ci"
kill -TERM "$ci"
rc=0; wait "$ci" || rc=$?
[ "$rc" -ne 0 ] || fail "an interrupted, cancelled job's client exited 0"
grep -q "job $k2: cancelling it" ci.out && grep -q "job $k2: cancelled" ci.out \
  || fail "--cancel-on-interrupt: $(cat ci.out)"
[ "$(job_field "$k2" status)" = cancelled ] || fail "job $k2 is $(job_field "$k2" status)"
ls "$REPO/vms/vm" | grep '^2' | sort >ids-vm
check_qemu_clean "$S" vm vda

# 6. A failing job: its knib's exit status, its error.
knib_run f.out f.err backup --vm vm --repo "$REPO" --qmp "$TMPDIR_TEST/nothing.qmp" --scratch "$SCRATCH"
direct=$rc
knib_run f.out f.err backup --agent --wait --vm vm --repo "$REPO" --qmp "$TMPDIR_TEST/nothing.qmp" --scratch "$SCRATCH"
[ "$rc" -eq "$direct" ] && [ "$rc" -ne 0 ] || fail "a failed backup job: exit $rc, knib backup's is $direct: $(cat f.err)"
grep -q "job [0-9]*: failed: knib: .*nothing.qmp" f.err || fail "failed job: $(cat f.err)"

# 7. restore, verify, compress, delete, prune through knibd.
knib_run r.out r.err restore --agent --wait --repo "$REPO" --vm vm "$b2" --to "$TMPDIR_TEST/restored.qcow2"
[ "$rc" -eq 0 ] || fail "restore --agent --wait exited $rc: $(cat r.err)"
qemu-img compare -q oracle2.qcow2 restored.qcow2 || fail "the restored image differs from its oracle"
knib_run v.out v.err verify --agent --wait --json --repo "$REPO" --vm vm "$b2"
[ "$rc" -eq 0 ] && grep -q '"success":true' v.out || fail "verify --agent --wait: $rc $(cat v.out v.err)"
knib_run z.out z.err compress --agent --wait --repo "$REPO" --vm vm --compress zstd "$b1"
[ "$rc" -eq 0 ] || fail "compress --agent --wait exited $rc: $(cat z.err)"
qemu-img check -q "$REPO/vms/vm/$b1/vda.qcow2" || fail "the compressed image fails qemu-img check"
qemu-img compare -q oracle1.qcow2 "$REPO/vms/vm/$b1/vda.qcow2" || fail "the compressed backup differs from its oracle"
knib_run d.out d.err delete --agent --wait --repo "$REPO" --vm vm "$b2"
[ "$rc" -eq 0 ] || fail "delete --agent --wait exited $rc: $(cat d.err)"
[ ! -d "$REPO/vms/vm/$b2" ] || fail "delete --agent left $b2"
knib_run p.out p.err prune --agent --wait --repo "$REPO" --vm vm --keep-last 1
[ "$rc" -eq 0 ] || fail "prune --agent --wait exited $rc: $(cat p.err)"
knib_run v.out v.err verify --repo "$REPO" vm
[ "$rc" -eq 0 ] || fail "knib verify after the jobs: $(cat v.out v.err)"
stop_knibd
echo "agent-cli: ok"
