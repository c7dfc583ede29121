#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# snapshot-libvirt.sh: knib snapshot of a libvirt domain (a real libvirtd
# and knib's hook): create through libvirt while it runs and while it is
# shut off, so that libvirt's definition follows the new images; each next
# backup is an incremental of exactly the writes since the last one and
# equals its oracle; delete merges a running domain's layers through
# libvirt's block jobs (blockcommit below the top, blockpull into it, so
# that libvirt's live view stays true) and a shut-off domain's with
# qemu-img; libvirt still manages the domain (domblklist, its own block
# job, destroy, start) throughout; a revert of the shut-off domain points
# its definition at the new images; a restore in place is refused while
# the domain has snapshots, and --drop-snapshots drops them.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/libvirt-functions.sh"
lv_require
require jq xmllint
lv_setup
# Every backup below is an incremental of the one before: one chain
# (--chain-size 0), however many the test takes.

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
lv_backup 1 --chain-size 0
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
lv_backup 2 --chain-size 0
exact 2 131072

echo "libvirt stops and starts it on the new images"
virsh destroy "$DOM" >/dev/null || fail "virsh destroy"
virsh start "$DOM" >/dev/null || fail "virsh start"
[ "$(lv_source vda)" = "$TMPDIR_TEST/a.s1.qcow2" ] || fail "after start: $(lv_source vda)"
lv_write vda 0x14 16M 64k
lv_write vdb 0x24 8M 64k
lv_oracle 3 vda vdb
lv_backup 3 --chain-size 0
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
lv_backup 4 --chain-size 0
exact 4 65536

# chain_of DEV: the files of the chain libvirt's disk DEV runs on, by
# base name (qemu-img info --backing-chain); live_chain DEV: the same as
# libvirt's live definition lists them.
chain_of () {
  qemu-img info -U --backing-chain --output=json "$(lv_source "$1")" \
    | jq -r '[.[].filename | split("/") | last] | join(" < ")'
}
live_chain () {
  virsh dumpxml "$DOM" \
    | xmllint --xpath "//devices/disk[target/@dev='$1']//source/@file" - \
    | tr ' ' '\n' | sed -n 's|^file="\(.*\)"$|\1|p' | sed 's|.*/||' \
    | paste -sd '<' | sed 's/</ < /g'
}
# layer_of SNAP DEV: the layer knib records for snapshot SNAP's disk DEV.
layer_of () {
  "$KNIB" snapshot list --vm "$DOM" --repo "$REPO" --json \
    | jq -r ".snapshots[] | select(.name == \"$1\") | .disks[] | select(.disk == \"$2\") | .layer"
}
# expect_chains DEV "x < y": the image chain and libvirt's live view.
expect_chains () {
  [ "$(chain_of "$1")" = "$2" ] || fail "chain of $1 is '$(chain_of "$1")', not '$2'"
  [ "$(live_chain "$1")" = "$2" ] \
    || fail "libvirt's live view of $1 is '$(live_chain "$1")', not '$2': $(virsh dumpxml "$DOM")"
  echo "  $1: $2"
}

echo "delete the oldest while the domain runs: libvirt commits it"
expect_chains vda "a.s2.qcow2 < a.s1.qcow2 < a.qcow2"
lv_write vda 0x1a 22M 64k
lv_write vdb 0x2a 11M 64k
if [ "${KNIB_TEST_HOOKS:-no}" = yes ]; then
  # Killed once libvirt committed vda's layer: knib backup (below)
  # records what libvirt did and commits vdb's.
  ( KNIB_TEST_STOP_AT=virsh-merged exec "$KNIB" snapshot delete s1 \
      --domain "$DOM" --repo "$REPO" >kill.out 2>kill.err ) &
  kpid=$!
  track_pid $kpid
  kill_stopped $kpid kill.err
  [ -e a.s1.qcow2 ] || fail "the kill came after the layer was removed"
  [ "$(jq -r .pending.op "$REPO/vms/$DOM/snapshots.json")" = commit ] \
    || fail "the commit is not journalled: $(cat "$REPO/vms/$DOM/snapshots.json")"
  lv_oracle 5k vda vdb
  lv_backup 5k --chain-size 0
  exact 5k 65536
  grep -q "disk vda: libvirt committed layer '$TMPDIR_TEST/a.s1.qcow2' into '$TMPDIR_TEST/a.qcow2' for a killed knib: recorded" b5k.err \
    || fail "backup did not record libvirt's commit: $(cat b5k.err)"
  grep -q "disk vdb: committed layer '$TMPDIR_TEST/b.s1.qcow2' into '$TMPDIR_TEST/b.qcow2'" b5k.err \
    || fail "backup did not finish the delete: $(cat b5k.err)"
  [ -z "$("$KNIB" snapshot list --vm "$DOM" --repo "$REPO" --json | jq -r '.snapshots[] | select(.name == "s1") | .name')" ] \
    || fail "s1 is still listed"
  since5=65536
else
  snap delete s1
  grep -q "disk vda: committed layer '$TMPDIR_TEST/a.s1.qcow2' into '$TMPDIR_TEST/a.qcow2'" snap.out \
    || fail "s1 not merged by a commit: $(cat snap.out)"
  since5=131072
