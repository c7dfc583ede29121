#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# files-points.sh: "knib files" at two points of a chain (full, then incremental).
# A GPT disk with an ext4 and an XFS partition and an LVM volume, built
# by libguestfs from staged trees, is backed up offline, changed, and
# backed up again.  At each point "files get" returns exactly the staged
# tree (types, modes, owners, sizes, mtimes, symlinks), "ls -l -R" and
# "find" agree with it, "diff" lists exactly the changes (--content
# finds one that keeps size and mtime), paths that do not exist or are
# ambiguous are named, a tar of several paths holds them, and the
# repository's images are never written.  Each command starts one
# appliance (TCG here): the checks at a point go in one "files batch".
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/files-functions.sh"
START=$(date +%s)
require qemu-img qemu-storage-daemon guestfish

cd "$TMPDIR_TEST"
REPO=$TMPDIR_TEST/repo
DISK=$TMPDIR_TEST/disk.qcow2
for t in ext xfs lvm; do
  stage "$t" "$t"
  tar_of "$t" "$t.tar"
done
make_disk "$DISK"

"$KNIB" backup --repo "$REPO" --vm fx --image vda="$DISK" >b1.out 2>&1 \
  || fail "backup 1: $(cat b1.out)"
F=$(ls "$REPO/vms/fx" | grep '^2')

# The changes, in the guest's filesystems and in the staged trees.
guestfish_rw "$DISK" <<EOG
run
mount /dev/sda1 /
write /ext/etc/hosts "hosts changed, longer\n"
utimens /ext/etc/hosts 1700000000 0 1700000100 0
rm /ext/etc/conf.d/empty.conf
chmod 0600 /ext/etc/conf.d/a.conf
lchown 4321 4321 /ext/home/user/..dots
mkdir /ext/new
write /ext/new/file "new\n"
chmod 0644 /ext/new/file
chmod 0755 /ext/new
utimens /ext/new/file 1700000200 0 1700000200 0
utimens /ext/new 1700000200 0 1700000200 0
write "/ext/home/user/with space" "SPACED\n"
utimens "/ext/home/user/with space" 1700000000 0 1700000000 0
utimens /ext 1700000000 0 1700000000 0
utimens /ext/etc/conf.d 1700000000 0 1700000000 0
umount /
mount /dev/sda2 /
write /xfs/home/user/..dots "x2\n"
utimens /xfs/home/user/..dots 1700000300 0 1700000300 0
umount /
mount /dev/vg0/lv0 /
rm /lvm/var/log/big.log
utimens /lvm/var/log 1700000000 0 1700000000 0
umount /
EOG
cp -a ext ext1 && cp -a xfs xfs1 && cp -a lvm lvm1
printf 'hosts changed, longer\n' >ext/etc/hosts
touch -d @1700000100 ext/etc/hosts
rm ext/etc/conf.d/empty.conf
chmod 0600 ext/etc/conf.d/a.conf
chown 4321:4321 ext/home/user/..dots
mkdir ext/new
printf 'new\n' >ext/new/file
chmod 0644 ext/new/file
touch -d @1700000200 ext/new/file ext/new
printf 'SPACED\n' >"ext/home/user/with space"
touch -d @1700000000 "ext/home/user/with space" ext ext/etc/conf.d
printf 'x2\n' >xfs/home/user/..dots
touch -d @1700000300 xfs/home/user/..dots
rm lvm/var/log/big.log
touch -d @1700000000 lvm/var/log

"$KNIB" backup --repo "$REPO" --vm fx --image vda="$DISK" >b2.out 2>&1 \
  || fail "backup 2: $(cat b2.out)"
I=$(ls "$REPO/vms/fx" | grep '^2' | grep -v "^$F\$")
grep -q "incremental" b2.out || fail "backup 2 is not incremental: $(cat b2.out)"
image_hashes "$REPO" >hashes.before

# At the full backup, one appliance ("files batch"): the filesystems
# with their types and labels; get of three trees, a missing path (its
# closest parent is named), an ambiguous one, a path given twice (not
# overwritten without --force); a tar of several paths.
status=0
"$KNIB" -v files batch --repo "$REPO" "$F" >batch1.out 2>batch1.err <<EOB || status=$?
ls
get vda:/dev/sda1:/ext /dev/sda2:/xfs vda:/dev/vg0/lv0:/lvm vda:/dev/sda1:/ext/etc/nope/x /ext vda:/dev/sda1:/ext --to out1
get vda:/dev/sda1:/ext/etc 'vda:/dev/vg0/lv0:/lvm/home/user/with space' /dev/sda2:/xfs/var/log/big.log --tar several.tar
EOB
[ "$status" = 1 ] || fail "batch at $F: status $status: $(cat batch1.err)"
grep -q "appliance accelerator: tcg" batch1.err || fail "-v does not say tcg: $(cat batch1.err)"
[ "$(grep -c "libguestfs appliance with tcg, started" batch1.err)" = 1 ] \
  || fail "not one appliance for the batch: $(cat batch1.err)"
