#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# libvirt-offline.sh: a stopped libvirt domain: knib backup --domain goes
# the offline path (its images, from its definition; the CD-ROM left
# out) and goes on the chain of the live backups; while it runs, virsh
# start is refused with knib's message (after the hook's wait), or waits
# and starts once the backup ends; right after, it starts.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/libvirt-functions.sh"
lv_require
lv_setup

cd "$TMPDIR_TEST"
A=$TMPDIR_TEST/a.qcow2
qemu-img create -q -f qcow2 "$A" 64M
lv_define "$A"
"$KNIB" libvirt enable "$DOM" >/dev/null || fail "enable"

# 1: live, full; then the domain stops (QEMU stores the bitmap).
virsh start "$DOM" >/dev/null || fail "virsh start"
lv_write vda 0x11 0 2M
lv_oracle 1 vda
lv_backup 1
expect_kind 1 full
check 1 vda
virsh destroy "$DOM" >/dev/null || fail "virsh destroy"
grep -q '"state": "stopped"' "$RUN_DIR/domains/$DOM.json" || fail "not recorded stopped"

# 2: offline, incremental (qemu-io's write went into the stored bitmap);
# a start meanwhile is refused with knib's message.
qemu-io -f qcow2 -c "write -P 0x21 4M 1M" "$A" >/dev/null || fail "qemu-io"
qemu-img convert -O qcow2 "$A" oracle-2-vda.qcow2
lv_backup_stopped 2
ls "$RUN_DIR/offline/$DOM.$BG_PID.hold" >/dev/null || fail "no hold for the hook"
if virsh start "$DOM" >start.out 2>start.err; then
  fail "the domain started during an offline backup"
fi
grep -q "knib: domain '$DOM' cannot start now: knib is backing it up offline (vm '$DOM', pid $BG_PID) and has its image '$A' open" start.err \
  || fail "libvirt did not show knib's refusal: $(cat start.err)"
[ "$(lv_state)" = "shut off" ] || fail "domstate: $(lv_state)"
lv_backup_resume 2
expect_kind 2 incremental
check 2 vda
[ "$(disk_field 2 vda bytes_read)" -eq 1048576 ] \
  || fail "backup 2 read $(disk_field 2 vda bytes_read) bytes, not 1M"
grep -q '"name":"hdc"' b2.json && fail "the CD-ROM was backed up"
[ ! -e "$RUN_DIR/offline/$DOM.$BG_PID.hold" ] || fail "the hold was left"
# Right after, it starts.
virsh start "$DOM" >/dev/null || fail "virsh start after the backup"
[ "$(lv_state)" = running ] || fail "domstate: $(lv_state)"
virsh destroy "$DOM" >/dev/null

# 3: a start during the backup waits for it, then starts.
qemu-io -f qcow2 -c "write -P 0x31 8M 64k" "$A" >/dev/null || fail "qemu-io"
qemu-img convert -O qcow2 "$A" oracle-3-vda.qcow2
lv_backup_stopped 3
virsh start "$DOM" >start3.out 2>start3.err &
START_PID=$!
track_pid $START_PID
sleep 1
kill -0 "$START_PID" 2>/dev/null || fail "virsh start did not wait: $(cat start3.err)"
lv_backup_resume 3
wait "$START_PID" || fail "virsh start after the wait: $(cat start3.err)"
[ "$(lv_state)" = running ] || fail "domstate: $(lv_state)"
expect_kind 3 incremental
check 3 vda

# 4: live again, on the same chain.
lv_write vda 0x41 12M 64k
lv_oracle 4 vda
lv_backup 4
expect_kind 4 incremental
check 4 vda
[ "$(sed -n 's/.*"parent":"\([^"]*\)".*/\1/p' b4.json)" = "$(field 3 id)" ] \
  || fail "backup 4 is not a child of backup 3"
echo "libvirt-offline: ok"
