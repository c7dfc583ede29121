#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-sigterm-stopped-qemu.sh: SIGTERM ends a knib backup that waits on
# a QEMU that does not answer (stopped with SIGSTOP), at the greeting, in
# the middle of the session and while it copies: knib exits at once (the
# cleanup it cannot do in QEMU cut short) saying it was
# interrupted, leaves nothing in the repository or the scratch directory,
# and once QEMU goes on the next backup succeeds, equals its oracle and
# leaves nothing in QEMU.  Unsignalled, a stopped QEMU is named as such.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
start_qemu vm a.qcow2
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
# shellcheck disable=SC2154 # set by start_qemu
QEMU=$QEMU_PID_vm

hmp_write "$S2" vda 0x01 0 2M
backup_ok vm "$S" full.json
hmp_write "$S2" vda 0x02 1M 64k

# wait_for_poll PID: until the process sleeps in poll (knib waiting on
# QEMU), at most 60 s.
wait_for_poll () {
  _i=0
  until grep -q poll "/proc/$1/wchan" 2>/dev/null; do
    _i=$((_i + 1))
    [ "$_i" -le 600 ] || fail "knib did not wait on QEMU: $(cat "/proc/$1/wchan" 2>/dev/null)"
    sleep 0.1
  done
}

# expect_prompt_exit PID WHAT: the process ends within 60 s of SIGTERM
# (its --timeout is 600 s); its exit status in $rc.
expect_prompt_exit () {
  wait_exit "$1" "$2: knib ignored SIGTERM for 60 s"
  rc=$exit_rc
}

# 1. QEMU stopped mid-session: knib has sent the backup transaction and
# waits for the reply.
start_stopping transaction vm "$S" mid.json --timeout 600
stop_all "$QEMU"
kill -CONT "$KNIB_PID"
wait_for_poll "$KNIB_PID"
kill -TERM "$KNIB_PID"
expect_prompt_exit "$KNIB_PID" "mid-session"
expect_failure mid.json.err "mid-session" "interrupted"
echo "ok: mid-session: exit $rc: $(cat mid.json.err)"
kill -CONT "$QEMU"
check_repo_clean vm vda

# 2. QEMU stopped while knib copies: knib waits on QEMU's NBD server
# (more data than the reads knib keeps in flight).
hmp_write "$S2" vda 0x05 8M 40M
start_stopping copy vm "$S" copy.json --timeout 600 --full
stop_all "$QEMU"
kill -CONT "$KNIB_PID"
wait_for_poll "$KNIB_PID"
kill -TERM "$KNIB_PID"
expect_prompt_exit "$KNIB_PID" "copy"
expect_failure copy.json.err "copy" "interrupted"
echo "ok: copy: exit $rc: $(cat copy.json.err)"
kill -CONT "$QEMU"
check_repo_clean vm vda

# 3. QEMU stopped before knib connects: no greeting comes.
stop_all "$QEMU"
"$KNIB" backup --json --timeout 600 --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$SCRATCH" >greet.json 2>greet.json.err &
KNIB_PID=$!
track_pid $KNIB_PID
wait_for_poll "$KNIB_PID"
kill -TERM "$KNIB_PID"
expect_prompt_exit "$KNIB_PID" "greeting"
expect_failure greet.json.err "greeting" "interrupted while waiting for greeting"
echo "ok: greeting: exit $rc: $(cat greet.json.err)"

# 4. Unsignalled, knib names the stopped QEMU when it gives up.
knib_run stopped.json stopped.json.err backup --json --timeout 2 --qmp "$S" \
  --vm vm --repo "$REPO" --scratch "$SCRATCH"
expect_failure stopped.json.err "stopped QEMU" \
  "QEMU (pid $QEMU) behind the QMP socket '$S' is stopped"
echo "ok: stopped QEMU: exit $rc: $(cat stopped.json.err)"
kill -CONT "$QEMU"
check_repo_clean vm vda

# QEMU goes on: the next backup works and leaves QEMU clean.
oracle "$S2" a.qcow2 oa.qcow2
backup_ok vm "$S" next.json
check_image vm "$(last_id vm)" vda oa.qcow2
check_qemu_clean "$S" vm vda
check_repo_clean vm vda
echo "ok: SIGTERM ends a backup waiting on a stopped QEMU"
