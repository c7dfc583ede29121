#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# compress-deferred.sh: "knib compress" on the backups of a chain taken
# without compression: the middle backup, then the full one in two
# separate phases.  Each rewritten image keeps its backing file and the
# clusters it held (qemu-img map), the manifest records the sizes before
# and after and the new hash, the chain verifies, and restores of the
# children equal their oracles.  Then the refusals and failures: a
# backup compressed already, --min-free, a timeout, kill -9 while the
# copy is written and while the images are swapped.
. "$(dirname "$0")/functions.sh"
require qemu-system-x86_64 qemu-img qemu-io
. "$(dirname "$0")/backup-functions.sh"

cd "$TMPDIR_TEST"
i=0
while [ "$i" -lt 80000 ]; do
  echo "line $i of a log file that compresses well, more or less"
  i=$((i + 1))
done | head -c 4M >text.bin
head -c 4M /dev/urandom >random.bin

qemu-img create -q -f qcow2 disk.qcow2 64M
qemu-io -f qcow2 -c "write -s text.bin 0 4M" -c "write -s random.bin 8M 2M" \
  disk.qcow2 >/dev/null
start_qemu vm "$TMPDIR_TEST/disk.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

guest_write () {
  "$KNIB" qmp "$S2" human-monitor-command \
    "command-line=qemu-io -d vda/virtio-backend \"write $*\"" \
    >/dev/null || fail "guest write $*"
}

# Three uncompressed backups, and the disk at each point in time.
oracle "$S2" disk.qcow2 oracle1.qcow2
backup_ok vm "$S" b1.json
guest_write -s "$TMPDIR_TEST/text.bin" 16M 4M
guest_write -s "$TMPDIR_TEST/random.bin" 24M 1M
guest_write -z 1M 1M
oracle "$S2" disk.qcow2 oracle2.qcow2
backup_ok vm "$S" b2.json
guest_write -s "$TMPDIR_TEST/random.bin" 32M 4M
guest_write -s "$TMPDIR_TEST/text.bin" 18M 1M
oracle "$S2" disk.qcow2 oracle3.qcow2
backup_ok vm "$S" b3.json
# shellcheck disable=SC2154 # start_qemu sets it with eval
kill -9 "$QEMU_PID_vm"
id1=$(sed -n 1p ids-vm)
id2=$(sed -n 2p ids-vm)
id3=$(sed -n 3p ids-vm)
img () {
  echo "$REPO/vms/vm/$1/vda.qcow2"
}

# map IMAGE: the clusters the image holds itself, whatever their form.
map () {
  qemu-img map --output=json "$1" \
    | sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\), "depth": 0, "present": \([a-z]*\), "zero": \([a-z]*\), "data": \([a-z]*\).*/\1 \2 \3 \4 \5/p' \
    | awk '{ for (o = $1; o < $1 + $2; o += 65536) print o, $3, $4, $5 }'
}

# restore_equals ID ORACLE: knib restore of ID reads as ORACLE.
restore_equals () {
  rm -f restored.qcow2
  knib_run r.out r.err restore --repo "$REPO" --vm vm "$1" --to restored.qcow2 -q
  [ "$rc" -eq 0 ] || fail "knib restore $1: $(cat r.err)"
  qemu-img compare -q "$2" restored.qcow2 \
    || fail "restore of $1 differs from $2"
}

verify_ok () {
  knib_run v.out v.err verify --repo "$REPO" vm
  [ "$rc" -eq 0 ] || fail "knib verify ($1): $(cat v.out v.err)"
}

# manifest_field ID KEY: a value of vda in the manifest of ID.
manifest_field () {
  tr -d ' \n' <"$REPO/vms/vm/$1/manifest.json" \
    | sed -n "s/.*\"$2\":\"*\([^\",}]*\).*/\1/p"
}

