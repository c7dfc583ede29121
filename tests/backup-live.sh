#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-live.sh: full and incremental backups of a running VM with two
# disks; every backup equals a copy of the disks taken at its point in
# time (qemu-img compare), incrementals hold only dirty clusters, and
# zeroed ranges read back as zero through the chain.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
K=$KNIB
R=$TMPDIR_TEST/repo
qemu-img create -q -f qcow2 a.qcow2 128M
qemu-img create -q -f qcow2 b.qcow2 64M
start_qemu vm "$TMPDIR_TEST/a.qcow2" "$TMPDIR_TEST/b.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

# oracle N: pause, flush QEMU's caches to the images, copy them, resume.
oracle () {
  "$K" qmp "$S2" stop >/dev/null
  for dev in vda vdb; do
    "$K" qmp "$S2" human-monitor-command \
      "command-line=qemu-io -d $dev/virtio-backend flush" >/dev/null
  done
  qemu-img convert -U -O qcow2 a.qcow2 "oracle-a-$1.qcow2"
  qemu-img convert -U -O qcow2 b.qcow2 "oracle-b-$1.qcow2"
  "$K" qmp "$S2" cont >/dev/null
}

# backup N ARGS...: a backup whose JSON summary goes to bN.json.
backup () {
  n=$1
  shift
  "$K" backup --qmp "$S" --vm vm --repo "$R" --scratch "$TMPDIR_TEST/scratch" \
    --json "$@" > "b$n.json" 2> "b$n.err" \
    || fail "backup $n failed: $(cat "b$n.err")"
}

# check N: the images of backup N equal the oracle N, and are clean.
check () {
  id=$(json_top "b$1.json" id)
  [ -n "$id" ] || fail "backup $1 printed no id: $(cat "b$1.json")"
  for d in a:vda b:vdb; do
    img=$R/vms/vm/$id/${d#*:}.qcow2
    qemu-img check -q "$img" || fail "qemu-img check of $img failed"
    qemu-img compare -q "oracle-${d%:*}-$1.qcow2" "$img" \
      || fail "backup $1 (${d#*:}) differs from its oracle"
  done
}

disk_field () {
  # disk_field FILE DISK KEY: an integer of one disk of the summary
  tr '{' '\n' < "$1" | grep "\"name\":\"$2\"" \
    | sed -n "s/.*\"$3\":\\([0-9]*\\).*/\\1/p"
}

# 1: full, of data on both disks.
hmp_write "$S2" vda 0x11 0 8M
hmp_write "$S2" vda 0x12 64M 4M
hmp_write "$S2" vdb 0x21 1M 2M
oracle 1
backup 1
check 1
[ "$(json_top b1.json kind)" = full ] || fail "first backup is not full"
grep -q '"reason":"first backup of this VM"' b1.json || fail "no reason: $(cat b1.json)"

# 2..6: five incrementals, each with scattered writes, overwrites and
# zeroed ranges.
i=2
while [ "$i" -le 6 ]; do
  hmp_write "$S2" vda "0x$((30 + i))" "$((i * 3))M" 256k
  hmp_write "$S2" vdb "0x$((40 + i))" "$((i * 5))M" 64k
  "$K" qmp "$S2" human-monitor-command \
    "command-line=qemu-io -d vda/virtio-backend \"write -z $((i))M 128k\"" >/dev/null
  oracle "$i"
  backup "$i"
  check "$i"
  [ "$(json_top "b$i.json" kind)" = incremental ] || fail "backup $i is not incremental: $(cat "b$i.json")"
  # Only dirty clusters are read: 256k of data and 128k of zeros on vda.
  [ "$(disk_field "b$i.json" vda bytes_read)" -eq 262144 ] \
    || fail "backup $i read $(disk_field "b$i.json" vda bytes_read) bytes of vda, not 256k"
  [ "$(disk_field "b$i.json" vda bytes_zero)" -eq 131072 ] \
    || fail "backup $i zeroed $(disk_field "b$i.json" vda bytes_zero) bytes of vda, not 128k"
  [ "$(disk_field "b$i.json" vdb bytes_read)" -eq 65536 ] \
    || fail "backup $i read $(disk_field "b$i.json" vdb bytes_read) bytes of vdb"
  i=$((i + 1))
done

# The incremental images are small: a few clusters, not the disk.
id=$(json_top b6.json id)
size=$(stat -c %s "$R/vms/vm/$id/vda.qcow2")
[ "$size" -lt 1048576 ] || fail "incremental image of vda is $size bytes"
# Zeroed range of backup 6 (6M..6M+128k) over data written by the full
# backup (0x11 at 0..8M) reads as zero through the chain.
qemu-io -r -f qcow2 -c "read -P 0 6M 128k" "$R/vms/vm/$id/vda.qcow2" | grep -q "read 131072" \
  || fail "zeroed range does not read as zero through the chain"
# The chain's images are relative to each other.
qemu-img info "$R/vms/vm/$id/vda.qcow2" | grep -q "^backing file: \.\./" \
  || fail "backing file is not relative"

# The last backup's bitmap is left on each disk, recording, and the one
# of the backup before it, frozen (deleting the last backup hands its
# tracking back to it); no other.
"$K" qmp --json "$S2" query-block > block.json
prev=$(json_top b5.json id)
[ "$(grep -o '"name":"knib-[^"]*","recording":[a-z]*' block.json | sort -u)" \
  = "$(printf '"name":"knib-%s","recording":false\n"name":"knib-%s","recording":true' "$prev" "$id")" ] \
  || fail "bitmaps left: $(grep -o '"name":"knib-[^"]*","recording":[a-z]*' block.json)"
[ "$(grep -o '"name":"knib-[^"]*","recording":true' block.json | wc -l)" -eq 2 ] \
  || fail "the bitmaps are not both recording"

# --incremental when a disk cannot be incremental says why; --full starts
# a new chain; nothing in QEMU or the repository was disturbed by the
# refusal.
"$K" qmp "$S2" block-dirty-bitmap-remove node=disk1 "name=knib-$id" >/dev/null
if "$K" backup --qmp "$S" --vm vm --repo "$R" --scratch "$TMPDIR_TEST/scratch" \
     --incremental > inc.out 2> inc.err; then
  fail "--incremental succeeded without vdb's bitmap"
fi
grep -q "incremental backup is not possible: bitmap knib-$id of vdb is missing" inc.err \
  || fail "unclear refusal: $(cat inc.err)"
# --auto: vda incremental, vdb full with the reason.
hmp_write "$S2" vda 0x77 90M 64k
oracle 7
backup 7
check 7
tr '{' '\n' < b7.json | grep '"name":"vdb"' | grep -q '"kind":"full","reason":"bitmap knib-.* of vdb is missing' \
  || fail "vdb is not full with a reason: $(cat b7.json)"
tr '{' '\n' < b7.json | grep '"name":"vda"' | grep -q '"kind":"incremental"' \
  || fail "vda is not incremental: $(cat b7.json)"

# A full backup on request.
oracle 8
backup 8 --full
check 8
[ "$(json_top b8.json kind)" = full ] || fail "--full gave $(json_top b8.json kind)"

# The scratch directory holds nothing after the runs.
[ -z "$(ls -A "$TMPDIR_TEST/scratch")" ] || fail "scratch left: $(ls -A "$TMPDIR_TEST/scratch")"
ls "$R/vms/vm" | grep -q partial && fail "a partial backup was left"
echo "backup-live: ok"
