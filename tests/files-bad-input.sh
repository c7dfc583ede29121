#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# files-bad-input.sh: "knib files" on odd backups and bad input.
# A disk with nothing on it is described ("no partition table, no
# filesystem"); a backup marked removed is read, with a note; a raw disk
# without a partition table whose one ext4 filesystem (mkfs.ext4 -d from
# a staged tree) takes plain paths, in a zstd-compressed incremental
# backup; bad options are refused before any appliance starts.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/files-functions.sh"
require qemu-img qemu-storage-daemon mkfs.ext4

cd "$TMPDIR_TEST"
REPO=$TMPDIR_TEST/repo
BLANK=$TMPDIR_TEST/blank.qcow2
RAW=$TMPDIR_TEST/fs.raw
qemu-img create -q -f qcow2 "$BLANK" 32M
stage tree raw
mkfs.ext4 -q -F -E root_owner=0:0 -L knib-raw -d tree "$RAW" 32M \
  >mkfs.out 2>&1 || fail "mkfs.ext4 -d: $(cat mkfs.out)"
"$KNIB" backup --repo "$REPO" --vm bi --image vda="$BLANK" --image vdb="$RAW" \
  >b1.out 2>&1 || fail "backup 1: $(cat b1.out)"
qemu-io -f qcow2 -c "write -P 0x33 1M 64k" "$BLANK" >/dev/null
"$KNIB" backup --repo "$REPO" --vm bi --image vda="$BLANK" --image vdb="$RAW" \
  --compress zstd >b2.out 2>&1 || fail "backup 2: $(cat b2.out)"
F=$(ls "$REPO/vms/bi" | grep '^2' | head -1)
I=$(ls "$REPO/vms/bi" | grep '^2' | tail -1)
[ "$F" != "$I" ] || fail "two backups expected"
"$KNIB" delete --repo "$REPO" --vm bi "$F" >del.out 2>&1 || fail "delete: $(cat del.out)"
grep -q removed del.out || fail "the full backup was not kept as removed: $(cat del.out)"
image_hashes "$REPO" >hashes.before

# Bad options: refused at once (status 2).
for args in "ls --repo $REPO" "get --repo $REPO $I /x" \
  "get --repo $REPO $I /x --to a --tar b" "find --repo $REPO $I --size 12Q" \
  "find --repo $REPO $I --newer yesterday" "diff --repo $REPO $I" \
  "ls --repo $REPO $I --accel fast" "frob --repo $REPO $I"; do
  status=0
  # shellcheck disable=SC2086
  "$KNIB" files $args >bad.out 2>&1 || status=$?
  [ "$status" = 2 ] || fail "files $args: status $status: $(cat bad.out)"
done
status=0
"$KNIB" files ls --repo "$REPO" 20200101T000000Z >bad.out 2>&1 || status=$?
[ "$status" = 1 ] || fail "a missing backup: status $status: $(cat bad.out)"

# The blank disk of the removed backup.
status=0
"$KNIB" files ls --repo "$REPO" "$F" --disk vda >ls.out 2>ls.err || status=$?
[ "$status" = 1 ] || fail "ls of a blank disk: status $status"
grep -q "note: backup '$F' is marked removed" ls.err || fail "no note: $(cat ls.err)"
grep -q "no filesystem in backup '$F': disk 'vda': no partition table, no filesystem" ls.err \
  || fail "blank disk: $(cat ls.err)"

# The raw disk's one filesystem takes plain paths.
"$KNIB" files get --repo "$REPO" "$I" / --to out >get.out 2>get.err \
  || fail "get /: $(cat get.err)"
# "/" fills the target with its entries; the target keeps its own mode.
rm -rf out/lost+found
chmod 0755 out
touch -d @1700000000 out
tree_list tree >want
tree_list out >got
diff want got >d.out || fail "get of the raw disk's tree: $(cat d.out)"

image_hashes "$REPO" >hashes.after
diff hashes.before hashes.after >/dev/null || fail "the repository's images changed"
