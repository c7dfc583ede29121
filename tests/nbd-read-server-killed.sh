#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# nbd-read-server-killed.sh: qemu-nbd killed mid-copy: a clear error, no hang, no crash, no leak.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
require qemu-img qemu-io qemu-nbd timeout

cd "$TMPDIR_TEST"
M=1048576
qemu-img create -q -f qcow2 disk.qcow2 256M
qemu-io -f qcow2 -c "write -P 0x5a 0 256M" disk.qcow2 >/dev/null

# Not in a sanitized build (valgrind cannot run ASan's programs; ASan
# checks the same there).
VG=""
if [ "${KNIB_SANITIZED:-no}" = no ] && command -v valgrind >/dev/null 2>&1; then
  VG="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect"
fi

# kill_mid_copy NAME READER-ARGS...: a slow consumer; once 16 MiB were
# delivered, qemu-nbd gets SIGKILL.
kill_mid_copy () {
  name=$1
  shift
  start_qemu_nbd "$PWD/$name.sock" disk disk.qcow2
  rm -f "$name.kill"
  set +e
  # shellcheck disable=SC2086
  timeout 60 $VG "$NBD_READER" -D 20 -s $M -T $((16 * M)):"$PWD/$name.kill" \
    -m "$name.map" "$@" "$PWD/$name.sock" disk > "$name.out" 2> "$name.err" &
  reader=$!
  track_pid $reader
  i=0
  while [ ! -e "$name.kill" ]; do
    i=$((i + 1))
    [ "$i" -le 600 ] || fail "$name: the reader never reached 16 MiB: $(cat "$name.err")"
    sleep 0.1
  done
  kill -9 "$(cat "$PWD/$name.sock.pid")"
  wait "$reader"
  rc=$?
  set -e
  [ "$rc" -ne 124 ] || fail "$name: the reader hung after the server died"
  [ "$rc" -ne 99 ] || fail "$name: valgrind: $(cat "$name.err")"
  [ "$rc" -eq 1 ] || fail "$name: exit $rc, not 1: $(cat "$name.err")"
  grep -q "^test-nbd-reader: nbd read at [0-9]*: " "$name.err" \
    || fail "$name: unclear error: $(cat "$name.err")"
  last=$(tail -n 1 "$name.map" | awk '{ print $2 + $3 }')
  [ "$last" -ge $((16 * M)) ] && [ "$last" -lt $((256 * M)) ] \
    || fail "$name: delivered up to $last"
  echo "$name: $(grep '^test-nbd-reader:' "$name.err")"
}

kill_mid_copy one-connection -r 4
kill_mid_copy many-requests -r 64
kill_mid_copy multi-conn -C 4 -r 16
