#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-quiesce.sh: --quiesce --qga on a plain QEMU whose guest agent
# port has no agent behind it (no guest OS): --quiesce fails with a clear
# error and leaves nothing behind; --quiesce=try warns and backs up.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
start_qemu_with_agent vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
hmp_write "$S2" vda 0x11 0 1M

# Usage: --quiesce needs --qga or --domain; --qga needs --quiesce.
knib_run out err backup --qmp "$S" --vm vm --repo "$REPO" --quiesce
[ "$rc" -ne 0 ] || fail "--quiesce without --qga or --domain succeeded"
grep -q -- "--qga" err || fail "the error does not mention --qga: $(cat err)"
knib_run out err backup --qmp "$S" --vm vm --repo "$REPO" --qga "$QGA"
[ "$rc" -eq 2 ] || fail "--qga without --quiesce exited $rc: $(cat err)"

# --quiesce: no agent answers; the backup fails and leaves nothing.
start=$(date +%s)
knib_run out err backup --json --timeout 60 --qmp "$S" --vm vm \
  --repo "$REPO" --scratch "$SCRATCH" --quiesce --qga "$QGA" --qga-timeout 2
[ "$rc" -ne 0 ] || fail "--quiesce without a guest agent succeeded"
grep -q "no guest agent answered on $QGA within 2 s (is qemu-guest-agent running in the guest?)" err \
  || fail "unclear error: $(cat err)"
[ $(($(date +%s) - start)) -lt 30 ] || fail "the failure took too long"
# No backup, partial or not: the VM's directory holds only its lock.
left=$(find "$REPO/vms" -mindepth 2 ! -name .lock)
[ -z "$left" ] || fail "the failed backup left files: $left"
[ -z "$(find "$SCRATCH" -mindepth 1 2>/dev/null)" ] \
  || fail "scratch files left: $(find "$SCRATCH" -mindepth 1)"
"$KNIB" qmp --json "$S2" query-block-exports >q.json
[ "$(cat q.json)" = "[]" ] || fail "exports left: $(cat q.json)"
"$KNIB" qmp --json "$S2" query-named-block-nodes >q.json
! grep -q '"node-name":"knib-' q.json || fail "knib nodes left in QEMU"
"$KNIB" qmp --json "$S2" query-jobs >q.json
[ "$(cat q.json)" = "[]" ] || fail "jobs left: $(cat q.json)"

# --quiesce=try: a warning, and a backup equal to its oracle.
oracle "$S2" a.qcow2 oracle-1.qcow2
: >"$TMPDIR_TEST/ids-vm"
backup_ok vm "$S" b1.json --quiesce=try --qga "$QGA" --qga-timeout 2
grep -q "warning: .*no guest agent answered on $QGA.*the backup is not quiesced" \
  b1.json.err || fail "no warning on stderr: $(cat b1.json.err)"
check_image vm "$(last_id vm)" vda oracle-1.qcow2
check_qemu_clean "$S2" vm vda
check_repo_clean vm vda

# The default sync timeout is 10 s.
knib_run out err backup --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$SCRATCH" --quiesce --qga "$QGA"
[ "$rc" -ne 0 ] || fail "--quiesce without a guest agent succeeded"
grep -q "no guest agent answered on $QGA within 10 s" err \
  || fail "unclear error: $(cat err)"
check_repo_clean vm vda
exit 0