# 1. The middle backup, both phases at once.
map "$(img "$id2")" >map-before.txt
size_before=$(stat -c %s "$(img "$id2")")
hash_before=$(manifest_field "$id2" xxh3-128-segments)
knib_run c.json c.err compress --repo "$REPO" "$id2" --json --threads 2
[ "$rc" -eq 0 ] || fail "knib compress $id2: $(cat c.err)"
{ grep -q '"after":"zstd"' c.json && grep -q '"done":true' c.json; } \
  || fail "knib compress $id2 said: $(cat c.json)"
qemu-img info "$(img "$id2")" | grep -q "compression type: zstd" \
  || fail "the image of $id2 is not zstd: $(qemu-img info "$(img "$id2")")"
qemu-img info "$(img "$id2")" | grep -q "^backing file: ../$id1/vda.qcow2" \
  || fail "the image of $id2 lost its backing file: $(qemu-img info "$(img "$id2")")"
map "$(img "$id2")" >map-after.txt
cmp -s map-before.txt map-after.txt \
  || fail "the compressed image holds other clusters: $(diff map-before.txt map-after.txt | head)"
size_after=$(stat -c %s "$(img "$id2")")
[ "$size_after" -lt "$size_before" ] \
  || fail "compressing $id2 did not shrink it: $size_before -> $size_after"
[ "$(manifest_field "$id2" compression)" = zstd ] \
  || fail "the manifest of $id2 does not say zstd"
[ "$(manifest_field "$id2" bytes-before-compression)" = "$size_before" ] \
  || fail "the manifest of $id2 does not record the size before: $(cat "$REPO/vms/vm/$id2/manifest.json")"
[ "$(manifest_field "$id2" bytes-written)" = "$size_after" ] \
  || fail "the manifest of $id2 does not record the size after"
[ "$(manifest_field "$id2" xxh3-128-segments)" != "$hash_before" ] \
  || fail "the manifest of $id2 kept the old hash"
qemu-img compare -q oracle2.qcow2 "$(img "$id2")" || fail "$id2 differs from its oracle"
verify_ok "after compressing $id2"
restore_equals "$id3" oracle3.qcow2
restore_equals "$id2" oracle2.qcow2

# 2. The full backup with zlib, in two separate runs.
hash1=$(sha256sum <"$(img "$id1")")
knib_run s.out s.err compress --repo "$REPO" --vm vm "$id1" --compress zlib --start-only
[ "$rc" -eq 0 ] || fail "knib compress --start-only: $(cat s.err)"
[ -f "$REPO/vms/vm/$id1/.compressed-vda.qcow2.$(manifest_field "$id1" xxh3-128-segments)" ] \
  || fail "no ready copy after --start-only: $(ls -a "$REPO/vms/vm/$id1")"
[ "$(sha256sum <"$(img "$id1")")" = "$hash1" ] || fail "--start-only changed the image"
verify_ok "after --start-only"
knib_run f.out f.err compress --repo "$REPO" "$id1" --compress zlib --finalize-only
[ "$rc" -eq 0 ] || fail "knib compress --finalize-only: $(cat f.err)"
set -- "$REPO/vms/vm/$id1"/.compressed-*
[ ! -e "$1" ] || fail "the ready copy is left: $*"
qemu-img info "$(img "$id1")" | grep -q "compression type: zlib" || fail "$id1 is not zlib"
verify_ok "after compressing $id1"
restore_equals "$id3" oracle3.qcow2
restore_equals "$id1" oracle1.qcow2
# --finalize-only without a ready copy is an error that says what to do.
knib_run f.out f.err compress --repo "$REPO" "$id3" --finalize-only
expect_failure f.err "finalize without a copy" "has no compressed copy" "start phase"

# 3. A backup compressed already: nothing to do.
repo_state state-before.txt
knib_run c.out c.err compress --repo "$REPO" "$id2"
{ [ "$rc" -eq 0 ] && grep -q "compressed already (zstd)" c.out; } \
  || fail "compressing $id2 again: $rc $(cat c.out c.err)"
repo_state state-after.txt
cmp -s state-before.txt state-after.txt || fail "compressing $id2 again changed the repository"

