#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# snapshot-guest-files.sh: the reference's "Interactions" rows 6-16 with
# the real test guest: files 1-5 (the guest's writer, paused after each
# step, so that "file k" is every file up to the one it last completed),
# backups b1-b3 and snapshots s1-s2 interleaved on the running guest;
# reverting to each snapshot and restoring each backup boots a guest whose
# checker finds exactly the files the reference lists, none damaged.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/guest-functions.sh"
require jq
guest_disk
cd "$TMPDIR_TEST"

K=$KNIB
R=$TMPDIR_TEST/repo
SCR=$TMPDIR_TEST/scratch
BOOTS=0

boot () {
  BOOTS=$((BOOTS + 1))
  GUEST_NAME=g$BOOTS GUEST_MODE=idle start_guest "$1"
  wait_for_guest_agent 600
  echo "  booted $1 in $GUEST_BOOT_SECONDS s"
}

# file K: let the writer complete at least one more file, pause it; L_K is
# the last file it completed.
file () {
  if [ "$1" -eq 1 ]; then
    guest_writer_start 4096
  else
    guest_writer_resume
  fi
  prev=$(eval echo "\${L_$(($1 - 1)):-0}")
  wait_for_text "$GUEST_CONSOLE" "complete f-$(printf %08d $((prev + 1))).dat" 180
  guest_writer_pause
  eval "L_$1=$((GUEST_WRITER_LAST + 0))"
  echo "  file $1: the guest's files up to f-$(printf %08d "$GUEST_WRITER_LAST").dat"
}

# expect_files K: the checker finds files 1..L_K intact and nothing else.
expect_files () {
  want=$(eval echo "\$L_$1")
  guest_check >check.out || fail "the checker failed: $(cat check.out)"
  [ "$GUEST_CHECK_BAD" -eq 0 ] && [ "$GUEST_CHECK_MISSING" -eq 0 ] \
    && [ "$GUEST_CHECK_HIGHEST" -eq "$want" ] \
    && [ "$GUEST_CHECK_COMPLETE" -eq "$want" ] \
    || fail "expected files up to $want: $(grep KNIB-CHECK check.out)"
  echo "  $(grep KNIB-CHECK check.out)"
}

backup () {
  "$K" backup --qmp "$GUEST_QMP" --vm vm --repo "$R" --scratch "$SCR" \
    --json > "$1.json" 2> "$1.err" || fail "backup $1: $(cat "$1.err")"
  echo "  backup $1: $(jq -r .kind "$1.json"), read $(jq -r '.disks[0].bytes_read' "$1.json") bytes"
}

snap () {
  "$K" snapshot "$@" --vm vm --repo "$R" > snap.out 2> snap.err \
    || fail "knib snapshot $*: $(cat snap.err)"
  sed 's/^/  /' snap.out
}

current () {
  "$K" snapshot list --vm vm --repo "$R" --json | jq -r .disks.vda.image
}

boot "$GUEST_DISK"

echo "row 6: file 1, backup b1"
file 1
backup b1
echo "row 7: file 2, snapshot s1"
file 2
snap create --qmp "$GUEST_QMP" --name s1 --quiesce --qga "$GUEST_QGA"
echo "row 8: file 3, snapshot s2"
file 3
snap create --qmp "$GUEST_QMP" --name s2
echo "row 9: file 4, backup b2"
file 4
backup b2
[ "$(jq -r .kind b2.json)" = incremental ] || fail "b2 is not incremental: $(cat b2.json)"
echo "row 10: file 5, backup b3"
file 5
backup b3
[ "$(jq -r .kind b3.json)" = incremental ] || fail "b3 is not incremental"

echo "row 11: stop the VM, revert to s1, start: files 1 and 2"
guest_quit
snap revert s1
boot "$(current)"
expect_files 2

echo "row 12: stop the VM, revert to s2, start: files 1, 2 and 3"
guest_quit
snap revert s2
boot "$(current)"
expect_files 3
# The next backup is an incremental of b3 all the same.
backup b4
[ "$(jq -r .kind b4.json)" = incremental ] || fail "b4 is not incremental: $(cat b4.json)"

echo "row 13: remove the snapshots"
snap delete --qmp "$GUEST_QMP" s1 s2
[ "$("$K" snapshot list --vm vm --repo "$R" --json | jq '.snapshots | length')" = 0 ] \
  || fail "snapshots left: $("$K" snapshot list --vm vm --repo "$R")"
qemu-img info -U --backing-chain "$(current)" | grep '^image:' | sed 's/^/  /'
guest_quit
qemu-img check -q "$(current)" || fail "qemu-img check of the disk"

restore_boot () {
  id=$(jq -r .id "$1.json")
  "$K" restore --repo "$R" --vm vm "$id" --to "$TMPDIR_TEST/$1.qcow2" -q \
    || fail "restore of $1"
  boot "$TMPDIR_TEST/$1.qcow2"
  expect_files "$2"
  guest_quit
}
echo "row 14: restore b1: file 1"
restore_boot b1 1
echo "row 15: restore b2: files 1-4"
restore_boot b2 4
echo "row 16: restore b3: files 1-5"
restore_boot b3 5
echo "(b4, after the revert to s2: files 1-3)"
restore_boot b4 3
echo "snapshot-guest-files: ok"
