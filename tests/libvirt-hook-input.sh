#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# libvirt-hook-input.sh: knib-hook run as libvirtd runs it, without
# libvirtd, its directories moved into the test's (KNIB_RUN_DIR,
# KNIB_STATE_DIR, KNIB_SCRATCH_DIR, its log in KNIB_HOOK_LOG): records
# of a started and a stopped domain, leftovers cleaned; malformed XML,
# an unknown operation, names with "../", missing arguments: exit 0, a
# log line, nothing written; prepare refuses a start on an image that a
# running offline backup holds (after hook-start-wait), not on one that
# a killed backup left; nothing ever on stdout, and fast.  A socket path
# with "../" and another user's DAC label touch nothing outside the
# domain's own entries.
. "$(dirname "$0")/functions.sh"
require qemu-img qemu-io qemu-storage-daemon

HOOK=${HOOK_BIN:-$(cd "$(dirname "$0")/.." && pwd)/hooks/knib-hook}
[ -x "$HOOK" ] || fail "$HOOK is not built"
cd "$TMPDIR_TEST"
mkdir sandbox
export KNIB_RUN_DIR=$TMPDIR_TEST/sandbox/run
export KNIB_STATE_DIR=$TMPDIR_TEST/sandbox/state
export KNIB_SCRATCH_DIR=$TMPDIR_TEST/sandbox/scratch
export KNIB_HOOK_LOG=$TMPDIR_TEST/hook.log
printf 'hook-start-wait = 1\n' >knib.conf
export KNIB_CONFIG=$TMPDIR_TEST/knib.conf
UUID=0f8c7a52-3d0e-4c39-9a5e-2d1b7c1e6a01
A=$TMPDIR_TEST/a.qcow2
qemu-img create -q -f qcow2 "$A" 16M

# domain_xml NAME: a running domain's XML as libvirt gives it to hooks.
domain_xml () {
  cat <<EOF
<domain type='qemu' id='7' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$1</name>
  <uuid>$UUID</uuid>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$A' index='1'/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='hdc' bus='ide'/>
      <readonly/>
      <alias name='ide0-1-0'/>
    </disk>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-7-$1/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='disconnected'/>
    </channel>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+$(id -u):+$(id -g)</label>
  </seclabel>
  <qemu:commandline>
    <qemu:arg value='-qmp'/>
    <qemu:arg value='unix:$KNIB_RUN_DIR/qmp/$UUID.sock,server=on,wait=off'/>
  </qemu:commandline>
</domain>
EOF
}

# hook EXPECTED-STATUS ARG... <XML: run it; its stdout must stay empty;
# how long it took goes to hook.ms.
hook () {
  _want=$1
  shift
  # (a file, as hook.ms: a hook fed by a pipe runs in a subshell)
  cat "$KNIB_HOOK_LOG" 2>/dev/null | wc -l >hook.loglines
  _t0=$(date +%s%N)
  _st=0
  "$HOOK" "$@" >hook.out 2>hook.err || _st=$?
  _ms=$(( ($(date +%s%N) - _t0) / 1000000 ))
  [ "$_st" -eq "$_want" ] || fail "knib-hook $* exited $_st, not $_want: $(cat hook.err)"
  [ ! -s hook.out ] || fail "knib-hook $* wrote on stdout: $(cat hook.out)"
  echo "$_ms" >hook.ms
}

# The last run waited for nothing (no "waiting" in what it logged) and did
# not hang (the bound is generous: a loaded machine or a sanitized build
# can make one run take more than a second).
fast () {
  _new=$(tail -n "+$(($(cat hook.loglines) + 1))" "$KNIB_HOOK_LOG" 2>/dev/null || :)
  case $_new in *waiting*) fail "knib-hook waited: $_new" ;; esac
  [ "$(cat hook.ms)" -lt 10000 ] || fail "knib-hook took $(cat hook.ms) ms"
}

log_has () {
  grep -q -- "$1" "$KNIB_HOOK_LOG" || fail "no log line '$1': $(cat "$KNIB_HOOK_LOG" 2>/dev/null)"
}

