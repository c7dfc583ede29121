#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-compress.sh: the reference's "Configuration Tests" and
# "Compression Tests" against knibd and a real QEMU: full and
# incremental backups compressed afterwards (deferred), the
# compression-jobs switch, compression-jobs-per-host (and -1), retries
# counted and their interval respected, compression-min-free failing the
# job, threads and rate limit passed to the job, and ten backups of one
# VM taken one after another and compressed in parallel.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/agent-functions.sh"

cd "$TMPDIR_TEST"
head -c 4M /dev/urandom >random.bin
qemu-img create -q -f qcow2 disk.qcow2 128M
qemu-io -f qcow2 -c "write -s random.bin 0 4M" disk.qcow2 >/dev/null
start_qemu vm "$TMPDIR_TEST/disk.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
mkdir -p "$SCRATCH"
start_knibd
"$KNIB" qmp --json "$AGENT" --events --filter JOB_STATUS_CHANGE >events.json 2>&1 &
track_pid $!

# guest_write MIB OFFSET: MIB MiB of fresh random data at OFFSET (MiB).
guest_write () {
  head -c "${1}M" /dev/urandom >w.bin
  "$KNIB" qmp "$S2" human-monitor-command \
    "command-line=qemu-io -d vda/virtio-backend \"write -s $TMPDIR_TEST/w.bin ${2}M ${1}M\"" \
    >/dev/null || fail "guest write at ${2}M"
}
# backup_job [KEY=VALUE...]: queue a deferred-compression backup of vm.
backup_job () {
  agent_job backup vm=vm "repo=$REPO" "qmp=$S" "scratch=$SCRATCH" compress=deferred "$@"
}
# backup_id JOB: the backup that job made.
backup_id () {
  job_field "$1" backup
}
# compress_job TYPE BACKUP: the id of the compress-TYPE job of BACKUP.
compress_job () {
  agent query-jobs "type=compress-$1" "backup=$2" | sed -n 's/^\[{"id":\([0-9]*\).*/\1/p'
}
# wait_compressed BACKUP: its compression ran and it is zstd now.
wait_compressed () {
  _n=0
  until [ -n "$(compress_job finalize "$1")" ]; do
    _n=$((_n + 1))
    [ "$_n" -le 1500 ] || fail "no finalize job for $1: $(agent query-jobs backup="$1")"
    sleep 0.2
  done
  job_wait_ok "$(compress_job finalize "$1")"
  qemu-img info "$REPO/vms/vm/$1/vda.qcow2" | grep -q "compression type: zstd" \
    || fail "backup $1 is not compressed: $(qemu-img info "$REPO/vms/vm/$1/vda.qcow2")"
}
verify_ok () {
  knib_run v.out v.err verify --repo "$REPO" vm
  [ "$rc" -eq 0 ] || fail "knib verify ($1): $(cat v.out v.err)"
}

# 1. A full backup, then an incremental one, each compressed afterwards.
oracle "$S2" disk.qcow2 oracle1.qcow2
j=$(backup_job)
job_wait_ok "$j"
id1=$(backup_id "$j")
agent query-jobs "id=$j" | grep -q '"result":{"vm":"vm","id":"'"$id1"'","kind":"full"' \
  || fail "the first backup is not full: $(agent query-jobs "id=$j")"
wait_compressed "$id1"
check_image vm "$id1" vda oracle1.qcow2
guest_write 2 16
oracle "$S2" disk.qcow2 oracle2.qcow2
j=$(backup_job)
job_wait_ok "$j"
id2=$(backup_id "$j")
agent query-jobs "id=$j" | grep -q '"kind":"incremental","parent":"'"$id1"'"' \
  || fail "the second backup is not incremental: $(agent query-jobs "id=$j")"
wait_compressed "$id2"
check_image vm "$id2" vda oracle2.qcow2
verify_ok "after two compressed backups"

# 2. compression-min-free fails the job; compression-retries counts its
#    attempts, compression-retry-interval spaces them (in units of
#    retry-interval-unit seconds, shortened here).
j=$(agent_job backup vm=vm "repo=$REPO" "qmp=$S" "scratch=$SCRATCH" mode=full)
job_wait_ok "$j"
id3=$(backup_id "$j")
used=$(du -B1 -s "$REPO/vms/vm/$id3" | cut -f1)
avail=$(df -B1 --output=avail "$REPO" | tail -1)
ratio=$((avail / used * 2 + 2))
agent set-settings compression-retries=3 compression-retry-interval=3 \
  retry-interval-unit=1 "compression-min-free=$ratio" >/dev/null
agent_job compress vm=vm "repo=$REPO" "backup=$id3" >/dev/null
c=$(compress_job start "$id3")
wait_job_status "$c" failed 120
[ "$(job_field "$c" attempts)" = 3 ] || fail "job $c made $(job_field "$c" attempts) attempts, not 3"
job_field "$c" error | grep -q "not enough free space" \
  || fail "job $c failed for another reason: $(job_field "$c" error)"
