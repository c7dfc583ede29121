#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# verify-hash-kinds.sh: a backup records the segmented digest xxhsum computes (manifest version 2); a version 1 manifest's whole-file xxh3-128 still verifies, and catches a changed image.
. "$(dirname "$0")/functions.sh"
require qemu-img qemu-io xxhsum split awk
: "${REPO_BUILDER:=$(cd "$(dirname "$0")" && pwd)/unit/test-repo-builder}"

cd "$TMPDIR_TEST" || exit 1
R=$TMPDIR_TEST/repo

# A full backup of 6 MiB (two digest segments) with data in both.
id=$("$REPO_BUILDER" -d vda -s 6291456 -w vda:0x11:0:65536 -w vda:0x22:5242880:131072 "$R" web01) ||
  fail "backup"
img=$R/vms/web01/$id/vda.qcow2
manifest=$R/vms/web01/$id/manifest.json
grep -q '"version": 2' "$manifest" || fail "the manifest has no version 2: $(cat "$manifest")"
recorded=$(sed -n 's/.*"xxh3-128-segments": "\([0-9a-f]*\)".*/\1/p' "$manifest")
[ "$recorded" = "$(seg_digest "$img")" ] ||
  fail "the manifest records '$recorded', xxhsum's segmented digest is '$(seg_digest "$img")'"
"$KNIB" verify --repo "$R" "$id" > out 2>&1 || fail "verify: $(cat out)"
grep -q "1 ok, 0 with warnings, 0 with errors" out || fail "verify said: $(cat out)"

# The manifest as a knib before version 2 wrote it: no version, and the
# xxh3-128 of the whole image.
whole=$(xxhsum -H2 "$img" 2>/dev/null | cut -d' ' -f1)
sed -e '/"version": 2/d' -e 's/^  \],$/  ]/' \
  -e "s/\"xxh3-128-segments\": \"[0-9a-f]*\"/\"xxh3-128\": \"$whole\"/" \
  "$manifest" > manifest.v1
cp manifest.v1 "$manifest"
grep -q '"xxh3-128": "' "$manifest" && ! grep -q version "$manifest" ||
  fail "the manifest was not rewritten: $(cat "$manifest")"
"$KNIB" verify --repo "$R" "$id" > out 2>&1 || fail "verify of a version 1 manifest: $(cat out)"
grep -q "1 ok, 0 with warnings, 0 with errors" out || fail "verify said: $(cat out)"

# A changed data cluster: both kinds catch it, each naming itself.
qemu-io -f qcow2 -c "write -P 0x33 5242880 512" "$img" >/dev/null
"$KNIB" verify --repo "$R" "$id" > out 2>&1 && fail "verify passed a changed image: $(cat out)"
grep -q "has xxh3-128 [0-9a-f]* but the manifest records $whole" out ||
  fail "verify said: $(cat out)"
# Back to version 2.
sed -e 's/^  \]$/  ],\n  "version": 2/' \
  -e "s/\"xxh3-128\": \"$whole\"/\"xxh3-128-segments\": \"$recorded\"/" \
  manifest.v1 > "$manifest"
"$KNIB" verify --repo "$R" "$id" > out 2>&1 && fail "verify passed a changed image: $(cat out)"
grep -q "has xxh3-128-segments [0-9a-f]* but the manifest records $recorded" out ||
  fail "verify said: $(cat out)"
