#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-fdset-leftover.sh: a knib killed after it handed QEMU the fleecing
# image (add-fd) leaves an fd set in QEMU; the next knib recover, and the
# next backup, remove it (sets are knib's when every descriptor's opaque
# names a knib fleecing node), and the backup after it is correct.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img
require_test_hooks

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
start_qemu vm a.qcow2
S=$TMPDIR_TEST/vm.qmp   # knib's
S2=$TMPDIR_TEST/vm.qmp2 # the test's

# QEMU drops the fd sets nobody uses when its last monitor closes, so a
# set is left behind only while another client stays connected, as
# libvirt always is.  The holder plays that client on the test's socket:
# it stays connected and runs the commands the test asks for
# (holder_query COMMAND prints the reply's "return").
start_holder () {
  rm -f holder.ready holder.quit holder.req holder.resp
  python3 - "$S2" "$TMPDIR_TEST" >holder.log 2>&1 <<'PY' &
import json, os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
d = sys.argv[2]
f.readline()
f.write('{"execute":"qmp_capabilities"}\n'); f.flush(); f.readline()
open(d + "/holder.ready", "w").close()
while not os.path.exists(d + "/holder.quit"):
    if os.path.exists(d + "/holder.req"):
        cmd = open(d + "/holder.req").read().strip()
        f.write(json.dumps({"execute": cmd}) + "\n"); f.flush()
        while True:
            r = json.loads(f.readline())
            if "return" in r or "error" in r:
                break
        with open(d + "/holder.tmp", "w") as o:
            o.write(json.dumps(r.get("return", r), separators=(",", ":")))
        os.unlink(d + "/holder.req")
        os.rename(d + "/holder.tmp", d + "/holder.resp")
    time.sleep(0.05)
PY
  HOLDER_PID=$!
  track_pid $HOLDER_PID
  _i=0
  until [ -e holder.ready ]; do
    _i=$((_i + 1))
    [ "$_i" -le 600 ] || fail "the holder did not connect: $(cat holder.log)"
    sleep 0.1
  done
}
holder_query () {
  rm -f holder.resp
  echo "$1" >holder.req
  _i=0
  until [ -e holder.resp ]; do
    _i=$((_i + 1))
    [ "$_i" -le 600 ] || fail "the holder did not answer $1: $(cat holder.log)"
    sleep 0.1
  done
  cat holder.resp
}
stop_holder () {
  : >holder.quit
  wait "$HOLDER_PID" 2>/dev/null || :
}

# knib_fdsets: the fd sets in QEMU whose descriptors knib named.
knib_fdsets () {
  holder_query query-fdsets | grep -o '"opaque":"knib-[^"]*"' || :
}

hmp_write "$S2" vda 0x01 0 1M
hmp_write "$S2" vda 0x02 2M 1M
backup_ok vm "$S" full.json --chain-size 0
expect_kind full.json full
start_holder
[ -z "$(knib_fdsets)" ] || fail "a finished backup left fd sets: $(knib_fdsets)"

# 1. Killed with the set added, before the fleecing node: knib recover.
start_stopping fdset vm "$S" kill1.json --chain-size 0
[ -n "$(knib_fdsets)" ] || fail "stopped after add-fd, yet no fd set of knib in QEMU"
kill_stopped
[ -n "$(knib_fdsets)" ] || fail "the killed knib's fd set is gone by itself"
knib_run rec.out rec.err recover --qmp "$S" --vm vm --repo "$REPO" --scratch "$SCRATCH"
[ "$rc" -eq 0 ] || fail "knib recover exited $rc: $(cat rec.err)"
grep -q "removed fd set [0-9]* (knib-fleece-vda)" rec.out \
  || fail "knib recover did not say it removed the fd set: $(cat rec.out rec.err)"
[ -z "$(knib_fdsets)" ] || fail "knib recover left fd sets: $(knib_fdsets)"

# 2. Killed there again: the next backup removes it and is right.
start_stopping fdset vm "$S" kill2.json --chain-size 0
kill_stopped
[ -n "$(knib_fdsets)" ] || fail "the second killed knib left no fd set"
prev=$(last_id vm)
backup_ok vm "$S" after.json --chain-size 0
expect_kind after.json incremental "$prev"
grep -q "removed fd set [0-9]* (knib-fleece-vda)" after.json \
  || fail "the backup did not say it removed the fd set: $(cat after.json)"
[ -z "$(knib_fdsets)" ] || fail "the backup left fd sets: $(knib_fdsets)"
stop_holder
check_qemu_clean "$S2" vm vda

# The chain restores to what the guest wrote.
hmp_write "$S2" vda 0x04 9M 64k
"$KNIB" qmp "$S2" stop >/dev/null
qemu-img convert -U -O qcow2 a.qcow2 oracle.qcow2
"$KNIB" qmp "$S2" cont >/dev/null
backup_ok vm "$S" last.json --chain-size 0
id=$(json_top last.json id)
knib_run r.out r.err restore --repo "$REPO" --vm vm "$id" --to restored.qcow2 -q
[ "$rc" -eq 0 ] || fail "knib restore $id: $(cat r.err)"
qemu-img compare -q oracle.qcow2 restored.qcow2 || fail "the restored disk differs from the VM's"
echo "backup-fdset-leftover: ok"