fi
[ ! -e a.s1.qcow2 ] && [ ! -e b.s1.qcow2 ] || fail "the committed layers are kept"
expect_chains vda "a.s2.qcow2 < a.qcow2"
expect_chains vdb "b.s2.qcow2 < b.qcow2"
[ "$(layer_of s2 vda)" = "$TMPDIR_TEST/a.qcow2" ] || fail "s2's layer is $(layer_of s2 vda)"
[ "$(lv_source vda)" = "$TMPDIR_TEST/a.s2.qcow2" ] || fail "domblklist: $(lv_source vda)"
# s2's state (that of backup 3: nothing was written in between) is in
# the file it was committed into.
qemu-img compare -q -U oracle-3-vda.qcow2 a.qcow2 || fail "s2's layer differs from its state"
lv_write vda 0x16 24M 64k
lv_write vdb 0x26 12M 64k
lv_oracle 5 vda vdb
lv_backup 5 --chain-size 0
exact 5 $since5

echo "delete the newest while the domain runs: libvirt pulls it into the top"
snap delete s2
grep -q "disk vda: merged layer '$TMPDIR_TEST/a.qcow2' into '$TMPDIR_TEST/a.s2.qcow2'" snap.out \
  || fail "s2 not merged with the current volume: $(cat snap.out)"
[ "$("$KNIB" snapshot list --vm "$DOM" --repo "$REPO" --json | jq '.snapshots | length')" = 0 ] \
  || fail "snapshots left"
[ ! -e a.qcow2 ] || fail "the merged layer a.qcow2 is kept"
expect_chains vda "a.s2.qcow2"
expect_chains vdb "b.s2.qcow2"
lv_write vda 0x1b 25M 64k
lv_write vdb 0x2b 12M 64k
lv_oracle 5b vda vdb
lv_backup 5b --chain-size 0
exact 5b 65536

echo "libvirt still manages it: a block job of its own, destroy, start"
virsh blockpull "$DOM" vda --wait >/dev/null || fail "virsh blockpull after the merges"
virsh destroy "$DOM" >/dev/null || fail "virsh destroy"
virsh start "$DOM" >/dev/null || fail "virsh start after the merges"
[ "$(lv_source vda)" = "$TMPDIR_TEST/a.s2.qcow2" ] || fail "after start: $(lv_source vda)"

echo "delete while it is shut off"
virsh destroy "$DOM" >/dev/null || fail "virsh destroy"
snap create --name s4
virsh start "$DOM" >/dev/null || fail "virsh start"
lv_write vda 0x1c 26M 64k
lv_write vdb 0x2c 13M 64k
snap create --name s5
virsh destroy "$DOM" >/dev/null || fail "virsh destroy"
snap delete s4 s5
[ "$("$KNIB" snapshot list --vm "$DOM" --repo "$REPO" --json | jq '.snapshots | length')" = 0 ] \
  || fail "snapshots left"
[ "$(qemu-img info --backing-chain "$TMPDIR_TEST/a.s5.qcow2" | grep -c '^image:')" = 1 ] \
  || fail "layers left under a.s5.qcow2"
virsh start "$DOM" >/dev/null || fail "virsh start after the merges"
[ "$(lv_source vda)" = "$TMPDIR_TEST/a.s5.qcow2" ] || fail "after start: $(lv_source vda)"
lv_write vda 0x1d 27M 64k
lv_write vdb 0x2d 15M 64k
lv_oracle 5c vda vdb
lv_backup 5c --chain-size 0
exact 5c 131072

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
lv_backup 6 --chain-size 0
expect_kind 6 incremental
check 6 vda
check 6 vdb
echo "  backup 6: incremental, read $(disk_field 6 vda bytes_read) bytes of vda"

echo "restore in place: refused while it has snapshots; --drop-snapshots"
virsh destroy "$DOM" >/dev/null
id6=$(field 6 id)
if "$KNIB" restore --repo "$REPO" "$id6" --domain "$DOM" >rs.out 2>rs.err; then
  fail "a restore onto a domain with snapshots was not refused"
fi
grep -q "has snapshots (s3)" rs.err || fail "unclear refusal: $(cat rs.err)"
# s3's layer is the image the domain ran on when it was taken.
[ "$(layer_of s3 vda)" = "$TMPDIR_TEST/a.s5.qcow2" ] || fail "s3's layer is $(layer_of s3 vda)"
[ -e a.s5.qcow2 ] || fail "a refused restore removed a layer"
"$KNIB" restore --repo "$REPO" "$id6" --domain "$DOM" --drop-snapshots \
  >rs.out 2>rs.err || fail "restore --drop-snapshots: $(cat rs.err)"
sed 's/^/  /' rs.out
[ ! -e a.s5.qcow2 ] && [ ! -e b.s5.qcow2 ] || fail "the snapshot's layers are kept"
[ "$("$KNIB" snapshot list --vm "$DOM" --repo "$REPO" --json | jq '.snapshots | length')" = 0 ] \
  || fail "snapshots left"
virsh dumpxml --inactive "$DOM" | grep -q "a.s5.qcow2" \
  && fail "the definition still names a dropped layer: $(virsh dumpxml --inactive "$DOM")"
virsh start "$DOM" >/dev/null || fail "virsh start after the restore"
expect_chains vda "a.s3-2.qcow2"
lv_write vda 0x19 36M 64k
lv_write vdb 0x29 18M 64k
lv_oracle 7 vda vdb
lv_backup 7 --chain-size 0
[ "$(field 7 parent)" = "$id6" ] || fail "backup 7's parent is not backup 6"
exact 7 65536
virsh destroy "$DOM" >/dev/null
echo "snapshot-libvirt: ok"
