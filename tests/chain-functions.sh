# SPDX-License-Identifier: Apache-2.0
# chain-functions.sh: helpers for the chain-*.sh tests (sourced after
# functions.sh and backup-functions.sh).  A test backs up a VM started
# with start_qemu into $REPO; snap N takes the oracle of every disk at
# the point in time of the backup N that follows.
# shellcheck disable=SC2154 # rc is set by knib_run (backup-functions.sh)

# snap N SOCK2 DISK:IMAGE...: oracle-N-DISK.qcow2 for each disk.
snap () {
  _n=$1 _s2=$2
  shift 2
  "$KNIB" qmp "$_s2" stop >/dev/null || fail "cannot pause the VM on $_s2"
  for _d in "$@"; do
    qemu-img convert -U -O qcow2 "${_d#*:}" "$TMPDIR_TEST/oracle-$_n-${_d%%:*}.qcow2" \
      || fail "qemu-img convert ${_d#*:}"
  done
  "$KNIB" qmp "$_s2" cont >/dev/null || fail "cannot resume the VM on $_s2"
}

# restore_check VM ID DISK ORACLE: "knib restore" of the disk of backup
# ID equals ORACLE.
restore_check () {
  _to=$TMPDIR_TEST/restored-$2-$3.qcow2
  rm -f "$_to"
  knib_run "$TMPDIR_TEST/restore.out" "$TMPDIR_TEST/restore.err" restore \
    --repo "$REPO" --vm "$1" "$2" --disk "$3" --to "$_to"
  [ "$rc" -eq 0 ] || fail "restore of $2 ($3) exited $rc: $(cat "$TMPDIR_TEST/restore.err")"
  qemu-img compare -q "$4" "$_to" \
    || fail "restore of backup $2 ($3) differs from its oracle $4"
  rm -f "$_to"
}

# verify_ok VM: "knib verify" of all the VM's backups passes.
verify_ok () {
  knib_run "$TMPDIR_TEST/verify.out" "$TMPDIR_TEST/verify.err" verify \
    --repo "$REPO" "$1"
  [ "$rc" -eq 0 ] || fail "verify of $1 exited $rc: $(cat "$TMPDIR_TEST/verify.out" "$TMPDIR_TEST/verify.err")"
}

# knib_ok OUT ARG...: knib ARG... must succeed; stdout in OUT (and shown).
knib_ok () {
  _o=$1
  shift
  knib_run "$_o" "$_o.err" "$@"
  [ "$rc" -eq 0 ] || fail "knib $* exited $rc: $(cat "$_o.err")"
  sed 's/^/  | /' "$_o"
}

# show_list TITLE: "knib list --all" of the repository, in the test's log.
show_list () {
  echo "== $1"
  "$KNIB" list --repo "$REPO" --all | sed 's/^/  /'
}

# state VM ID: "complete", "removed" or "gone".
state () {
  if [ ! -f "$REPO/vms/$1/$2/manifest.json" ]; then
    echo gone
  elif grep -q '"state": *"removed"' "$REPO/vms/$1/$2/manifest.json"; then
    echo removed
  else
    echo complete
  fi
}

# expect_state VM STATE ID...: each backup is in that state; a removed
# one still has its images.
expect_state () {
  _v=$1 _st=$2
  shift 2
  for _id in "$@"; do
    _got=$(state "$_v" "$_id")
    [ "$_got" = "$_st" ] || fail "backup $_id of $_v is $_got, not $_st"
    if [ "$_st" = gone ] && [ -e "$REPO/vms/$_v/$_id" ]; then
      fail "backup $_id of $_v: its directory is still there"
    fi
  done
}

# disk_kind OUT DISK: the kind of one disk in a backup's JSON summary.
disk_kind () {
  json_disk "$1" "$2" kind
}
