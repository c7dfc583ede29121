#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-policy.sh: a VM whose policy in knib.conf says deferred
# compression (vm.NAME.compress = deferred) gets a compression job
# queued after each backup, though the requests do not ask for one:
# four backups taken one after another, compressed in parallel up to
# compression-jobs-per-host (2); a scheduled backup's too.
# query-settings shows the policy; a request's own compress wins;
# set-settings changes the policy.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io sqlite3
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/agent-functions.sh"

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 disk.qcow2 64M
start_qemu vm "$TMPDIR_TEST/disk.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
mkdir -p "$SCRATCH"
cat >"$AGENT_CONF" <<EOF
compression-jobs-per-host = 2
compression-rate-limit = 1
# held back until the backups are in
compression-jobs = false
vm.vm.compress = deferred
EOF
start_knibd
agent query-settings | grep -q '"vm.vm.compress":"deferred"' \
  || fail "query-settings has no policy: $(agent query-settings)"

# backup: a backup of vm whose request says nothing of compression.
backup () {
  agent_job backup vm=vm "repo=$REPO" "qmp=$S" "scratch=$SCRATCH" "$@"
}
compress_job () {
  agent query-jobs "type=compress-$1" "backup=$2" | sed -n 's/^\[{"id":\([0-9]*\).*/\1/p'
}

# Four backups one after another, 3 MiB of new data each (at 1 MiB/s a
# compression takes seconds).
: >ids.txt
for n in 1 2 3 4; do
  head -c 3M /dev/urandom >w.bin
  "$KNIB" qmp "$S2" human-monitor-command \
    "command-line=qemu-io -d vda/virtio-backend \"write -s $TMPDIR_TEST/w.bin $((n * 4))M 3M\"" \
    >/dev/null || fail "guest write $n"
  j=$(backup)
  job_wait_ok "$j"
  agent query-jobs "id=$j" | grep -q '"request":{[^}]*"compress":"deferred"' \
    || fail "backup job $j does not have the VM's policy: $(agent query-jobs "id=$j")"
  id=$(job_field "$j" backup)
  echo "$id" >>ids.txt
  qemu-img info "$REPO/vms/vm/$id/vda.qcow2" | grep -q "compression type: zstd" \
    && fail "backup $id was compressed inline"
  [ -n "$(compress_job start "$id")" ] || fail "no compression queued for backup $id"
done
[ "$(agent query-jobs type=compress-start status=queued | grep -o '"type":"compress-start"' | wc -l)" -eq 4 ] \
  || fail "four compressions are not queued: $(agent query-jobs type=compress-start)"
agent set-settings compression-jobs=true >/dev/null
while read -r id; do
  c=$(compress_job start "$id")
  job_wait_ok "$c"
  n=0
  until [ -n "$(compress_job finalize "$id")" ]; do
    n=$((n + 1))
    [ "$n" -le 300 ] || fail "no finalize job for $id"
    sleep 0.2
  done
  job_wait_ok "$(compress_job finalize "$id")"
  qemu-img info "$REPO/vms/vm/$id/vda.qcow2" | grep -q "compression type: zstd" \
    || fail "backup $id is not compressed"
done <ids.txt
[ "$(max_overlap compress-start)" -eq 2 ] \
  || fail "compression-jobs-per-host 2: $(max_overlap compress-start) ran at once"
oracle "$S2" disk.qcow2 oracle.qcow2
check_image vm "$(tail -1 ids.txt)" vda oracle.qcow2

# A scheduled backup follows the policy too: an hourly schedule whose
# last run is set back two hours fires at once.
agent schedule-set name=hourly calendar=hourly vm=vm "repo=$REPO" "qmp=$S" \
  "scratch=$SCRATCH" >/dev/null
sqlite3 -cmd ".timeout 10000" "$AGENT_STATE/knibd.db" \
  "UPDATE schedules SET last_run = last_run - 7200 WHERE name = 'hourly'" \
  || fail "cannot set the schedule's last run back"
n=0
until agent query-jobs type=backup | grep -q '"schedule":"hourly"'; do
  n=$((n + 1))
  [ "$n" -le 150 ] || fail "the schedule did not fire: $(tail -5 "$AGENT_LOG")"
  sleep 0.2
done
agent schedule-remove name=hourly >/dev/null
j=$(agent query-jobs type=backup | sed 's/},{"id"/}\n{"id"/g' | grep '"schedule":"hourly"' \
  | sed -n 's/^{"id":\([0-9]*\),"type":"backup".*/\1/p')
job_wait_ok "$j"
agent query-jobs "id=$j" | grep -q '"request":{[^}]*"compress":"deferred"' \
  || fail "the scheduled backup does not have the VM's policy: $(agent query-jobs "id=$j")"
c=$(compress_job start "$(job_field "$j" backup)")
[ -n "$c" ] || fail "no compression queued after the scheduled backup"
job_wait_ok "$c"

# A request's own compress wins over the policy.
j=$(backup compress=none)
job_wait_ok "$j"
[ -z "$(compress_job start "$(job_field "$j" backup)")" ] \
  || fail "compress=none in the request queued a compression"
# set-settings: the policy back to the default (knib.conf's compress,
# none here): no compression follows.
agent set-settings '{"vm.vm.compress": "default"}' >/dev/null
agent query-settings | grep -q '"vm.vm.compress"' \
  && fail "the policy is still there: $(agent query-settings)"
j=$(backup)
job_wait_ok "$j"
[ -z "$(compress_job start "$(job_field "$j" backup)")" ] \
  || fail "a VM without a policy got a compression"
knib_run v.out v.err verify --repo "$REPO" vm
[ "$rc" -eq 0 ] || fail "knib verify: $(cat v.out v.err)"
stop_knibd
echo "agent-policy: ok"
