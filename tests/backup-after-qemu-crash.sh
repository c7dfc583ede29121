#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# backup-after-qemu-crash.sh: a QEMU killed with kill -9 leaves knib's
# bitmap "in-use" in the qcow2 image, and QEMU or qemu-storage-daemon load
# it as inconsistent.  The next backup, live or offline, is full and says
# why (and removes the stale bitmap); "knib recover --image" removes it
# too.  Every backup equals its oracle.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/offline-functions.sh"
require qemu-system-x86_64 qemu-storage-daemon qemu-img qemu-io pgrep

cd "$TMPDIR_TEST"
VM=vm
A=$TMPDIR_TEST/a.qcow2
qemu-img create -q -f qcow2 "$A" 64M
OFFLINE="--vm $VM --image vda=$A"
LIVE="--vm $VM --qmp $TMPDIR_TEST/$VM.qmp"
WHY="is inconsistent (QEMU did not shut down cleanly)"

# 1: offline full; the bitmap is in the image.
img_write "$A" qcow2 0x11 0 2M
offline_oracle 1 "$A"
# shellcheck disable=SC2086
backup 1 $OFFLINE
check 1 vda "$A"

# QEMU runs on it, the guest writes, QEMU is killed.
start_vm "$VM" "qcow2:$A"
vm_write "$VM" vda 0x12 1M 64k
crash_vm
image_bitmaps "$A" | grep -q "^knib-$(top 1 id) in-use" \
  || fail "the bitmap is not left in use: $(image_bitmaps "$A")"

# 2: live, after a restart: full, because of the inconsistent bitmap.
start_vm "$VM" "qcow2:$A"
live_oracle "$VM" 2 "vda:$A"
# shellcheck disable=SC2086
backup 2 $LIVE
expect_kind 2 full
expect_disk 2 vda full "bitmap knib-$(top 1 id) of vda $WHY"
top 2 reason | grep -q "bitmap knib-$(top 1 id) of vda $WHY" \
  || fail "backup 2 does not say why it is full: $(top 2 reason)"
grep -q "removed inconsistent bitmap knib-$(top 1 id) of vda" b2.err \
  || fail "the stale bitmap was not removed: $(cat b2.err)"
check 2 vda "$A"
# 3: and the chain goes on from there.
vm_write "$VM" vda 0x13 3M 64k
live_oracle "$VM" 3 "vda:$A"
# shellcheck disable=SC2086
backup 3 $LIVE
expect_kind 3 incremental 2
check 3 vda "$A"

# A clean restart stores bitmap 3; backup 3b adds one that only the
# running QEMU has; QEMU is killed again: 4, offline, is full because
# the bitmap was lost with QEMU.
stop_vm "$VM"
start_vm "$VM" "qcow2:$A"
vm_write "$VM" vda 0x14 4M 64k
live_oracle "$VM" 3b "vda:$A"
# shellcheck disable=SC2086
backup 3b $LIVE
expect_kind 3b incremental 3
check 3b vda "$A"
vm_write "$VM" vda 0x15 6M 64k
crash_vm
offline_oracle 4 "$A"
# shellcheck disable=SC2086
backup 4 $OFFLINE
expect_kind 4 full
expect_disk 4 vda full "bitmap knib-$(top 3b id) of vda is missing: QEMU did not shut down cleanly (it left bitmap knib-$(top 3 id) inconsistent)"
grep -q "removed .*bitmap knib-$(top 3 id) of vda" b4.err \
  || fail "the stale bitmap was not removed: $(cat b4.err)"
check 4 vda "$A"
image_bitmaps "$A" | grep -q "in-use" && fail "stale bitmaps left: $(image_bitmaps "$A")"

# Killed once more: knib recover --image removes the stale bitmap.
start_vm "$VM" "qcow2:$A"
vm_write "$VM" vda 0x16 5M 64k
crash_vm
"$KNIB" recover --vm "$VM" --repo "$REPO" --scratch "$SCRATCH" \
  --image "vda=$A" >recover.out 2>recover.err \
  || fail "knib recover failed: $(cat recover.err)"
grep -q "removed inconsistent bitmap knib-$(top 4 id) of vda" recover.out \
  || fail "knib recover did not remove the stale bitmap: $(cat recover.out)"
[ -z "$(image_bitmaps "$A")" ] || fail "bitmaps left: $(image_bitmaps "$A")"
offline_oracle 5 "$A"
# shellcheck disable=SC2086
backup 5 $OFFLINE
expect_kind 5 full
expect_disk 5 vda full "bitmap knib-$(top 4 id) of vda is missing"
check 5 vda "$A"

no_daemon || fail "qemu-storage-daemon left running"
[ -z "$(ls -A "$SCRATCH")" ] || fail "scratch left: $(ls -A "$SCRATCH")"
echo "backup-after-qemu-crash: ok"
