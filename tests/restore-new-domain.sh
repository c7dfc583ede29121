#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# restore-new-domain.sh: a new libvirt domain from the definition stored
# with a backup (--new-domain): new name, UUID and MAC address, knib's
# monitor on the new UUID's socket, its disks restored under --storage
# and equal to the backup; --print-xml defines nothing; a name in use is
# refused; --quick: new domains on overlays of the backup, which is
# pinned until they are consolidated (--consolidate, or --start --wait).
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/libvirt-functions.sh"
lv_require
lv_setup

NEW=$DOM-new
QUICK=$DOM-quick
QUICK2=$DOM-quick2
trap '_st=$?; for _d in "$NEW" "$QUICK" "$QUICK2"; do virsh destroy "$_d" >/dev/null 2>&1; virsh undefine "$_d" >/dev/null 2>&1; rm -f "$RUN_DIR/domains/$_d.json" "$STATE_DIR/domains/$_d.xml"; done; lv_cleanup; (exit $_st); _cleanup' EXIT

cd "$TMPDIR_TEST"
A=$TMPDIR_TEST/a.qcow2
B=$TMPDIR_TEST/b.qcow2
qemu-img create -q -f qcow2 "$A" 64M
qemu-img create -q -f qcow2 "$B" 32M
lv_define "$A" "$B"
# A network interface with a MAC address the new domain must not keep.
sed -i -e "s|</name>|</name><uuid>$UUID</uuid>|" -e "s|</devices>|<interface type='user'><mac address='52:54:00:4b:4e:42'/><model type='virtio'/></interface></devices>|" domain.xml
virsh define domain.xml >/dev/null || fail "virsh define with an interface"
"$KNIB" libvirt enable "$DOM" >/dev/null || fail "enable"
virsh start "$DOM" >/dev/null || fail "virsh start"
lv_write vda 0x51 0 2M
lv_write vdb 0x52 1M 1M
lv_oracle 1 vda vdb
lv_backup 1
b1=$(field 1 id)
mkdir store
chmod 755 store

# --print-xml: the definition, nothing else.
"$KNIB" restore --repo "$REPO" "$b1" --new-domain "$NEW" --storage "$TMPDIR_TEST/store" \
  --print-xml >new.xml 2>err || fail "--print-xml: $(cat err)"
grep -q "<name>$NEW</name>" new.xml || fail "not renamed: $(cat new.xml)"
! grep -q "$UUID" new.xml || fail "the old uuid stayed"
! grep -qi "52:54:00:4b:4e:42" new.xml || fail "the old MAC address stayed"
grep -q "<interface type=.user.>" new.xml || fail "the interface went"
grep -q "file=.$TMPDIR_TEST/store/$NEW-vda.qcow2." new.xml || fail "vda is not under --storage"
grep -q "file=.$TMPDIR_TEST/store/$NEW-vdb.qcow2." new.xml || fail "vdb is not under --storage"
! grep -q "$A" new.xml || fail "the new domain reads the old image"
new_uuid=$(sed -n 's|.*<uuid>\(.*\)</uuid>.*|\1|p' new.xml)
grep -q "$RUN_DIR/qmp/$new_uuid.sock" new.xml || fail "knib's monitor is not on the new uuid"
! grep -q "qmp/$UUID.sock" new.xml || fail "the old monitor socket stayed"
! virsh domuuid "$NEW" >/dev/null 2>&1 || fail "--print-xml defined the domain"
[ -z "$(ls store)" ] || fail "--print-xml wrote images"

# A name in use; bad combinations.
if "$KNIB" restore --repo "$REPO" "$b1" --new-domain "$DOM" --storage store >out 2>err; then
  fail "a name in use was taken"
fi
grep -q "a domain '$DOM' exists already" err || fail "unexpected error: $(cat err)"
if "$KNIB" restore --repo "$REPO" "$b1" --new-domain "$NEW" --disk vda >out 2>err; then
  fail "--new-domain --disk was taken"
fi
grep -q "takes no" err || fail "unexpected error: $(cat err)"
if "$KNIB" restore --repo "$REPO" "$b1" --storage store >out 2>err; then
  fail "--storage without --new-domain was taken"
fi

# Define and start it.
"$KNIB" restore --repo "$REPO" "$b1" --new-domain "$NEW" --storage "$TMPDIR_TEST/store" \
  --start >out 2>err || fail "--new-domain --start: $(cat err)"
