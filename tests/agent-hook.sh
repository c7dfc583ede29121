#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-hook.sh: the libvirt hook tells knibd of a domain's start and
# stop (a datagram; the hook never waits): each becomes a
# DOMAIN_STATE_CHANGE event.  Without a knibd the hook is as fast and as
# silent as ever; a notice that is malformed, or not from root, is
# ignored and knibd stays up.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/agent-functions.sh"

hook_env
cd "$TMPDIR_TEST"

domain_xml () {
  cat <<EOX
<domain type='qemu' id='3'>
  <name>$1</name>
  <uuid>6a1c0f52-1111-4c39-9a5e-2d1b7c1e6a02</uuid>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$TMPDIR_TEST/a.qcow2' index='1'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
EOX
}
hook () {
  domain_xml "$1" | "$HOOK" "$@" >hook.out 2>&1 || fail "the hook failed: $(cat hook.out)"
  [ ! -s hook.out ] || fail "the hook printed: $(cat hook.out)"
}

# No knibd: the hook does its work, says nothing.
hook web01 started begin -
[ -f "$KNIB_RUN_DIR/domains/web01.json" ] || fail "the hook recorded nothing"

start_knibd
[ -S "$TMPDIR_TEST/knibd.notify" ] || fail "knibd has no notice socket"
[ "$(stat -c %a "$TMPDIR_TEST/knibd.notify")" = 600 ] || fail "the notice socket is not 0600"
"$KNIB" qmp --json "$AGENT" --events --filter DOMAIN_STATE_CHANGE >events.json 2>&1 &
track_pid $!
# It listens once a notice's event reaches it (a fixed pause is too
# short under load).
until grep -q '"domain":"marker"' events.json; do
  "$AGENT_RAW" -d "$TMPDIR_TEST/knibd.notify" "running marker" || fail "agent-raw -d"
  sleep 0.2
done
hook web01 started begin -
hook web01 stopped end -
wait_for_text events.json '"domain":"web01","state":"stopped"' 30
grep -q '"data":{"domain":"web01","state":"running"}' events.json \
  || fail "no running event: $(cat events.json)"
wait_for_text "$AGENT_LOG" "domain 'web01' stopped" 10

# Notices that are no notices, and one from a user who is not root.
if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  chmod 0666 "$TMPDIR_TEST/knibd.notify"
  chmod o+rx "$TMPDIR_TEST"
  KNIB_RUN_DIR=$TMPDIR_TEST setpriv --reuid=nobody --regid=nogroup --clear-groups \
    "$HOOK" web02 started begin - <"/dev/null" >/dev/null 2>&1 || :
  domain_xml web02 | setpriv --reuid=nobody --regid=nogroup --clear-groups \
    "$HOOK" web02 started begin - >/dev/null 2>&1 || :
  wait_for_text "$AGENT_LOG" "ignored a notice from uid 65534" 10
  chmod 0600 "$TMPDIR_TEST/knibd.notify"
fi
"$AGENT_RAW" -d "$TMPDIR_TEST/knibd.notify" "running ../etc" "bogus web01" \
  "running" "running a b" || fail "agent-raw -d"
wait_for_text "$AGENT_LOG" "ignored a malformed notice" 10
# knibd reads the four datagrams in a row: wait for its last word.
agent query-version >/dev/null
[ "$(grep -c 'ignored a malformed notice' "$AGENT_LOG")" -eq 4 ] \
  || fail "malformed notices: $(grep -c 'ignored a malformed notice' "$AGENT_LOG") of 4 said"
! grep -q 'web02\|etc' events.json || fail "a bad notice became an event: $(cat events.json)"
agent query-version >/dev/null
stop_knibd
[ ! -e "$TMPDIR_TEST/knibd.notify" ] || fail "knibd left its notice socket"
echo "agent-hook: ok"
