#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-many.sh: 30 VMs (QEMUs without a guest OS, small disks) each with
# a backup queued at once, backup-jobs-per-host 4: never more than 4 run,
# all succeed, every backup restores (a restore job each) to its oracle,
# and knibd's peak RSS stays under 16 MiB.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/agent-functions.sh"

N=30
cd "$TMPDIR_TEST"
mkdir -p "$SCRATCH"
k=1
while [ "$k" -le "$N" ]; do
  qemu-img create -q -f qcow2 "disk$k.qcow2" 16M
  qemu-io -f qcow2 -c "write -P $k $((k % 8))M 1M" -c "write -P 0xee 12M 64k" \
    "disk$k.qcow2" >/dev/null
  qemu-img convert -O qcow2 "disk$k.qcow2" "oracle$k.qcow2"
  start_qemu "vm$k" "$TMPDIR_TEST/disk$k.qcow2"
  k=$((k + 1))
done
start_knibd
agent set-settings backup-jobs-per-host=4 >/dev/null
t0=$(date +%s)
: >jobs.txt
k=1
while [ "$k" -le "$N" ]; do
  agent_job backup "vm=vm$k" "repo=$REPO" "qmp=$TMPDIR_TEST/vm$k.qmp" \
    "scratch=$SCRATCH" >>jobs.txt
  k=$((k + 1))
done
while read -r j; do job_wait_ok "$j"; done <jobs.txt
t1=$(date +%s)
peak=$(max_overlap backup)
[ "$peak" -le 4 ] || fail "$peak backups ran at once with backup-jobs-per-host 4"
[ "$peak" -ge 2 ] || fail "the backups ran one at a time ($peak)"
: >restores.txt
k=1
while read -r j; do
  id=$(job_field "$j" backup)
  agent_job restore "vm=vm$k" "repo=$REPO" "backup=$id" \
    "to=$TMPDIR_TEST/restored$k.qcow2" >>restores.txt
  k=$((k + 1))
done <jobs.txt
while read -r j; do job_wait_ok "$j"; done <restores.txt
k=1
while [ "$k" -le "$N" ]; do
  qemu-img compare -q "oracle$k.qcow2" "restored$k.qcow2" \
    || fail "the restore of vm$k differs from its oracle"
  k=$((k + 1))
done
rss=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$KNIBD_PID/status")
echo "agent-many: $N backups in $((t1 - t0)) s, at most $peak at once; knibd peak RSS $rss kB"
# ASan's shadow memory and quarantine make a sanitized knibd far larger:
# the bound is for the real one.
[ "${KNIB_SANITIZED:-no}" = yes ] || [ "$rss" -lt 16384 ] \
  || fail "knibd's peak RSS is $rss kB, over 16 MiB"
[ "$(agent query-jobs status=succeeded | grep -o '"status":"succeeded"' | wc -l)" -eq $((2 * N)) ] \
  || fail "not every job succeeded: $(agent query-jobs failed=true)"
stop_knibd
echo "agent-many: ok"
