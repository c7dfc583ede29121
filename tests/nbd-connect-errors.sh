#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# nbd-connect-errors.sh: no server, no export, no bitmap: clear errors when connecting.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
require qemu-img qemu-nbd

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 disk.qcow2 16M
qemu-img bitmap --add --enable disk.qcow2 b0
start_qemu_nbd "$PWD/sock" disk disk.qcow2

# expect_error NAME MESSAGE READER-ARGS...
expect_error () {
  name=$1 pattern=$2
  shift 2
  if "$NBD_READER" "$@" > "$name.out" 2> "$name.err"; then
    fail "$name: the reader succeeded"
  fi
  grep -q "^test-nbd-reader: $pattern" "$name.err" \
    || fail "$name: the error does not say '$pattern': $(cat "$name.err")"
  echo "$name: $(cat "$name.err")"
}

expect_error no-server "nbd connect to '$PWD/nosuch.sock': .*No such file or directory" \
  "$PWD/nosuch.sock" disk
expect_error no-export "nbd connect to '$PWD/sock' export 'nosuch': .*nosuch" \
  "$PWD/sock" nosuch
# The image has the bitmap, but the export does not expose it.
expect_error no-bitmap "export 'disk' does not expose dirty bitmap 'b0' " \
  -b b0 "$PWD/sock" disk
expect_error bad-cluster "cluster size 1000 is not a power of two" \
  -c 1000 "$PWD/sock" disk

# Multi-conn asked of a server that accepts one client: one connection.
start_qemu_nbd "$PWD/one.sock" disk disk.qcow2 --shared=1
"$NBD_READER" -C 4 "$PWD/one.sock" disk > one.out || fail "one client: failed"
[ "$(reader_field one.out connections)" -eq 1 ] || fail "one client: $(cat one.out)"
echo "one-client: $(cat one.out)"