# 4. --min-free: refused, nothing written.
knib_run c.out c.err compress --repo "$REPO" "$id3" --min-free 1000000
expect_failure c.err "--min-free" "not enough free space" "min-free"
repo_state state-after.txt
cmp -s state-before.txt state-after.txt || fail "--min-free refusal changed the repository"

# 5. A timeout: 4M of random data at 1 MiB/s cannot finish in a second.
knib_run c.out c.err compress --repo "$REPO" "$id3" --rate-limit 1 --timeout 1
expect_failure c.err "--timeout" "timed out"
repo_state state-after.txt
cmp -s state-before.txt state-after.txt \
  || fail "a timeout left something behind: $(diff state-before.txt state-after.txt)"

# 6. kill -9 while the copy is written: the original is intact, the
#    chain verifies, and the next run removes the partial copy.
require_test_hooks
(
  KNIB_TEST_STOP_AT="compress"
  export KNIB_TEST_STOP_AT
  exec "$KNIB" compress --repo "$REPO" "$id3" -q >k.out 2>k.err
) &
KNIB_PID=$!
track_pid $KNIB_PID
n=0
until [ "$(proc_state $KNIB_PID)" = T ]; do
  n=$((n + 1))
  { [ "$n" -le 300 ] && [ -n "$(proc_state $KNIB_PID)" ]; } \
    || fail "knib compress did not stop: $(cat k.err)"
  sleep 0.1
done
kill_stopped
set -- "$REPO/vms/vm/$id3"/.compressing-vda.qcow2.*
[ -e "$1" ] \
  || fail "no partial copy after kill -9: $(ls -a "$REPO/vms/vm/$id3")"
[ "$(manifest_field "$id3" compression)" = none ] || fail "kill -9 changed the manifest"
verify_ok "after kill -9 mid-compression"
restore_equals "$id3" oracle3.qcow2
# knib recover (as every backup does first) removes the dead copy.
knib_run rec.out rec.err recover --repo "$REPO" --vm vm
[ "$rc" -eq 0 ] || fail "knib recover after kill -9 mid-compression: $(cat rec.err)"
grep -q "removed the partial compressed copy" rec.out \
  || fail "knib recover did not report the partial copy: $(cat rec.out rec.err)"
set -- "$REPO/vms/vm/$id3"/.compressing-vda.qcow2.*
[ ! -e "$1" ] || fail "knib recover left the partial copy: $(ls -a "$REPO/vms/vm/$id3")"

# 7. kill -9 while the images are swapped (after the journal): the next
#    run (here a finalize) finishes the swap.
(
  KNIB_TEST_STOP_AT="finalize"
  export KNIB_TEST_STOP_AT
  exec "$KNIB" compress --repo "$REPO" "$id3" -q >k.out 2>k.err
) &
KNIB_PID=$!
track_pid $KNIB_PID
n=0
until [ "$(proc_state $KNIB_PID)" = T ]; do
  n=$((n + 1))
  { [ "$n" -le 300 ] && [ -n "$(proc_state $KNIB_PID)" ]; } \
    || fail "knib compress did not stop at finalize: $(cat k.err)"
  sleep 0.1
done
kill_stopped
set -- "$REPO/vms/vm/$id3"/.compressing-*
[ ! -e "$1" ] \
  || fail "the partial copy of the killed run was not removed: $(ls -a "$REPO/vms/vm/$id3")"
[ -f "$REPO/vms/vm/$id3/.compress-journal.json" ] || fail "no journal after kill -9"
knib_run f.out f.err compress --repo "$REPO" "$id3" --finalize-only
[ "$rc" -eq 0 ] || fail "finalize after kill -9: $(cat f.err)"
grep -q "finished compressing backup '$id3'" f.err \
  || fail "the interrupted swap was not finished: $(cat f.out f.err)"
[ "$(manifest_field "$id3" compression)" = zstd ] || fail "$id3 is not zstd after recovery"
verify_ok "after finishing the swap"
restore_equals "$id3" oracle3.qcow2
check_repo_clean vm vda
echo "compress-deferred: ok"
