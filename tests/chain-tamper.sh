#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# chain-tamper.sh: knib reads back only what it backed up.  Repository R
# holds F, I1, I2 of one disk; each case damages a copy of R: 512 random
# bytes in F (restore fails unless --no-verify), F truncated or I1's
# backing file rebased to /etc/passwd (merge and compress fail and
# rewrite nothing), F replaced by an image of the same size whose data
# lives in an outside file (restore refuses it even with --no-verify).
# shellcheck disable=SC2154 # bN and id are set through eval
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/chain-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 32M
start_qemu vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

take () {
  hmp_write "$S2" vda "0x$(($1 + 16))" "$(($1 * 4))M" 2M
  snap "$1" "$S2" "vda:$TMPDIR_TEST/a.qcow2"
  backup_ok vm "$S" "b$1.json" --chain-size 0
  eval "b$1=\$(json_top b$1.json id)"
}
take 1
take 2
take 3
kill "$QEMU_PID_vm"
cp -a "$REPO" good
F=$REPO/vms/vm/$b1/vda.qcow2
I1=$REPO/vms/vm/$b2/vda.qcow2

# fresh: R as it was backed up.
fresh () {
  rm -rf "$REPO"
  cp -a good "$REPO"
  rm -f r1.qcow2 r3.qcow2
}

# unchanged: merge or compress rewrote nothing (images and manifests).
unchanged () {
  diff -r good "$REPO" >/dev/null 2>&1 \
    || { diff -r good "$REPO" || :; fail "$1 changed the repository"; }
}

# fails WHAT TEXT ARG...: knib ARG... exits non-zero saying TEXT.
fails () {
  _what=$1 _text=$2
  shift 2
  knib_run out err "$@"
  expect_failure err "$_what" "$_text"
}

# The repository is sound to begin with: restore and merge work.
restore_check vm "$b3" vda oracle-3-vda.qcow2
knib_run out err restore --repo "$REPO" "$b1" --to r1.qcow2 --no-verify=yes
[ "$rc" -eq 2 ] || fail "restore --no-verify=yes exited $rc: $(cat err)"
[ ! -e r1.qcow2 ] || fail "restore --no-verify=yes wrote its target"

# 512 random bytes at 1 MiB of F: every restore through F fails.
fresh
head -c 512 /dev/urandom | dd of="$F" bs=512 seek=2048 conv=notrunc status=none
fails "restore of a damaged full" "changed after the backup" \
  restore --repo "$REPO" "$b1" --to r1.qcow2
[ ! -e r1.qcow2 ] || fail "a failed restore left its target"
# The hashes are checked once qemu-img has written: its file goes too.
! ls -a | grep -q '^\.knib-restore-' \
  || fail "a failed restore left its temporary file: $(ls -a | grep '^\.knib-restore-')"
fails "restore through a damaged full" "changed after the backup" \
  restore --repo "$REPO" "$b3" --to r3.qcow2
knib_run out err restore --repo "$REPO" "$b1" --to r1.qcow2 --no-verify
[ "$rc" -eq 0 ] || fail "restore --no-verify exited $rc: $(cat err)"
qemu-img compare -q oracle-1-vda.qcow2 r1.qcow2 \
  && fail "the damage did not reach the restored image: the test is void"
fails "merge over a damaged full" "changed after the backup" \
  merge --repo "$REPO" "$b3"
fresh
head -c 512 /dev/urandom | dd of="$I1" bs=512 seek=2048 conv=notrunc status=none
cp -a "$REPO" damaged
fails "compress of a damaged image" "changed after the backup" \
  compress --repo "$REPO" "$b2"
diff -r damaged "$REPO" >/dev/null || fail "compress changed a damaged backup"
rm -rf damaged

# F truncated: merge of I2 fails and rewrites nothing.
fresh
truncate -s "$(($(stat -c %s "$F") / 2))" "$F"
cp -a "$REPO" damaged
fails "merge over a truncated full" "$b1" merge --repo "$REPO" "$b3"
diff -r damaged "$REPO" >/dev/null || fail "merge changed a damaged chain"
rm -rf damaged

# I1's backing file rebased out of the repository.
fresh
qemu-img rebase -q -u -f qcow2 -b /etc/passwd -F raw "$I1"
cp -a "$REPO" damaged
fails "merge over a rebased incremental" "/etc/passwd" merge --repo "$REPO" "$b3"
diff -r damaged "$REPO" >/dev/null || fail "merge changed a damaged chain"
fails "restore through a rebased incremental" "/etc/passwd" \
  restore --repo "$REPO" "$b3" --to r3.qcow2 --no-verify
rm -rf damaged

# F replaced by an image of its size whose data is an outside file.
fresh
head -c 32M /dev/zero | tr '\0' '\252' >blob.raw
rm -f "$F"
qemu-img create -q -f qcow2 -o data_file="$TMPDIR_TEST/blob.raw",data_file_raw=on \
  "$F" 32M
fails "restore of an image with an external data file" "external file" \
  restore --repo "$REPO" "$b1" --to r1.qcow2 --no-verify
[ ! -e r1.qcow2 ] || fail "a refused restore left its target"
knib_run out err verify --repo "$REPO" vm
[ "$rc" -ne 0 ] || fail "verify passed an image with an external data file"
grep -q "external file" out || fail "verify said: $(cat out err)"

# Untouched, merge still works and the chain still restores.
fresh
knib_ok merge.out merge --repo "$REPO" "$b3"
restore_check vm "$b3" vda oracle-3-vda.qcow2
echo OK
