#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# chain-cadence.sh: the chain size decides full or incremental on a
# running VM: with 3, six backups are FULL, INC, INC, FULL, INC, INC;
# with 1 every backup is full; with 0 (unlimited) one full, then
# incrementals only.  Each backup restores to its oracle and verify
# passes on each VM.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/chain-functions.sh"
require qemu-system-x86_64 qemu-img

cd "$TMPDIR_TEST"

# cadence VM CHAIN-SIZE KIND...: one backup per KIND on a VM of its own,
# each checked against its oracle, each incremental's parent the one
# before it.
cadence () {
  vm=$1 size=$2
  shift 2
  qemu-img create -q -f qcow2 "$vm.qcow2" 32M
  start_qemu "$vm" "$TMPDIR_TEST/$vm.qcow2"
  n=0 prev=
  for kind in "$@"; do
    n=$((n + 1))
    hmp_write "$TMPDIR_TEST/$vm.qmp2" vda "0x$((n + 16))" "$((n * 1))M" 256k
    snap "$vm-$n" "$TMPDIR_TEST/$vm.qmp2" "vda:$TMPDIR_TEST/$vm.qcow2"
    backup_ok "$vm" "$TMPDIR_TEST/$vm.qmp" "$vm-$n.json" --chain-size "$size"
    if [ "$kind" = incremental ]; then
      expect_kind "$vm-$n.json" incremental "$prev"
    else
      expect_kind "$vm-$n.json" full
    fi
    prev=$(json_top "$vm-$n.json" id)
    echo "chain size $size: backup $n: $kind ($(json_top "$vm-$n.json" reason))"
    restore_check "$vm" "$prev" vda "oracle-$vm-$n-vda.qcow2"
  done
  verify_ok "$vm"
  check_qemu_clean "$TMPDIR_TEST/$vm.qmp2" "$vm" vda
  check_repo_clean "$vm" vda
}

cadence c3 3 full incremental incremental full incremental incremental
grep -q '"reason":"chain [0-9TZ-]* already holds 3 backups (chain size 3)"' c3-4.json \
  || fail "no chain size reason: $(cat c3-4.json)"
cadence c1 1 full full full
grep -q '"reason":"chain size 1: every backup is full"' c1-3.json \
  || fail "no chain size 1 reason: $(cat c1-3.json)"
cadence c0 0 full incremental incremental incremental incremental incremental
grep -q '"reason":"backup 6 of chain [0-9TZ-]* (chain size unlimited)"' c0-6.json \
  || fail "no unlimited reason: $(cat c0-6.json)"
show_list "cadences"
echo "chain-cadence: ok"
