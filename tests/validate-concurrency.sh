#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# validate-concurrency.sh: with validation-jobs-per-host = 1 a second validation waits for the first (or with --no-wait fails at once and says why); a delete refuses while a validation reads the backup.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/validate-functions.sh"
require qemu-system-x86_64 qemu-img pgrep

spinning_disk "$TMPDIR_TEST/spin.raw"
id=$(backup_image spin "$TMPDIR_TEST/spin.raw")

# The first validation holds the host's only slot for about 10 s (the
# checks below, one knib run each, take well under a second each).
"$KNIB" --config "$CONF" validate --repo "$REPO" "$id" --accel tcg \
  --memory 256 --scratch "$SCRATCH" --boot-timeout 10 >"$TMPDIR_TEST/a" 2>&1 &
a=$!
track_pid $a
qemu_started $a "$TMPDIR_TEST/a"

# --no-wait: fails at once, saying why.
rc=0
vknib validate --repo "$REPO" "$id" --accel tcg --memory 256 \
  --scratch "$SCRATCH" --no-wait >"$TMPDIR_TEST/nowait" 2>&1 || rc=$?
cat "$TMPDIR_TEST/nowait"
[ "$rc" -eq 1 ] || fail "validate --no-wait exited $rc"
grep -q "1 validation is already running on this host (validation-jobs-per-host = 1)" \
  "$TMPDIR_TEST/nowait" || fail "--no-wait does not say why"

# The pin: a delete of the backup refuses meanwhile and names the validation.
# (The validation holds the VM's lock briefly while QEMU starts.)
i=0
while :; do
  rc=0
  "$KNIB" delete --repo "$REPO" "$id" >"$TMPDIR_TEST/delete" 2>&1 || rc=$?
  grep -q "is being read by another knib" "$TMPDIR_TEST/delete" || break
  i=$((i + 1))
  [ "$i" -le 300 ] || fail "the VM stays locked: $(cat "$TMPDIR_TEST/delete")"
  sleep 0.2
done
[ "$rc" -ne 0 ] || fail "delete ran while a validation read the backup"
grep -q "is pinned: a validation (knib pid $a)" "$TMPDIR_TEST/delete" ||
  fail "delete: $(cat "$TMPDIR_TEST/delete")"

# Without --no-wait: it waits (no second QEMU), then runs.
"$KNIB" --config "$CONF" validate --repo "$REPO" "$id" --accel tcg \
  --memory 256 --scratch "$SCRATCH" --boot-timeout 5 >"$TMPDIR_TEST/b" 2>&1 &
b=$!
track_pid $b
wait_for_text "$TMPDIR_TEST/b" "waiting: 1 validation is already running" 60
while kill -0 $a 2>/dev/null; do
  n=$(pgrep -fc "qemu-system-x86_64.*$SCRATCH" || :)
  [ "$n" -le 1 ] || fail "two validations ran at once with the limit 1"
  sleep 0.2
done
rc=0
wait $a || rc=$?
[ "$rc" -eq 1 ] || fail "the first validation exited $rc: $(cat "$TMPDIR_TEST/a")"
grep -q "did not answer within 10 s" "$TMPDIR_TEST/a" || fail "a: $(cat "$TMPDIR_TEST/a")"
rc=0
wait $b || rc=$?
cat "$TMPDIR_TEST/b"
[ "$rc" -eq 1 ] || fail "the second validation exited $rc"
grep -q "did not answer within 5 s" "$TMPDIR_TEST/b" ||
  fail "the second validation did not run after the first"
no_leftovers
echo OK
