#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# agent-protocol.sh: knibd's socket under bad input: the greeting, QMP's
# capabilities negotiation, malformed JSON, an unknown command or
# argument, a huge message, a client gone mid-command, a VM name with
# '/', settings out of range, a peer that is not allowed.  Each gets an
# error reply (or the connection closed), knibd stays up and nothing is
# queued.  Then the client's bad input and a second knibd.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/agent-functions.sh"

cd "$TMPDIR_TEST"
start_knibd
[ "$(stat -c %a "$AGENT")" = 600 ] || fail "the socket is $(stat -c %a "$AGENT"), not 600"

# raw [-n] TEXT...: send each TEXT as one line, the replies in raw.out.
raw () {
  _n=""
  [ "$1" != -n ] || { _n=-n; shift; }
  printf '%s\n' "$@" | "$AGENT_RAW" $_n "$AGENT" >raw.out \
    || fail "agent-raw: $(cat raw.out)"
}
# reply N: line N of raw.out (1 is the greeting).
reply () {
  sed -n "$1p" raw.out
}
# expect_errors WANT...: replies 3, 4... (after the greeting and
# qmp_capabilities) are errors that say each WANT; $n is the last.
expect_errors () {
  n=2
  for want in "$@"; do
    n=$((n + 1))
    reply $n | grep -q '^{"error":{"class":"[A-Za-z]*","desc":"' \
      || fail "reply $n is not an error: $(reply $n)"
    reply $n | grep -q -- "$want" || fail "reply $n: expected '$want', got $(reply $n)"
  done
}
still_up () {
  agent query-version | grep -q '"package":"knibd ' \
    || fail "knibd does not answer after $1"
  kill -0 "$KNIBD_PID" 2>/dev/null || fail "knibd died after $1"
}
nothing_queued () {
  [ "$(agent query-jobs)" = "[]" ] || fail "$1 queued a job: $(agent query-jobs)"
}

# The greeting, then commands before and after qmp_capabilities.
raw -n '{"execute": "query-version", "id": 1}' \
  '{"execute": "qmp_capabilities"}' '{"execute": "query-version", "id": "two"}'
reply 1 | grep -q '^{"QMP":{"version":{"qemu":{"major":[0-9]*,"minor":[0-9]*,"micro":[0-9]*},"package":"knibd [^"]*"},"capabilities":\[\]}}$' \
  || fail "greeting: $(reply 1)"
reply 2 | grep -q '"class":"CommandNotFound","desc":"expecting capabilities negotiation' \
  || fail "a command before qmp_capabilities: $(reply 2)"
reply 2 | grep -q '"id":1' || fail "the id is not echoed: $(reply 2)"
[ "$(reply 3)" = '{"return":{}}' ] || fail "qmp_capabilities: $(reply 3)"
reply 4 | grep -q '"return":{"qemu":.*"id":"two"' || fail "query-version: $(reply 4)"

# Malformed JSON, a value that is not an object, an unknown command, an
# unexpected member, bad arguments: one error each, the session goes on.
raw '{"execute": "query-version"' '[1, 2]' 'garbage' \
  '{"execute": "frobnicate", "id": 7}' '{"execute": "query-version", "x": 1}' \
  '{"execute": "query-jobs", "arguments": [1]}' \
  '{"execute": "backup", "arguments": {"vm": "a/b", "repo": "/r", "qmp": "/q"}}' \
  '{"execute": "backup", "arguments": {"vm": "../etc", "repo": "/r", "qmp": "/q"}}' \
  '{"execute": "backup", "arguments": {"vm": "v", "repo": "/r", "qmp": "/q", "bogus": 1}}' \
  '{"execute": "backup", "arguments": {"vm": "v", "repo": "/r"}}' \
  '{"execute": "backup", "arguments": {"vm": "v", "qmp": "/q"}}' \
  '{"execute": "backup", "arguments": {"vm": 5, "repo": "/r", "qmp": "/q"}}' \
  '{"execute": "backup", "arguments": {"vm": "v", "repo": "/r", "qmp": "/q", "mode": "sideways"}}' \
  '{"execute": "delete", "arguments": {"vm": "v", "repo": "/r", "backups": ["x/y"]}}' \
  '{"execute": "query-jobs", "arguments": {"type": "bogus"}}' \
  '{"execute": "job-cancel", "arguments": {"id": 12345}}' \
  '{"execute": "query-version", "id": "last"}'
