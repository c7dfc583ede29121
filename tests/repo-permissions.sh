#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# repo-permissions.sh: a repository is private whatever the umask:
# directories 0700 and files 0600 after backups, deferred compression,
# merge, delete and restore.  Shared with a group (knib backup --group),
# everything is that group's (2750, 0640, also what later runs write): a
# member lists and verifies, may not change anything, and a user outside
# the group reads nothing; --group '' makes it private again.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img setpriv
getent group backup >/dev/null && getent passwd backup >/dev/null \
  || { echo "SKIP: no user and group 'backup'" >&2; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root" >&2; exit 77; }

umask 022
cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
start_qemu vm a.qcow2
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

# private_ok WHEN: every directory 0700, every file 0600.
private_ok () {
  _bad=$(find "$REPO" \( -type d ! -perm 0700 \) -o \( ! -type d ! -perm 0600 \) \
    -printf '%m %p\n')
  [ -z "$_bad" ] || fail "$1: not private:
$_bad"
}

# shared_ok WHEN: every directory 2750 and every file 0640, group backup.
shared_ok () {
  _bad=$(find "$REPO" ! -group backup -printf '%g %p\n' -o \
    \( -type d ! -perm 2750 \) -printf '%m %p\n' -o \
    \( ! -type d ! -perm 0640 \) -printf '%m %p\n')
  [ -z "$_bad" ] || fail "$1: not shared with group backup:
$_bad"
}

# as USER ARG...: knib ARG... as that user (its own groups only).
as () {
  _u=$1
  shift
  setpriv --reuid="$_u" --regid="$(id -g "$_u")" --init-groups "$KNIB" "$@"
}

hmp_write "$S2" vda 0x01 0 2M
backup_ok vm "$S" f.json
hmp_write "$S2" vda 0x02 1M 64k
backup_ok vm "$S" i1.json
hmp_write "$S2" vda 0x03 2M 64k
backup_ok vm "$S" i2.json
hmp_write "$S2" vda 0x04 3M 64k
backup_ok vm "$S" i3.json
F=$(sed -n 1p ids-vm) I1=$(sed -n 2p ids-vm) I2=$(sed -n 3p ids-vm)
I3=$(sed -n 4p ids-vm)
private_ok "after four backups"
"$KNIB" compress --repo "$REPO" --vm vm "$I1" >/dev/null \
  || fail "compress $I1"
private_ok "after compress"
"$KNIB" merge --repo "$REPO" --vm vm "$I2" >/dev/null || fail "merge $I2"
private_ok "after merge"
"$KNIB" restore --repo "$REPO" --vm vm "$I3" --to "$TMPDIR_TEST/r.qcow2" \
  >/dev/null || fail "restore $I3"
private_ok "after restore"
[ "$(stat -c %a r.qcow2)" = 600 ] || fail "the restored image is $(stat -c %a r.qcow2)"

# The test directory must be traversable by the other users.
chmod 0711 "$TMPDIR_TEST"

# Private: another user reads nothing.
if as backup list --repo "$REPO" >list.out 2>list.err; then
  fail "user backup listed a private repository: $(cat list.out)"
fi

# Shared with group backup: what is there now, and what later runs write.
hmp_write "$S2" vda 0x05 4M 64k
backup_ok vm "$S" i4.json --group backup
shared_ok "after backup --group backup"
grep -q '"group": *"backup"' "$REPO/knib-repo.json" \
  || fail "knib-repo.json does not name the group: $(cat "$REPO/knib-repo.json")"
hmp_write "$S2" vda 0x06 5M 64k
backup_ok vm "$S" i5.json
I5=$(tail -n 1 ids-vm)
"$KNIB" compress --repo "$REPO" --vm vm "$I5" >/dev/null || fail "compress $I5"
"$KNIB" delete --repo "$REPO" --vm vm "$F" >/dev/null || fail "delete $F"
shared_ok "after a backup, compress and delete in the shared repository"

# A member of the group reads: list, info, verify, restore to its own file.
as backup list --repo "$REPO" >list.out 2>list.err \
  || fail "user backup cannot list the shared repository: $(cat list.err)"
grep -q "$I5" list.out || fail "user backup does not see $I5: $(cat list.out)"
as backup verify --repo "$REPO" --vm vm "$I5" >verify.out 2>verify.err \
  || fail "user backup cannot verify $I5: $(cat verify.err)"
mkdir out && chown backup out
as backup restore --repo "$REPO" --vm vm "$I5" --to "$TMPDIR_TEST/out/r.qcow2" \
  >restore.out 2>restore.err \
  || fail "user backup cannot restore $I5: $(cat restore.err)"
qemu-img compare -q "$TMPDIR_TEST/out/r.qcow2" \
  "$(find "$REPO/vms/vm/$I5" -name 'vda.qcow2')" \
  || fail "user backup's restore differs from the backup"
# ... and changes nothing.
before=$(find "$REPO" -printf '%m %g %s %T@ %p\n' | sort)
if as backup delete --repo "$REPO" --vm vm "$I5" >del.out 2>del.err; then
  fail "user backup deleted $I5"
fi
after=$(find "$REPO" -printf '%m %g %s %T@ %p\n' | sort)
[ "$before" = "$after" ] || fail "a refused delete by user backup changed the repository"

# Outside the group: nothing.
if as nobody list --repo "$REPO" >list.out 2>list.err; then
  fail "user nobody listed the shared repository: $(cat list.out)"
fi

# Private again.
hmp_write "$S2" vda 0x07 6M 64k
backup_ok vm "$S" i6.json --group ''
private_ok "after backup --group ''"
! grep -q '"group"' "$REPO/knib-repo.json" \
  || fail "knib-repo.json still names a group"

# A group that does not exist is refused, nothing changes.
before=$(find "$REPO" -printf '%m %g %s %T@ %p\n' | sort)
knib_run grp.out grp.err backup --qmp "$S" --vm vm --repo "$REPO" \
  --scratch "$SCRATCH" --group knib-no-such-group
[ "$rc" -ne 0 ] || fail "--group of a missing group succeeded"
grep -q "knib-no-such-group" grp.err || fail "unclear error: $(cat grp.err)"
after=$(find "$REPO" -printf '%m %g %s %T@ %p\n' | sort)
[ "$before" = "$after" ] || fail "a refused --group changed the repository"
quit_qemu vm
echo "repository permissions: private, shared with group backup, private again"
