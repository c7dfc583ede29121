#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# repo-read.sh: knib list, info, verify and restore on a repository of real qcow2 chains.
. "$(dirname "$0")/functions.sh"
require qemu-img qemu-io
: "${REPO_BUILDER:=$(cd "$(dirname "$0")" && pwd)/unit/test-repo-builder}"

cd "$TMPDIR_TEST" || exit 1
R=$TMPDIR_TEST/repo

# expect STATUS COMMAND...: run COMMAND (output in out, err), which must
# exit with STATUS.
expect () {
  want=$1
  shift
  set +e
  "$@" >out 2>err
  got=$?
  set -e
  [ "$got" -eq "$want" ] ||
    fail "$* exited $got, not $want: $(cat out err)"
}

contains () {
  grep -qF -- "$2" "$1" || fail "$1 does not contain '$2': $(cat "$1")"
}

lacks () {
  if grep -qF -- "$2" "$1"; then
    fail "$1 contains '$2': $(cat "$1")"
  fi
}

no_temp_files () {
  for f in .knib-restore-* disks/.knib-restore-*; do
    if [ -e "$f" ]; then
      fail "temporary file left: $f"
    fi
  done
}

valid_json () {
  if command -v jq >/dev/null 2>&1; then
    jq -e . out >/dev/null || fail "not JSON: $(cat out)"
  fi
}

