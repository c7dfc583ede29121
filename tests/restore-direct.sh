#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# restore-direct.sh: a restore to a file writes it with O_DIRECT where the
# file system takes it, and through the page cache where it does not
# (tmpfs before Linux 6.6; the tmpfs is in a mount namespace of its own:
# needs root and unshare); -v says which; both images equal the disk.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/chain-functions.sh"
require qemu-system-x86_64 qemu-img

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: mounting a tmpfs needs root" >&2
  exit 77
fi
require unshare

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 32M
start_qemu vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
hmp_write "$S2" vda 0x11 1M 3M
backup_ok vm "$S" b1.json --full
hmp_write "$S2" vda 0x22 2M 1M
snap 2 "$S2" "vda:$TMPDIR_TEST/a.qcow2"
backup_ok vm "$S" b2.json
b2=$(json_top b2.json id)
quit_qemu vm

# restore_v DIR [tmpfs]: a restore of b2's chain to DIR (with tmpfs, a
# tmpfs mounted there), equal to the disk, whose -v output says what a
# probe of DIR with dd finds: O_DIRECT or not.
restore_v () {
  rm -f err probe
  [ "${2:-}" != tmpfs ] || mkdir "$1"
  rc=0
  REPO=$REPO unshare -m sh -c '
    [ "$3" != tmpfs ] || mount -t tmpfs -o size=64m knib-test "$1" || exit 99
    if dd if=/dev/zero of="$1/direct-probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
      echo "with O_DIRECT (-t none)" >probe
    else
      echo "writes through the page cache" >probe
    fi
    rm -f "$1/direct-probe"
    "$KNIB" -v restore --repo "$REPO" --vm vm "$2" --disk vda --to "$1/r.qcow2" 2>err || exit 1
    qemu-img check -q "$1/r.qcow2" || exit 2
    qemu-img compare -q oracle-2-vda.qcow2 "$1/r.qcow2" || exit 3' \
    sh "$1" "$b2" "${2:-}" || rc=$?
  case $rc in
  0) ;;
  1) fail "restore to $1 exited $rc: $(cat err)" ;;
  2) fail "qemu-img check of the restore to $1 ${2:-} failed" ;;
  3) fail "the restore to $1 ${2:-} differs from the disk" ;;
  *) fail "cannot mount a tmpfs on $1" ;;
  esac
  want=$(cat probe)
  echo "${2:-$1}: $want"
  grep -q "restore: .*$want" err \
    || fail "restore to $1: -v does not say '$want': $(grep 'restore:' err)"
  rm -f "$1/r.qcow2"
}
restore_v "$TMPDIR_TEST"
restore_v "$TMPDIR_TEST/tmpfs" tmpfs
echo PASS
