# SPDX-License-Identifier: Apache-2.0
# agent-functions.sh: helpers for the agent-*.sh tests (sourced after
# functions.sh): a knibd in the foreground with private paths, and its
# client.

: "${KNIBD:=$(cd "$(dirname "$0")/.." && pwd)/src/agent/knibd}"
: "${AGENT_RAW:=$(cd "$(dirname "$0")" && pwd)/agent-raw}"
AGENT=$TMPDIR_TEST/knibd.sock
AGENT_STATE=$TMPDIR_TEST/knibd-state
AGENT_CONF=$TMPDIR_TEST/knib.conf
AGENT_LOG=$TMPDIR_TEST/knibd.log
AGENT_METRICS=$TMPDIR_TEST/knib.prom
KNIB_AGENT=$AGENT
export KNIB_AGENT
[ -f "$AGENT_CONF" ] || : >"$AGENT_CONF"

# start_knibd: knibd in the foreground (its pid in $KNIBD_PID), ready.
start_knibd () {
  rm -f "$AGENT"
  "$KNIBD" --foreground --socket "$AGENT" --state-dir "$AGENT_STATE" \
    --config "$AGENT_CONF" --knib "$KNIB" --metrics-file "$AGENT_METRICS" \
    >>"$AGENT_LOG" 2>&1 &
  KNIBD_PID=$!
  track_pid $KNIBD_PID
  wait_for_socket "$AGENT" 30
}

# stop_knibd: SIGTERM, and wait for it.
stop_knibd () {
  kill "$KNIBD_PID"
  wait "$KNIBD_PID" 2>/dev/null || :
}

# agent COMMAND [KEY=VALUE...]: one command to knibd through knib qmp
# (its return value on stdout, compact JSON); fails the test on error.
agent () {
  "$KNIB" qmp --json "$AGENT" "$@" || fail "knibd command $*: $(tail -5 "$AGENT_LOG")"
}

# agent_job COMMAND [KEY=VALUE...]: queue a job, print its id.
agent_job () {
  agent "$@" | sed -n 's/.*"id":\([0-9]*\).*/\1/p'
}

# job_field ID KEY: a scalar member of job ID (strings without quotes):
# its first occurrence, the job's own (a result may have a KEY too).
job_field () {
  agent query-jobs "id=$1" | sed -e 's/"request":{[^}]*}//' \
    | awk -v k="\"$2\":" '{ i = index($0, k); if (i == 0) exit
        s = substr($0, i + length(k)); sub(/^"/, "", s)
        print substr(s, 1, match(s, /[",}]/) - 1) }'
}

# job_wait_ok ID: wait for job ID, which must succeed.
job_wait_ok () {
  "$KNIB" job wait "$1" --timeout 600 >"$TMPDIR_TEST/wait.out" 2>&1 \
    || fail "job $1: $(cat "$TMPDIR_TEST/wait.out"); log: $("$KNIB" job log "$1" 2>&1 | tail -5)"
}

# wait_job_status ID STATUS [SECONDS]: until job ID has STATUS.
wait_job_status () {
  _n=0
  until [ "$(job_field "$1" status)" = "$2" ]; do
    _n=$((_n + 1))
    [ "$_n" -le $(( ${3:-120} * 5 )) ] \
      || fail "job $1 is not $2 but $(job_field "$1" status): $(tail -5 "$AGENT_LOG")"
    sleep 0.2
  done
}

# max_overlap TYPE: the most jobs of TYPE that ran at the same time (from
# their start and end times in query-jobs).
max_overlap () {
  agent query-jobs "type=$1" | sed 's/},{/}\n{/g' \
    | sed -n 's/.*"started":\([0-9.e+]*\),"finished":\([0-9.e+]*\).*/\1 \2/p' \
    | awk '{ printf "%.6f 1\n%.6f -1\n", $1, $2 }' | sort -k1,1n -k2,2n \
    | awk '{ n += $2; if (n > m) m = n } END { print m + 0 }'
}

# hook_env: $HOOK is the built knib-hook, run with its state, scratch,
# log and run directories under $TMPDIR_TEST and knibd's settings
# ($AGENT_CONF), so its notices reach the test's knibd.
hook_env () {
  HOOK=${HOOK_BIN:-$(cd "$(dirname "$0")/.." && pwd)/hooks/knib-hook}
  [ -x "$HOOK" ] || fail "$HOOK is not built"
  export KNIB_RUN_DIR=$TMPDIR_TEST
  export KNIB_STATE_DIR=$TMPDIR_TEST/hook-state
  export KNIB_SCRATCH_DIR=$TMPDIR_TEST/hook-scratch
  export KNIB_HOOK_LOG=$TMPDIR_TEST/hook.log
  export KNIB_CONFIG=$AGENT_CONF
}