# Three backups of web01 (vda and vdb), full then incremental, and one of
# db01; ref.qcow2 gets every write to web01's vda independently.
qemu-img create -q -f qcow2 ref.qcow2 1M
backup () {
  vm=$1
  shift
  args=""
  for w in "$@"; do
    args="$args -w $w"
    case $w in
    vda:*)
      rest=${w#vda:}
      pat=${rest%%:*}
      rest=${rest#*:}
      if [ "$vm" = web01 ]; then
        qemu-io -f qcow2 -c "write -P $pat ${rest%%:*} ${rest#*:}" ref.qcow2 >/dev/null
      fi
      ;;
    esac
  done
  # shellcheck disable=SC2086
  "$REPO_BUILDER" -d vda -d vdb $clock $args "$R" "$vm" || fail "backup of $vm"
}
clock=""
id1=$(backup web01 vda:0x11:0:65536 vda:0x22:262144:131072 vdb:0x99:0:65536)
id2=$(backup web01 vda:0x33:65536:65536 vda:0x44:262144:65536)
id3=$(backup web01 vda:0x55:0:65536 vda:0x66:983040:65536)
# db01 at another time (2026-11-23T20:30:15Z), so that the ids differ.
clock="-t 1795465815"
iddb=$(backup db01 vda:0x77:0:65536)
clock=""
[ "$iddb" = 20261123T203015Z ] || fail "db01's backup is $iddb"

# ---- list ----
expect 0 "$KNIB" list --repo "$R"
contains out "$id1"
contains out "$id2"
contains out "$id3"
contains out "$iddb"
contains out "incremental"
head -1 out | grep -q "^VM  *ID  *KIND  *POS  *PARENT  *BRANCH  *CREATED  *SIZE  *DISKS  *VALIDATED$" ||
  fail "list heading: $(head -1 out)"
expect 0 "$KNIB" list --repo "$R" web01
lacks out db01
grep "$id3" out | grep -q "incremental  *3  *$id2 .*vda,vdb" ||
  fail "list row of $id3: $(cat out)"
expect 0 "$KNIB" list --repo "$R" --json --vm db01
valid_json
contains out "\"id\": \"$iddb\""
contains out '"problems": []'

# A deleted backup with children stays (state removed) but is hidden.
"$REPO_BUILDER" -R "$R" web01 "$id1" || fail "marking $id1 removed"
expect 0 "$KNIB" list --repo "$R" web01
grep -q "^web01  *$id1 " out && fail "$id1 is listed: $(cat out)"
contains out "$id2"
lacks out "removed"
expect 0 "$KNIB" list --repo "$R" web01 --all
contains out "$id1"
grep "$id1" out | grep -q "removed$" || fail "no removed state: $(cat out)"
expect 0 "$KNIB" list --repo "$R" --all --json
valid_json
contains out '"state": "removed"'

# ---- info ----
expect 0 "$KNIB" info --repo "$R" "$id3"
contains out "$id3"
contains out "parent           $id2"
contains out "backing file   ../$id2/vda.qcow2"
contains out "path           $R/vms/web01/$id3/vdb.qcow2"
contains out "virtual size   1.0 MiB (1048576 bytes)"
expect 0 "$KNIB" info --repo "$R" --vm web01 "$id1" --json
valid_json
contains out '"state": "removed"'
contains out '"backing-file": null'
contains out '"xxh3-128-segments": "'
expect 1 "$KNIB" info --repo "$R" 20000101T000000Z
contains err "no backup '20000101T000000Z'"
expect 2 "$KNIB" info --repo "$R"
# An id that two VMs have needs the VM.
"$REPO_BUILDER" -t 1795465815 "$R" app01 >/dev/null || fail "backup of app01"
expect 1 "$KNIB" info --repo "$R" "$iddb"
contains err "is ambiguous: vms 'app01' and 'db01' both have it; name the vm"
expect 0 "$KNIB" info --repo "$R" --vm db01 "$iddb"
contains out "vm               db01"

# ---- verify ----
expect 0 "$KNIB" verify --repo "$R" "$id3"
contains out "verified 6 images of 3 backups: 6 ok, 0 with warnings, 0 with errors"
[ "$(grep -c '^ok ' out)" -eq 6 ] || fail "verify lines: $(cat out)"
expect 0 "$KNIB" verify --repo "$R" web01 --json
valid_json
contains out '"success": true'
expect 0 "$KNIB" verify --repo "$R" --vm db01

# ---- restore ----
expect 0 "$KNIB" restore --repo "$R" "$id3" --disk vda --to top.qcow2
contains out "restored disk 'vda' of backup '$id3' of vm 'web01' to 'top.qcow2'"
qemu-img compare -q top.qcow2 ref.qcow2 || fail "restored vda differs"
qemu-img check -q top.qcow2 || fail "restored vda is not clean"
expect 0 "$KNIB" restore --repo "$R" "$id3" --disk vda --to top.raw --format raw
qemu-img compare -q -f raw -F qcow2 top.raw ref.qcow2 || fail "raw vda differs"

# An existing file is refused, and kept, unless --force.
echo precious > taken.qcow2
expect 1 "$KNIB" restore --repo "$R" "$id3" --disk vda --to taken.qcow2
contains err "'taken.qcow2' already exists"
[ "$(cat taken.qcow2)" = precious ] || fail "taken.qcow2 was changed"
expect 0 "$KNIB" restore --repo "$R" "$id3" --disk vda --to taken.qcow2 --force
qemu-img compare -q taken.qcow2 ref.qcow2 || fail "forced restore differs"

# Several disks go into a directory.
expect 0 "$KNIB" restore --repo "$R" --vm web01 "$id2" --to disks
if [ ! -f disks/vda.qcow2 ] || [ ! -f disks/vdb.qcow2 ]; then
  fail "disks: $(ls disks)"
fi
qemu-io -f qcow2 -c "read -P 0x99 0 64k" disks/vdb.qcow2 >/dev/null ||
  fail "restored vdb lacks its data"
expect 1 "$KNIB" restore --repo "$R" "$id1" --to deleted
contains err "was deleted"
expect 2 "$KNIB" restore --repo "$R" "$id3" --to x --format vmdk
expect 2 "$KNIB" restore --repo "$R" "$id3"
no_temp_files

# SIGTERM (like ^C) stops a restore and leaves nothing behind.
big=$("$REPO_BUILDER" -s 1073741824 -w vda:0x5a:0:536870912 "$R" big01) ||
  fail "backup of big01"
"$KNIB" restore --repo "$R" --vm big01 "$big" --to big.raw --format raw >out 2>err &
pid=$!
i=0
until [ -n "$(find . -maxdepth 1 -name '.knib-restore-big.raw.*')" ]; do
  i=$((i + 1))
  [ "$i" -le 200 ] || fail "no temporary file appeared: $(cat err)"
  sleep 0.05
done
kill -TERM "$pid"
set +e
wait "$pid"
status=$?
set -e
if [ "$status" -eq 0 ]; then
  echo "the restore ended before SIGTERM: interruption not checked" >&2
else
  [ "$status" -eq 143 ] || fail "interrupted restore exited $status: $(cat err)"
  contains err "the restore was interrupted"
  [ ! -e big.raw ] || fail "an interrupted restore left big.raw"
fi
no_temp_files
rm -rf "$R/vms/big01" big.raw

# ---- what verify and restore find when images are damaged ----
img2=$R/vms/web01/$id2/vda.qcow2
cp "$img2" saved.qcow2
size=$(stat -c %s "$img2")
printf 'XXXXXXXX' | dd of="$img2" bs=1 seek=$((size - 4096)) conv=notrunc status=none
expect 1 "$KNIB" verify --repo "$R" "$id3"
contains out "FAILED"
contains out "image '$img2' has xxh3-128"
contains out "5 ok, 0 with warnings, 1 with errors"

cp saved.qcow2 "$img2"
truncate -s $((size - 65536)) "$img2"
expect 1 "$KNIB" verify --repo "$R" web01
contains out "image '$img2'"
contains out "qemu-img check found"

rm "$img2"
expect 1 "$KNIB" verify --repo "$R" "$id3"
contains out "image '$img2' is missing"
expect 1 "$KNIB" restore --repo "$R" "$id3" --disk vda --to broken.qcow2
contains err "image '$img2' is missing"
[ ! -e broken.qcow2 ] || fail "a failed restore left broken.qcow2"
no_temp_files

cp saved.qcow2 "$img2"
expect 0 "$KNIB" verify --repo "$R" "$id3"
img3=$R/vms/web01/$id3/vda.qcow2
qemu-img rebase -u -f qcow2 -b "../$id1/vda.qcow2" -F qcow2 "$img3"
expect 1 "$KNIB" verify --repo "$R" "$id3"
contains out "image '$img3' has backing file '../$id1/vda.qcow2'; it must be '../$id2/vda.qcow2'"
expect 1 "$KNIB" restore --repo "$R" "$id3" --to wrong
contains err "it must be '../$id2/vda.qcow2'"
[ ! -e wrong ] || fail "a failed restore left wrong/"

# A corrupt manifest is a problem that list reports, listing the rest.
echo '{"broken": true' > "$R/vms/db01/$iddb/manifest.json"
expect 1 "$KNIB" list --repo "$R"
contains err "manifest '$R/vms/db01/$iddb/manifest.json'"
contains out "$id3"
expect 1 "$KNIB" verify --repo "$R" db01
contains out "manifest '$R/vms/db01/$iddb/manifest.json'"

# Help and usage.
for cmd in list info verify restore; do
  expect 0 "$KNIB" "$cmd" --help
  contains out "Usage: knib $cmd"
  expect 2 "$KNIB" "$cmd" --no-such-option
done
expect 2 "$KNIB" list
expect 2 "$KNIB" verify --repo "$R"
expect 1 "$KNIB" list --repo "$TMPDIR_TEST/nowhere"
