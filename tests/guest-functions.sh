# SPDX-License-Identifier: Apache-2.0
# guest-functions.sh: boot the real test guest (tests/guest) and talk to its agent, for any test (sourced after functions.sh).
#
#   guest_disk [NAME]           build or reuse the cached guest disk; make
#                               GUEST_DISK=$TMPDIR_TEST/NAME.qcow2 (default
#                               guest), a qcow2 overlay over it
#   start_guest DISK [ARG...]   boot DISK (qcow2) under TCG with extra
#                               qemu ARGs; GUEST_NAME (default guest)
#                               names its files, GUEST_MODE (writer,
#                               check, idle) its mode, GUEST_WRITER the
#                               writer's "MAXLEN INTERVAL"
#   wait_for_guest_agent [S]    until the agent answers (default 240 s)
#   guest_exec PROG [ARG...]    run PROG in the guest: its output, its
#                               exit status
#   guest_writer_start [MAXLEN [INTERVAL]], guest_writer_pause,
#   guest_writer_resume         drive the writer
#   guest_check                 run the checker; GUEST_CHECK_* values
#   guest_logged_last [FILE]    the last sequence the console logged as
#                               complete
#   guest_kill                  kill -9 the guest's QEMU
#   guest_quit                  stop it through QMP quit (disks flushed)
#
# After start_guest: GUEST_PID, GUEST_QMP (QMP socket, GUEST_QMP2 a
# second one), GUEST_QGA (guest agent socket), GUEST_CONSOLE (serial
# console log), GUEST_LOG (QEMU's own output), all under $TMPDIR_TEST.
# The disk is on device vda, node disk0, like start_qemu's.

: "${QGA_CLIENT:=$(cd "$(dirname "$0")" && pwd)/qga-client}"
GUEST_BUILD=$(cd "$(dirname "$0")" && pwd)/guest/build-guest.sh

guest_disk () {
  require qemu-img qemu-system-x86_64 apt-get dpkg-deb depmod readelf cpio \
    mkfs.fat mcopy syslinux mke2fs sfdisk flock
  [ -x "$QGA_CLIENT" ] || fail "$QGA_CLIENT is missing (make -C tests qga-client)"
  GUEST_BASE=$(sh "$GUEST_BUILD") || fail "the test guest's disk did not build"
  GUEST_DISK=$TMPDIR_TEST/${1:-guest}.qcow2
  qemu-img create -q -f qcow2 -F qcow2 -b "$GUEST_BASE" "$GUEST_DISK" ||
    fail "cannot create an overlay of $GUEST_BASE"
}

start_guest () {
  disk=$1
  shift
  name=${GUEST_NAME:-guest}
  GUEST_QMP=$TMPDIR_TEST/$name.qmp
  GUEST_QMP2=$TMPDIR_TEST/$name.qmp2
  GUEST_QGA=$TMPDIR_TEST/$name.qga
  GUEST_CONSOLE=$TMPDIR_TEST/$name.console
  GUEST_LOG=$TMPDIR_TEST/$name.log
  rm -f "$GUEST_QMP" "$GUEST_QMP2" "$GUEST_QGA"
  set -- -fw_cfg "name=opt/knib/mode,string=${GUEST_MODE:-idle}" "$@"
  [ -z "${GUEST_WRITER:-}" ] ||
    set -- -fw_cfg "name=opt/knib/writer,string=$GUEST_WRITER" "$@"
  GUEST_STARTED=$(date +%s)
  qemu-system-x86_64 -name "$name" -accel tcg -m 256 -smp 1 \
    -nodefaults -no-user-config -display none -nic none \
    -qmp "unix:$GUEST_QMP,server=on,wait=off" \
    -qmp "unix:$GUEST_QMP2,server=on,wait=off" \
    -blockdev "driver=qcow2,node-name=disk0,file.driver=file,file.filename=$disk" \
    -device virtio-blk-pci,drive=disk0,id=vda,bootindex=1 \
    -chardev "socket,id=qga0,path=$GUEST_QGA,server=on,wait=off" \
    -device virtio-serial-pci \
    -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 \
    -device pvpanic \
    -serial "file:$GUEST_CONSOLE" \
    "$@" >"$GUEST_LOG" 2>&1 &
  GUEST_PID=$!
  track_pid "$GUEST_PID"
  wait_for_socket "$GUEST_QMP"
}

