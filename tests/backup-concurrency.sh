#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-concurrency.sh: two backups of one VM at once (the second fails
# at once, naming the holder of the lock; the first goes on), backups of
# two VMs (two QEMUs) into one repository at once (both succeed), and
# "knib recover" after a kill -9 (it says what it repaired, then that
# there is nothing to recover).  Every backup equals its oracle and
# nothing is left behind.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
for img in a b c d; do
  qemu-img create -q -f qcow2 $img.qcow2 64M
done
start_qemu vm a.qcow2 b.qcow2
start_qemu vm2 c.qcow2 d.qcow2
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
T=$TMPDIR_TEST/vm2.qmp
T2=$TMPDIR_TEST/vm2.qmp2

# dirty SOCK2 PATTERN: guest writes on both disks of a VM.
dirty () {
  hmp_write "$1" vda "$2" 0 1M
  hmp_write "$1" vda "$2" 9M 2M
  hmp_write "$1" vdb "$2" 3M 1M
  hmp_write "$1" vdb "$2" 40M 128k
}

# take_oracles VM SOCK2 N IMAGE_A IMAGE_B: VM's disks now, in
# VM-a-N.qcow2 and VM-b-N.qcow2.
take_oracles () {
  oracle "$2" "$4" "$1-a-$3.qcow2"
  oracle "$2" "$5" "$1-b-$3.qcow2"
}

# verify VM SOCK2 N WHAT: VM's latest backup equals its oracles N, and
# nothing is left over.
verify () {
  check_image "$1" "$(last_id "$1")" vda "$1-a-$3.qcow2"
  check_image "$1" "$(last_id "$1")" vdb "$1-b-$3.qcow2"
  check_qemu_clean "$2" "$1" vda vdb
  check_repo_clean "$1" vda vdb
  echo "ok: $4"
}

dirty "$S2" 0x01
take_oracles vm "$S2" 0 a.qcow2 b.qcow2
backup_ok vm "$S" full.json --chain-size 0
expect_kind full.json full
verify vm "$S2" 0 "first backup of vm"

# ---- Two backups of the same VM at once ----
dirty "$S2" 0x02
take_oracles vm "$S2" 1 a.qcow2 b.qcow2
prev=$(last_id vm)
start_stopping copy vm "$S" held.json --chain-size 0
holder=$KNIB_PID
start=$(date +%s)
knib_run second.out second.err backup --json --timeout 60 --qmp "$S" --vm vm \
  --repo "$REPO" --scratch "$SCRATCH"
