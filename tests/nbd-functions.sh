# SPDX-License-Identifier: Apache-2.0
# nbd-functions.sh: helpers for the nbd-*.sh tests (sourced after functions.sh).

: "${NBD_READER:=$(cd "$(dirname "$0")" && pwd)/unit/test-nbd-reader}"
[ -x "$NBD_READER" ] || fail "$NBD_READER is not built (make -C tests check)"

# start_qemu_nbd SOCKET EXPORT IMAGE [OPTION...]: serve a qcow2 read-only
# (as knib's exports are) until the test ends.
start_qemu_nbd () {
  _sock=$1 _export=$2 _image=$3
  shift 3
  qemu-nbd --socket="$_sock" --read-only --persistent --shared=8 \
    --format=qcow2 --export-name="$_export" --fork --pid-file="$_sock.pid" \
    "$@" "$_image" || fail "qemu-nbd did not start"
  track_pid "$(cat "$_sock.pid")"
}

# start_nbdkit SOCKET ARG...: nbdkit in the foreground, dying with us.
start_nbdkit () {
  _sock=$1
  shift
  nbdkit --foreground --exit-with-parent --unix "$_sock" "$@" \
    2>>"$TMPDIR_TEST/nbdkit.log" &
  track_pid $!
  wait_for_socket "$_sock"
}

# map_clusters KIND < MAPFILE: the 64 KiB clusters of the reader's chunks
# of KIND ("data", "zero" or "any"), one number a line, sorted.
map_clusters () {
  awk -v kind="$1" 'kind == "any" || $1 == kind {
      for (c = int($2 / 65536); c * 65536 < $2 + $3; c++) print c
    }' | sort -n -u
}

# qemu_map_clusters PATTERN < JSON: the 64 KiB clusters of the entries of
# `qemu-img map --output=json` whose line contains PATTERN, sorted.
qemu_map_clusters () {
  awk -v pat="$1" 'index($0, pat) {
      match($0, /"start": [0-9]+/); s = substr($0, RSTART + 9, RLENGTH - 9)
      match($0, /"length": [0-9]+/); l = substr($0, RSTART + 10, RLENGTH - 10)
      for (c = int(s / 65536); c * 65536 < s + l; c++) print c
    }' | sort -n -u
}

# same_lines A B WHAT: fail unless files A and B hold the same lines.
same_lines () {
  cmp -s "$1" "$2" || fail "$3: $(diff "$1" "$2" | head -20)"
}

# reader_field FILE NAME: a number from the reader's summary line.
reader_field () {
  awk -v name="$2" '{ for (i = 1; i < NF; i++) if ($i == name) print $(i + 1) }' "$1"
}
