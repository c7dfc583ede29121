#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# chain-delete-tip.sh: deleting the chain's latest backup hands its
# tracking back to the backup before it: the next backup is an
# incremental of that one and holds every write since it (those before
# the delete and those after).  When the deleted backup's bitmap is lost
# as well, nothing vouches for those writes: the next backup is full,
# saying why.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/chain-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"
qemu-img create -q -f qcow2 a.qcow2 32M
start_qemu vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2
D=vda:$TMPDIR_TEST/a.qcow2

hmp_write "$S2" vda 0x11 0 2M
backup_ok vm "$S" b1.json
hmp_write "$S2" vda 0x12 2M 256k
backup_ok vm "$S" b2.json
b2=$(json_top b2.json id)
hmp_write "$S2" vda 0x13 4M 256k
backup_ok vm "$S" b3.json
b3=$(json_top b3.json id)

knib_ok del.out delete --repo "$REPO" "$b3"
grep -q "^backup $b3: deleted; it was the chain's latest backup: the next backup continues the chain from $b2" del.out \
  || fail "delete said: $(cat del.out)"
hmp_write "$S2" vda 0x14 6M 64k
snap 4 "$S2" "$D"
backup_ok vm "$S" b4.json
b4=$(json_top b4.json id)
expect_kind b4.json incremental "$b2"
grep -q "merged bitmap knib-$b3 of vda into knib-$b2" b4.json \
  || fail "b3's tracking was not handed back: $(cat b4.json)"
# The writes since b2: b3's 256k and the 64k after the delete.
tr '{' '\n' <b4.json | grep '"name":"vda"' | grep -q '"bytes_read":327680' \
  || fail "b4 did not read exactly the writes since b2: $(cat b4.json)"
restore_check vm "$b4" vda oracle-4-vda.qcow2
bitmaps "$S2" >bitmaps.txt
[ "$(grep knib- bitmaps.txt | sort)" = "$(printf 'vda knib-%s disabled\nvda knib-%s recording' "$b2" "$b4")" ] \
  || fail "bitmaps: $(cat bitmaps.txt)"

# Delete b4 and lose its bitmap: b2's frozen bitmap cannot cover the
# writes since b4, so it goes too and the next backup is full.
knib_ok del4.out delete --repo "$REPO" "$b4"
"$KNIB" qmp "$S2" block-dirty-bitmap-remove node=disk0 "name=knib-$b4" >/dev/null \
  || fail "block-dirty-bitmap-remove"
hmp_write "$S2" vda 0x15 8M 64k
snap 5 "$S2" "$D"
backup_ok vm "$S" b5.json
b5=$(json_top b5.json id)
expect_kind b5.json full
grep -q "removed bitmap knib-$b2 of vda: it was frozen and no newer bitmap tracked the writes since" b5.json \
  || fail "b2's frozen bitmap was trusted: $(cat b5.json)"
[ "$(json_disk b5.json vda reason)" = "bitmap knib-$b2 of vda is not recording" ] \
  || fail "vda: wrong reason: $(cat b5.json)"
restore_check vm "$b5" vda oracle-5-vda.qcow2
verify_ok vm
show_list "after deleting the tip twice"
echo "chain-delete-tip: ok"
