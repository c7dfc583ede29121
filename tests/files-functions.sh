# SPDX-License-Identifier: Apache-2.0
# files-functions.sh: helpers for the files-*.sh tests (sourced after
# functions.sh): staged trees, a disk built from them by libguestfs
# itself (GPT: ext4, XFS, an LVM volume), and the oracle that lists a
# tree's names, types, modes, owners, sizes, mtimes and symlink targets.

export LIBGUESTFS_BACKEND=direct
export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
# One appliance built by supermin, kept between the tests.
: "${LIBGUESTFS_CACHEDIR:=/var/tmp}"
export LIBGUESTFS_CACHEDIR

# guestfish_rw IMAGE: run the guestfish script on stdin on a qcow2 image.
guestfish_rw () {
  guestfish --rw --format=qcow2 -a "$1" >"$TMPDIR_TEST/guestfish.log" 2>&1 \
    || fail "guestfish: $(cat "$TMPDIR_TEST/guestfish.log")"
}

# stage DIR SEED: a small tree with every kind of entry: nested
# directories, empty and larger files, odd modes (setuid, sticky, 0400),
# other owners, relative and absolute symlinks, names with spaces and
# leading dots; every mtime a whole second (tar keeps seconds).
stage () {
  _d=$1
  _s=$2
  rm -rf "$_d"
  mkdir -p "$_d/etc/conf.d" "$_d/var/log" "$_d/home/user/.cache" "$_d/empty"
  printf 'hosts %s\n' "$_s" >"$_d/etc/hosts"
  printf 'a = %s\n' "$_s" >"$_d/etc/conf.d/a.conf"
  : >"$_d/etc/conf.d/empty.conf"
  head -c 300000 /dev/urandom >"$_d/var/log/big.log"
  printf 'secret\n' >"$_d/home/user/.secret"
  printf 'spaced\n' >"$_d/home/user/with space"
  printf 'x\n' >"$_d/home/user/..dots"
  printf '#!/bin/sh\n' >"$_d/home/user/setuid-tool"
  ln -s ../hosts "$_d/etc/conf.d/rel-link"
  ln -s /etc/passwd "$_d/etc/abs-link"
  ln -s /nonexistent/far/away "$_d/home/user/dangling"
  chmod 0644 "$_d/etc/hosts" "$_d/etc/conf.d/a.conf"
  chmod 0600 "$_d/etc/conf.d/empty.conf"
  chmod 0400 "$_d/home/user/.secret"
  chmod 4755 "$_d/home/user/setuid-tool"
  chmod 1777 "$_d/var/log"
  chmod 0700 "$_d/home/user"
  chmod 0755 "$_d" "$_d/etc" "$_d/etc/conf.d" "$_d/var" "$_d/home" \
    "$_d/home/user/.cache" "$_d/empty"
  chmod 0640 "$_d/var/log/big.log" "$_d/home/user/with space" \
    "$_d/home/user/..dots"
  chown -R 1000:1000 "$_d/home/user"
  chown -h 1234:2345 "$_d/var/log/big.log" "$_d/etc/abs-link"
  stamp_all "$_d" 1700000000
}

# stamp_all DIR SECONDS: every entry's mtime and atime, children first.
stamp_all () {
  find "$1" -depth -exec touch -h -d "@$2" {} +
}

# tree_list DIR: one line per entry below DIR (and DIR itself as "."):
# path, type, mode, uid, gid, size (files), mtime in ns, symlink target.
tree_list () {
  (cd "$1" && find . -printf '%p|%y|%m|%U|%G|%s|%T@|%l\n') \
    | awk -F'|' 'BEGIN { OFS = "|" } { if ($2 == "d") $6 = "-"; print }' \
    | LC_ALL=C sort
}

# tar_of DIR TAR: an archive of DIR's contents with numeric owners.
tar_of () {
  tar --numeric-owner --format=posix -C "$1" -cf "$2" .
}

# image_hashes REPO: every image in the repository with its hash.
image_hashes () {
  find "$1" -name '*.qcow2' -exec sha256sum {} + | LC_ALL=C sort
}

# make_disk IMAGE: a 1 GiB qcow2 disk with a GPT table: an ext4
# partition (/ext), an XFS partition (/xfs) and an LVM volume vg0/lv0
# with ext4 (/lvm), each holding the staged tree of that name as tar
# archives $TMPDIR_TEST/{ext,xfs,lvm}.tar hold it.
make_disk () {
  qemu-img create -q -f qcow2 "$1" 1G
  guestfish_rw "$1" <<EOG
run
part-init /dev/sda gpt
part-add /dev/sda p 2048 133119
part-add /dev/sda p 133120 788479
part-add /dev/sda p 788480 -34
mkfs ext4 /dev/sda1 label:knib-ext4
mkfs xfs /dev/sda2 label:knib-xfs
pvcreate /dev/sda3
vgcreate vg0 /dev/sda3
lvcreate lv0 vg0 64
mkfs ext4 /dev/vg0/lv0 label:knib-lvm
mount /dev/sda1 /
mkdir /ext
tar-in $TMPDIR_TEST/ext.tar /ext
umount /
mount /dev/sda2 /
mkdir /xfs
tar-in $TMPDIR_TEST/xfs.tar /xfs
umount /
mount /dev/vg0/lv0 /
mkdir /lvm
tar-in $TMPDIR_TEST/lvm.tar /lvm
umount /
EOG
}
