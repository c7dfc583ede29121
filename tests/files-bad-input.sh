#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# files-bad-input.sh: "knib files" on odd backups and bad input.
# A disk with nothing on it is described ("no partition table, no
# filesystem"); a backup marked removed is read, with a note; a raw disk
# without a partition table whose one ext4 filesystem (mkfs.ext4 -d from
# a staged tree) reads back whole, in a zstd-compressed incremental
# backup; an f2fs filesystem, which the appliance cannot read here,
# is named with the package to install; bad options are refused before
# any appliance starts.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/files-functions.sh"
require qemu-img qemu-storage-daemon mkfs.ext4 mkfs.f2fs

cd "$TMPDIR_TEST"
REPO=$TMPDIR_TEST/repo
BLANK=$TMPDIR_TEST/blank.qcow2
RAW=$TMPDIR_TEST/fs.raw
qemu-img create -q -f qcow2 "$BLANK" 32M
stage tree raw
mkfs.ext4 -q -F -E root_owner=0:0 -L knib-raw -d tree "$RAW" 32M \
  >mkfs.out 2>&1 || fail "mkfs.ext4 -d: $(cat mkfs.out)"
F2FS=$TMPDIR_TEST/f2fs.raw
truncate -s 64M "$F2FS"
mkfs.f2fs -q "$F2FS" >mkfs.out 2>&1 || fail "mkfs.f2fs: $(cat mkfs.out)"
"$KNIB" backup --repo "$REPO" --vm bi --image vda="$BLANK" --image vdb="$RAW" \
  --image vdc="$F2FS" >b1.out 2>&1 || fail "backup 1: $(cat b1.out)"
qemu-io -f qcow2 -c "write -P 0x33 1M 64k" "$BLANK" >/dev/null
"$KNIB" backup --repo "$REPO" --vm bi --image vda="$BLANK" --image vdb="$RAW" \
  --image vdc="$F2FS" --compress zstd >b2.out 2>&1 || fail "backup 2: $(cat b2.out)"
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
  "ls --repo $REPO $I --accel fast" "frob --repo $REPO $I" \
  "batch --repo $REPO" "batch --repo $REPO $I /x" "batch --repo $REPO $I -l"; do
  status=0
  # shellcheck disable=SC2086
  "$KNIB" files $args >bad.out 2>&1 || status=$?
  [ "$status" = 2 ] || fail "files $args: status $status: $(cat bad.out)"
done
# A batch's lines are checked before its appliance starts.
for line in "diff $F" "ls 'open" "mount /mnt" "ls --repo /elsewhere /" \
  "ls --vm other /" "get /x --to a --tar b" "find / --size 12Q"; do
  status=0
  echo "$line" | "$KNIB" files batch --repo "$REPO" "$I" >bad.out 2>&1 || status=$?
  [ "$status" = 2 ] || fail "batch line '$line': status $status: $(cat bad.out)"
  ! grep -q "appliance\|libguestfs" bad.out || fail "batch line '$line': checked after the appliance started: $(cat bad.out)"
done
echo "ls --repo /elsewhere /" | "$KNIB" files batch --repo "$REPO" "$I" >bad.out 2>&1 || :
grep -q "\-\-repo goes to 'files batch' itself" bad.out || fail "a line's --repo: $(cat bad.out)"
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

# One appliance ("files batch"): the raw disk's one filesystem, and the
# f2fs disk, which libguestfs's appliance cannot read when its kernel
# has no f2fs (Debian's cloud kernel): the error names the package.
status=0
"$KNIB" files batch --repo "$REPO" "$I" >batch.out 2>batch.err <<EOB || status=$?
get vdb:/dev/sdb:/ --to out
ls vdc:/dev/sdc:/
EOB
# "/" fills the target with its entries; the target keeps its own mode.
rm -rf out/lost+found
chmod 0755 out
touch -d @1700000000 out
tree_list tree >want
tree_list out >got
diff want got >d.out || fail "get of the raw disk's tree: $(cat d.out) $(cat batch.err)"
# The appliance boots a kernel of /boot: when none has an f2fs module,
# it cannot read f2fs.
if ls /lib/modules/*/kernel/fs/f2fs >/dev/null 2>&1; then
  echo "a kernel here has f2fs: the appliance may read it (status $status)"
else
  [ "$status" = 1 ] || fail "ls of f2fs: status $status: $(cat batch.err)"
  grep -q "cannot mount /dev/sdc: libguestfs's appliance cannot read f2fs filesystems: its kernel has no f2fs driver: install the package linux-image-amd64" batch.err \
    || fail "f2fs: $(cat batch.err)"
  grep "f2fs" batch.err
fi

image_hashes "$REPO" >hashes.after
diff hashes.before hashes.after >/dev/null || fail "the repository's images changed"
