#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-bad-input.sh: knib backup given bad input (no socket, a socket
# that is not QMP, an unknown disk, bad VM names, a foreign or newer
# repository, a corrupt manifest) fails at once with a clear message and
# a non-zero status, and changes nothing: not the repository, not QEMU,
# not the scratch directory.  The next good backup is an incremental that
# equals its oracle.  Every case runs; the failures are listed at the end.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img qemu-nbd nbdkit

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 64M
qemu-img create -q -f qcow2 b.qcow2 64M
start_qemu vm a.qcow2 b.qcow2
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

# A repository with a full and an incremental backup.
hmp_write "$S2" vda 0x01 0 2M
hmp_write "$S2" vdb 0x01 1M 2M
backup_ok vm "$S" b1.json
hmp_write "$S2" vda 0x02 1M 64k
hmp_write "$S2" vdb 0x02 8M 64k
backup_ok vm "$S" b2.json
expect_kind b2.json incremental "$(head -n 1 ids-vm)"

problems=0
problem () {
  echo "FAIL: $*" >&2
  problems=$((problems + 1))
}

# bad WHAT TEXTS DIR ARG...: "knib backup ARG..." must fail within 20 s,
# exit non-zero, and say every ';'-separated text of TEXTS on stderr;
# repository DIR, QEMU and the scratch directory stay as they were.
bad () {
  what=$1 texts=$2 dir=$3
  shift 3
  repo_state "$dir" before.txt
  rc=0
  timeout -k 2 20 "$KNIB" backup "$@" >bad.out 2>bad.err || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    problem "$what: knib backup hung (killed after 20 s): $(cat bad.err)"
  elif [ "$rc" -eq 0 ]; then
    problem "$what: knib backup exited 0: $(cat bad.out)"
  elif [ ! -s bad.err ]; then
    problem "$what: knib backup exited $rc with nothing on stderr"
  else
    ok=true
    old_ifs=$IFS
    IFS=';'
    for text in $texts; do
      grep -q -- "$text" bad.err || {
        problem "$what: expected '$text' in the error, got: $(cat bad.err)"
        ok=false
      }
    done
    IFS=$old_ifs
    ! $ok || echo "ok: $what: exit $rc: $(cat bad.err)"
  fi
  repo_state "$dir" after.txt
  cmp -s before.txt after.txt \
    || problem "$what: repository $dir changed: $(diff before.txt after.txt | grep '^[<>]')"
  (check_qemu_clean "$S2" vm vda vdb) 2>qemu.err \
    || problem "$what: QEMU changed: $(cat qemu.err)"
  if [ -d "$SCRATCH" ] && [ -n "$(ls -A "$SCRATCH")" ]; then
    problem "$what: scratch files left: $(ls -A "$SCRATCH")"
  fi
}

backup_args="--vm vm --repo $REPO --scratch $SCRATCH"

# ---- The QMP socket ----
# shellcheck disable=SC2086
bad "missing socket" "$TMPDIR_TEST/missing.sock;No such file or directory" \
  "$REPO" --qmp "$TMPDIR_TEST/missing.sock" $backup_args
# A VM the repository does not know yet: not even its directory appears.
bad "missing socket, new vm" "$TMPDIR_TEST/missing.sock" \
  "$REPO" --qmp "$TMPDIR_TEST/missing.sock" --vm newvm --repo "$REPO" \
  --scratch "$SCRATCH"
: >not-a-socket
# shellcheck disable=SC2086
bad "regular file as socket" "$TMPDIR_TEST/not-a-socket" \
  "$REPO" --qmp "$TMPDIR_TEST/not-a-socket" $backup_args
nbdkit --foreground --exit-with-parent -U "$TMPDIR_TEST/nbdkit.sock" null 1M \
  2>nbdkit.log &
track_pid $!
wait_for_socket "$TMPDIR_TEST/nbdkit.sock"
# shellcheck disable=SC2086
bad "nbdkit socket" "QMP" \
  "$REPO" --qmp "$TMPDIR_TEST/nbdkit.sock" $backup_args