[ $(($(date +%s) - start)) -le 5 ] || fail "the second backup took more than 5 s to fail"
expect_failure second.err "a second backup of the same vm" "lock" "pid $holder"
echo "ok: a second backup fails at once: $(cat second.err)"
knib_run recover.out recover.err recover --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$SCRATCH"
expect_failure recover.err "knib recover during a backup" "lock" "pid $holder"
echo "ok: knib recover during a backup fails at once: $(cat recover.err)"
ls -d "$SCRATCH/vm.$holder".?????? >/dev/null 2>&1 || fail "the failed runs removed the scratch files of the running backup"
ls -d "$REPO"/vms/vm/*.partial >/dev/null 2>&1 \
  || fail "the failed runs removed the unfinished backup of the running one"
KNIB_PID=$holder
resume_stopped
[ "$rc" -eq 0 ] || fail "the backup that held the lock exited $rc: $(cat held.json.err)"
json_top held.json id >>ids-vm
expect_kind held.json incremental "$prev"
verify vm "$S2" 1 "the backup that held the lock succeeded"

# ---- Two VMs, one repository, at once ----
# One backup of vm is held (stopped while it copies) while a backup of
# vm2 runs from start to end, with the same scratch directory.
dirty "$S2" 0x03
dirty "$T2" 0x03
take_oracles vm "$S2" 2 a.qcow2 b.qcow2
take_oracles vm2 "$T2" 0 c.qcow2 d.qcow2
start_stopping copy vm "$S" vm-held.json --chain-size 0
backup_ok vm2 "$T" vm2-full.json
expect_kind vm2-full.json full
resume_stopped
[ "$rc" -eq 0 ] || fail "the backup of vm held during vm2's exited $rc: $(cat vm-held.json.err)"
json_top vm-held.json id >>ids-vm
verify vm "$S2" 2 "vm backed up while vm2 was"
verify vm2 "$T2" 0 "vm2 backed up while vm was"

# Then both started together, and bigger, so that they overlap.
dirty "$S2" 0x04
dirty "$T2" 0x04
hmp_write "$S2" vda 0x04 16M 16M
hmp_write "$T2" vdb 0x04 16M 16M
take_oracles vm "$S2" 3 a.qcow2 b.qcow2
take_oracles vm2 "$T2" 1 c.qcow2 d.qcow2
"$KNIB" backup --json --timeout 60 --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$SCRATCH" >both-vm.json 2>both-vm.err &
p1=$!
track_pid $p1
"$KNIB" backup --json --timeout 60 --qmp "$T" --vm vm2 --repo "$REPO" \
  --scratch "$SCRATCH" >both-vm2.json 2>both-vm2.err &
p2=$!
track_pid $p2
rc1=0
wait $p1 || rc1=$?
rc2=0
wait $p2 || rc2=$?
[ "$rc1" -eq 0 ] || fail "backup of vm beside vm2's exited $rc1: $(cat both-vm.err)"
[ "$rc2" -eq 0 ] || fail "backup of vm2 beside vm's exited $rc2: $(cat both-vm2.err)"
json_top both-vm.json id >>ids-vm
json_top both-vm2.json id >>ids-vm2
expect_kind both-vm.json incremental
expect_kind both-vm2.json incremental
verify vm "$S2" 3 "vm and vm2 backed up together: vm"
verify vm2 "$T2" 1 "vm and vm2 backed up together: vm2"

# ---- knib recover after a kill -9 while copying ----
# Writes while knib is stopped are tracked by the new bitmap only: the
# recovery must merge them back.
dirty "$S2" 0x05
start_stopping copy vm "$S" killed.json --chain-size 0
dirty "$S2" 0x06
hmp_write "$S2" vdb 0x06 60M 64k
killed=$KNIB_PID
kill_stopped
# The repository and scratch files first (no --qmp), then QEMU's side.
knib_run recover1.out recover1.err recover --vm vm --repo "$REPO" \
  --scratch "$SCRATCH"
[ "$rc" -eq 0 ] || fail "knib recover (no --qmp) exited $rc: $(cat recover1.err)"
for text in "removed unfinished backup" "scratch files of a killed run: $SCRATCH/vm.$killed"; do
  grep -q -- "$text" recover1.out || fail "knib recover did not say '$text': $(cat recover1.out)"
done
check_repo_clean vm vda vdb
echo "ok: knib recover (no --qmp) repaired the repository: $(tr '\n' ';' <recover1.out)"
knib_run recover2.out recover2.err recover --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$SCRATCH"
[ "$rc" -eq 0 ] || fail "knib recover exited $rc: $(cat recover2.err)"
if qemu_has_cbw "$S2"; then
  fleecing="knib-cbw-vda onto disk0|filter knib-cbw-vdb"
else
  fleecing="job knib-job-vda|job knib-job-vdb"
fi
for text in "NBD server" "export knib-export-vda" "export knib-export-vdb" \
  "${fleecing%|*}" "${fleecing#*|}" "fleecing node knib-fleece-vda" \
  "fleecing node knib-fleece-vdb" "merged bitmap knib-.* of vda" \
  "merged bitmap knib-.* of vdb"; do
  grep -q -- "$text" recover2.out || fail "knib recover did not say '$text': $(cat recover2.out)"
done
! grep -q "unfinished backup" recover2.out \
  || fail "knib recover repaired the repository twice: $(cat recover2.out)"
check_qemu_clean "$S2" vm vda vdb
check_repo_clean vm vda vdb
echo "ok: knib recover repaired QEMU: $(tr '\n' ';' <recover2.out)"
knib_run recover3.out recover3.err recover --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$SCRATCH"
[ "$rc" -eq 0 ] || fail "knib recover (again) exited $rc: $(cat recover3.err)"
[ "$(cat recover3.out)" = "vm vm: nothing to recover" ] \
  || fail "a second knib recover should find nothing to recover: $(cat recover3.out)"
echo "ok: a second knib recover: $(cat recover3.out)"
take_oracles vm "$S2" 4 a.qcow2 b.qcow2
prev=$(last_id vm)
backup_ok vm "$S" after-recover.json --chain-size 0
expect_kind after-recover.json incremental "$prev"
verify vm "$S2" 4 "after knib recover, an incremental with the writes made while knib was stopped"
