#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# qcow2-io.sh: images written with O_DIRECT, or flushed and dropped where the file system has no O_DIRECT (tmpfs), are valid, stay out of the page cache, and carry the digest xxhsum computes.
. "$(dirname "$0")/functions.sh"
require qemu-img xxhsum split fincore awk
: "${QCOW2_CONVERT:=$(cd "$(dirname "$0")" && pwd)/unit/test-qcow2-convert}"

cd "$TMPDIR_TEST" || exit 1

# 10 MiB of random data, 2 MiB of zeros, 6 MiB of text, a short cluster:
# images of several 4 MiB digest segments.
{
  head -c 10485760 /dev/urandom
  head -c 2097152 /dev/zero
  yes "knib qcow2 io test line" | head -c 6291456
  head -c 1536 /dev/urandom
} > disk.raw

# write DIR NAME IO WANT-IO CACHE [CONVERT-OPTIONS]: convert disk.raw
# into DIR/NAME, check the image with qemu-img, the way it was written,
# its digest against xxhsum's, and with CACHE "uncached" that none of it
# stays in the page cache.
write () {
  dir=$1 name=$2 io=$3 want=$4 cache=$5
  shift 5
  img=$dir/$name
  "$QCOW2_CONVERT" -o "$io" -D "$@" "$TMPDIR_TEST/disk.raw" "$img" > "$name.out" ||
    fail "converting into $img ($io)"
  # Before anything else reads it.
  if [ "$cache" = uncached ]; then
    cached=$(fincore --bytes --noheadings --output RES "$img")
    [ "$cached" -eq 0 ] || fail "$cached bytes of $img stay in the page cache"
  fi
  qemu-img check -q -f qcow2 "$img" || fail "qemu-img check $img"
  qemu-img compare -q -f qcow2 -F raw "$img" disk.raw || fail "$img differs from disk.raw"
  grep -qx "io: $want" "$name.out" ||
    fail "$img was written '$(sed -n 's/^io: //p' "$name.out")', not '$want'"
  got=$(sed -n 's/^digest: //p' "$name.out")
  expected=$(seg_digest "$img")
  [ -n "$got" ] && [ "$got" = "$expected" ] ||
    fail "$img: digest while writing '$got', xxhsum says '$expected'"
}

direct="O_DIRECT"
drop="buffered, flushed and dropped per chunk"

# Here (the test directory's file system), when it takes O_DIRECT.
if dd if=/dev/zero of=probe bs=65536 count=1 oflag=direct status=none 2>/dev/null; then
  here=$direct
else
  here=$drop
fi
rm -f probe
write "$TMPDIR_TEST" direct.qcow2 direct "$here" uncached
write "$TMPDIR_TEST" direct-2m.qcow2 direct "$here" uncached -c 2097152
write "$TMPDIR_TEST" drop.qcow2 drop "$drop" uncached
write "$TMPDIR_TEST" buffered.qcow2 buffered buffered any
# Clusters below 4 KiB are never written with O_DIRECT.
write "$TMPDIR_TEST" direct-512.qcow2 direct "$drop" uncached -c 512
# Compressed clusters pack byte by byte: flushed and dropped.
write "$TMPDIR_TEST" zstd.qcow2 drop "$drop" uncached -z zstd
# An incremental image on top of the full one.
"$QCOW2_CONVERT" -o direct -D -b direct.qcow2 -d disk.raw disk.raw inc.qcow2 > inc.out ||
  fail "converting the incremental image"
qemu-img check -q -f qcow2 inc.qcow2 || fail "qemu-img check inc.qcow2"
[ "$(sed -n 's/^digest: //p' inc.out)" = "$(seg_digest "$TMPDIR_TEST/inc.qcow2")" ] ||
  fail "inc.qcow2: the digest while writing differs from xxhsum's"

# A file system without O_DIRECT: the writer falls back to flush and
# drop.  ramfs has none; tmpfs had none before Linux 6.6 (there the test
# expects what a probe finds).  The mounts live in a mount namespace of
# their own, gone with it.
on_fs () {
  fstype=$1
  if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null 2>&1; then
    echo "SKIP part: mounting $fstype needs root and unshare"
    return 0
  fi
  mkdir "$fstype.mnt"
  unshare -m sh -c '
    mount -t "$1" -o size=64m knib-test "$2" || exit 77
    if dd if=/dev/zero of="$2/probe" bs=65536 count=1 oflag=direct status=none 2>/dev/null; then
      echo O_DIRECT
    else
      echo "no O_DIRECT"
    fi' sh "$fstype" "$TMPDIR_TEST/$fstype.mnt" > "$fstype.probe" || {
    echo "SKIP part: cannot mount $fstype"
    return 0
  }
  echo "$fstype: $(cat "$fstype.probe")"
  export QCOW2_CONVERT TMPDIR_TEST
  unshare -m sh -c '
    mount -t "$1" -o size=64m knib-test "$2" || exit 1
    "$QCOW2_CONVERT" -o direct -D "$TMPDIR_TEST/disk.raw" "$2/img.qcow2" > "$1.out" || exit 1
    fincore --bytes --noheadings --output RES "$2/img.qcow2" > "$1.cached"
    qemu-img check -q -f qcow2 "$2/img.qcow2" || exit 1
    qemu-img compare -q -f qcow2 -F raw "$2/img.qcow2" "$TMPDIR_TEST/disk.raw" || exit 1
    cp "$2/img.qcow2" "$TMPDIR_TEST/$1.qcow2"' sh "$fstype" "$TMPDIR_TEST/$fstype.mnt" ||
    fail "writing an image on $fstype"
  if grep -qx O_DIRECT "$fstype.probe"; then
    want=$direct
  else
    want=$drop
  fi
  grep -qx "io: $want" "$fstype.out" ||
    fail "$fstype: written '$(sed -n 's/^io: //p' "$fstype.out")', not '$want'"
  [ "$(sed -n 's/^digest: //p' "$fstype.out")" = "$(seg_digest "$TMPDIR_TEST/$fstype.qcow2")" ] ||
    fail "$fstype: the digest while writing differs from xxhsum's"
}
on_fs ramfs
grep -qx "no O_DIRECT" ramfs.probe 2>/dev/null || [ ! -f ramfs.probe ] ||
  fail "ramfs took O_DIRECT: the fallback is not tested"
on_fs tmpfs
