#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-schedule.sh: a schedule with a one-minute calendar fires, its
# retention prunes after each backup, runs missed while knibd was down
# are caught up once when it starts, and bad schedules are refused.
# With test hooks, knibd's schedules read their time from a file that the
# test moves on (KNIB_TEST_CLOCK), so a calendar minute arrives at once;
# without them the test waits for the real minutes.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/agent-functions.sh"

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 disk.qcow2 32M
qemu-io -f qcow2 -c "write -P 0x21 0 2M" disk.qcow2 >/dev/null
start_qemu vm "$TMPDIR_TEST/disk.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
mkdir -p "$SCRATCH"

# clock_now: the schedules' time.  clock_to T: make it T (with test hooks
# at once; else wait for the real clock).
if [ "${KNIB_TEST_HOOKS:-no}" = yes ]; then
  KNIB_TEST_CLOCK=$TMPDIR_TEST/clock
  export KNIB_TEST_CLOCK
  # Half past a minute: the next one is 30 s away.
  echo $(( $(date +%s) / 60 * 60 + 30 )) >"$KNIB_TEST_CLOCK"
fi
clock_now () {
  if [ -n "${KNIB_TEST_CLOCK:-}" ]; then cat "$KNIB_TEST_CLOCK"; else date +%s; fi
}
clock_to () {
  if [ -n "${KNIB_TEST_CLOCK:-}" ]; then
    echo "$1" >"$KNIB_TEST_CLOCK.new"
    mv "$KNIB_TEST_CLOCK.new" "$KNIB_TEST_CLOCK"
  else
    while [ "$(date +%s)" -lt "$1" ]; do sleep 1; done
  fi
}
start_knibd

# Bad schedules: an error each, nothing set.
for bad in "name=a/b calendar=daily" "name=n calendar=yearly" \
  "name=n calendar=25:00" "name=n calendar=daily keep-daily=3" \
  "name=n calendar=daily bogus=1" "name=n calendar=daily keep-last=-1" \
  "calendar=daily" "name=n"; do
  # shellcheck disable=SC2086
  if "$KNIB" qmp "$AGENT" schedule-set vm=vm "repo=$REPO" "qmp=$S" $bad >bad.out 2>&1; then
    fail "schedule-set $bad was accepted"
  fi
done
"$KNIB" qmp "$AGENT" schedule-set name=x calendar=daily vm=a/b "repo=$REPO" "qmp=$S" \
  >bad.out 2>&1 && fail "a schedule of VM a/b was accepted"
grep -q "invalid vm name 'a/b'" bad.out || fail "schedule of a/b: $(cat bad.out)"
"$KNIB" qmp "$AGENT" schedule-remove name=none >bad.out 2>&1 && fail "removed no schedule"
grep -q "no schedule 'none'" bad.out || fail "schedule-remove: $(cat bad.out)"
[ "$(agent query-schedules)" = "[]" ] || fail "a bad schedule was set: $(agent query-schedules)"

# scheduled: the backup jobs the schedule queued so far.
scheduled () {
  agent query-jobs type=backup | grep -o '"schedule":"every-minute"' | wc -l
}
# 1. A one-minute calendar fires at the next minute (not before), then
#    its prune runs.
t0=$(clock_now)
agent schedule-set name=every-minute calendar=minutely vm=vm "repo=$REPO" \
  "qmp=$S" "scratch=$SCRATCH" keep-last=1 >/dev/null
next=$(agent query-schedules | sed -n 's/.*"name":"every-minute".*"next-run":\([0-9.e+]*\).*/\1/p')
[ -n "$next" ] || fail "query-schedules: $(agent query-schedules)"
next=$(awk -v n="$next" 'BEGIN { printf "%d", n }')
[ $((next % 60)) -eq 0 ] && [ "$next" -gt "$t0" ] && [ "$next" -le $((t0 + 120)) ] \
  || fail "next run $next is not the next minute after $t0"
if [ -n "${KNIB_TEST_CLOCK:-}" ]; then
  [ "$next" -eq $((t0 + 30)) ] || fail "next run $next, not $((t0 + 30))"
  sleep 3 # three ticks of knibd before the minute
  [ "$(scheduled)" -eq 0 ] || fail "the schedule fired before its minute"
fi
clock_to "$next"
n=0
until [ "$(scheduled)" -ge 1 ]; do
  n=$((n + 1))
  [ "$n" -le 100 ] || fail "the schedule did not fire within a minute: $(tail "$AGENT_LOG")"
  sleep 1
done
j1=$(agent query-jobs type=backup | sed -n 's/^\[{"id":\([0-9]*\).*/\1/p')
job_wait_ok "$j1"
wait_job_status "$(agent query-jobs type=prune | sed -n 's/^\[{"id":\([0-9]*\).*/\1/p')" succeeded 120

# 2. knibd down across two of its times: one run when it starts.
hmp_write "$S2" vda 0x22 4M 1M
stop_knibd
now=$(clock_now)
clock_to $(( now + 60 - now % 60 + 62 ))
fires_before=$(grep -c "schedule 'every-minute': backup of 'vm' queued" "$AGENT_LOG")
start_knibd
sleep 5
fires=$(( $(grep -c "schedule 'every-minute': backup of 'vm' queued" "$AGENT_LOG") - fires_before ))
[ "$fires" -eq 1 ] || fail "$fires runs caught up after two missed ones, not 1"
[ "$(scheduled)" -eq 2 ] || fail "$(scheduled) scheduled backups, not 2"
agent query-jobs type=backup | sed 's/},{"id"/}\n{"id"/g' | sed -n 's/^.*"id":\([0-9]*\),"type":"backup".*/\1/p' >jobs.txt
while read -r j; do job_wait_ok "$j"; done <jobs.txt
for p in $(agent query-jobs type=prune | grep -o '"id":[0-9]*,"type":"prune"' | sed 's/[^0-9]//g'); do
  wait_job_status "$p" succeeded 120
done
"$KNIB" list --repo "$REPO" --json vm >list.json || fail "knib list: $(cat list.json)"
[ "$(grep -o '"state": *"complete"' list.json | wc -l)" -eq 1 ] \
  || fail "retention keep-last 1 left: $(cat list.json)"
knib_run v.out v.err verify --repo "$REPO" vm
[ "$rc" -eq 0 ] || fail "knib verify: $(cat v.out v.err)"

# 3. Removed: it fires no more.
agent schedule-remove name=every-minute >/dev/null
[ "$(agent query-schedules)" = "[]" ] || fail "schedule-remove: $(agent query-schedules)"
stop_knibd
echo "agent-schedule: ok"