grep -q "defined domain '$NEW'" out || fail "no report: $(cat out)"
[ "$(virsh domstate "$NEW" | head -n 1)" = running ] || fail "$NEW does not run"
[ "$(virsh domuuid "$NEW" | head -n 1)" != "$UUID" ] || fail "the uuid was kept"
! virsh dumpxml "$NEW" | grep -qi "52:54:00:4b:4e:42" || fail "the MAC address was kept"
qemu-img compare -U -q oracle-1-vda.qcow2 "store/$NEW-vda.qcow2" || fail "vda differs from the backup"
qemu-img compare -U -q oracle-1-vdb.qcow2 "store/$NEW-vdb.qcow2" || fail "vdb differs from the backup"
# knib's own monitor answers on it.
"$KNIB" restore --repo "$REPO" --status --domain "$NEW" >st.out 2>&1 || fail "status of $NEW: $(cat st.out)"
grep -q "vda: consolidated" st.out || fail "unexpected status: $(cat st.out)"
cat out

# --quick: refused while QEMU's user cannot reach the backup's images,
# with nothing defined or written.
if "$KNIB" restore --repo "$REPO" "$b1" --new-domain "$QUICK" --storage "$TMPDIR_TEST/store" \
  --quick --start >out 2>err; then
  fail "a quick new domain that QEMU cannot read was made"
fi
grep -q "needs QEMU's user" err || fail "unexpected error: $(cat err)"
! virsh domuuid "$QUICK" >/dev/null 2>&1 || fail "the refused quick restore defined $QUICK"
[ ! -e "store/$QUICK-vda.qcow2" ] || fail "the refused quick restore wrote an image"
setfacl -m u:libvirt-qemu:x "$REPO" "$REPO/vms" "$REPO/vms/$DOM" "$REPO/vms/$DOM/$b1" \
  || fail "setfacl"

# consolidated NAME: its disks equal the backup and read no backing file.
consolidated () {
  for _dev in vda vdb; do
    ! qemu-img info -U "store/$1-$_dev.qcow2" | grep -q "backing file" \
      || fail "$_dev of $1 still reads the repository"
    qemu-img compare -U -q "oracle-1-$_dev.qcow2" "store/$1-$_dev.qcow2" \
      || fail "$_dev of $1 differs from the backup"
  done
}

# Quick, not started: overlays on the backup, which is pinned; the
# consolidation once the domain runs.
"$KNIB" restore --repo "$REPO" "$b1" --new-domain "$QUICK" --storage "$TMPDIR_TEST/store" \
  --quick >out 2>err || fail "--new-domain --quick: $(cat err)"
[ "$(virsh domstate "$QUICK" | head -n 1)" = "shut off" ] || fail "$QUICK runs without --start"
for _dev in vda vdb; do
  qemu-img info -U "store/$QUICK-$_dev.qcow2" | grep -q "backing file: .*/vms/$DOM/$b1/$_dev.qcow2" \
    || fail "$_dev of $QUICK does not read the backup: $(qemu-img info -U "store/$QUICK-$_dev.qcow2")"
done
if "$KNIB" delete --repo "$REPO" --vm "$DOM" "$b1" >out 2>err; then
  fail "a backup that $QUICK reads was deleted"
fi
grep -q "is pinned" err || fail "unexpected error: $(cat err)"
virsh start "$QUICK" >/dev/null || fail "virsh start $QUICK"
"$KNIB" restore --repo "$REPO" --consolidate --domain "$QUICK" --wait >out 2>err \
  || fail "consolidation of $QUICK: $(cat err)"
grep -q "vda: consolidated" out || fail "vda of $QUICK not consolidated: $(cat out)"
consolidated "$QUICK"

# Quick, --start --wait: it runs at once, and is consolidated.
"$KNIB" restore --repo "$REPO" "$b1" --new-domain "$QUICK2" --storage "$TMPDIR_TEST/store" \
  --quick --start --wait >out 2>err || fail "--new-domain --quick --start: $(cat err)"
[ "$(virsh domstate "$QUICK2" | head -n 1)" = running ] || fail "$QUICK2 does not run"
grep -q "vdb: consolidated" out || fail "vdb of $QUICK2 not consolidated: $(cat out)"
consolidated "$QUICK2"
[ ! -e "$REPO/vms/$DOM/pins.json" ] || fail "the pins outlived the consolidation"
echo ok
