#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# nbd-read-full.sh: a full read through src/nbd equals the image and reads only its data.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
require qemu-img qemu-io qemu-nbd

cd "$TMPDIR_TEST"
size=$((64 * 1024 * 1024 + 4608)) # the last cluster is short
qemu-img create -q -f qcow2 disk.qcow2 "$size"
qemu-io -f qcow2 \
  -c "write -P 0x11 0 1M" \
  -c "write -P 0x22 3M 100k" \
  -c "write -P 0x33 5000000 3000" \
  -c "write -z 20M 1M" \
  -c "write -P 0 24M 64k" \
  -c "write -P 0x44 30M 8M" \
  -c "write -P 0x55 $((size - 4608)) 4608" \
  disk.qcow2 >/dev/null
start_qemu_nbd "$PWD/sock" disk disk.qcow2

# The clusters qemu-img says hold data: exactly those must be read.
qemu-img map --output=json disk.qcow2 | qemu_map_clusters '"data": true' > want
[ -s want ] || fail "qemu-img map found no data"

# read NAME OPTION...: read into NAME.raw and check it against the image.
read_and_compare () {
  name=$1
  shift
  "$NBD_READER" "$@" -o "$name.raw" -m "$name.map" "$PWD/sock" disk \
    > "$name.out" || fail "$name: the reader failed"
  [ "$(stat -c %s "$name.raw")" -eq "$size" ] || fail "$name: wrong size"
  qemu-img compare -q -f raw -F qcow2 "$name.raw" disk.qcow2 \
    || fail "$name: the copy differs from disk.qcow2"
  ! grep -qv '^data ' "$name.map" || fail "$name: a full read has zero chunks"
  map_clusters data < "$name.map" > "$name.got"
  same_lines want "$name.got" "$name: read clusters differ from qemu-img map"
  echo "$name: $(cat "$name.out")"
}

read_and_compare default
read_and_compare small-requests -r 3 -s 65536
read_and_compare unaligned-windows -w 1000003 -r 5 -s 196608
read_and_compare stolen-buffers -S -r 2
read_and_compare multi-conn -C 4 -r 16 -s 262144
[ "$(reader_field multi-conn.out connections)" -eq 4 ] \
  || fail "multi-conn: $(cat multi-conn.out)"

# Each window's block status is asked while the one before it is read:
# 17 windows of 4 MiB (the last holds the short cluster): 16 answers are
# ready when the plan gets to them.
read_and_compare prefetch -w 4194304 -v 2> prefetch.err
grep -q "block status: 16 window(s) prefetched in time, 0 not used" prefetch.err \
  || fail "prefetch: $(grep 'block status:' prefetch.err)"

# A 512-byte cluster size gives the same bytes.
read_and_compare small-clusters -c 512 -s 1048576

# 2 MiB clusters (over the request size) read whole 2 MiB clusters.
"$NBD_READER" -c 2097152 -o big.raw -m big.map "$PWD/sock" disk > big.out \
  || fail "big-clusters: the reader failed"
qemu-img compare -q -f raw -F qcow2 big.raw disk.qcow2 \
  || fail "big-clusters: the copy differs from disk.qcow2"
awk '$3 != 2097152 && $2 + $3 != '"$size"' { exit 1 }' big.map \
  || fail "big-clusters: chunks are not whole clusters: $(cat big.map)"
echo "big-clusters: $(cat big.out)"
