#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# qcow2-convert.sh: raw disks written by src/qcow2, full and incremental, read back identically in qemu-img.
. "$(dirname "$0")/functions.sh"
require qemu-img
: "${QCOW2_CONVERT:=$(cd "$(dirname "$0")" && pwd)/unit/test-qcow2-convert}"

cd "$TMPDIR_TEST" || exit 1

# make_disks NAME N: NAME.raw holds N 64k clusters of random data, N/2 of
# zeros, N of text, and a last cluster of 1536 bytes; NAME-2.raw is its
# next state, with some clusters rewritten and some zeroed.
make_disks () {
  n=$2
  {
    head -c $((n * 65536)) /dev/urandom
    head -c $(((n / 2) * 65536)) /dev/zero
    yes "knib qcow2 test line" | head -c $((n * 65536))
    head -c 1536 /dev/urandom
  } > "$1.raw"
  cp "$1.raw" "$1-2.raw"
  head -c $(((n / 8) * 65536)) /dev/urandom |
    dd of="$1-2.raw" bs=65536 seek=$((n / 16)) conv=notrunc status=none
  dd if=/dev/zero of="$1-2.raw" bs=65536 seek=$((n / 4)) count=$((n / 4)) \
    conv=notrunc status=none
  yes "changed" | head -c 262144 |
    dd of="$1-2.raw" bs=65536 seek=$((n * 2)) conv=notrunc status=none
}

check () {
  qemu-img check -q -f qcow2 "$1" || fail "qemu-img check $1"
  qemu-img compare -q -f qcow2 -F raw "$1" "$2" || fail "$1 differs from $2"
}

# convert DISK CLUSTER_SIZE COMPRESSION: a full image and an incremental
# image on it, each checked against its state of the disk.
convert () {
  opt=""
  [ "$3" = none ] || opt="-z $3"
  full=full-$2-$3.qcow2
  inc=inc-$2-$3.qcow2
  # shellcheck disable=SC2086
  "$QCOW2_CONVERT" -c "$2" $opt "$1.raw" "$full" ||
    fail "converting with $2-byte clusters, compression $3"
  check "$full" "$1.raw"
  # shellcheck disable=SC2086
  "$QCOW2_CONVERT" -c "$2" $opt -b "$full" -d "$1.raw" "$1-2.raw" "$inc" ||
    fail "incremental with $2-byte clusters, compression $3"
  check "$inc" "$1-2.raw"
}

# qemu-img reads 512-byte compressed clusters slowly: a smaller disk there.
make_disks small 16
make_disks disk 128
for z in none zlib zstd; do
  convert small 512 "$z"
  convert disk 65536 "$z"
  convert disk 2097152 "$z"
done

# The image of compressible data is smaller than its disk.
size=$(stat -c %s full-65536-zstd.qcow2)
[ "$size" -lt 12000000 ] || fail "the zstd image has $size bytes"
qemu-img info full-65536-zstd.qcow2 | grep -q "compression type: zstd" ||
  fail "qemu-img info does not show zstd"
qemu-img info inc-65536-zlib.qcow2 |
  grep -q "^backing file: full-65536-zlib.qcow2\$" ||
  fail "qemu-img info does not show the relative backing file"
qemu-img info inc-65536-zlib.qcow2 | grep -q "^backing file format: qcow2\$" ||
  fail "qemu-img info does not show the backing format"