for want in "vda /dev/sda1 ext4 knib-ext4" "vda /dev/sda2 xfs knib-xfs" \
  "vda /dev/vg0/lv0 ext4 knib-lvm"; do
  tr -s ' ' <batch1.out | grep -q "^$want -" || fail "files ls lacks '$want': $(cat batch1.out)"
done
grep -q "'vda:/dev/sda1:/ext/etc/nope/x' does not exist in backup '$F' (the closest parent that does is '/ext/etc')" batch1.err \
  || fail "missing path: $(cat batch1.err)"
grep -q "'/ext' is ambiguous: backup '$F' holds 3 filesystems" batch1.err \
  || fail "ambiguous: $(cat batch1.err)"
grep -q "'/ext' exists (--force replaces it)" batch1.err || fail "overwrite: $(cat batch1.err)"
grep -q "copied 3 of 6 paths" batch1.out || fail "get 1: $(cat batch1.out) $(cat batch1.err)"
for t in ext xfs lvm; do
  tree_list "${t}1" >want
  tree_list "out1/$t" >got
  diff want got >d.out || fail "get $F $t differs from the staged tree: $(cat d.out)"
done
mkdir several
tar --numeric-owner -C several -xf several.tar || fail "several.tar does not unpack"
[ "$(ls several | LC_ALL=C sort | tr '\n' '|')" = "big.log|etc|with space|" ] \
  || fail "several.tar holds: $(ls several)"
tree_list ext1/etc >want
tree_list several/etc >got
diff want got >d.out || fail "the tar's etc differs: $(cat d.out)"
for f in "lvm1/home/user/with space" xfs1/var/log/big.log; do
  b=$(basename "$f")
  cmp "$f" "several/$b" || fail "the tar's $b differs"
  [ "$(stat -c '%a %u %g %Y' "$f")" = "$(stat -c '%a %u %g %Y' "several/$b")" ] \
    || fail "the tar's $b: $(stat -c '%a %u %g %Y' "several/$b")"
done

# At the incremental, one appliance: get --force over the first copy,
# where symlinks were planted to lead out of the target: they are
# replaced, never followed; ".." in a path stops at the filesystem's
# root; ls -l -R and find against the staged tree.
mkdir outside
rm -rf out1/ext/etc/hosts out1/ext/new
ln -s "$TMPDIR_TEST/outside/hosts" out1/ext/etc/hosts
ln -s "$TMPDIR_TEST/outside" out1/ext/new
"$KNIB" files batch --repo "$REPO" "$I" >batch2.out 2>batch2.err <<EOB \
  || fail "batch at $I: $(cat batch2.err)"
get -q vda:/dev/sda1:/ext /dev/sda2:/xfs vda:/dev/vg0/lv0:/lvm --to out1 --force
ls vda:/dev/sda2:/xfs/../../xfs -l -R
find vda:/dev/sda1:/ --newer @1700000050 --size +3
EOB
[ ! -s batch2.err ] || fail "batch at $I: $(cat batch2.err)"
[ -z "$(ls outside)" ] || fail "get wrote outside --to: $(ls -la outside)"
# --force adds and replaces, it never deletes.
rm out1/lvm/var/log/big.log out1/ext/etc/conf.d/empty.conf
touch -d @1700000000 out1/lvm/var/log out1/ext/etc/conf.d
for t in ext xfs lvm; do
  tree_list "$t" >want
  tree_list "out1/$t" >got
  diff want got >d.out || fail "get $I $t differs from the staged tree: $(cat d.out)"
done

# ls's lines start with the mode, find's with the path.
grep -v '^/' batch2.out >ls.out
grep '^/' batch2.out >find.out
(cd xfs && find . -mindepth 1 -printf '%M %U %G %s %P%l\n') \
  | awk '{ if (substr($1, 1, 1) == "d") $4 = "-"; print }' | LC_ALL=C sort >want
awk '{ name = $0; for (i = 1; i <= 5; i++) sub(/^ *[^ ]+ +/, "", name);
       sub(/ -> /, "", name); if (substr($1, 1, 1) == "d") $4 = "-";
       print $1, $2, $3, $4, name }' ls.out | LC_ALL=C sort >got
diff want got >d.out || fail "ls -l -R differs: $(cat d.out)"
printf '/ext/etc/hosts\n/ext/new/file\n' >want
diff want find.out >d.out || fail "find: $(cat d.out)"

# diff between the points: exactly the changes.
"$KNIB" files diff --repo "$REPO" "$F" "$I" vda:/dev/sda1:/ext --content \
  >diff.out 2>diff.err || fail "diff: $(cat diff.err)"
cat >want <<'EOW'
removed  file       /ext/etc/conf.d/empty.conf
changed  mode       /ext/etc/conf.d/a.conf
changed  size,mtime /ext/etc/hosts
changed  owner      /ext/home/user/..dots
changed  content    /ext/home/user/with space
added    directory  /ext/new
added    file       /ext/new/file
EOW
LC_ALL=C sort want >want.s
LC_ALL=C sort diff.out >got.s
diff want.s got.s >d.out || fail "diff: $(cat d.out)"

image_hashes "$REPO" >hashes.after
diff hashes.before hashes.after >/dev/null || fail "the repository's images changed"
echo "files-points: $(($(date +%s) - START)) s"
