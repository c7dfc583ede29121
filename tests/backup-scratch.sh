#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-scratch.sh: the scratch root is knib's own.  knib refuses one
# that another user owns, that others may write, or that is a symbolic
# link (whose target keeps its mode); it makes a missing one 0700, each
# run's directory with mkdtemp, and QEMU gets the fleecing image as an
# open file (add-fd), never by a path another user could replace.  A
# scratch file system too small for the worst case (the guest overwrites
# every cluster during the backup) is refused before the backup starts.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 16M
start_qemu vm a.qcow2
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
hmp_write "$S2" vda 0x11 0 1M
oracle "$S2" a.qcow2 o1.qcow2

# refused SCRATCH WHAT TEXT...: a backup with --scratch SCRATCH fails,
# saying TEXT, and leaves no backup behind.
refused () {
  _s=$1 _what=$2
  shift 2
  knib_run out err backup --json --timeout 60 --qmp "$S" --vm vm \
    --repo "$REPO" --scratch "$_s"
  expect_failure err "$_what" "$_s" "$@"
}

# Another user's directory (mode 0700 even): refused, naming it.
mkdir other
chown 65534:65534 other
chmod 0700 other
refused "$TMPDIR_TEST/other" "a scratch root of user 65534" \
  "belongs to user 65534"

# knib's user's, but others may write.
mkdir open
chmod 0777 open
refused "$TMPDIR_TEST/open" "a world-writable scratch root" "lets others write"
chmod 0770 open
refused "$TMPDIR_TEST/open" "a group-writable scratch root" "lets others write"
[ "$(stat -c %a open)" = 770 ] || fail "knib changed the refused root's mode"

# A symbolic link to a directory: refused, and its target is untouched.
mkdir victim
chmod 0700 victim
ln -s "$TMPDIR_TEST/victim" link
refused "$TMPDIR_TEST/link" "a symbolic link as the scratch root" \
  "symbolic link"
[ "$(stat -c %a victim)" = 700 ] || fail "the link's target changed mode"
[ -z "$(ls -A victim)" ] || fail "knib wrote into the link's target: $(ls victim)"

# A missing root is made knib's, 0700.
[ ! -e "$SCRATCH" ] || fail "$SCRATCH exists before the first backup"
start_stopping copy vm "$S" b1.json
[ "$(stat -c '%a %u' "$SCRATCH")" = "700 $(id -u)" ] \
  || fail "scratch root made as $(stat -c '%a %u' "$SCRATCH")"
# The run's directory is "<vm>.<pid>.XXXXXX", private.
run_dir=$(ls -d "$SCRATCH"/vm."$KNIB_PID".?????? 2>/dev/null) \
  || fail "no run directory vm.$KNIB_PID.XXXXXX: $(ls "$SCRATCH")"
[ "$(stat -c %a "$run_dir")" = 700 ] || fail "run directory not 0700"
# QEMU opened the fleecing image from the descriptor knib passed, not
# from a path.
"$KNIB" qmp --json "$S2" query-named-block-nodes >nodes.json
grep -o '"node-name":"knib-fleece-vda"' nodes.json >/dev/null \
  || fail "no fleecing node while the backup copies: $(cat nodes.json)"
fleece=$(sed 's/},{/}\n{/g' nodes.json | grep '"node-name":"knib-fleece-vda"')
case $fleece in
*fleece-vda.qcow2*) fail "QEMU opened the fleecing image by path: $fleece" ;;
*/dev/fdset/[0-9]*) ;;
*) fail "the fleecing node's file is not an fd set: $fleece" ;;
esac
"$KNIB" qmp --json "$S2" query-fdsets >fdsets.json
grep -q knib fdsets.json && fail "knib left its fd set: $(cat fdsets.json)"
resume_stopped
[ "$rc" -eq 0 ] || fail "the backup exited $rc: $(cat b1.json.err)"
id=$(json_top b1.json id)
qemu-img compare o1.qcow2 "$REPO/vms/vm/$id/vda.qcow2" \
  || fail "the backup differs from the disk"
[ -z "$(ls -A "$SCRATCH")" ] || fail "scratch files left: $(ls "$SCRATCH")"

# A run directory of a killed run (old and new names) is recovered.
mkdir -m 0700 "$SCRATCH/vm.999999999" "$SCRATCH/vm.999999999.AbCdEf"
backup_ok vm "$S" b2.json
[ -z "$(ls -A "$SCRATCH")" ] || fail "killed runs' files left: $(ls "$SCRATCH")"

# A scratch on a 8 MiB tmpfs: the 16 MiB disk's worst case does not fit.
MNT=$TMPDIR_TEST/small
mkdir -m 0700 "$MNT"
mount -t tmpfs -o size=8m,mode=0700 knib-test "$MNT" \
  || { echo "SKIP: cannot mount a tmpfs" >&2; exit 77; }
trap '_st=$?; umount "$MNT" 2>/dev/null || :; (exit $_st); _cleanup' EXIT
hmp_write "$S2" vda 0x22 2M 1M
refused "$MNT" "a scratch too small for the worst case" \
  "not enough free space" "needs 1[0-9]\{7\}"
[ -z "$(ls -A "$MNT")" ] || fail "a refused backup left files: $(ls "$MNT")"
"$KNIB" qmp --json "$S2" query-block | grep -q '"io-status":"ok"' \
  || fail "the guest's disk is not ok: $("$KNIB" qmp --json "$S2" query-block)"
backup_ok vm "$S" b3.json
umount "$MNT"
echo OK
