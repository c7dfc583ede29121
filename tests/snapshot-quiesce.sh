#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# snapshot-quiesce.sh: knib snapshot create --quiesce --qga on a plain
# QEMU whose guest agent port has no agent behind it (no guest OS):
# --quiesce fails with a clear error and leaves no layer, node or record;
# --quiesce=try warns and takes the snapshot.  (snapshot-guest-files.sh
# freezes a real guest.)
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/snapshot-functions.sh"

qemu-img create -q -f qcow2 a.qcow2 32M
start_qemu_with_agent vm "$TMPDIR_TEST/a.qcow2"
S=$TMPDIR_TEST/vm.qmp
S2=$TMPDIR_TEST/vm.qmp2

if "$K" snapshot create --qmp "$S" --vm vm --repo "$R" --name s1 --quiesce \
     --qga "$QGA" --qga-timeout 2 > out 2> err; then
  fail "--quiesce without a guest agent succeeded"
fi
grep -q "quiesce: " err || fail "unclear error: $(cat err)"
[ ! -e a.s1.qcow2 ] || fail "a failed snapshot left its layer"
[ "$(top vda)" = "$TMPDIR_TEST/a.qcow2" ] || fail "vda runs on $(top vda)"
"$K" qmp --json "$S2" query-named-block-nodes | jq -r '.[]["node-name"]' \
  | grep -q knib-layer && fail "a failed snapshot left a node"
[ "$("$K" snapshot list --vm vm --repo "$R" --json | jq '.snapshots | length')" = 0 ] \
  || fail "a failed snapshot was recorded"

snap create --qmp "$S" --name s1 --quiesce=try --qga "$QGA" --qga-timeout 2
grep -q "warning: .*the snapshot is not quiesced" snap.err \
  || fail "no warning with --quiesce=try: $(cat snap.err)"
[ "$(top vda)" = "$TMPDIR_TEST/a.s1.qcow2" ] || fail "vda runs on $(top vda)"
echo "snapshot-quiesce: ok"
