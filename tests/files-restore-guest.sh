#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# files-restore-guest.sh: "knib files restore" into the real test guest (TCG) while it runs.
# Two files of a backup go back through the guest agent: one replaces a
# file that a loop in the guest reads over and over during the write (it
# must only ever see the old bytes or the new ones), one is new; inside
# the guest both have the backup's bytes, mode, owner and mtime, and no
# temporary file is left.  A guest that stops answering mid-file keeps
# its old file.  Refused: an existing file without --force, a frozen
# guest, a VM whose agent does not answer, bad options; the repository's
# images are unchanged.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/guest-functions.sh"
. "$(dirname "$0")/files-functions.sh"
require qemu-img qemu-system-x86_64 mkfs.ext4 md5sum

cd "$TMPDIR_TEST"
REPO=$TMPDIR_TEST/repo

# The backup: an ext4 disk made from a staged tree.
mkdir -p src/etc src/srv
printf 'listen = 8080\nworkers = 4\n' >src/etc/app.conf
head -c 1048576 /dev/urandom >src/srv/big.bin
chmod 0640 src/etc/app.conf
chmod 0750 src/srv/big.bin
chown 1000:1000 src/etc/app.conf
chown 0:4 src/srv/big.bin
stamp_all src 1700000000
touch -d @1700000100 src/srv/big.bin
mkfs.ext4 -q -F -E root_owner=0:0 -L knib-rg -d src fs.raw 32M \
  >mkfs.out 2>&1 || fail "mkfs.ext4 -d: $(cat mkfs.out)"
"$KNIB" backup --repo "$REPO" --vm rg --image vda=fs.raw >b.out 2>&1 \
  || fail "backup: $(cat b.out)"
B=$(ls "$REPO/vms/rg" | grep '^2' | head -1)
image_hashes "$REPO" >hashes.before

# Bad options: refused at once (status 2).
for args in "$B /etc/app.conf" \
  "$B /etc/app.conf --domain d --guest-agent /x" \
  "$B /etc/app.conf /srv/big.bin --guest-agent /x --to /data" \
  "$B /etc/app.conf --guest-agent /x --to relative" \
  "$B --guest-agent /x" "$B /etc/app.conf --guest-agent /x --tar t"; do
  status=0
  # shellcheck disable=SC2086
  "$KNIB" files restore --repo "$REPO" $args >bad.out 2>&1 || status=$?
  [ "$status" = 2 ] || fail "files restore $args: status $status: $(cat bad.out)"
done

# A VM whose agent does not answer (no OS in it): refused, no appliance.
# knib waits 10 s for its agent: meanwhile the test guest boots.
start_qemu_with_agent noagent
"$KNIB" files restore --repo "$REPO" "$B" /etc/app.conf --guest-agent "$QGA" \
  >noagent.out 2>&1 &
NOAGENT_PID=$!
track_pid $NOAGENT_PID

guest_disk
start_guest "$GUEST_DISK"
status=0
wait $NOAGENT_PID || status=$?
[ "$status" = 1 ] || fail "no agent: status $status: $(cat noagent.out)"
grep -q "no guest agent answered" noagent.out || fail "no agent: $(cat noagent.out)"
quit_qemu noagent
wait_for_guest_agent
echo "the test guest answered after $GUEST_BOOT_SECONDS s"
guest_exec sh -c 'head -c 524288 /dev/zero >/data/big.bin' \
  || fail "cannot write the guest's old file"
old=$(guest_exec md5sum /data/big.bin | cut -d' ' -f1)
new=$(md5sum <src/srv/big.bin | cut -d' ' -f1)
conf=$(md5sum <src/etc/app.conf | cut -d' ' -f1)

# An existing file without --force: refused before any appliance starts.
status=0
"$KNIB" files restore --repo "$REPO" "$B" /srv/big.bin --to /data/big.bin \
  --guest-agent "$GUEST_QGA" >exists.out 2>&1 || status=$?
[ "$status" = 1 ] || fail "existing file: status $status: $(cat exists.out)"
grep -q "'/data/big.bin' exists in the guest (--force replaces it)" exists.out \
  || fail "existing file: $(cat exists.out)"

# A frozen guest: refused.
"$QGA_CLIENT" -t 60 "$GUEST_QGA" guest-fsfreeze-freeze >freeze.out 2>&1 \
  || fail "freeze: $(cat freeze.out)"
status=0
"$KNIB" files restore --repo "$REPO" "$B" /etc/app.conf --to /data/app.conf \
  --guest-agent "$GUEST_QGA" >frozen.out 2>&1 || status=$?
"$QGA_CLIENT" -t 60 "$GUEST_QGA" guest-fsfreeze-thaw >thaw.out 2>&1 \
  || fail "thaw: $(cat thaw.out)"
[ "$status" = 1 ] || fail "frozen guest: status $status: $(cat frozen.out)"
grep -q "frozen" frozen.out || fail "frozen guest: $(cat frozen.out)"

