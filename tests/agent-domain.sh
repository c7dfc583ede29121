#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-domain.sh: the libvirt hook's notices act.  A stop holds the
# domain's queued live backups (and one that failed as QEMU went); its
# start queues them again and they succeed.  A quick restore's
# consolidation run by knibd that the stop interrupted resumes when the
# domain starts, and ends with the disk whole (qemu-img compare against
# the backup plus the guest's writes).  A held job can be cancelled.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/agent-functions.sh"

hook_env
cd "$TMPDIR_TEST"

# hook vm started|stopped: what libvirt runs as the domain starts or ends.
hook () {
  cat >dom.xml <<EOX
<domain type='qemu' id='3'>
  <name>vm</name>
  <uuid>6a1c0f52-1111-4c39-9a5e-2d1b7c1e6a03</uuid>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$TMPDIR_TEST/a.qcow2' index='1'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
EOX
  if [ "$1" = started ]; then set -- vm started begin -; else set -- vm stopped end -; fi
  "$HOOK" "$@" <dom.xml >hook.out 2>&1 || fail "the hook failed: $(cat hook.out)"
}
same () {
  qemu-img compare -U -q "$2" "$1" || fail "$1 differs from $2: $(qemu-img compare -U "$2" "$1" 2>&1)"
}

qemu-img create -q -f qcow2 a.qcow2 64M
start_qemu vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
mkdir -p "$SCRATCH"
start_knibd
# 16 MiB: a backup or consolidation at 2 MiB/s takes 8 s, long enough
# to be cut short by the domain's stop (about 1 s after it runs; each
# runs again in full once the domain is back: no longer than that).
hmp_write "$S" vda 0x11 0 8M
hmp_write "$S" vda 0x12 32M 8M

# ---- 1. Backups held while the domain is stopped ----
quit_qemu vm
hook stopped
wait_for_text "$AGENT_LOG" "domain 'vm' stopped" 30
knib_run q.out q.err backup --agent --vm vm --repo "$REPO" --qmp "$S" --scratch "$SCRATCH"
[ "$rc" -eq 0 ] || fail "backup --agent: $(cat q.err)"
j=$(sed -n 's/^job \([0-9]*\): queued$/\1/p' q.out)
wait_job_status "$j" held 30
c=$(agent_job backup vm=vm "repo=$REPO" "qmp=$S" "scratch=$SCRATCH")
wait_job_status "$c" held 30
"$KNIB" job cancel "$c" >c.out 2>&1 || fail "cancel of a held job: $(cat c.out)"
[ "$(job_field "$c" status)" = cancelled ] || fail "the held job $c is $(job_field "$c" status)"
"$KNIB" jobs --status held --json | grep -q "\"id\":$j," || fail "knib jobs --status held: $("$KNIB" jobs --json)"
cp a.qcow2 oracle1.qcow2
sleep 2
[ "$(job_field "$j" status)" = held ] || fail "job $j did not stay held: $(job_field "$j" status)"
start_qemu vm "$TMPDIR_TEST/a.qcow2"
hook started
job_wait_ok "$j"
b1=$(job_field "$j" backup)
echo "$b1" >ids-vm
[ "$(job_field "$j" attempts)" = 1 ] || fail "job $j: $(job_field "$j" attempts) attempts"
check_image vm "$b1" vda oracle1.qcow2

# A live backup whose QEMU goes away while it runs, the notice after its
# end: held too, then done once the domain is back.
k=$(agent_job backup vm=vm "repo=$REPO" "qmp=$S" "scratch=$SCRATCH" mode=full rate-limit=2)
wait_job_status "$k" running 60
sleep 1
kill -9 "$(eval echo "\$QEMU_PID_vm")"
wait "$(eval echo "\$QEMU_PID_vm")" 2>/dev/null || :
wait_job_status "$k" failed 120
hook stopped
wait_job_status "$k" held 30
start_qemu vm "$TMPDIR_TEST/a.qcow2"
hook started
job_wait_ok "$k"
echo "$(job_field "$k" backup)" >>ids-vm
check_image vm "$(job_field "$k" backup)" vda oracle1.qcow2

# ---- 2. A consolidation interrupted by the stop resumes at the start ----
quit_qemu vm
hook stopped
knib_run out err restore --repo "$REPO" --vm vm "$b1" --image vda=a.qcow2 --quick
[ "$rc" -eq 0 ] || fail "quick restore: $(cat err)"
start_qemu vm "$TMPDIR_TEST/a.qcow2"
hook started
knib_run r.out r.err restore --agent --consolidate --qmp "$S" --vm vm --repo "$REPO" --rate-limit 2
[ "$rc" -eq 0 ] || fail "restore --agent --consolidate: $(cat r.err)"
r=$(sed -n 's/^job \([0-9]*\): queued$/\1/p' r.out)
wait_job_status "$r" running 60
# The guest writes meanwhile.
hmp_write "$S2" vda 0x55 40M 1M
cp oracle1.qcow2 expected.qcow2
qemu-io -f qcow2 -c "write -P 0x55 40M 1M" expected.qcow2 >/dev/null
quit_qemu vm
hook stopped
wait_job_status "$r" held 120
qemu-img info --output=json a.qcow2 | grep -q backing-filename \
  || fail "the overlay lost its backing file when the domain stopped"
same a.qcow2 expected.qcow2
start_qemu vm "$TMPDIR_TEST/a.qcow2"
hook started
job_wait_ok "$r"
! qemu-img info -U --output=json a.qcow2 | grep -q backing-filename \
  || fail "the disk still has a backing file after the resumed consolidation"
same a.qcow2 expected.qcow2
# Held whichever came first: the stop notice (queued: "held until"; failed
# just before: "failed as ... stopped") or the job's failure ("held: ...").
grep -q "job $r: failed as 'vm' stopped: held\|job $r: held until 'vm' starts\|job $r: restore of 'vm' held: " "$AGENT_LOG" \
  || fail "knibd did not say it held job $r: $(grep "job $r" "$AGENT_LOG")"
grep -q "job $r: 'vm' started: queued again" "$AGENT_LOG" || fail "job $r was not released"
quit_qemu vm
qemu-img check -q a.qcow2 || fail "qemu-img check of the consolidated disk"
stop_knibd
echo "agent-domain: ok"
