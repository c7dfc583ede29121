#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# restore-domain.sh: restore of a libvirt domain in place (--domain): a
# running domain is refused, --stop stops it (destroyed after the
# timeout: no guest OS answers ACPI), --start starts it again; its disks
# equal the backup's oracle, a disk not named is left alone, and the
# next backup is an incremental of the restored backup; quick restore
# into the domain; a volume detached since the backup comes back.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/libvirt-functions.sh"
lv_require
require setfacl
lv_setup

cd "$TMPDIR_TEST"
A=$TMPDIR_TEST/a.qcow2
B=$TMPDIR_TEST/b.qcow2
qemu-img create -q -f qcow2 "$A" 64M
qemu-img create -q -f qcow2 "$B" 32M
lv_define "$A" "$B"
"$KNIB" libvirt enable "$DOM" >/dev/null || fail "enable"
virsh start "$DOM" >/dev/null || fail "virsh start"

lv_write vda 0x11 0 2M
lv_write vdb 0x21 0 1M
lv_oracle 1 vda vdb
lv_backup 1
b1=$(field 1 id)
lv_write vda 0x12 4M 1M
lv_write vdb 0x22 4M 1M
lv_oracle 2 vda vdb
lv_backup 2
expect_kind 2 incremental

# Running: refused, nothing changed.
if "$KNIB" restore --repo "$REPO" "$b1" --domain "$DOM" >out 2>err; then
  fail "a restore onto a running domain succeeded"
fi
grep -q "domain '$DOM' is running: shut it down first (or give --stop)" err \
  || fail "unexpected error: $(cat err)"
[ "$(lv_state)" = running ] || fail "the refused restore stopped the domain"
# Bad input: a disk the backup lacks, --stop-timeout that is no number.
if "$KNIB" restore --repo "$REPO" "$b1" --domain "$DOM" --disk vdz --stop >out 2>err; then
  fail "a restore of a missing disk succeeded"
fi
grep -q "has no disk 'vdz'" err || fail "unexpected error: $(cat err)"
if "$KNIB" restore --repo "$REPO" "$b1" --domain "$DOM" --stop-timeout x >out 2>err; then
  fail "--stop-timeout x was taken"
fi
grep -q "stop-timeout" err || fail "unexpected error: $(cat err)"

# Only vda, with --stop (destroyed after 2 s) and --start.
virsh suspend "$DOM" >/dev/null
virsh qemu-monitor-command "$DOM" --hmp "qemu-io -d virtio-disk1/virtio-backend flush" >/dev/null
qemu-img convert -U -O qcow2 "$B" vdb-before.qcow2
virsh resume "$DOM" >/dev/null
"$KNIB" restore --repo "$REPO" "$b1" --domain "$DOM" --disk vda --stop \
  --stop-timeout 2 >out 2>err || fail "restore --disk vda: $(cat err)"
grep -q "destroying it" err || fail "the domain was not destroyed after the timeout: $(cat err)"
grep -q "next backup of vm '$DOM' is full" out || fail "a partial restore did not end the chain: $(cat out)"
qemu-img compare -q oracle-1-vda.qcow2 "$A" || fail "vda differs from backup 1"
qemu-img compare -q vdb-before.qcow2 "$B" || fail "vdb, not named, was changed"
[ "$(lv_state)" = "shut off" ] || fail "the domain runs without --start"

# The whole backup, and --start: the next backup is incremental of it.
"$KNIB" restore --repo "$REPO" "$b1" --domain "$DOM" --start >out 2>err \
  || fail "restore --start: $(cat err)"
grep -q "started domain '$DOM'" out || fail "no start said: $(cat out)"
[ "$(lv_state)" = running ] || fail "the domain did not start"
qemu-img compare -U -q oracle-1-vda.qcow2 "$A" || fail "vda differs from backup 1"
qemu-img compare -U -q oracle-1-vdb.qcow2 "$B" || fail "vdb differs from backup 1"
lv_write vda 0x13 8M 1M
lv_oracle 3 vda vdb
lv_backup 3
expect_kind 3 incremental
grep -q "\"parent\":\"$b1\"" b3.json || fail "backup 3 is not an incremental of $b1: $(cat b3.json)"
check 3 vda
check 3 vdb
b3=$(field 3 id)

