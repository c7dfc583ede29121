#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-qmp-socket-busy.sh: QEMU's QMP socket serves one client at a
# time.  While another client holds it, knib backup fails saying "another
# client holds the QMP socket 'PATH'" (not "no QMP greeting"), changes
# nothing, and once that client is gone the next backup works.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
start_qemu vm a.qcow2
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

hmp_write "$S2" vda 0x01 0 2M
backup_ok vm "$S" full.json

# The first client: a knib qmp session that reads commands from a FIFO
# (held open by the test) and is known to be connected once it answered.
mkfifo cmds
sleep 3600 >cmds &
track_pid $!
"$KNIB" qmp "$S" <cmds >first.out 2>first.err &
FIRST=$!
track_pid $FIRST
echo "query-status" >cmds
wait_for_text first.out running 60

repo_state before.txt
knib_run busy.json busy.err backup --json --timeout 3 --qmp "$S" --vm vm \
  --repo "$REPO" --scratch "$SCRATCH"
expect_failure busy.err "second client" \
  "another client holds the QMP socket '$S'"
! grep -q "no QMP greeting" busy.err \
  || fail "second client: the error blames the greeting: $(cat busy.err)"
echo "ok: second client: exit $rc: $(cat busy.err)"
repo_state after.txt
cmp -s before.txt after.txt || fail "the failed backup changed the repository"
check_repo_clean vm vda

# The first client leaves: the socket is free again.
kill "$FIRST"
wait "$FIRST" 2>/dev/null || :
hmp_write "$S2" vda 0x02 1M 64k
oracle "$S2" a.qcow2 oa.qcow2
backup_ok vm "$S" next.json
check_image vm "$(last_id vm)" vda oa.qcow2
check_qemu_clean "$S" vm vda
echo "ok: a busy QMP socket is named as such"