expect_errors 'Protocol error' 'Protocol error' 'Protocol error' \
  '"class":"CommandNotFound","desc":"the command frobnicate has not been found"},"id":7' \
  "message member 'x' is unexpected" "'arguments' must be an object" \
  "argument 'vm': invalid vm name 'a/b'" "argument 'vm': invalid vm name '../etc'" \
  "unknown argument 'bogus'" "a backup needs exactly one of 'qmp', 'domain', 'image'" \
  "missing argument 'repo'" "argument 'vm' must be a string" \
  "argument 'mode': 'sideways' is not a valid choice" \
  "argument 'backups': invalid backups name 'x/y'" "unknown job type 'bogus'" \
  "job 12345 is not queued or running"
n=$((n + 1))
reply $n | grep -q '"return":{"qemu".*"id":"last"' \
  || fail "the session did not go on after the errors: $(reply $n)"
still_up "bad commands"
nothing_queued "bad commands"

# validate (a boot validation), verify and merge: their bad arguments.
raw '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r"}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b/c"}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "boot-timeout": 0}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "expect-exit": 256, "command": ["true"]}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "memory": 8}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "cpus": 256}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "accel": "hvf"}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "no-screenshot": 1}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "command": []}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "command": ["", "x"]}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "command": [1]}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "expect-output": "x"}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "expect-exit": 0, "expect-output": "x", "command": ["true"]}}' \
  '{"execute": "validate", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "keep": true}}' \
  '{"execute": "verify", "arguments": {"vm": "v", "repo": "/r", "boot-timeout": 5}}' \
  '{"execute": "verify", "arguments": {"vm": "v/w", "repo": "/r"}}' \
  '{"execute": "merge", "arguments": {"vm": "v", "repo": "/r"}}' \
  '{"execute": "merge", "arguments": {"vm": "v", "repo": "/r", "backup": "../x"}}' \
  '{"execute": "merge", "arguments": {"vm": "v", "repo": "/r", "backup": "b", "compress": "zstd"}}'
expect_errors "missing argument 'backup'" "argument 'backup': invalid backup name 'b/c'" \
  "argument 'boot-timeout' must be an integer from 1 to 86400" \
  "argument 'expect-exit' must be an integer from 0 to 255" \
  "argument 'memory' must be an integer from 16 to" \
  "argument 'cpus' must be an integer from 1 to 255" \
  "argument 'accel': 'hvf' is not a valid choice" \
  "argument 'no-screenshot' must be true or false" \
  "argument 'command' must be a non-empty array" \
  "argument 'command' must hold strings" "argument 'command' must hold strings" \
  "'expect-exit' and 'expect-output' check a 'command'" \
  "give 'expect-exit' or 'expect-output', not both" "unknown argument 'keep'" \
  "unknown argument 'boot-timeout'" "argument 'vm': invalid vm name 'v/w'" \
  "missing argument 'backup'" "argument 'backup': invalid backup name '../x'" \
  "unknown argument 'compress'"
still_up "bad validate, verify and merge arguments"
nothing_queued "bad validate, verify and merge arguments"

# A huge message: an error, then the connection is closed.
head -c 200000 /dev/zero | tr '\0' x | "$AGENT_RAW" "$AGENT" >raw.out
reply 3 | grep -q '"desc":"message longer than 65536 bytes' \
  || fail "huge message: $(cat raw.out | cut -c1-200)"
[ "$(wc -l <raw.out)" -eq 3 ] || fail "more replies after a huge message: $(wc -l <raw.out)"
still_up "a huge message"

# A client gone in the middle of a command, and one gone before reading
# its reply.
printf '{"execute": "backup", "arguments": {"vm": "v", "repo": "/r", "q' \
  | "$AGENT_RAW" "$AGENT" >raw.out
still_up "a client gone mid-command"
nothing_queued "a client gone mid-command"

# Settings: out of range, unknown, wrong type: refused, all or nothing.
before=$(agent query-settings)
for bad in 'compression-jobs-per-host=-2' 'compression-jobs-per-host=1025' \
  'compression-retries=-1' 'compression-min-free=-1' 'compression-jobs=maybe' \
  'backup-jobs-per-host=5000' 'no-such-setting=1' 'timeout=0' \
  'compression-threads=4 compression-rate-limit=-5'; do
  # shellcheck disable=SC2086
  if "$KNIB" qmp "$AGENT" set-settings $bad >set.out 2>&1; then
    fail "set-settings $bad was accepted"
  fi
  grep -q "out of range\|unknown setting\|not true or false" set.out \
    || fail "set-settings $bad: $(cat set.out)"
done
# Per-VM policies (vm.NAME.compress): a bad value or VM name refused.
# (JSON arguments: knib qmp reads dotted KEY=VALUE words as nested
# objects.)
for bad in '"vm.web01.compress": "sometimes"' '"vm.a/b.compress": "deferred"' \
  '"vm.web01.compress": 1' '"vm..compress": "none"' '"vm.web01.colour": "red"'; do
  if "$KNIB" qmp "$AGENT" set-settings "{$bad}" >set.out 2>&1; then
    fail "set-settings $bad was accepted"
  fi
  grep -q "is not one of none, zstd, zlib, deferred, default\|invalid vm name\|unknown setting" set.out \
    || fail "set-settings $bad: $(cat set.out)"
