#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# snapshot-libvirt.sh: knib snapshot of a libvirt domain (a real libvirtd
# and knib's hook): create through libvirt while it runs and while it is
# shut off, so that libvirt's definition follows the new images; each next
# backup is an incremental of exactly the writes since the last one and
# equals its oracle; delete merges a shut-off domain's layers; libvirt
# still manages the domain (domblklist, destroy, start) throughout; a
# revert of the shut-off domain points its definition at the new images.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/libvirt-functions.sh"
lv_require
require jq
lv_setup

cd "$TMPDIR_TEST"
A=$TMPDIR_TEST/a.qcow2
B=$TMPDIR_TEST/b.qcow2
qemu-img create -q -f qcow2 "$A" 64M
qemu-img create -q -f qcow2 "$B" 32M
lv_define "$A" "$B"
# TCG: whether libvirt's QEMU user may open /dev/kvm is the host's affair.
virsh dumpxml --inactive "$DOM" | sed "s/<domain type='kvm'/<domain type='qemu'/" > tcg.xml
virsh define tcg.xml >/dev/null || fail "virsh define (qemu)"
"$KNIB" libvirt enable "$DOM" >/dev/null || fail "knib libvirt enable"
virsh start "$DOM" >/dev/null || fail "virsh start"

snap () {
  "$KNIB" snapshot "$@" --domain "$DOM" --repo "$REPO" > snap.out 2> snap.err \
    || fail "knib snapshot $*: $(cat snap.err)"
  sed 's/^/  /' snap.out
}

# exact N BYTES: backup N is incremental, read BYTES of each disk, and
# equals its oracle.
exact () {
  expect_kind "$1" incremental
  for dev in vda vdb; do
    [ "$(disk_field "$1" $dev bytes_read)" -eq "$2" ] \
      || fail "backup $1 read $(disk_field "$1" $dev bytes_read) bytes of $dev, not $2"
    check "$1" $dev
  done
  echo "  backup $1: incremental, read $2 bytes of each disk"
}

lv_write vda 0x11 0 4M
lv_write vdb 0x21 0 2M
lv_oracle 1 vda vdb
lv_backup 1
expect_kind 1 full

echo "create while the domain runs"
lv_write vda 0x12 8M 64k
lv_write vdb 0x22 4M 64k
snap create --name s1
[ "$(lv_source vda)" = "$TMPDIR_TEST/a.s1.qcow2" ] \
  || fail "libvirt's domblklist: $(virsh domblklist "$DOM")"
[ "$(lv_source vdb)" = "$TMPDIR_TEST/b.s1.qcow2" ] || fail "vdb: $(lv_source vdb)"
virsh snapshot-list "$DOM" --name | grep -q . && fail "libvirt kept snapshot metadata"
lv_write vda 0x13 12M 64k
lv_write vdb 0x23 6M 64k
lv_oracle 2 vda vdb
lv_backup 2
exact 2 131072

echo "libvirt stops and starts it on the new images"
virsh destroy "$DOM" >/dev/null || fail "virsh destroy"
virsh start "$DOM" >/dev/null || fail "virsh start"
[ "$(lv_source vda)" = "$TMPDIR_TEST/a.s1.qcow2" ] || fail "after start: $(lv_source vda)"
lv_write vda 0x14 16M 64k
lv_write vdb 0x24 8M 64k
lv_oracle 3 vda vdb
lv_backup 3
exact 3 65536

echo "create while it is shut off"
virsh destroy "$DOM" >/dev/null || fail "virsh destroy"
snap create --name s2
virsh dumpxml --inactive "$DOM" | grep -q "$TMPDIR_TEST/a.s2.qcow2" \
  || fail "the definition does not follow: $(virsh dumpxml --inactive "$DOM")"
virsh start "$DOM" >/dev/null || fail "virsh start"
[ "$(lv_source vda)" = "$TMPDIR_TEST/a.s2.qcow2" ] || fail "after start: $(lv_source vda)"
lv_write vda 0x15 20M 64k
lv_write vdb 0x25 10M 64k
lv_oracle 4 vda vdb
lv_backup 4
exact 4 65536

echo "a running domain's layers are not merged behind libvirt's back"
if "$KNIB" snapshot delete s1 --domain "$DOM" --repo "$REPO" 2> del.err; then
  fail "delete merged a running domain's layers"
fi
grep -q "shut off" del.err || fail "unclear refusal: $(cat del.err)"

echo "delete while it is shut off"
virsh destroy "$DOM" >/dev/null || fail "virsh destroy"
snap delete s1 s2
[ "$("$KNIB" snapshot list --vm "$DOM" --repo "$REPO" --json | jq '.snapshots | length')" = 0 ] \
  || fail "snapshots left"
qemu-img info --backing-chain "$TMPDIR_TEST/a.s2.qcow2" | grep '^image:' | sed 's/^/  /'
[ "$(qemu-img info --backing-chain "$TMPDIR_TEST/a.s2.qcow2" | grep -c '^image:')" = 1 ] \
  || fail "layers left under a.s2.qcow2"
virsh start "$DOM" >/dev/null || fail "virsh start after the merges"
[ "$(lv_source vda)" = "$TMPDIR_TEST/a.s2.qcow2" ] || fail "after start: $(lv_source vda)"
lv_write vda 0x16 24M 64k
lv_write vdb 0x26 12M 64k
lv_oracle 5 vda vdb
lv_backup 5
exact 5 65536

echo "revert: refused while it runs; shut off, the definition follows"
lv_oracle s3 vda vdb
snap create --name s3
lv_write vda 0x17 28M 64k
lv_write vdb 0x27 14M 64k
if "$KNIB" snapshot revert s3 --domain "$DOM" --repo "$REPO" 2> rev.err; then
  fail "revert of a running domain succeeded"
fi
grep -q "shut it off first" rev.err || fail "unclear refusal: $(cat rev.err)"
virsh destroy "$DOM" >/dev/null || fail "virsh destroy"
snap revert s3
virsh start "$DOM" >/dev/null || fail "virsh start after the revert"
[ "$(lv_source vda)" = "$TMPDIR_TEST/a.s3-2.qcow2" ] || fail "after revert: $(lv_source vda)"
[ "$(lv_source vdb)" = "$TMPDIR_TEST/b.s3-2.qcow2" ] || fail "after revert: $(lv_source vdb)"
[ ! -e "$TMPDIR_TEST/a.s3.qcow2" ] || fail "the abandoned layer was kept"
virsh suspend "$DOM" >/dev/null
for dev in vda vdb; do
  qemu-img compare -q -U "oracle-s3-$dev.qcow2" "$(lv_source $dev)" \
    || fail "$dev after the revert differs from the snapshot"
done
virsh resume "$DOM" >/dev/null
lv_write vda 0x18 32M 64k
lv_write vdb 0x28 16M 64k
lv_oracle 6 vda vdb
lv_backup 6
expect_kind 6 incremental
check 6 vda
check 6 vdb
echo "  backup 6: incremental, read $(disk_field 6 vda bytes_read) bytes of vda"
virsh destroy "$DOM" >/dev/null
echo "snapshot-libvirt: ok"
