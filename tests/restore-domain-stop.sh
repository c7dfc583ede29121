#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# restore-domain-stop.sh: --stop shuts a running domain down gracefully
# before an in-place restore: the test guest (a real kernel, TCG, so a
# libvirt domain of type qemu) in libvirt, whose agent powers it off
# cleanly; libvirt says it was shut down (not destroyed), no destroy was
# needed, and the restored guest boots with a consistent filesystem that
# holds the files of the backup's point in time.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/libvirt-functions.sh"
. "$(dirname "$0")/guest-functions.sh"
lv_require
lv_setup

cd "$TMPDIR_TEST"
guest_disk base
# A disk of its own (libvirt labels every image of a chain: the shared
# cache stays out of it).
G=$TMPDIR_TEST/guest.qcow2
qemu-img convert -O qcow2 "$GUEST_BASE" "$G" || fail "copy of the guest disk"
CONSOLE=$TMPDIR_TEST/console.log
cat >domain.xml <<EOF
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$G'/><target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path='$CONSOLE'/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>
EOF
virsh define domain.xml >/dev/null || fail "virsh define"
"$KNIB" libvirt enable "$DOM" >/dev/null || fail "enable"

# agent_up: until the guest's agent answers through libvirt.
agent_up () {
  _limit=$(($(date +%s) + 600))
  until virsh qemu-agent-command "$DOM" '{"execute":"guest-ping"}' >/dev/null 2>&1; do
    [ "$(lv_state)" = running ] || fail "the guest stopped: $(tail -n 20 "$CONSOLE")"
    ! grep -q "Kernel panic" "$CONSOLE" || fail "the guest panicked: $(tail -n 20 "$CONSOLE")"
    [ "$(date +%s)" -lt "$_limit" ] || fail "no agent answered in 600 s: $(tail -n 20 "$CONSOLE")"
    sleep 2
  done
}

# exec_in_guest PROG ARG...: its exit status, its output in out.txt.
exec_in_guest () {
  _prog=$1
  shift
  _args=""
  for _a in "$@"; do
    _args="$_args${_args:+,}\"$_a\""
  done
  _pid=$(virsh qemu-agent-command "$DOM" \
    "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"$_prog\",\"arg\":[$_args],\"capture-output\":true}}" \
    | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
  [ -n "$_pid" ] || fail "guest-exec $_prog did not start"
  _i=0
  while :; do
    virsh qemu-agent-command "$DOM" \
      "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$_pid}}" >status.json \
      || fail "guest-exec-status"
    grep -q '"exited":true' status.json && break
    _i=$((_i + 1))
    [ "$_i" -le 300 ] || fail "$_prog did not end in the guest"
    sleep 1
  done
  sed -n 's/.*"out-data":"\([^"]*\)".*/\1/p' status.json | base64 -d >out.txt
  return "$(sed -n 's/.*"exitcode":\([0-9]*\).*/\1/p' status.json)"
}

# written_past N: let the guest's writer go on until it has completed a
# file past N; it is paused then, and $last is its last file.
written_past () {
  _i=0
  while :; do
    exec_in_guest /usr/bin/knib-guest pause || fail "writer pause: $(cat out.txt)"
    last=$(sed -n 's/^paused last=//p' out.txt)
    [ -n "$last" ] && [ "$last" -gt "$1" ] && return 0
    _i=$((_i + 1))
    [ "$_i" -le 300 ] || fail "the guest's writer wrote nothing past $1"
    exec_in_guest /usr/bin/knib-guest resume || fail "writer resume"
    sleep 1
  done
}

virsh start "$DOM" >/dev/null || fail "virsh start"
agent_up
# Files before the backup; more after it, which the restore takes away.
exec_in_guest /usr/bin/knib-guest start 4096 0 || fail "writer start"
written_past 0
before=$last
exec_in_guest /bin/sync || fail "sync"
lv_backup 1
b1=$(field 1 id)
exec_in_guest /usr/bin/knib-guest resume || fail "writer resume"
written_past "$before"
after=$last

# --stop: the agent shuts the guest down; nothing is destroyed.
"$KNIB" restore --repo "$REPO" "$b1" --domain "$DOM" --stop --stop-timeout 600 \
  >out 2>err || fail "restore --stop: $(cat err)"
grep -q "shutting domain '$DOM' down" err || fail "no shutdown said: $(cat err)"
! grep -q "destroying it" err || fail "the domain was destroyed: $(cat err)"
virsh domstate "$DOM" --reason | grep -q "shut off (shutdown)" \
  || fail "libvirt does not say it was shut down: $(virsh domstate "$DOM" --reason)"
grep -q "reboot: Power down" "$CONSOLE" || fail "the guest did not power off: $(tail -n 20 "$CONSOLE")"
qemu-img check -q "$G" || fail "qemu-img check of the restored disk"
qemu-img compare -q "$REPO/vms/$DOM/$b1/vda.qcow2" "$G" || fail "the disk differs from the backup"

# The restored guest boots; its files are those of the backup's point.
: >"$CONSOLE"
virsh start "$DOM" >/dev/null || fail "virsh start after the restore"
agent_up
rc=0
exec_in_guest /usr/bin/knib-guest check || rc=$?
cat out.txt
summary=$(grep '^KNIB-CHECK ' out.txt) || fail "no checker summary: $(cat out.txt)"
[ "$rc" -eq 0 ] || fail "the restored guest's files are damaged: $summary"
highest=$(echo "$summary" | sed -n 's/.* highest=\([0-9]*\).*/\1/p')
[ "$highest" -eq "$before" ] \
  || fail "the restored guest holds files up to $highest, not those of the backup (up to $before; $after later)"
echo ok
