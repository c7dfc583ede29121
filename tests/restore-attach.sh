#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# restore-attach.sh: the reference's restoreVolumeFromBackupAndAttachToVM
# rows on libvirt (--attach): volume A of VM 1 to VM 1 stopped, volume B
# to VM 1 running, volume B to VM 2 running, volume A to VM 2 running
# after VM 1 was deleted; each a new image (named after VM, disk and
# backup, beside the domain's first disk) that equals the backup, attached
# live and persistent when the domain runs, persistent when it is
# stopped; a target in use is refused.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/libvirt-functions.sh"
lv_require
lv_setup

DOM1=$DOM
DOM2=$DOM-2
trap '_st=$?; virsh destroy "$DOM2" >/dev/null 2>&1; virsh undefine "$DOM2" >/dev/null 2>&1; rm -f "$RUN_DIR/domains/$DOM2.json" "$STATE_DIR/domains/$DOM2.xml"; DOM=$DOM1; lv_cleanup; (exit $_st); _cleanup' EXIT

cd "$TMPDIR_TEST"
mkdir vm1 vm2
chmod 755 vm1 vm2
qemu-img create -q -f qcow2 vm1/a.qcow2 64M
qemu-img create -q -f qcow2 vm1/b.qcow2 32M
qemu-img create -q -f qcow2 vm2/c.qcow2 16M
lv_define "$TMPDIR_TEST/vm1/a.qcow2" "$TMPDIR_TEST/vm1/b.qcow2"
DOM=$DOM2 lv_define "$TMPDIR_TEST/vm2/c.qcow2"
DOM=$DOM1
"$KNIB" libvirt enable "$DOM1" >/dev/null || fail "enable"
virsh start "$DOM1" >/dev/null || fail "virsh start"
lv_write vda 0x41 0 2M
lv_write vdb 0x42 1M 1M
lv_oracle 1 vda vdb
lv_backup 1
b1=$(field 1 id)

# attached DOMAIN TARGET [--inactive]: the image of TARGET in the
# domain's (live or persistent) definition.
attached () {
  virsh domblklist "$1" ${3:-} | awk -v d="$2" '$1 == d { print $2 }'
}

# 1: volume A of VM 1 to VM 1, stopped: persistent.
virsh destroy "$DOM1" >/dev/null
"$KNIB" restore --repo "$REPO" "$b1" --disk vda --target vdc --attach "$DOM1" \
  >out 2>err || fail "row 1: $(cat err)"
img1=$TMPDIR_TEST/vm1/$DOM1-vda-$b1.qcow2
[ "$(attached "$DOM1" vdc --inactive)" = "$img1" ] \
  || fail "row 1: vdc is not $img1: $(virsh domblklist "$DOM1" --inactive)"
qemu-img compare -q oracle-1-vda.qcow2 "$img1" || fail "row 1: the new volume differs"
# A target in use, and an image that exists: refused.
if "$KNIB" restore --repo "$REPO" "$b1" --disk vda --target vdc --attach "$DOM1" \
  --to "$TMPDIR_TEST/vm1/other.qcow2" >out 2>err; then
  fail "a target in use was taken"
fi
grep -q "has a disk 'vdc' already" err || fail "unexpected error: $(cat err)"
[ ! -e vm1/other.qcow2 ] || fail "a refused attach left an image"

# 2: volume B of VM 1 to VM 1, running: live and persistent.
virsh start "$DOM1" >/dev/null || fail "virsh start after row 1"
"$KNIB" restore --repo "$REPO" "$b1" --disk vdb --target vdd --attach "$DOM1" \
  >out 2>err || fail "row 2: $(cat err)"
img2=$TMPDIR_TEST/vm1/$DOM1-vdb-$b1.qcow2
[ "$(attached "$DOM1" vdd)" = "$img2" ] || fail "row 2: not attached live"
[ "$(attached "$DOM1" vdd --inactive)" = "$img2" ] || fail "row 2: not persistent"
qemu-img compare -U -q oracle-1-vdb.qcow2 "$img2" || fail "row 2: the new volume differs"

# 3: volume B of VM 1 to VM 2, running.
virsh start "$DOM2" >/dev/null || fail "virsh start $DOM2"
"$KNIB" restore --repo "$REPO" "$b1" --disk vdb --attach "$DOM2" \
  >out 2>err || fail "row 3: $(cat err)"
img3=$TMPDIR_TEST/vm2/$DOM1-vdb-$b1.qcow2
[ "$(attached "$DOM2" vdb)" = "$img3" ] || fail "row 3: not attached: $(virsh domblklist "$DOM2")"
qemu-img compare -U -q oracle-1-vdb.qcow2 "$img3" || fail "row 3: the new volume differs"

# 4: VM 1 is deleted; volume A of it to VM 2, running.
virsh destroy "$DOM1" >/dev/null
virsh undefine "$DOM1" >/dev/null || fail "undefine $DOM1"
"$KNIB" restore --repo "$REPO" "$b1" --disk vda --target vdc --attach "$DOM2" \
  --to "$TMPDIR_TEST/vm2/restored-a.qcow2" >out 2>err || fail "row 4: $(cat err)"
[ "$(attached "$DOM2" vdc)" = "$TMPDIR_TEST/vm2/restored-a.qcow2" ] || fail "row 4: not attached"
[ "$(attached "$DOM2" vdc --inactive)" = "$TMPDIR_TEST/vm2/restored-a.qcow2" ] || fail "row 4: not persistent"
qemu-img compare -U -q oracle-1-vda.qcow2 vm2/restored-a.qcow2 || fail "row 4: the new volume differs"
cat out
echo ok
