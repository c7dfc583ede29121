#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-list.sh: list-backups runs knib list in a child of knibd, so the
# other clients are answered while it runs: with one listing held up (its
# knib waits on a FIFO until the test lets it go), a second client's
# query-version and a second listing are answered first; each listing's
# reply goes to its own client, with its id; a client that leaves while
# its listing runs costs nothing; bad arguments are refused at once.
. "$(dirname "$0")/functions.sh"
require qemu-img qemu-io qemu-storage-daemon
. "$(dirname "$0")/backup-functions.sh"
REAL_KNIB=$KNIB
. "$(dirname "$0")/agent-functions.sh"

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 disk.qcow2 16M
qemu-io -f qcow2 -c "write -P 0x61 0 1M" disk.qcow2 >/dev/null
knib_run b.out b.err backup --json --image vda="$TMPDIR_TEST/disk.qcow2" --vm vm \
  --repo "$REPO" --scratch "$SCRATCH"
[ "$rc" -eq 0 ] || fail "backup: $(cat b.err)"
id=$(json_top b.out id)

# knibd runs this knib: "knib list" of the repository named hold waits
# until a line arrives on the FIFO (after saying so); everything else is
# the real knib at once.
mkfifo release
cat >knib-held <<EOW
#!/bin/sh
case " \$* " in
  *" list "*"$TMPDIR_TEST/hold"*) : >"$TMPDIR_TEST/list-started"; read -r _ <"$TMPDIR_TEST/release" ;;
esac
exec "$REAL_KNIB" "\$@"
EOW
chmod +x knib-held
mkdir hold
cp -a "$REPO/." hold/
KNIB=$TMPDIR_TEST/knib-held start_knibd
KNIB=$REAL_KNIB

# Bad arguments: refused at once, no child.
for bad in "vm=a/b repo=$REPO" "vm=vm" "repo=$REPO bogus=1"; do
  # shellcheck disable=SC2086
  "$KNIB" qmp "$AGENT" list-backups $bad >bad.out 2>&1 && fail "list-backups $bad was accepted"
  grep -q "invalid vm name\|missing argument 'repo'\|takes 'repo' and 'vm' only" bad.out \
    || fail "list-backups $bad: $(cat bad.out)"
done

# 1. A listing held up; meanwhile another client is answered.
"$KNIB" qmp --json --timeout 600 "$AGENT" list-backups "repo=$TMPDIR_TEST/hold" vm=vm >a.out 2>&1 &
a=$!
track_pid $a
until [ -e list-started ]; do sleep 0.1; done
"$KNIB" qmp --json --timeout 600 "$AGENT" query-version >v.out 2>&1 \
  || fail "query-version while a listing runs: $(cat v.out)"
grep -q '"package":"knibd ' v.out || fail "query-version: $(cat v.out)"
# A second listing (not held) is answered too, before the first.
"$KNIB" qmp --json --timeout 600 "$AGENT" list-backups "repo=$REPO" vm=vm >l2.out 2>&1 \
  || fail "a second listing: $(cat l2.out)"
grep -q "\"id\":\"$id\"" l2.out || fail "the second listing: $(cat l2.out)"
kill -0 "$a" 2>/dev/null || fail "the held listing was answered before its knib ended: $(cat a.out)"
[ ! -s a.out ] || fail "the held listing printed: $(cat a.out)"
# Let it go: its own client gets its own reply.
echo go >release
rc=0; wait "$a" || rc=$?
[ "$rc" -eq 0 ] || fail "the held listing exited $rc: $(cat a.out)"
grep -q "\"id\":\"$id\"" a.out || fail "the held listing: $(cat a.out)"

# 2. A client that leaves while its listing runs: knibd carries on.
rm -f list-started
"$KNIB" qmp --json --timeout 600 "$AGENT" list-backups "repo=$TMPDIR_TEST/hold" >gone.out 2>&1 &
g=$!
until [ -e list-started ]; do sleep 0.1; done
kill -9 "$g"
wait "$g" 2>/dev/null || :
echo go >release
agent query-version | grep -q '"package":"knibd ' || fail "knibd after a client left"
agent list-backups "repo=$REPO" | grep -q "\"id\":\"$id\"" || fail "a listing after a client left"
# A listing's failure is knib list's message.
"$KNIB" qmp "$AGENT" list-backups "repo=$TMPDIR_TEST/nothing" >f.out 2>&1 && fail "a listing of no repository succeeded"
grep -q "knib list: knib: .*nothing" f.out || fail "a failed listing: $(cat f.out)"
kill -0 "$KNIBD_PID" || fail "knibd died"
stop_knibd
echo "agent-list: ok"
