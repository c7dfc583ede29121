#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# restore-quick-guest.sh: quick restore of the real test guest from a
# backup taken while it wrote files: the guest boots from the overlay on
# the repository at once and finds every file complete while the
# consolidation pulls the data in behind it, and again after it.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/backup-functions.sh"
. "$(dirname "$0")/guest-functions.sh"
require qemu-img

cd "$TMPDIR_TEST"
guest_disk
GUEST_MODE=writer start_guest "$GUEST_DISK"
wait_for_guest_agent
wait_for_text "$GUEST_CONSOLE" "complete f-00000010.dat" 180
# Every file the console logged complete before the backup is in it.
logged=$(guest_logged_last)
backup_ok guest "$GUEST_QMP" b1.json
b1=$(last_id guest)
echo "backup $b1 taken after $logged files were complete"
guest_kill

knib_run out err restore --repo "$REPO" "$b1" --image "vda=$GUEST_DISK" --quick
[ "$rc" -eq 0 ] || fail "quick restore of the guest exited $rc: $(cat err)"
qemu-img info "$GUEST_DISK" | grep -q "backing file: .*/vms/guest/$b1/vda.qcow2" \
  || fail "the guest's disk does not read the backup: $(qemu-img info "$GUEST_DISK")"

# Boot at once; consolidate slowly behind it (1 MiB/s).
GUEST_NAME=restored GUEST_MODE=check start_guest "$GUEST_DISK"
"$KNIB" restore --repo "$REPO" --consolidate --qmp "$GUEST_QMP" --vm guest \
  --rate-limit 1 >c1.out 2>&1 || fail "consolidate: $(cat c1.out)"
grep -q "vda: running" c1.out || fail "consolidation did not start: $(cat c1.out)"
wait_for_guest_agent
wait_for_text "$GUEST_CONSOLE" "^KNIB-CHECK " 180
"$KNIB" restore --repo "$REPO" --status --qmp "$GUEST_QMP" --vm guest >st.out 2>&1 \
  || fail "status: $(cat st.out)"
echo "while the guest checked its files: $(cat st.out)"
guest_check || fail "the checker found damage in the quick-restored guest"
[ "$GUEST_CHECK_BAD" -eq 0 ] && [ "$GUEST_CHECK_MISSING" -eq 0 ] \
  || fail "bad or missing files in the quick-restored guest"
[ "$GUEST_CHECK_HIGHEST" -ge "$logged" ] \
  || fail "the writer logged $logged files complete before the backup, the restored guest has $GUEST_CHECK_HIGHEST"

# Let the consolidation finish at full speed; the guest still checks out.
"$KNIB" restore --repo "$REPO" --consolidate --qmp "$GUEST_QMP" --vm guest \
  --wait >c2.out 2>&1 || fail "consolidate --wait: $(cat c2.out)"
grep -q "vda: consolidated" c2.out || fail "not consolidated: $(cat c2.out)"
guest_check || fail "the checker found damage after the consolidation"
[ "$GUEST_CHECK_BAD" -eq 0 ] && [ "$GUEST_CHECK_MISSING" -eq 0 ] \
  || fail "bad or missing files after the consolidation"
guest_quit
! qemu-img info "$GUEST_DISK" | grep -q "backing file" \
  || fail "the guest's disk still reads the repository"
qemu-img check -q "$GUEST_DISK" || fail "qemu-img check of the consolidated disk"
echo ok