# Started: the record and the XML.
domain_xml web01 | hook 0 web01 started begin -
fast
REC=$KNIB_RUN_DIR/domains/web01.json
grep -q '"state": "running"' "$REC" || fail "record: $(cat "$REC")"
grep -q "\"qmp\": \"$KNIB_RUN_DIR/qmp/$UUID.sock\"" "$REC" || fail "no socket: $(cat "$REC")"
grep -q '"alias": "virtio-disk0"' "$REC" && grep -q "\"source\": \"$A\"" "$REC" \
  && grep -q '"format": "qcow2"' "$REC" || fail "disks: $(cat "$REC")"
grep -q '"agent-path": "/var/lib/libvirt/qemu/channel/target/domain-7-web01/org.qemu.guest_agent.0"' "$REC" \
  || fail "no agent channel: $(cat "$REC")"
cmp -s "$KNIB_STATE_DIR/domains/web01.xml" /dev/stdin <<EOF || fail "the XML saved differs"
$(domain_xml web01)
EOF
"$KNIB" libvirt status web01 | grep -q "web01: running" || fail "knib libvirt status"
# reconnect (libvirtd restarted) records the same.
domain_xml web01 | hook 0 web01 reconnect begin -
fast

# Prepare and start: knib's socket directory is made, QEMU's.
domain_xml web01 | hook 0 web01 prepare begin -
fast
[ -d "$KNIB_RUN_DIR/qmp" ] && [ "$(stat -c %a "$KNIB_RUN_DIR/qmp")" = 700 ] \
  || fail "socket directory: $(ls -ld "$KNIB_RUN_DIR/qmp")"

# Stopped: marked so; the socket and a dead run's scratch go, a live
# run's stays.
mkdir -p "$KNIB_SCRATCH_DIR/web01.999999999" "$KNIB_SCRATCH_DIR/web01.$$" \
  "$KNIB_SCRATCH_DIR/web01.999999998.AbCdEf" "$KNIB_SCRATCH_DIR/web01.$$.GhIjKl"
: >"$KNIB_SCRATCH_DIR/web01.999999999/fleece-vda.qcow2"
stale_socket () {
  # a unix socket file where QEMU's was (qemu-storage-daemon makes one)
  qemu-storage-daemon --chardev "socket,id=c,path=$1,server=on,wait=off" \
    --monitor chardev=c &
  _p=$!
  _i=0
  until [ -S "$1" ] || [ "$_i" -gt 100 ]; do sleep 0.05; _i=$((_i + 1)); done
  kill -9 "$_p"
  wait "$_p" 2>/dev/null || :
}
stale_socket "$KNIB_RUN_DIR/qmp/$UUID.sock"
[ -S "$KNIB_RUN_DIR/qmp/$UUID.sock" ] || fail "no socket to clean"
domain_xml web01 | hook 0 web01 stopped end -
fast
grep -q '"state": "stopped"' "$REC" || fail "record not stopped"
[ ! -e "$KNIB_RUN_DIR/qmp/$UUID.sock" ] || fail "the socket was left"
[ ! -e "$KNIB_SCRATCH_DIR/web01.999999999" ] || fail "a dead run's scratch was left"
[ ! -e "$KNIB_SCRATCH_DIR/web01.999999998.AbCdEf" ] || fail "a dead run's scratch was left"
[ -d "$KNIB_SCRATCH_DIR/web01.$$" ] && [ -d "$KNIB_SCRATCH_DIR/web01.$$.GhIjKl" ] \
  || fail "a live run's scratch was removed"
domain_xml web01 | hook 0 web01 release end -
log_has "removed knib's leftovers"

# A socket path that climbs out of the socket directory is not knib's:
# the stopped hook leaves the file there alone.
stale_socket "$TMPDIR_TEST/sandbox/victim.sock"
domain_xml web03 \
  | sed "s|unix:$KNIB_RUN_DIR/qmp/$UUID.sock|unix:$KNIB_RUN_DIR/qmp/../../victim.sock|" \
  | hook 0 web03 stopped end -
[ -S "$TMPDIR_TEST/sandbox/victim.sock" ] \
  || fail "the hook removed a socket outside its directory"
grep -q '"qmp": "' "$KNIB_RUN_DIR/domains/web03.json" \
  && fail "a path outside the socket directory was recorded as knib's"
