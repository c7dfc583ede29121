#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-compress.sh: backups compressed inline with zstd and zlib, full
# and incremental, of data that compresses and data that does not, in a
# chain that mixes compressed and uncompressed images: every image is
# clean and holds the compression type asked for, the chain reads as the
# disk did at each point in time (qemu-img compare, knib restore), and
# knib verify passes.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io
. "$(dirname "$0")/backup-functions.sh"

cd "$TMPDIR_TEST"
# Data: text that compresses, random bytes that do not.
i=0
while [ "$i" -lt 120000 ]; do
  echo "line $i of a log file that compresses well, more or less"
  i=$((i + 1))
done >text.src
head -c 4M text.src >text.bin
head -c 4M /dev/urandom >random.bin

# The disk before the VM starts: 8M of text at 0, 4M of random at 16M.
qemu-img create -q -f qcow2 disk.qcow2 64M
qemu-io -f qcow2 -c "write -s text.bin 0 4M" -c "write -s text.bin 4M 4M" \
  -c "write -s random.bin 16M 4M" disk.qcow2 >/dev/null
start_qemu vm "$TMPDIR_TEST/disk.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

# guest_write SOURCE OFFSET LENGTH: the guest writes SOURCE's bytes.
guest_write () {
  "$KNIB" qmp "$S2" human-monitor-command \
    "command-line=qemu-io -d vda/virtio-backend \"write -s $TMPDIR_TEST/$1 $2 $3\"" \
    >/dev/null || fail "guest write of $1 at $2"
}

# check_compression N TYPE: backup N's image of vda records TYPE (qemu-img
# info), its manifest and the summary say so.
check_compression () {
  _id=$(last_id vm)
  _info=$(qemu-img info "$REPO/vms/vm/$_id/vda.qcow2")
  if [ "$2" = none ]; then
    echo "$_info" | grep -q "compression type: zlib" \
      || fail "backup $1: expected an image without compression: $_info"
  else
    echo "$_info" | grep -q "compression type: $2" \
      || fail "backup $1: expected compression type $2: $_info"
  fi
  grep -q "\"compression\": *\"$2\"" "$REPO/vms/vm/$_id/manifest.json" \
    || fail "backup $1: the manifest does not say $2: $(cat "$REPO/vms/vm/$_id/manifest.json")"
  [ "$(json_disk "b$1.json" vda compression)" = "$2" ] \
    || fail "backup $1: the summary does not say $2: $(cat "b$1.json")"
}

# bytes_written N: what backup N wrote for vda.
bytes_written () {
  tr '{' '\n' <"b$1.json" | grep '"name":"vda"' \
    | sed -n 's/.*"bytes_written":\([0-9]*\).*/\1/p'
}

# 1: full, zstd, 3 threads.
oracle "$S2" disk.qcow2 oracle1.qcow2
backup_ok vm "$S" b1.json --compress zstd --threads 3
check_image vm "$(last_id vm)" vda oracle1.qcow2
check_compression 1 zstd
# 8M of text shrinks a lot, 4M of random does not: well under 12M.
w=$(bytes_written 1)
{ [ "$w" -gt 4000000 ] && [ "$w" -lt 6000000 ]; } \
  || fail "backup 1 wrote $w bytes for 8M of text and 4M of random data"
id1=$(last_id vm)

# 2: incremental, zlib, one thread: text, random, zeros over old data.
guest_write text.bin 32M 4M
guest_write random.bin 40M 2M
"$KNIB" qmp "$S2" human-monitor-command \
  "command-line=qemu-io -d vda/virtio-backend \"write -z 1M 512k\"" >/dev/null
oracle "$S2" disk.qcow2 oracle2.qcow2
backup_ok vm "$S" b2.json --compress zlib --threads 1 --level 9
expect_kind b2.json incremental "$id1"
check_image vm "$(last_id vm)" vda oracle2.qcow2
check_compression 2 zlib
w=$(bytes_written 2)
[ "$w" -lt 3000000 ] || fail "backup 2 wrote $w bytes for 4M of text and 2M of random data"

# 3: incremental, not compressed: the chain mixes both kinds.
guest_write random.bin 48M 1M
guest_write text.bin 5M 1M
oracle "$S2" disk.qcow2 oracle3.qcow2
backup_ok vm "$S" b3.json --compress none
check_image vm "$(last_id vm)" vda oracle3.qcow2
check_compression 3 none

# 4: incremental, zstd again, with a rate limit: 2M of random data at
# 1 MiB/s takes about two seconds.
guest_write random.bin 56M 2M
oracle "$S2" disk.qcow2 oracle4.qcow2
t0=$(date +%s)
backup_ok vm "$S" b4.json --compress zstd --rate-limit 1
t1=$(date +%s)
[ $((t1 - t0)) -ge 1 ] || fail "2M of random data at 1 MiB/s took $((t1 - t0)) s"
check_image vm "$(last_id vm)" vda oracle4.qcow2
check_compression 4 zstd

# 5: no --compress: the compress setting decides.
guest_write text.bin 60M 1M
oracle "$S2" disk.qcow2 oracle5.qcow2
printf 'compress = zlib\ncompression-threads = 2\n' >knib.conf
KNIB_CONFIG=$TMPDIR_TEST/knib.conf
export KNIB_CONFIG
backup_ok vm "$S" b5.json
unset KNIB_CONFIG
check_image vm "$(last_id vm)" vda oracle5.qcow2
check_compression 5 zlib

# The chain verifies, and restores of the middle and the tip read as
# their oracles.
knib_run verify.out verify.err verify --repo "$REPO" vm
[ "$rc" -eq 0 ] || fail "knib verify: $(cat verify.out verify.err)"
for n in 3 5; do
  id=$(sed -n "${n}p" "$TMPDIR_TEST/ids-vm")
  knib_run r.out r.err restore --repo "$REPO" --vm vm "$id" --to "restored$n.qcow2" -q
  [ "$rc" -eq 0 ] || fail "knib restore $id: $(cat r.err)"
  qemu-img compare -q "oracle$n.qcow2" "restored$n.qcow2" \
    || fail "restore of backup $n differs from its oracle"
done

# Bad options are refused before anything happens.
knib_run bad.out bad.err backup --qmp "$S" --vm vm --repo "$REPO" --compress lz4
{ [ "$rc" -eq 2 ] && grep -q "unknown compression 'lz4'" bad.err; } \
  || fail "--compress lz4: $rc $(cat bad.err)"
knib_run bad.out bad.err backup --qmp "$S" --vm vm --repo "$REPO" --compress zlib --level 12
{ [ "$rc" -eq 2 ] && grep -q "zlib levels go from 1 to 9" bad.err; } \
  || fail "--level 12 with zlib: $rc $(cat bad.err)"
check_repo_clean vm vda
echo "backup-compress: ok"