# One appliance for two restores ("files batch"): two files while a
# loop in the guest reads the replaced one over and over, then one into
# a guest that stops answering mid-file (paused through QMP once the
# trace shows its first chunk going): it keeps its old file.
guest_exec sh -c 'rm -f /tmp/stop /tmp/seen; printf old >/data/keep.bin
  (while [ ! -e /tmp/stop ]; do md5sum </data/big.bin; done >/tmp/seen 2>&1 &)' \
  || fail "the reader loop did not start"
cat <<EOE
\$ knib files batch --repo REPO $B <<EOB
restore /srv/big.bin /etc/app.conf --to /data/ --force --guest-agent GUEST.qga
restore /srv/big.bin --to /data/keep.bin --force --guest-agent GUEST.qga --timeout 10
EOB
(the guest is paused through QMP once the second restore's first chunk goes)
EOE
KNIB_DEBUG=qmp "$KNIB" files batch --repo "$REPO" "$B" >restore.out \
  2>restore.err <<EOB &
restore /srv/big.bin /etc/app.conf --to /data/ --force --guest-agent $GUEST_QGA
restore /srv/big.bin --to /data/keep.bin --force --guest-agent $GUEST_QGA --timeout 10
EOB
BATCH_PID=$!
track_pid $BATCH_PID
# Writes: 4 chunks of big.bin and 1 of app.conf, then keep.bin's.
i=0
until [ "$(grep -c '^knib: debug qmp: qga -> {"execute":"guest-file-write"' restore.err)" -ge 6 ]; do
  kill -0 $BATCH_PID 2>/dev/null || fail "the batch ended early: $(grep -v debug restore.err)"
  i=$((i + 1))
  [ "$i" -le 18000 ] || fail "no third restore began: $(grep -v debug restore.err)"
  sleep 0.1
done
"$KNIB" qmp "$GUEST_QMP" stop >/dev/null || fail "QMP stop"
status=0
wait $BATCH_PID || status=$?
"$KNIB" qmp "$GUEST_QMP" cont >/dev/null || fail "QMP cont"
grep -v '^knib: debug' restore.err >errors.out || :
cat restore.out errors.out
[ "$status" = 1 ] || fail "batch: status $status: $(cat errors.out)"
grep -q "^restored '/srv/big.bin' to '/data/big.bin' in the guest: 1.0 MiB in .*, mode 0750, owner 0:4\$" restore.out \
  || fail "restore of big.bin: $(cat restore.out) $(cat errors.out)"
grep -q "^restored '/etc/app.conf' to '/data/app.conf' in the guest: " restore.out \
  || fail "restore of app.conf: $(cat restore.out) $(cat errors.out)"
grep -q "restore of '.*/srv/big.bin' to '/data/keep.bin': guest agent 'guest-file-write': no answer on .* within 10 s (the guest keeps its old '/data/keep.bin'; the temporary file '/data/.keep.bin.knib-.*' may be left there)" errors.out \
  || fail "the timed-out restore: $(cat errors.out)"
[ "$(guest_exec cat /data/keep.bin)" = old ] || fail "the guest lost its old keep.bin"
guest_exec touch /tmp/stop || fail "cannot stop the reader loop"
sleep 2
guest_exec cat /tmp/seen | cut -d' ' -f1 | sort | uniq -c >seen.out
echo "what the guest's reader saw (count, md5):"
cat seen.out
while read -r n sum; do
  [ "$sum" = "$old" ] || [ "$sum" = "$new" ] ||
    fail "the guest read a partial file ($n times $sum; old $old, new $new)"
done <seen.out
grep -q " $new\$" seen.out || fail "the reader never saw the new file"

# Inside the guest: the backup's bytes, mode, owner and mtime.
echo "\$ (in the guest) md5sum /data/big.bin /data/app.conf; stat -c '%n %a %u:%g %Y %s' ..."
guest_exec md5sum /data/big.bin /data/app.conf | tee sums.out
guest_exec stat -c '%n %a %u:%g %Y %s' /data/big.bin /data/app.conf | tee stat.out
grep -q "^$new  /data/big.bin\$" sums.out || fail "big.bin in the guest: $(cat sums.out)"
grep -q "^$conf  /data/app.conf\$" sums.out || fail "app.conf in the guest: $(cat sums.out)"
grep -q "^/data/big.bin 750 0:4 1700000100 1048576\$" stat.out \
  || fail "big.bin's metadata: $(cat stat.out)"
grep -q "^/data/app.conf 640 1000:1000 1700000000 $(stat -c %s src/etc/app.conf)\$" stat.out \
  || fail "app.conf's metadata: $(cat stat.out)"
guest_exec ls -a /data >ls.out || fail "ls /data in the guest"
if grep -q "big.bin.knib\|app.conf.knib" ls.out; then
  fail "a temporary file is left: $(cat ls.out)"
fi

guest_quit
image_hashes "$REPO" >hashes.after
diff hashes.before hashes.after >/dev/null || fail "the repository's images changed"