# Poll guest-sync-delimited until the agent answers; fail early when
# QEMU dies or the kernel panics.  GUEST_BOOT_SECONDS: from start_guest.
wait_for_guest_agent () {
  limit=$(( $(date +%s) + ${1:-240} ))
  until "$QGA_CLIENT" -t 5 "$GUEST_QGA" sync 2>/dev/null; do
    kill -0 "$GUEST_PID" 2>/dev/null ||
      fail "the guest's QEMU exited: $(cat "$GUEST_LOG")"
    if grep -q "Kernel panic" "$GUEST_CONSOLE" 2>/dev/null; then
      fail "the guest panicked: $(tail -n 20 "$GUEST_CONSOLE")"
    fi
    [ "$(date +%s)" -lt "$limit" ] ||
      fail "no guest agent answered within ${1:-240} s: $(tail -n 20 "$GUEST_CONSOLE")"
  done
  GUEST_BOOT_SECONDS=$(( $(date +%s) - GUEST_STARTED ))
}

guest_exec () {
  "$QGA_CLIENT" -t "${GUEST_EXEC_TIMEOUT:-180}" "$GUEST_QGA" exec "$@"
}

guest_writer_start () {
  guest_exec /usr/bin/knib-guest start "$@" >/dev/null ||
    fail "the guest's writer did not start"
}

# GUEST_WRITER_LAST: the last file the writer completed before it paused.
guest_writer_pause () {
  out=$(guest_exec /usr/bin/knib-guest pause) ||
    fail "the guest's writer did not pause: $out"
  GUEST_WRITER_LAST=${out#paused last=}
}

guest_writer_resume () {
  guest_exec /usr/bin/knib-guest resume >/dev/null ||
    fail "the guest's writer did not resume"
}

# Run the checker; print its output; set GUEST_CHECK_COMPLETE, _BAD,
# _MISSING, _HIGHEST, _PARTIAL from its summary line.  Returns its exit
# status: 0 when every file is intact and none is missing.
guest_check () {
  rc=0
  out=$(guest_exec /usr/bin/knib-guest check) || rc=$?
  echo "$out"
  summary=$(echo "$out" | grep '^KNIB-CHECK ') ||
    fail "the checker printed no summary (status $rc): $out"
  for field in complete bad missing highest partial; do
    value=$(echo "$summary" | sed -n "s/.* $field=\\([0-9]*\\).*/\\1/p")
    [ -n "$value" ] || fail "no $field= in the checker's summary: $summary"
    eval "GUEST_CHECK_$(echo "$field" | tr a-z A-Z)=$value"
  done
  return "$rc"
}

# The last sequence number a console log (default GUEST_CONSOLE) shows
# as complete (0 when none).
guest_logged_last () {
  sed -n 's/^knib-writer: complete f-[0-9]*\.dat seq=\([0-9]*\).*/\1/p' \
    "${1:-$GUEST_CONSOLE}" | tail -n 1 | grep . || echo 0
}

# Stop the guest cleanly: QMP quit (QEMU flushes its disks).
guest_quit () {
  "$KNIB" qmp "$GUEST_QMP" quit >/dev/null || fail "QMP quit failed"
  wait_quit "$GUEST_PID" "the guest's QEMU"
}

guest_kill () {
  kill -9 "$GUEST_PID" 2>/dev/null || :
  wait "$GUEST_PID" 2>/dev/null || :
}
