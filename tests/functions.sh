# SPDX-License-Identifier: Apache-2.0
# functions.sh: shared helpers for knib's integration tests (sourced).
# Every process a test starts is killed when the test exits, and every
# temporary path lives under one mktemp directory that goes too.

set -eu

: "${KNIB:=$(cd "$(dirname "$0")/.." && pwd)/src/cli/knib}"
export KNIB

_pids=""
TMPDIR_TEST=$(mktemp -d "${TMPDIR:-/tmp}/knib-test.XXXXXX")

_cleanup () {
  status=$?
  for pid in $_pids; do
    kill -9 "$pid" 2>/dev/null || :
  done
  for pid in $_pids; do
    wait "$pid" 2>/dev/null || :
  done
  rm -rf "$TMPDIR_TEST"
  exit "$status"
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

# Remember a pid so the test's exit kills it.
track_pid () {
  _pids="$_pids $1"
}

fail () {
  echo "FAIL: $*" >&2
  exit 1
}

# pstate PID: the one-letter state of a process ("" when gone).
pstate () {
  sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null || :
}

# stop_all PID: SIGSTOP, and return once every thread of the process has
# stopped (at most 60 s).  kill returns before the stop takes effect: on a
# busy machine one of QEMU's threads may still accept a client and send
# its greeting, or answer a command, after kill -STOP.
stop_all () {
  kill -STOP "$1"
  _i=0
  while :; do
    _running=""
    for _task in /proc/"$1"/task/*; do
      case $(pstate "${_task#/proc/}") in
      T | t | "") ;;
      *) _running="$_running ${_task##*/}" ;;
      esac
    done
    [ -n "$_running" ] || return 0
    _i=$((_i + 1))
    [ "$_i" -le 1200 ] || fail "pid $1 did not stop within 60 s (threads still running:$_running)"
    sleep 0.05
  done
}

# kill_stopped PID ERRFILE: once process PID stopped itself
# (KNIB_TEST_STOP_AT), kill it with SIGKILL; fail, quoting ERRFILE, when
# it does not stop within a minute.
kill_stopped () {
  _i=0
  until [ "$(pstate "$1")" = T ]; do
    _i=$((_i + 1))
    [ "$_i" -le 600 ] || fail "process $1 did not stop: $(cat "$2")"
    sleep 0.1
  done
  kill -9 "$1"
  wait "$1" 2>/dev/null || :
}

# Skip the test (exit 77) unless every named program is installed.
require () {
  for prog in "$@"; do
    command -v "$prog" >/dev/null 2>&1 || {
      echo "SKIP: $prog is not installed" >&2
      exit 77
    }
  done
}

# json_top FILE KEY: a top-level string member of the one-line JSON that
# "knib backup --json" printed (empty when null or absent); the members
# of the disks are not looked at.
json_top () {
  sed -e 's/,"disks":\[.*//' "$1" \
    | sed -n "s/.*\"$2\":\"\\([^\"]*\\)\".*/\\1/p"
}

# rid: the id of repository $REPO, which its backups' bitmaps carry
# ("knib-<rid>-<backup id>").
rid () {
  sed -n 's/^ *"id": *"\([0-9a-f]*\)".*/\1/p' "$REPO/knib-repo.json"
}

# Skip (exit 77) unless knib was built with --enable-test-hooks, which
# the steps below need (KNIB_TEST_STOP_AT).
require_test_hooks () {
  [ "${KNIB_TEST_HOOKS:-no}" = yes ] || {
    echo "SKIP: knib was built without --enable-test-hooks" >&2
    exit 77
  }
}

# The accelerator of a QEMU the test starts: kvm when /dev/kvm can be
# opened for reading and writing, else tcg (scripts/accel says).
ACCEL=$(cd "$(dirname "$0")/.." && pwd)/scripts/accel
qemu_accel () {
  "$ACCEL" 2>/dev/null
}

# Wait (up to $2 seconds, default 30) until path $1 is a socket.
wait_for_socket () {
  i=0
  limit=$(( ${2:-30} * 10 ))
  while [ ! -S "$1" ]; do
    i=$((i + 1))
    [ "$i" -le "$limit" ] || fail "socket $1 did not appear"
    sleep 0.1
  done
}

# Wait (up to $3 seconds, default 30) until file $1 contains text $2.
wait_for_text () {
  i=0
  limit=$(( ${3:-30} * 10 ))
  until grep -q -- "$2" "$1" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le "$limit" ] || fail "'$2' did not appear in $1: $(cat "$1" 2>/dev/null)"
    sleep 0.1
  done
}

# halt_firmware: the path of a 64 KiB firmware image whose reset vector
# (its last 16 bytes) is "cli; hlt; jmp back to hlt": the VM's one CPU
# halts at once and stays halted, using no CPU.  The VMs of start_qemu
# have no guest OS: SeaBIOS would take seconds (more under load) to find
# no bootable device, resetting the disks' devices on the way (a reset
# drains every request on the disk, also an NBD read that a test keeps
# knib from taking with KNIB_TEST_STOP_AT: QEMU would hang there).
halt_firmware () {
  _fw=$TMPDIR_TEST/halt-firmware.bin
  if [ ! -f "$_fw" ]; then
    { head -c 65520 /dev/zero; printf '\372\364\353\375'; head -c 12 /dev/zero; } \
      >"$_fw.tmp"
    mv "$_fw.tmp" "$_fw"
  fi
  echo "$_fw"
}