done
[ "$(agent query-settings)" = "$before" ] \
  || fail "refused settings changed something: $(agent query-settings)"
agent set-settings compression-jobs-per-host=-1 compression-jobs=false >/dev/null
agent query-settings | grep -q '"compression-jobs":false,"compression-jobs-per-host":-1' \
  || fail "set-settings did not apply: $(agent query-settings)"

# A peer that is neither root nor in agent-group: refused by SO_PEERCRED
# even when the socket's mode would let it in.
if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  chmod 0666 "$AGENT"
  chmod o+rx "$TMPDIR_TEST"
  printf '{"execute": "query-jobs"}\n' \
    | setpriv --reuid=nobody --regid=nogroup --clear-groups "$AGENT_RAW" "$AGENT" >raw.out 2>&1 || :
  grep -q '"desc":"permission denied' raw.out || fail "a peer that is not root: $(cat raw.out)"
  ! grep -q '"return"' raw.out || fail "a peer that is not root got an answer: $(cat raw.out)"
  chmod 0600 "$AGENT"
  still_up "a refused peer"
fi

# Settings persist over a restart; a second knibd on the same state
# directory refuses to start.
if "$KNIBD" --foreground --socket "$TMPDIR_TEST/other.sock" --state-dir "$AGENT_STATE" \
  --config "$AGENT_CONF" >second.err 2>&1; then
  fail "a second knibd started"
fi
grep -q "another knibd runs" second.err || fail "second knibd: $(cat second.err)"
still_up "a second knibd"
stop_knibd
start_knibd
agent query-settings | grep -q '"compression-jobs":false,"compression-jobs-per-host":-1' \
  || fail "settings lost over a restart: $(agent query-settings)"

# knibd's and the client's own bad input.
rc=0; "$KNIBD" --bogus >bad.err 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "knibd --bogus exited $rc"
echo 'compression-jobs-per-host = 99999' >bad.conf
rc=0; "$KNIBD" --foreground --config bad.conf --state-dir "$TMPDIR_TEST/s2" \
  --socket "$TMPDIR_TEST/s2.sock" >bad.err 2>&1 || rc=$?
{ [ "$rc" -eq 1 ] && grep -q "line 1" bad.err; } || fail "knibd with a bad knib.conf: $rc $(cat bad.err)"
printf '# policies\nvm.web01.compress = deferred\nvm.db.compress = later\n' >bad.conf
rc=0; "$KNIBD" --foreground --config bad.conf --state-dir "$TMPDIR_TEST/s2" \
  --socket "$TMPDIR_TEST/s2.sock" >bad.err 2>&1 || rc=$?
{ [ "$rc" -eq 1 ] && grep -q "bad.conf' line 3: vm.db.compress: 'later' is not one of none, zstd, zlib, deferred, default" bad.err; } \
  || fail "knibd with a bad VM policy: $rc $(cat bad.err)"
for args in "job frob 1" "job wait abc" "job cancel" "jobs extra" "agent frob" \
  "jobs --timeout" "job wait 1 --vm a/b" "jobs --vm a/b" \
  "validate --agent --repo /r --vm v" "validate --agent --repo /r --vm v b --keep" \
  "validate --agent --repo /r --vm v b --memory x" "merge --agent --repo /r --vm v b c" \
  "merge --agent --repo /r --vm v b --dry-run" "verify --agent --repo /r --boot-timeout 5 v" \
  "export --agent --repo /r b"; do
  rc=0
  # shellcheck disable=SC2086
  "$KNIB" $args >bad.out 2>&1 || rc=$?
  [ "$rc" -eq 2 ] || fail "knib $args exited $rc: $(cat bad.out)"
done
rc=0; "$KNIB" jobs --agent "$TMPDIR_TEST/none.sock" >bad.out 2>&1 || rc=$?
{ [ "$rc" -eq 1 ] && grep -q "is knibd running" bad.out; } \
  || fail "knib jobs without knibd: $rc $(cat bad.out)"
rc=0; "$KNIB" job wait 999 >bad.out 2>&1 || rc=$?
{ [ "$rc" -eq 1 ] && grep -q "knibd has no job 999" bad.out; } \
  || fail "knib job wait of no job: $rc $(cat bad.out)"
"$KNIB" agent status | grep -q "^knibd .*, pid $KNIBD_PID" \
  || fail "knib agent status: $("$KNIB" agent status 2>&1)"
stop_knibd
echo "agent-protocol: ok"
