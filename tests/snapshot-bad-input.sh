#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# snapshot-bad-input.sh: knib snapshot refuses what it cannot do, says
# why, and changes nothing: usage errors (exit 2), unknown and deleted
# snapshots, a name taken twice, a revert of a running VM, an --image
# that a running QEMU holds, a path name in --name.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/snapshot-functions.sh"

# usage STATUS TEXT ARG...: knib snapshot ARG... exits STATUS saying TEXT.
usage () {
  want=$1 text=$2
  shift 2
  rc=0
  "$K" snapshot "$@" > bad.out 2> bad.err || rc=$?
  [ "$rc" -eq "$want" ] || fail "knib snapshot $*: exit $rc, not $want: $(cat bad.err)"
  grep -q -- "$text" bad.err || fail "knib snapshot $*: unclear: $(cat bad.err)"
}

A=$TMPDIR_TEST/a.qcow2
B=$TMPDIR_TEST/b.qcow2
qemu-img create -q -f qcow2 "$A" 16M
qemu-img create -q -f qcow2 "$B" 16M

usage 2 "expected create, list, delete or revert"
usage 2 "unknown sub-command 'frob'" frob
usage 2 "--vm and --repo are required" list
usage 2 "is required" create --vm vm --repo "$R"
usage 2 "invalid snapshot name '../x'" create --vm vm --repo "$R" --image "vda=$A" --name ../x
usage 2 "expected DISK=PATH" create --vm vm --repo "$R" --image "$A"
usage 2 "give one of them" create --vm vm --repo "$R" --image "vda=$A" --qmp /nonexistent
usage 2 "--image is for 'create'" delete --vm vm --repo "$R" --image "vda=$A" s1
usage 2 "name the snapshots" delete --vm vm --repo "$R"
usage 2 "name one snapshot" revert --vm vm --repo "$R" s1 s2
usage 2 "the VM must be stopped" revert --vm vm --repo "$R" --qmp /x s1
usage 2 "expected --quiesce or --quiesce=try" create --vm vm --repo "$R" --image "vda=$A" --quiesce=maybe
usage 2 "give --qga SOCKET" create --vm vm --repo "$R" --image "vda=$A" --quiesce
usage 2 "--qga is for create --qmp SOCKET --quiesce" create --vm vm --repo "$R" --image "vda=$A" --qga /x --quiesce
usage 2 "unknown option" list --vm vm --repo "$R" --bogus
[ ! -e "$R" ] || fail "a refused command made the repository"

# A VM with one snapshot.
start_vm
snap create --qmp "$S" --name s1 >/dev/null
usage 1 "has a snapshot 's1' already" create --vm vm --repo "$R" --qmp "$S" --name s1
usage 1 "has no snapshot 'nope'" delete --vm vm --repo "$R" --qmp "$S" nope
usage 1 "has no snapshot 'nope'" revert --vm vm --repo "$R" nope
# A running VM: no revert, and its images are not for --image.
usage 1 "stop the VM first" revert --vm vm --repo "$R" s1
usage 1 "a QEMU holds" create --vm vm2 --repo "$R" --image "vda=$(top vda)" --name x
[ "$(ls "$TMPDIR_TEST"/a.*.qcow2)" = "$TMPDIR_TEST/a.s1.qcow2" ] \
  || fail "refusals left images: $(ls "$TMPDIR_TEST")"
expect_chain vda "a.s1.qcow2 < a.qcow2"
# A deleted snapshot is gone for good.
snap delete --qmp "$S" s1 >/dev/null
usage 1 "has no snapshot 's1'" delete --vm vm --repo "$R" --qmp "$S" s1
# list of a VM without snapshots: the heading only; --json an empty list.
"$K" snapshot list --vm other --repo "$R" --json | jq -e '.snapshots == []' >/dev/null \
  || fail "list --json of a VM without snapshots"
echo "snapshot-bad-input: ok"