# Quick, into the domain: refused while QEMU's user cannot reach the
# repository (it is 0700), with nothing changed; then with access.
lv_write vda 0x14 12M 1M
if "$KNIB" restore --repo "$REPO" "$b3" --domain "$DOM" --stop --stop-timeout 2 \
  --quick --start >out 2>err; then
  fail "a quick restore that QEMU cannot read was done"
fi
grep -q "needs QEMU's user" err || fail "unexpected error: $(cat err)"
[ "$(lv_state)" = running ] || fail "the refused quick restore stopped the domain"
setfacl -m u:libvirt-qemu:x "$REPO" "$REPO/vms" "$REPO/vms/$DOM" \
  "$REPO/vms/$DOM/$b1" "$REPO/vms/$DOM/$b3" || fail "setfacl"
"$KNIB" -v restore --repo "$REPO" "$b3" --domain "$DOM" --stop --stop-timeout 2 \
  --quick --start --wait >out 2>err || fail "quick restore --start --wait: $(cat err)"
# libvirt names the disk's file node (libvirt-N-storage): that node is
# reopened with cache.direct=on for the stream, then back.
for d in vda vdb; do
  grep -q "direct I/O: disk '$d' is written with cache.direct=on while it streams (blockdev-reopen of node 'libvirt-[0-9]*-storage')" err \
    || fail "$d's stream did not write with O_DIRECT: $(grep 'direct I/O' err)"
  grep -q "direct I/O: disk '$d' back to cache.direct=off" err \
    || fail "$d's cache mode did not go back: $(grep 'direct I/O' err)"
done
virsh qemu-monitor-command "$DOM" '{"execute":"query-named-block-nodes"}' >nodes.json \
  || fail "query-named-block-nodes"
grep -q '"direct": *true' nodes.json && fail "a node keeps cache.direct=on: $(cat nodes.json)"
[ "$(lv_state)" = running ] || fail "the domain does not run after the quick restore"
grep -q "vda: consolidated" out || fail "vda not consolidated: $(cat out)"
grep -q "vdb: consolidated" out || fail "vdb not consolidated: $(cat out)"
qemu-img compare -U -q oracle-3-vda.qcow2 "$A" || fail "vda differs from backup 3 after consolidation"
qemu-img compare -U -q oracle-3-vdb.qcow2 "$B" || fail "vdb differs from backup 3 after consolidation"
! qemu-img info -U "$A" | grep -q "backing file" || fail "vda still reads the repository"
"$KNIB" restore --repo "$REPO" --status --domain "$DOM" --json >st.json \
  || fail "status: $(cat st.json)"
lv_write vda 0x15 16M 1M
lv_oracle 4 vda vdb
lv_backup 4
expect_kind 4 incremental
grep -q "\"parent\":\"$b3\"" b4.json || fail "backup 4 is not an incremental of $b3: $(cat b4.json)"
check 4 vda
check 4 vdb
b4=$(field 4 id)

# The reference's restoreBackup row 4: a volume detached after the
# backup comes back as a new volume, attached, and the domain starts.
virsh detach-disk "$DOM" vdb --persistent >/dev/null || fail "detach vdb"
"$KNIB" restore --repo "$REPO" "$b4" --domain "$DOM" --stop --stop-timeout 2 \
  --start >out 2>err || fail "restore with vdb detached: $(cat err)"
grep -q "disk 'vdb' was no longer attached" out || fail "no note of vdb: $(cat out)"
[ "$(lv_state)" = running ] || fail "the domain does not run"
new_b=$(lv_source vdb)
[ -n "$new_b" ] && [ "$new_b" != "$B" ] || fail "vdb is not attached as a new volume: '$new_b'"
qemu-img compare -U -q oracle-4-vdb.qcow2 "$new_b" || fail "the new vdb differs from backup 4"
qemu-img compare -U -q oracle-4-vda.qcow2 "$A" || fail "vda differs from backup 4"
virsh dumpxml --inactive "$DOM" | grep -q "$new_b" || fail "the new vdb is not persistent"
"$KNIB" list --repo "$REPO" "$DOM"
echo ok