# start_qemu NAME DISK... : a VM with no guest OS (halt_firmware) whose
# disks are qcow2 images DISK (node names disk0, disk1, ... on devices
# vda, vdb, ...) and a QMP socket $TMPDIR_TEST/NAME.qmp (a second one
# NAME.qmp2 for watchers).
start_qemu () {
  name=$1
  shift
  set -- "$@"
  args=""
  n=0
  for disk in "$@"; do
    dev=vd$(printf "\\$(printf '%03o' $((97 + n)))")
    args="$args -blockdev driver=qcow2,node-name=disk$n,file.driver=file,file.filename=$disk"
    args="$args -device virtio-blk-pci,drive=disk$n,id=$dev"
    n=$((n + 1))
  done
  rm -f "$TMPDIR_TEST/$name.qmp" "$TMPDIR_TEST/$name.qmp2"
  # shellcheck disable=SC2086
  qemu-system-x86_64 -name "$name" -machine "accel=$(qemu_accel)" -m 128 \
    -nodefaults -display none -no-user-config -bios "$(halt_firmware)" \
    -qmp "unix:$TMPDIR_TEST/$name.qmp,server=on,wait=off" \
    -qmp "unix:$TMPDIR_TEST/$name.qmp2,server=on,wait=off" \
    $args ${START_QEMU_ARGS:-} >"$TMPDIR_TEST/$name.log" 2>&1 &
  track_pid $!
  eval "QEMU_PID_$name=$!"
  wait_for_socket "$TMPDIR_TEST/$name.qmp"
}

# start_qemu_with_agent NAME DISK: start_qemu, plus a guest agent channel
# (virtio-serial port org.qemu.guest_agent.0) on the unix socket $QGA
# ($TMPDIR_TEST/NAME.qga); no agent answers there, the guest has no OS.
start_qemu_with_agent () {
  QGA=$TMPDIR_TEST/$1.qga
  START_QEMU_ARGS="-chardev socket,path=$QGA,server=on,wait=off,id=qga0
    -device virtio-serial
    -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"
  start_qemu "$@"
  START_QEMU_ARGS=""
  wait_for_socket "$QGA"
}

# wait_exit PID MESSAGE: until process PID (a child) has exited, at most
# 60 s (else fail with MESSAGE); then reap it, its exit status in
# $exit_rc.
wait_exit () {
  _i=0
  while kill -0 "$1" 2>/dev/null && [ "$(pstate "$1")" != Z ]; do
    _i=$((_i + 1))
    [ "$_i" -le 600 ] || fail "$2"
    sleep 0.1
  done
  exit_rc=0
  # shellcheck disable=SC2034 # the callers' to read
  wait "$1" 2>/dev/null || exit_rc=$?
}

# wait_quit PID WHAT: until QEMU process PID (a child) has exited, at
# most 60 s; then reap it.
wait_quit () {
  wait_exit "$1" "$2 did not quit within 60 s"
}

# quit_qemu NAME: shut the VM of start_qemu NAME down cleanly (QEMU
# stores its persistent bitmaps in the images then) and wait for it.
quit_qemu () {
  _qpid=$(eval echo "\$QEMU_PID_$1")
  "$KNIB" qmp "$TMPDIR_TEST/$1.qmp2" quit >/dev/null || :
  wait_quit "$_qpid" "QEMU $1"
}

# qemu_has_cbw SOCKET: the QEMU's copy-before-write filter has
# on-cbw-error (7.1 and later), so knib's live backups fleece through
# filters (a device on knib-cbw-DISK) rather than jobs (knib-job-DISK).
qemu_has_cbw () {
  "$KNIB" qmp --json "$1" query-qmp-schema | grep -q '"on-cbw-error"'
}

# hmp_write SOCKET DEVICE PATTERN OFFSET LENGTH: a guest-like write through
# the device, so QEMU's dirty bitmaps see it.
hmp_write () {
  timeout 300 "$KNIB" qmp "$1" human-monitor-command \
    "command-line=qemu-io -d $2/virtio-backend \"write -P $3 $4 $5\"" >/dev/null \
    || fail "HMP qemu-io write $3 $4 $5 on $2 failed or hung (exit $?)"
}

# seg_digest FILE: the segmented digest of FILE (common/digest.h) from
# xxhsum alone: the xxh3-128 of each 4 MiB piece, as bytes one after the
# other, hashed with xxh3-128.  Needs xxhsum, split and awk; writes into
# the current directory.
seg_digest () {
  rm -rf seg.d
  mkdir seg.d
  (cd seg.d && split -b 4194304 -a 4 "$1" part.)
  for p in seg.d/part.*; do
    [ -e "$p" ] || continue
    xxhsum -H2 "$p" 2>/dev/null | cut -d' ' -f1
  done | awk 'BEGIN { hex = "0123456789abcdef" }
    { s = ""
      for (i = 1; i <= 32; i += 2) {
        v = (index (hex, substr ($1, i, 1)) - 1) * 16 + index (hex, substr ($1, i + 1, 1)) - 1
        s = s sprintf ("\\%03o", v)
      }
      print s }' | while read -r line; do printf "$line"; done > seg.d/sums
  xxhsum -H2 seg.d/sums 2>/dev/null | cut -d' ' -f1
  rm -rf seg.d
}
