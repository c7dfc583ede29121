#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# chain-prune.sh: retention never leaves a kept backup without what it
# depends on.  Six backups with chain size 2 (F I F I F I): a dry run
# changes nothing; --keep-last 3 deletes b1 and b2 and keeps b3, which
# the kept b4 needs, as removed; --keep-last 1 --keep-daily 1 then
# leaves b5 (removed, needed by b6) and b6.  After each prune verify
# passes and every remaining backup restores to its oracle.
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

for n in 1 2 3 4 5 6; do
  hmp_write "$S2" vda "0x$((n + 16))" "$((n * 2))M" 512k
  snap "$n" "$S2" "vda:$TMPDIR_TEST/a.qcow2"
  backup_ok vm "$S" "b$n.json" --chain-size 2
  eval "b$n=\$(json_top b$n.json id)"
done
expect_kind b5.json full
expect_kind b6.json incremental "$b5"

# check N...: verify passes, each backup N restores (or, removed, reads)
# as its oracle.
check () {
  verify_ok vm
  for n in "$@"; do
    eval "id=\$b$n"
    case $(state vm "$id") in
      complete) restore_check vm "$id" vda "oracle-$n-vda.qcow2" ;;
      removed) check_image vm "$id" vda "oracle-$n-vda.qcow2" ;;
      gone) fail "backup b$n ($id) is gone" ;;
    esac
  done
}

repo_state before.txt
knib_ok dry.out prune --repo "$REPO" --vm vm --keep-last 3 --dry-run
grep -q "^(dry run) backup $b1: deleted" dry.out || fail "dry run said: $(cat dry.out)"
repo_state after.txt
cmp -s before.txt after.txt || fail "a dry run changed the repository"

knib_ok p1.out prune --repo "$REPO" --vm vm --keep-last 3
grep -qx "backup $b1: deleted" p1.out || fail "prune said: $(cat p1.out)"
grep -qx "backup $b2: deleted" p1.out || fail "prune said: $(cat p1.out)"
grep -qx "backup $b3: marked removed, its files kept: backup $b4 depends on it" p1.out \
  || fail "prune said: $(cat p1.out)"
expect_state vm gone "$b1" "$b2"
expect_state vm removed "$b3"
expect_state vm complete "$b4" "$b5" "$b6"
show_list "after prune --keep-last 3"
check 3 4 5 6

knib_ok p2.out prune --repo "$REPO" --vm vm --keep-last 1 --keep-daily 1
expect_state vm gone "$b1" "$b2" "$b3" "$b4"
expect_state vm removed "$b5"
expect_state vm complete "$b6"
show_list "after prune --keep-last 1 --keep-daily 1"
check 5 6

knib_ok p3.out prune --repo "$REPO" --vm vm --keep-last 1
grep -qx "vm vm: nothing to prune" p3.out || fail "prune said: $(cat p3.out)"
knib_run p4.out p4.err prune --repo "$REPO" --vm vm --keep-last 0
[ "$rc" -eq 2 ] || fail "prune --keep-last 0 exited $rc"
echo "chain-prune: ok"
