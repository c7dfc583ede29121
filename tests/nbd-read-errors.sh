#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# nbd-read-errors.sh: read, block status and timeout errors stop the copy cleanly and say where.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
require nbdkit timeout

cd "$TMPDIR_TEST"
M=1048576

# Under valgrind when it is installed: no invalid access, no leak.
# Not in a sanitized build (valgrind cannot run ASan's programs; ASan
# checks the same there).
VG=""
if [ "${KNIB_SANITIZED:-no}" = no ] && command -v valgrind >/dev/null 2>&1; then
  VG="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect"
fi

# expect_failure NAME PATTERN READER-ARGS...: the reader exits 1 (not a
# crash, not a hang) and says PATTERN.
expect_failure () {
  name=$1 pattern=$2
  shift 2
  set +e
  # shellcheck disable=SC2086
  timeout 60 $VG "$NBD_READER" "$@" > "$name.out" 2> "$name.err"
  rc=$?
  set -e
  [ "$rc" -ne 124 ] || fail "$name: the reader hung"
  [ "$rc" -ne 99 ] || fail "$name: valgrind: $(cat "$name.err")"
  [ "$rc" -eq 1 ] || fail "$name: exit $rc, not 1: $(cat "$name.err")"
  grep -q "^test-nbd-reader: $pattern" "$name.err" \
    || fail "$name: the error does not say '$pattern': $(cat "$name.err")"
  echo "$name: $(grep '^test-nbd-reader:' "$name.err")"
}

# Every read fails: the error names the first offset.
start_nbdkit "$PWD/all.sock" --filter=error pattern size=64M \
  error-pread=EIO error-pread-rate=100%
expect_failure all-reads "nbd read at 0: Input/output error$" \
  -m all.map "$PWD/all.sock" ""
[ ! -s all.map ] || fail "all-reads: chunks were delivered"

# Reads fail from the moment 8 MiB were delivered: everything before the
# failing offset was delivered, in order, and nothing after it.
start_nbdkit "$PWD/mid.sock" --filter=error pattern size=64M \
  error-pread=EIO error-pread-rate=100% error-pread-file="$PWD/inject"
expect_failure mid-copy "nbd read at [0-9]*: Input/output error$" \
  -r 8 -s $M -T $((8 * M)):"$PWD/inject" -m mid.map "$PWD/mid.sock" ""
at=$(sed -n 's/^test-nbd-reader: nbd read at \([0-9]*\):.*/\1/p' mid-copy.err)
[ "$at" -ge $((8 * M)) ] || fail "mid-copy: failed at $at, before the injection"
awk -v at="$at" 'BEGIN { next_ = 0 }
  $2 != next_ { print "gap at " next_; exit 1 }
  { next_ = $2 + $3 }
  END { if (next_ != at) { print "delivered up to " next_ ", failed at " at; exit 1 } }' \
  mid.map || fail "mid-copy: delivered chunks are not everything before $at"

# The same with several connections.
rm -f inject
expect_failure mid-copy-multi-conn "nbd read at [0-9]*: Input/output error$" \
  -C 4 -r 16 -s $M -T $((8 * M)):"$PWD/inject" "$PWD/mid.sock" ""

# Block status fails: the error names it.
start_nbdkit "$PWD/extents.sock" --filter=error memory size=64M \
  error-extents=EIO error-extents-rate=100%
expect_failure block-status "nbd block status at 0: Input/output error$" \
  "$PWD/extents.sock" ""

# A server that stops answering: the timeout fails the reads in flight.
start_nbdkit "$PWD/slow.sock" --filter=delay pattern size=64M rdelay=30
expect_failure timeout "nbd read at 0: no reply from the server within 0.5 s" \
  -t 500 -r 8 "$PWD/slow.sock" ""
