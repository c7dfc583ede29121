#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# libvirt-domain.sh: a running libvirt domain (a real libvirtd, knib's
# hook installed where libvirtd reads it): knib libvirt enable, the
# hook's records, knib backup --domain full then incremental while the
# disk is written, each equal to its oracle, with the domain XML beside
# the images; --quiesce without a guest agent; and libvirt is not
# confused afterwards: domblklist, domstate, an external snapshot (the
# next knib backup is full and says why), blockcommit, stop and start.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/libvirt-functions.sh"
lv_require
lv_setup

cd "$TMPDIR_TEST"
A=$TMPDIR_TEST/a.qcow2
qemu-img create -q -f qcow2 "$A" 64M
lv_define "$A"

# enable: knib's monitor in the persistent definition, idempotent.
"$KNIB" libvirt enable "$DOM" >enable.out 2>&1 || fail "enable: $(cat enable.out)"
grep -q "takes effect when the domain next starts" enable.out \
  || fail "enable does not say when it takes effect: $(cat enable.out)"
"$KNIB" libvirt enable "$DOM" | grep -q "already has" || fail "enable twice"
SOCK=$RUN_DIR/qmp/$UUID.sock
virsh dumpxml --inactive "$DOM" | grep -q "unix:$SOCK,server=on,wait=off" \
  || fail "no -qmp in the definition: $(virsh dumpxml --inactive "$DOM")"

# Start: the hook records the domain, QEMU makes knib's socket.
virsh start "$DOM" >/dev/null || fail "virsh start"
REC=$RUN_DIR/domains/$DOM.json
[ -f "$REC" ] || fail "the hook wrote no record $REC"
grep -q '"state": "running"' "$REC" || fail "record: $(cat "$REC")"
grep -q "\"qmp\": \"$SOCK\"" "$REC" || fail "record has no socket: $(cat "$REC")"
grep -q '"target": "vda"' "$REC" && grep -q '"alias": "virtio-disk0"' "$REC" \
  && grep -q "\"source\": \"$A\"" "$REC" || fail "record's disks: $(cat "$REC")"
grep -q "<name>$DOM</name>" "$STATE_DIR/domains/$DOM.xml" \
  || fail "the hook saved no XML"
[ -S "$SOCK" ] || fail "QEMU made no socket $SOCK"
if getent passwd libvirt-qemu >/dev/null; then
  [ "$(stat -c %U "$RUN_DIR/qmp")" = libvirt-qemu ] \
    || fail "$RUN_DIR/qmp is not QEMU's: $(ls -ld "$RUN_DIR/qmp")"
fi
"$KNIB" libvirt status "$DOM" | grep -q "running" || fail "knib libvirt status"

# 1: full, named by libvirt's target (vda), the XML beside the image.
lv_write vda 0x11 0 4M
lv_write vda 0x12 32M 1M
lv_oracle 1 vda
lv_backup 1
expect_kind 1 full
check 1 vda
ID1=$(field 1 id)
grep -q "<name>$DOM</name>" "$REPO/vms/$DOM/$ID1/domain.xml" \
  || fail "no domain.xml beside the images"
grep -q "$UUID" "$REPO/vms/$DOM/vm.json" && grep -q '"definition"' "$REPO/vms/$DOM/vm.json" \
  || fail "vm.json lacks the uuid or the definition"

# 2: incremental while the guest writes: the writes after the point in
# time are not in it.
lv_write vda 0x21 1M 512k
lv_oracle 2 vda
lv_backup_stopped 2
lv_write vda 0x22 1M 64k
lv_write vda 0x23 40M 1M
lv_backup_resume 2
expect_kind 2 incremental
check 2 vda
[ "$(disk_field 2 vda bytes_read)" -eq 524288 ] \
  || fail "backup 2 read $(disk_field 2 vda bytes_read) bytes, not 512k"

# --quiesce: there is no guest agent; =try goes on with a warning.
lv_backup_fails 3a --quiesce
grep -q "quiesce: domain '$DOM' has no guest agent" b3a.err \
  || fail "unclear --quiesce refusal: $(cat b3a.err)"
lv_oracle 3 vda
lv_backup 3 --quiesce=try
grep -q "warning: .*the backup is not quiesced" b3.err \
  || fail "no warning with --quiesce=try: $(cat b3.err)"
expect_kind 3 incremental
check 3 vda

# libvirt still knows its domain.
[ "$(lv_source vda)" = "$A" ] || fail "domblklist: $(virsh domblklist "$DOM")"
[ "$(lv_state)" = running ] || fail "domstate: $(lv_state)"

# libvirt's own external snapshot: the bitmap stays below the new layer
# and libvirt adds an empty one of the same name to it; the next backup
# merges the two and is an incremental of exactly the writes since.
virsh snapshot-create-as "$DOM" knibsnap --disk-only --no-metadata >/dev/null \
  || fail "snapshot-create-as"
[ "$(lv_source vda)" != "$A" ] || fail "the snapshot did not change the image"
lv_write vda 0x31 8M 64k
lv_oracle 4 vda
lv_backup 4
expect_kind 4 incremental
check 4 vda
[ "$(disk_field 4 vda bytes_read)" -eq 65536 ] \
  || fail "backup 4 read $(disk_field 4 vda bytes_read) bytes, not 64k"

# blockcommit back into the base image: libvirt merges the bitmaps, and
# the chain goes on.
virsh blockcommit "$DOM" vda --active --pivot >/dev/null || fail "blockcommit"
[ "$(lv_source vda)" = "$A" ] || fail "after blockcommit: $(virsh domblklist "$DOM")"
lv_write vda 0x41 9M 64k
lv_oracle 5 vda
lv_backup 5
expect_kind 5 incremental
check 5 vda

# Stop (no guest OS to shut down: destroy, which QEMU takes as SIGTERM
# and stores its bitmaps) and start again.
virsh destroy "$DOM" >/dev/null || fail "virsh destroy"
[ "$(lv_state)" = "shut off" ] || fail "domstate after destroy: $(lv_state)"
grep -q '"state": "stopped"' "$REC" || fail "record not stopped: $(cat "$REC")"
[ ! -e "$SOCK" ] || fail "the socket was left: $SOCK"
virsh start "$DOM" >/dev/null || fail "virsh start again"
grep -q '"state": "running"' "$REC" || fail "record not running again"
lv_write vda 0x51 12M 64k
lv_oracle 6 vda
lv_backup 6
expect_kind 6 incremental
check 6 vda

# Scratch files: none left; disable takes knib's monitor out again.
[ -z "$(ls -A "$SCRATCH")" ] || fail "scratch left: $(ls -A "$SCRATCH")"
"$KNIB" libvirt disable "$DOM" | grep -q "no longer has" || fail "disable"
virsh dumpxml --inactive "$DOM" | grep -q "$SOCK" && fail "disable left the -qmp"
echo "libvirt-domain: ok"