# A domain whose DAC label names another user does not take the shared
# socket directory over (when libvirt's default QEMU user exists).
if id -u libvirt-qemu >/dev/null 2>&1; then
  domain_xml web04 | sed "s|<label>.*</label>|<label>+1001:+1001</label>|" \
    | hook 0 web04 prepare begin -
  [ "$(stat -c %u "$KNIB_RUN_DIR/qmp")" = "$(id -u libvirt-qemu)" ] \
    || fail "the socket directory went to $(stat -c %u:%g "$KNIB_RUN_DIR/qmp")"
  log_has "QEMU runs as uid 1001"
fi

# Bad input: exit 0, a log line, nothing written.
find sandbox | sort >before.lst
echo "<domain><name>web01" | hook 0 web01 started begin -
log_has "domain 'web01': malformed domain XML"
echo "not xml at all" | hook 0 web01 stopped end -
echo "<network><name>web01</name></network>" | hook 0 web01 started begin -
log_has "not a domain XML"
domain_xml web01 | hook 0 web01 frobnicate begin -
log_has "unknown operation 'frobnicate begin'"
domain_xml ../evil | hook 0 ../evil started begin -
log_has "invalid domain name '../evil'"
domain_xml '../../../tmp/evil' | hook 0 '../../../tmp/evil' stopped end -
domain_xml evil | hook 0 web01 started begin -
log_has "the XML on stdin is of domain 'evil'"
domain_xml 'a/b' | hook 0 'a/b' started begin -
hook 0 web01 started </dev/null
log_has "called with 2 arguments"
hook 0 </dev/null
# migrate and restore: stdout would replace the XML: it stays empty.
domain_xml web01 | hook 0 web01 migrate begin -
domain_xml web01 | hook 0 web01 restore begin -
find sandbox | sort >after.lst
cmp -s before.lst after.lst || fail "bad input wrote: $(diff before.lst after.lst)"
[ ! -e "$TMPDIR_TEST/evil.json" ] && [ ! -e /tmp/evil.json ] \
  && [ ! -e "$KNIB_RUN_DIR/evil.json" ] || fail "a file was written outside"

# Prepare while an offline backup holds the image: the start is refused
# after hook-start-wait (1 s here), with knib's message on stderr.
require_test_hooks
qemu-io -f qcow2 -c "write -P 0x11 0 1M" "$A" >/dev/null
KNIB_TEST_STOP_AT=copy "$KNIB" backup --image "vda=$A" --vm web01 \
  --repo "$TMPDIR_TEST/repo" --scratch "$TMPDIR_TEST/kscratch" -q \
  >backup.out 2>backup.err &
BPID=$!
track_pid $BPID
i=0
until [ "$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$BPID/stat" 2>/dev/null)" = T ]; do
  i=$((i + 1))
  [ "$i" -le 600 ] || fail "the backup did not reach its copy: $(cat backup.err)"
  sleep 0.1
done
[ -f "$KNIB_RUN_DIR/offline/web01.$BPID.hold" ] || fail "the offline backup wrote no hold"
domain_xml web01 | hook 1 web01 prepare begin -
[ "$(cat hook.ms)" -ge 900 ] || fail "the hook did not wait ($(cat hook.ms) ms)"
grep -q "knib: domain 'web01' cannot start now: knib is backing it up offline (vm 'web01', pid $BPID) and has its image '$A' open" hook.err \
  || fail "refusal: $(cat hook.err)"
# Another domain, on other images, starts.
sed "s|$A|$TMPDIR_TEST/other.qcow2|" <<EOF | hook 0 web02 prepare begin -
$(domain_xml web02)
EOF
fast
kill -CONT "$BPID"
wait "$BPID" || fail "the backup failed: $(cat backup.err)"
[ ! -e "$KNIB_RUN_DIR/offline/web01.$BPID.hold" ] || fail "the hold was left"
domain_xml web01 | hook 0 web01 prepare begin -
fast

# A hold that nobody locks (its backup was killed) holds nothing.
printf 'pid 999999999\nvm web01\nimage %s\n' "$A" >"$KNIB_RUN_DIR/offline/web01.999999999.hold"
domain_xml web01 | hook 0 web01 prepare begin -
fast
echo "libvirt-hook-input: ok"
