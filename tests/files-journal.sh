#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# files-journal.sh: a backup whose ext4 journal was never replayed reads consistent.
# libguestfs's appliance writes a file to an ext4 filesystem, the journal
# commits, and the appliance is killed before it unmounts: the image is left
# with "needs_recovery", the new file's metadata only in the journal, as
# a backup taken live without fsfreeze would be.  "knib files get" of
# that backup returns the file (the journal replays in the appliance's
# overlay) while the source image and the repository are not written.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/files-functions.sh"
require qemu-img qemu-storage-daemon mkfs.ext4 dumpe2fs debugfs e2fsck guestfish pgrep

cd "$TMPDIR_TEST"
REPO=$TMPDIR_TEST/repo
RAW=$TMPDIR_TEST/fs.raw
stage tree journal
mkfs.ext4 -q -F -E root_owner=0:0 -d tree "$RAW" 32M >mkfs.out 2>&1 \
  || fail "mkfs.ext4 -d: $(cat mkfs.out)"

# Write, let the journal commit (every second), and stop there, before
# the metadata's writeback (30 s): the test kills the appliance's QEMU.
guestfish --rw --format=raw -a "$RAW" >gf.log 2>&1 <<EOG &
run
mount-options commit=1,nodelalloc /dev/sda /
write /journal-only "written before the crash\n"
! sleep 4
! touch $TMPDIR_TEST/synced
! sleep 600
EOG
GF_PID=$!
track_pid $GF_PID
i=0
until [ -e synced ]; do
  kill -0 $GF_PID 2>/dev/null || fail "guestfish ended: $(cat gf.log)"
  i=$((i + 1))
  [ $i -le 3000 ] || fail "guestfish did not write: $(cat gf.log)"
  sleep 0.1
done
QEMU_PID=$(pgrep -P $GF_PID -f qemu-system) || fail "no appliance under guestfish"
kill -9 $QEMU_PID
kill -9 $GF_PID
wait $GF_PID 2>/dev/null || :
dumpe2fs -h "$RAW" 2>/dev/null | grep -q needs_recovery \
  || fail "the journal was replayed already: $(dumpe2fs -h "$RAW" 2>&1 | grep -i features)"
# Read without the journal (debugfs does not replay it) the file is not
# there yet.
debugfs -R 'ls /' "$RAW" >ls.raw 2>&1 || fail "debugfs: $(cat ls.raw)"
! grep -q journal-only ls.raw || fail "the file is on disk already: $(cat ls.raw)"
sha256sum "$RAW" >source.before

"$KNIB" backup --repo "$REPO" --vm jr --image vda="$RAW" >b1.out 2>&1 \
  || fail "backup: $(cat b1.out)"
F=$(ls "$REPO/vms/jr" | grep '^2')
image_hashes "$REPO" >hashes.before
"$KNIB" files get --repo "$REPO" "$F" /journal-only /etc --to out \
  >get.out 2>get.err || fail "get: $(cat get.err)"
[ "$(cat out/journal-only)" = "written before the crash" ] \
  || fail "the file written before the crash: '$(cat out/journal-only)'"
# The oracle: e2fsck replays the journal of a copy; debugfs reads it.
cp "$RAW" replayed.raw
e2fsck -fy replayed.raw >fsck.out 2>&1 || [ $? -le 1 ] \
  || fail "e2fsck of the copy: $(cat fsck.out)"
debugfs -R 'cat /journal-only' replayed.raw >want.txt 2>/dev/null
cmp want.txt out/journal-only || fail "knib's file differs from e2fsck's replay"
tree_list tree/etc >want
tree_list out/etc >got
diff want got >d.out || fail "the tree around it: $(cat d.out)"

image_hashes "$REPO" >hashes.after
diff hashes.before hashes.after >/dev/null || fail "the repository's images changed"
sha256sum -c source.before >/dev/null || fail "the source image changed"
dumpe2fs -h "$RAW" 2>/dev/null | grep -q needs_recovery \
  || fail "the source's journal was replayed on disk"
