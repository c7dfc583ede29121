#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# repo-hostile-files.sh: files put in the repository's place by someone
# else, and scratch directories knib and QEMU could read differently.  A
# lock file that is a symbolic link (or a hard link) to another file is
# refused and that file is left as it was; a FIFO in place of a manifest
# makes list and backup fail, not hang; a relative --scratch is the same
# directory for knib and QEMU; a --scratch QEMU cannot take (not UTF-8)
# is refused for what it is.  Every case runs; the failures are listed
# at the end.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
start_qemu vm a.qcow2
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

# A repository with a full F and incrementals I1, I2.
hmp_write "$S2" vda 0x01 0 2M
backup_ok vm "$S" f.json
hmp_write "$S2" vda 0x02 1M 64k
backup_ok vm "$S" i1.json
hmp_write "$S2" vda 0x03 2M 64k
backup_ok vm "$S" i2.json
I1=$(sed -n 2p ids-vm)
I2=$(sed -n 3p ids-vm)
VMDIR=$REPO/vms/vm

problems=0
problem () {
  echo "FAIL: $*" >&2
  problems=$((problems + 1))
}

# run WHAT ARG...: knib ARG..., killed after 20 s; exit status in $rc,
# stderr in run.err.
run () {
  _what=$1
  shift
  rc=0
  timeout -k 2 20 "$KNIB" "$@" >run.out 2>run.err || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    problem "$_what: knib $1 hung (killed after 20 s)"
    rc=124
  fi
}

# refused WHAT TEXT ARG...: knib ARG... fails in time, saying TEXT.
refused () {
  _what=$1 _text=$2
  shift 2
  run "$_what" "$@"
  if [ "$rc" -eq 124 ]; then
    return
  elif [ "$rc" -eq 0 ]; then
    problem "$_what: knib $1 exited 0: $(cat run.out)"
  elif ! grep -q -- "$_text" run.err; then
    problem "$_what: expected '$_text' in the error, got: $(cat run.err)"
  else
    echo "ok: $_what: exit $rc: $(cat run.err)"
  fi
}

# ---- The lock file ----
printf 'precious\n' >victim
mv "$VMDIR/.lock" lock.saved
ln -s "$TMPDIR_TEST/victim" "$VMDIR/.lock"
refused "lock is a symlink" "symbolic link" delete --repo "$REPO" --vm vm \
  --dry-run "$I2"
[ "$(cat victim)" = precious ] \
  || problem "lock is a symlink: its target changed: '$(cat victim)'"
rm "$VMDIR/.lock"
ln victim "$VMDIR/.lock"
refused "lock is a hard link" "hard-linked" delete --repo "$REPO" --vm vm \
  --dry-run "$I2"
[ "$(cat victim)" = precious ] \
  || problem "lock is a hard link: the other file changed: '$(cat victim)'"
rm "$VMDIR/.lock"
mv lock.saved "$VMDIR/.lock"
# A plain lock file: knib locks it and leaves its size alone.
printf '%2000s\n' "" >"$VMDIR/.lock"
run "plain lock" delete --repo "$REPO" --vm vm --dry-run "$I2"
[ "$rc" -eq 0 ] || problem "plain lock: delete --dry-run exited $rc: $(cat run.err)"
[ "$(stat -c %s "$VMDIR/.lock")" -eq 2001 ] \
  || problem "plain lock: knib truncated it to $(stat -c %s "$VMDIR/.lock") bytes"

# ---- A FIFO in place of a manifest ----
mv "$VMDIR/$I1/manifest.json" manifest.saved
mkfifo "$VMDIR/$I1/manifest.json"
refused "manifest is a FIFO: list" "not a regular file" list --repo "$REPO" vm
refused "manifest is a FIFO: backup" "not a regular file" backup --json \
  --timeout 60 --qmp "$S" --vm vm --repo "$REPO" --scratch "$SCRATCH"
rm "$VMDIR/$I1/manifest.json"
mv manifest.saved "$VMDIR/$I1/manifest.json"
check_repo_clean vm vda

# ---- --scratch ----
refused "--scratch not UTF-8" "not valid UTF-8" backup --json --timeout 60 \
  --qmp "$S" --vm vm --repo "$REPO" --scratch "$TMPDIR_TEST/$(printf 'bad\377')"
if grep -q "Cannot allocate memory" run.err; then
  problem "--scratch not UTF-8: reported as a lack of memory"
fi
# QEMU runs in $TMPDIR_TEST; knib here in another directory.
mkdir elsewhere
hmp_write "$S2" vda 0x04 3M 64k
oracle "$S2" a.qcow2 oa.qcow2
rc=0
(cd elsewhere && timeout -k 2 60 "$KNIB" backup --json --timeout 60 --qmp "$S" \
  --vm vm --repo "$REPO" --scratch rel >../rel.json 2>../rel.err) || rc=$?
if [ "$rc" -ne 0 ]; then
  problem "relative --scratch: knib backup exited $rc: $(cat rel.err)"
else
  json_top rel.json id >>ids-vm
  check_image vm "$(last_id vm)" vda oa.qcow2
  [ -d elsewhere/rel ] || problem "relative --scratch: not made in knib's directory"
  [ ! -e rel ] || problem "relative --scratch: QEMU used a directory of its own"
  echo "ok: relative --scratch"
fi
SCRATCH=$TMPDIR_TEST/elsewhere/rel
check_repo_clean vm vda
check_qemu_clean "$S" vm vda

[ "$problems" -eq 0 ] || fail "$problems case(s) failed"
echo "ok: every hostile file was refused"
