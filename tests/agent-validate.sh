#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-validate.sh: knibd's validate job is a boot validation (knib
# validate): the real test guest's backup boots and its command's output
# matches, a blank disk's backup fails with "No bootable device"; with
# validation-jobs-per-host 1 the second waits queued while the first
# runs; the result is validate's --json summary and the metrics show
# each VM's last validation; knib validate --agent --wait and knib
# verify --agent (the integrity check, a job of its own).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/guest-functions.sh"
. "$(dirname "$0")/validate-functions.sh"
. "$(dirname "$0")/agent-functions.sh"
require file pgrep

cd "$TMPDIR_TEST"
guest_disk
gid=$(backup_image guest "$GUEST_DISK")
blank_disk blank.qcow2
bid=$(backup_image blank "$TMPDIR_TEST/blank.qcow2")
before=$(repo_hash)
printf 'validation-jobs-per-host = 1\n' >"$AGENT_CONF"
start_knibd
agent query-settings | grep -q '"validation-jobs-per-host":1' \
  || fail "query-settings: $(agent query-settings)"

# Two validations queued: the guest's (one real boot under TCG), then
# the blank disk's.  Only one runs at a time.
"$KNIB" validate --agent --json --repo "$REPO" --vm guest "$gid" --accel tcg \
  --memory 256 --scratch "$SCRATCH" --expect-output '^Linux version ' \
  -- cat /proc/version >submit.out 2>&1 || fail "knib validate --agent: $(cat submit.out)"
j1=$(sed -n 's/^{"id":\([0-9]*\)}$/\1/p' submit.out)
[ -n "$j1" ] || fail "knib validate --agent --json printed $(cat submit.out)"
j2=$(agent_job validate vm=blank "repo=$REPO" "backup=$bid" accel=tcg memory=256 \
  "scratch=$SCRATCH" boot-timeout=120)
wait_job_status "$j1" running 60
agent query-jobs "id=$j1" | grep -q '"argv":\[[^]]*"validate","--json",[^]]*"--accel","tcg"[^]]*"--","cat","/proc/version"\]' \
  || fail "the job does not run knib validate: $(agent query-jobs "id=$j1")"
qemu_started "$KNIBD_PID" "$AGENT_LOG"
[ "$(job_field "$j2" status)" = queued ] \
  || fail "a second validation is $(job_field "$j2" status) while the first runs"
[ "$(agent query-jobs type=validate executing=true | grep -o '"status":"running"' | wc -l)" -eq 1 ] \
  || fail "more than one validation runs: $(agent query-jobs type=validate executing=true)"
job_wait_ok "$j1"
wait_job_status "$j2" failed 300
[ "$(max_overlap validate)" -eq 1 ] \
  || fail "validation-jobs-per-host 1: $(max_overlap validate) ran at once"

# The results: validate's --json summary.
agent query-jobs "id=$j1" >j1.json
grep -q '"result":{"vm":"guest","backup":"'"$gid"'","success":true,"validation":{"status":"passed"' j1.json \
  || fail "the guest's validation: $(cat j1.json)"
grep -q '"exit-code":0,"stdout":"Linux version ' j1.json || fail "the command's output: $(cat j1.json)"
agent query-jobs "id=$j2" >j2.json
grep -q '"success":false' j2.json && grep -q 'No bootable device' j2.json \
  || fail "the blank disk's validation: $(cat j2.json)"
grep -q '"error":"validation failed: boot: [^"]*No bootable device' j2.json \
  || fail "the job's error does not say which step failed: $(cat j2.json)"
knib_run info.out info.err info --repo "$REPO" --vm guest "$gid"
grep -q "^validation  *passed" info.out \
  || fail "the manifest has no passed validation: $rc $(cat info.out info.err)"

# The metrics: each VM's last boot validation.
grep -q "^knib_last_validation_success{vm=\"guest\",backup=\"$gid\"} 1$" "$AGENT_METRICS" \
  || fail "metrics: $(cat "$AGENT_METRICS")"
grep -q "^knib_last_validation_success{vm=\"blank\",backup=\"$bid\"} 0$" "$AGENT_METRICS" \
  || fail "metrics: $(cat "$AGENT_METRICS")"
grep -q '^knib_last_validation_recovery_seconds{vm="guest"} [0-9][0-9.]*$' "$AGENT_METRICS" \
  || fail "metrics: no recovery time: $(cat "$AGENT_METRICS")"
grep -q 'recovery_seconds{vm="blank"}' "$AGENT_METRICS" \
  && fail "metrics: a recovery time for a backup that did not boot"

# knib validate --agent --wait: the job's summary, its exit status
# (1: a step failed).  The blank disk again: no kernel to boot.
knib_run w.out w.err validate --agent --wait --json --repo "$REPO" --vm blank \
  "$bid" --accel tcg --memory 256 --scratch "$SCRATCH" --no-screenshot \
  --boot-timeout 120
[ "$rc" -eq 1 ] || fail "knib validate --agent --wait of a blank disk exited $rc: $(cat w.out w.err)"
grep -q '^{"vm":"blank","backup":"'"$bid"'","success":false' w.out \
  || fail "knib validate --agent --wait --json: $(cat w.out)"
grep -q "knib: job [0-9]*: failed: " w.err || fail "no error said: $(cat w.err)"

# verify: the integrity check, its own job type.
knib_run v.out v.err verify --agent --wait --json --repo "$REPO" --vm guest "$gid"
[ "$rc" -eq 0 ] && grep -q '"success":true' v.out \
  || fail "knib verify --agent --wait: $rc $(cat v.out v.err)"
agent query-jobs type=verify | grep -q '"type":"verify","vm":"guest"' \
  || fail "no verify job: $(agent query-jobs type=verify)"
[ "$(repo_hash)" = "$before" ] || fail "the validations changed the repository"
no_leftovers
stop_knibd
echo "agent-validate: ok"
