#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-two-repos.sh: two repositories back up one running VM in turn;
# each owns only its own bitmaps (their names carry the repository's id),
# so each one's next backup stays incremental and restores exactly.  A
# repository made before ids (no "id" in knib-repo.json, bitmaps
# "knib-<backup id>") gets an id at its next backup (one that also shares
# it with a group), and its chain's old bitmap still serves that backup
# as an incremental.
# shellcheck disable=SC2154 # rc is set by knib_run
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/chain-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 16M
start_qemu vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
R1=$TMPDIR_TEST/r1
R2=$TMPDIR_TEST/r2

# into REPO N OUT [OPTION...]: a backup into repository REPO after guest
# writes (pattern N); its oracle is oracle-N-vda.qcow2.
into () {
  REPO=$1
  hmp_write "$S2" vda "0x$(($2 + 16))" "$(($2))M" 256k
  snap "$2" "$S2" "vda:$TMPDIR_TEST/a.qcow2"
  _out=$3
  shift 3
  backup_ok vm "$S" "$_out" "$@"
}

# bitmaps: the names of the VM's bitmaps on vda, one a line.
bitmaps () {
  "$KNIB" qmp --json "$S2" query-block | grep -o '"name":"knib-[^"]*"' \
    | sed 's/"name":"\(.*\)"/\1/' | sort
}

repo_id () {
  sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' "$1/knib-repo.json"
}

into "$R1" 1 a1.json
id1=$(json_top a1.json id)
rid1=$(repo_id "$R1")
[ -n "$rid1" ] || fail "a new repository has no id: $(cat "$R1/knib-repo.json")"
bitmaps | grep -qx "knib-$rid1-$id1" || fail "bitmaps: $(bitmaps)"
into "$R2" 2 b1.json
rid2=$(repo_id "$R2")
[ -n "$rid2" ] && [ "$rid2" != "$rid1" ] || fail "repository ids $rid1 and $rid2"
bitmaps | grep -qx "knib-$rid1-$id1" \
  || fail "the second repository's backup removed the first one's bitmap: $(bitmaps)"
grep -q "knib-$rid1" b1.json && fail "the second repository reported the first one's bitmap: $(cat b1.json)"
into "$R1" 3 a2.json
expect_kind a2.json incremental "$id1"
into "$R2" 4 b2.json
expect_kind b2.json incremental "$(json_top b1.json id)"
REPO=$R1 restore_check vm "$(json_top a2.json id)" vda oracle-3-vda.qcow2
REPO=$R2 restore_check vm "$(json_top b2.json id)" vda oracle-4-vda.qcow2

# Ending R2's chain removes R2's bitmaps only.
REPO=$R2 knib_ok end.out chain end --repo "$R2" --vm vm --qmp "$S"
bitmaps | grep -q "knib-$rid2" && fail "chain end left its bitmaps: $(bitmaps)"
bitmaps | grep -q "knib-$rid1" || fail "chain end of R2 removed R1's bitmaps: $(bitmaps)"

# R3, as a repository made before ids: its bitmap "knib-<id>", its
# manifest saying so, and no id in knib-repo.json.
R3=$TMPDIR_TEST/r3
into "$R3" 5 c1.json
c1=$(json_top c1.json id)
rid3=$(repo_id "$R3")
"$KNIB" qmp "$S2" block-dirty-bitmap-add node=disk0 "name=knib-$c1" persistent=true >/dev/null \
  || fail "cannot add bitmap knib-$c1"
"$KNIB" qmp --json "$S2" block-dirty-bitmap-merge node=disk0 "target=knib-$c1" \
  "bitmaps=[\"knib-$rid3-$c1\"]" >/dev/null 2>merge.err \
  || fail "cannot merge into knib-$c1: $(cat merge.err)"
"$KNIB" qmp "$S2" block-dirty-bitmap-remove node=disk0 "name=knib-$rid3-$c1" >/dev/null
sed -i "s/knib-$rid3-$c1/knib-$c1/" "$R3/vms/vm/$c1/manifest.json"
tr -d '\n' <"$R3/knib-repo.json" \
  | sed "s/, *\"id\": *\"$rid3\"//; s/\"id\": *\"$rid3\", *//" >old.json
mv old.json "$R3/knib-repo.json"
[ -z "$(repo_id "$R3")" ] || fail "cannot make R3 old: $(cat "$R3/knib-repo.json")"
# Shared with a group by the same backup: the group is recorded first,
# the id after, and the file keeps both.
into "$R3" 6 c2.json --group root
expect_kind c2.json incremental "$c1"
rid3=$(repo_id "$R3")
[ -n "$rid3" ] || fail "the old repository got no id: $(cat "$R3/knib-repo.json")"
grep -q '"group": "root"' "$R3/knib-repo.json" \
  || fail "the old repository is not shared: $(cat "$R3/knib-repo.json")"
bitmaps | grep -qx "knib-$rid3-$(json_top c2.json id)" || fail "bitmaps: $(bitmaps)"
REPO=$R3 restore_check vm "$(json_top c2.json id)" vda oracle-6-vda.qcow2
# R1 is still incremental after all that.
into "$R1" 7 a3.json
expect_kind a3.json incremental "$(json_top a2.json id)"
echo OK
