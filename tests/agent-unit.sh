#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-unit.sh: knibd.service passes systemd-analyze verify without a
# warning (with ExecStart at the built knibd and the manual pages it
# names findable), and a unit with a mistake does not.
. "$(dirname "$0")/functions.sh"
require systemd-analyze man
. "$(dirname "$0")/agent-functions.sh"

unit=$(dirname "$KNIBD")/knibd.service
docs=$(cd "$(dirname "$0")/../docs" && pwd)
[ -f "$unit" ] || fail "no $unit: is the tree built?"
cd "$TMPDIR_TEST"
mkdir -p man/man1 man/man8
cp "$docs/knib.1" man/man1/
cp "$docs/knibd.8" man/man8/
grep -q '^Type=notify$' "$unit" || fail "knibd.service is not Type=notify"
grep -q '^KillMode=process$' "$unit" || fail "knibd.service would kill the running jobs"
sed "s|^ExecStart=[^ ]*|ExecStart=$KNIBD|" "$unit" >knibd.service
MANPATH=$TMPDIR_TEST/man systemd-analyze verify ./knibd.service >verify.out 2>&1 \
  || fail "systemd-analyze verify: $(cat verify.out)"
[ ! -s verify.out ] || fail "systemd-analyze verify warned: $(cat verify.out)"
sed 's/^Type=notify$/Type=notifyy/' knibd.service >bad.service
MANPATH=$TMPDIR_TEST/man systemd-analyze verify ./bad.service >verify.out 2>&1 || :
grep -q "notifyy" verify.out || fail "a bad unit passed: $(cat verify.out)"
echo "agent-unit: ok"
