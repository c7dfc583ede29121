#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# nbd-read-incremental.sh: an incremental read delivers exactly the dirty clusters, zero ones as ZERO.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-functions.sh"
require qemu-img qemu-io qemu-nbd

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 disk.qcow2 64M
qemu-io -f qcow2 -c "write -P 0x11 0 8M" -c "write -P 0x12 16M 4M" \
  disk.qcow2 >/dev/null
# The image at the time of the bitmap: what the incremental goes on top of.
qemu-img convert -O raw disk.qcow2 base.raw
qemu-img bitmap --add --enable disk.qcow2 b0
qemu-io -f qcow2 \
  -c "write -P 0x22 1M 64k" \
  -c "write -P 0x33 2097252 10" \
  -c "write -z 4M 1M" \
  -c "write -z 6295552 8k" \
  -c "write -P 0x44 30M 64k" \
  -c "write -z 40M 128k" \
  -c "write -P 0x55 8323072 131072" \
  -c "write -P 0 50M 64k" \
  disk.qcow2 >/dev/null
# A bitmap with nothing dirty.
qemu-img bitmap --add --enable disk.qcow2 b1
start_qemu_nbd "$PWD/sock" disk disk.qcow2 -B b0 -B b1

# Oracles from QEMU: the dirty clusters (qemu-img map over NBD shows a
# bitmap's dirty areas as "data": false), and the clusters that read as
# zero in the image.
qemu-img map --output=json --image-opts \
  "driver=nbd,server.type=unix,server.path=$PWD/sock,export=disk,x-dirty-bitmap=qemu:dirty-bitmap:b0" \
  | qemu_map_clusters '"data": false' > dirty
qemu-img map --output=json disk.qcow2 | qemu_map_clusters '"zero": true' > zero
awk 'NR == FNR { z[$1]; next } $1 in z' zero dirty > want-zero
# What the writes above make of them, in case the oracle itself is off.
[ "$(tr '\n' ' ' < dirty)" = "16 32 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 96 127 128 480 640 641 800 " ] \
  || fail "unexpected dirty clusters: $(tr '\n' ' ' < dirty)"
[ "$(tr '\n' ' ' < want-zero)" = "64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 640 641 " ] \
  || fail "unexpected zero clusters: $(tr '\n' ' ' < want-zero)"

read_incremental () {
  name=$1
  shift
  cp base.raw "$name.raw"
  "$NBD_READER" -b b0 "$@" -o "$name.raw" -m "$name.map" "$PWD/sock" disk \
    > "$name.out" || fail "$name: the reader failed"
  # Exactly the dirty clusters, and the zero ones as ZERO.
  map_clusters any < "$name.map" > "$name.got"
  same_lines dirty "$name.got" "$name: delivered clusters differ from the dirty ones"
  map_clusters zero < "$name.map" > "$name.zero"
  same_lines want-zero "$name.zero" "$name: ZERO clusters differ"
  # The base plus the incremental is the image now.
  qemu-img compare -q -f raw -F qcow2 "$name.raw" disk.qcow2 \
    || fail "$name: base + incremental differs from disk.qcow2"
  echo "$name: $(cat "$name.out")"
}

read_incremental default
read_incremental unaligned-windows -w 999999 -r 2 -s 65536
read_incremental multi-conn -C 3

# Nothing dirty: nothing delivered.
"$NBD_READER" -b b1 -m clean.map "$PWD/sock" disk > clean.out \
  || fail "clean: the reader failed"
[ ! -s clean.map ] || fail "a clean bitmap delivered: $(head clean.map)"
echo "clean: $(cat clean.out)"