qemu-nbd --socket="$TMPDIR_TEST/qemu-nbd.sock" --read-only --persistent \
  --shared=8 --format=qcow2 --fork --pid-file="$TMPDIR_TEST/qemu-nbd.pid" \
  "$REPO/vms/vm/$(head -n 1 ids-vm)/vda.qcow2" || fail "qemu-nbd did not start"
track_pid "$(cat "$TMPDIR_TEST/qemu-nbd.pid")"
# shellcheck disable=SC2086
bad "qemu-nbd socket" "QMP" \
  "$REPO" --qmp "$TMPDIR_TEST/qemu-nbd.sock" $backup_args

# ---- Disks and VM names ----
# shellcheck disable=SC2086
bad "unknown disk" "vdz;vda;vdb" "$REPO" --qmp "$S" $backup_args --disk vdz
# shellcheck disable=SC2086
bad "one unknown disk of two" "vdz;vda;vdb" "$REPO" --qmp "$S" $backup_args \
  --disk vda,vdz
# shellcheck disable=SC2086
bad "a disk named twice" "vda" "$REPO" --qmp "$S" $backup_args --disk vda,vda
# Many --disk options (once a crash: a fixed-size array).
many_empty="" many_names=""
i=0
while [ "$i" -lt 200 ]; do
  many_empty="$many_empty --disk ,"
  many_names="$many_names --disk d$i"
  i=$((i + 1))
done
# shellcheck disable=SC2086
bad "--disk , 200 times" "invalid disk name ''" "$REPO" --qmp "$S" \
  $backup_args $many_empty
# shellcheck disable=SC2086
bad "200 unknown disks" "no disk 'd0'" "$REPO" --qmp "$S" $backup_args $many_names
# shellcheck disable=SC2086
bad "an empty disk name in a list" "invalid disk name ''" "$REPO" --qmp "$S" \
  $backup_args --disk vda,,vdb
for name in a/b .. ../x ../vms/vm . -x ''; do
  bad "vm name '$name'" "invalid vm name" "$REPO" --qmp "$S" --vm "$name" \
    --repo "$REPO" --scratch "$SCRATCH"
done

# ---- Repositories ----
cp -a "$REPO" newer
sed 's/"version": *[0-9]*/"version": 99/' "$REPO/knib-repo.json" >newer/knib-repo.json
grep -q '"version": 99' newer/knib-repo.json || fail "cannot make a newer repository"
bad "repository version 99" "version 99;newer" newer --qmp "$S" --vm vm \
  --repo "$TMPDIR_TEST/newer" --scratch "$SCRATCH"
mkdir foreign
echo "not a backup" >foreign/notes.txt
bad "non-empty directory that is no repository" "foreign" foreign --qmp "$S" \
  --vm vm --repo "$TMPDIR_TEST/foreign" --scratch "$SCRATCH"
mkdir holder
echo "a file" >holder/plain-file
bad "repository is a file" "plain-file" holder --qmp "$S" --vm vm \
  --repo "$TMPDIR_TEST/holder/plain-file" --scratch "$SCRATCH"

# ---- A corrupt manifest (truncated JSON): the backup names the file ----
for id in $(cat ids-vm); do
  m=$REPO/vms/vm/$id/manifest.json
  cp "$m" manifest.save
  head -c 100 manifest.save >"$m"
  # shellcheck disable=SC2086
  bad "truncated manifest of $id" "$m" "$REPO" --qmp "$S" $backup_args
  cp manifest.save "$m"
done

# After all that, a backup goes on with the chain.
hmp_write "$S2" vda 0x03 3M 64k
hmp_write "$S2" vdb 0x03 9M 64k
oracle "$S2" a.qcow2 oa.qcow2
oracle "$S2" b.qcow2 ob.qcow2
prev=$(last_id vm)
backup_ok vm "$S" b3.json
expect_kind b3.json incremental "$prev"
check_image vm "$(last_id vm)" vda oa.qcow2
check_image vm "$(last_id vm)" vdb ob.qcow2
check_qemu_clean "$S2" vm vda vdb
check_repo_clean vm vda vdb
echo "ok: the next backup is an incremental equal to its oracle"

[ "$problems" -eq 0 ] || fail "$problems bad-input case(s) failed (see above)"