"$KNIB" job log "$c" | grep -q "not enough free space" || fail "job $c's log: $("$KNIB" job log "$c")"
[ -z "$(compress_job finalize "$id3")" ] || fail "a failed start queued a finalize"
grep "\"id\":$c,.*\"status\":\"running\"" events.json \
  | sed -n 's/.*"seconds":\([0-9]*\),"microseconds":\([0-9]*\).*/\1.\2/p' >starts.txt
[ "$(wc -l <starts.txt)" -eq 3 ] || fail "expected 3 starts of job $c: $(cat events.json)"
awk 'NR > 1 && $1 - prev < 3 { bad = 1 } { prev = $1 } END { exit bad }' starts.txt \
  || fail "attempts of job $c closer than the interval: $(cat starts.txt)"
agent set-settings compression-min-free=1 >/dev/null
verify_ok "after failed compressions"

# 3. compression-jobs off: no compression starts; on: they run.
agent set-settings compression-jobs=false >/dev/null
guest_write 1 24
j=$(backup_job)
job_wait_ok "$j"
id4=$(backup_id "$j")
c=$(compress_job start "$id4")
[ -n "$c" ] || fail "no compression job for $id4"
sleep 3
[ "$(job_field "$c" status)" = queued ] || fail "job $c is $(job_field "$c" status) with compression-jobs off"
[ "$(job_field "$c" started)" = 0.0 ] || fail "job $c started with compression-jobs off"
agent set-settings compression-jobs=true >/dev/null
wait_compressed "$id4"

# 4. compression-jobs-per-host 2, then -1; threads and rate limit reach
#    the job (1 MiB/s: each compression of 3 MiB takes seconds).
# queue_backups N: N backups with new data each, compression held back.
queue_backups () {
  agent set-settings compression-jobs=false >/dev/null
  : >ids.txt
  _i=0
  while [ "$_i" -lt "$1" ]; do
    guest_write 3 $((32 + _i * 4))
    _j=$(backup_job)
    job_wait_ok "$_j"
    backup_id "$_j" >>ids.txt
    _i=$((_i + 1))
  done
}
agent set-settings compression-jobs-per-host=2 compression-threads=3 \
  compression-rate-limit=1 >/dev/null
queue_backups 4
agent set-settings compression-jobs=true >/dev/null
c=$(compress_job start "$(sed -n 1p ids.txt)")
wait_job_status "$c" running 60
pgid=$(job_field "$c" pid)
ps -eo pgid=,args= | awk -v g="$pgid" '$1 == g' >ps.txt
grep -q " compress .*--start-only --threads 3 --rate-limit 1 " ps.txt \
  || fail "the running compression does not have the settings: $(cat ps.txt)"
while read -r id; do wait_compressed "$id"; done <ids.txt
agent query-jobs "id=$c" | grep -q '"--threads","3","--rate-limit","1","--min-free","1"' \
  || fail "threads or rate limit not passed: $(agent query-jobs "id=$c")"
[ "$(max_overlap compress-start)" -eq 2 ] \
  || fail "compression-jobs-per-host 2: $(max_overlap compress-start) ran at once"
agent set-settings compression-jobs-per-host=-1 >/dev/null
queue_backups 4
agent set-settings compression-jobs=true >/dev/null
while read -r id; do wait_compressed "$id"; done <ids.txt
[ "$(max_overlap compress-start)" -eq 4 ] \
  || fail "compression-jobs-per-host -1: $(max_overlap compress-start) ran at once, not 4"
verify_ok "after the limits"

# 5. Ten backups of one VM queued at once: taken one after another, and
#    compressed in parallel (up to compression-jobs-per-host, 5 here).
agent set-settings compression-jobs-per-host=5 compression-rate-limit=0 >/dev/null
guest_write 3 80
: >jobs.txt
i=0
while [ "$i" -lt 10 ]; do
  backup_job >>jobs.txt
  i=$((i + 1))
done
while read -r j; do job_wait_ok "$j"; done <jobs.txt
[ "$(max_overlap backup)" -eq 1 ] || fail "backups of one VM ran at once: $(max_overlap backup)"
while read -r j; do wait_compressed "$(backup_id "$j")"; done <jobs.txt
n=$(max_overlap compress-start)
[ "$n" -ge 2 ] && [ "$n" -le 5 ] || fail "ten compressions: $n at once (2 to 5 expected)"
verify_ok "after ten backups"
oracle "$S2" disk.qcow2 oracle-last.qcow2
check_image vm "$(backup_id "$(tail -1 jobs.txt)")" vda oracle-last.qcow2
[ "$(agent query-jobs failed=true | grep -o '"status":"failed"' | wc -l)" -eq 1 ] \
  || fail "jobs failed: $(agent query-jobs failed=true)"
stop_knibd
echo "agent-compress: ok"
