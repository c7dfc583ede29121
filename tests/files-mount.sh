#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# files-mount.sh: "knib files mount": a read-only FUSE view of a backup.
# The view holds exactly the staged tree and refuses writes; SIGTERM
# unmounts it; after a kill -9 the stale mount is removed by the next
# "knib files mount", which "umount" ends with status 0.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/files-functions.sh"
require qemu-img qemu-storage-daemon mkfs.ext4 fusermount mountpoint
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse" >&2; exit 77; }

cd "$TMPDIR_TEST"
REPO=$TMPDIR_TEST/repo
RAW=$TMPDIR_TEST/fs.raw
MNT=$TMPDIR_TEST/mnt
stage tree mnt
mkfs.ext4 -q -F -E root_owner=0:0 -d tree "$RAW" 32M >mkfs.out 2>&1 \
  || fail "mkfs.ext4 -d: $(cat mkfs.out)"
"$KNIB" backup --repo "$REPO" --vm mt --image vda="$RAW" >b1.out 2>&1 \
  || fail "backup: $(cat b1.out)"
F=$(ls "$REPO/vms/mt" | grep '^2')
image_hashes "$REPO" >hashes.before
mkdir "$MNT"
# Whatever happens, nothing stays mounted.
trap '_st=$?; fusermount -u -z "$MNT" 2>/dev/null || :; if (exit $_st); then _cleanup; else _cleanup; fi' EXIT

# mount_view N: start "knib files mount" (pid in $MOUNT_PID), wait until
# it says the view is there.
mount_view () {
  "$KNIB" files mount --repo "$REPO" "$F" "$MNT" >"m$1.out" 2>"m$1.err" &
  MOUNT_PID=$!
  track_pid $MOUNT_PID
  i=0
  until grep -q "is mounted read-only at '$MNT'" "m$1.out"; do
    kill -0 $MOUNT_PID 2>/dev/null || fail "files mount $1 ended: $(cat "m$1.err")"
    i=$((i + 1))
    [ $i -le 3000 ] || fail "files mount $1 did not mount: $(cat "m$1.err")"
    sleep 0.1
  done
}

mount_view 1
tree_list tree | grep -v '^\.|' >want
tree_list "$MNT/sda" | grep -v '^\.|' | grep -v '^./lost+found' >got
diff want got >d.out || fail "the view differs from the tree: $(cat d.out)"
if touch "$MNT/sda/new" 2>/dev/null; then fail "the view took a write"; fi
kill -TERM $MOUNT_PID
wait $MOUNT_PID || fail "files mount did not end cleanly: $(cat m1.err)"
! mountpoint -q "$MNT" || fail "still mounted after SIGTERM"

mount_view 2
kill -9 $MOUNT_PID
wait $MOUNT_PID 2>/dev/null || :
mount_view 3
grep -q "removed a stale mount at '$MNT'" m3.err || fail "stale mount: $(cat m3.err)"
[ -f "$MNT/sda/etc/hosts" ] || fail "the new view is empty"
umount "$MNT" || fusermount -u "$MNT" || fail "umount"
wait $MOUNT_PID || fail "files mount did not end cleanly after umount: $(cat m3.err)"

image_hashes "$REPO" >hashes.after
diff hashes.before hashes.after >/dev/null || fail "the repository's images changed"
