# SPDX-License-Identifier: Apache-2.0
# backup-functions.sh: helpers for the backup-*.sh tests (sourced after
# functions.sh).  A test backs up VMs started with start_qemu into $REPO
# with scratch files in $SCRATCH, and keeps the ids of the backups that
# succeeded in $TMPDIR_TEST/ids-VM (one a line, oldest first), which is
# what the repository must hold, nothing more.

REPO=$TMPDIR_TEST/repo
SCRATCH=$TMPDIR_TEST/scratch

# knib_run OUT ERR ARG...: run knib with ARG..., stdout to OUT, stderr to
# ERR; the exit status in $rc (never fails).
knib_run () {
  _out=$1 _err=$2
  shift 2
  rc=0
  "$KNIB" "$@" >"$_out" 2>"$_err" || rc=$?
}

# json_disk FILE DISK KEY: a string member of one disk of that summary.
json_disk () {
  sed -n "s/.*{\"name\":\"$2\",\\([^}]*\\)}.*/\\1/p" "$1" \
    | sed -n "s/.*\"$3\":\"\\([^\"]*\\)\".*/\\1/p"
}

# last_id VM: the VM's latest successful backup ("" when none).
last_id () {
  tail -n 1 "$TMPDIR_TEST/ids-$1" 2>/dev/null || :
}

# backup_ok VM SOCK OUT [OPTION...]: a backup that must succeed; its JSON
# summary in OUT, its id appended to ids-VM.
backup_ok () {
  _vm=$1 _sock=$2 _bout=$3
  shift 3
  knib_run "$_bout" "$_bout.err" backup --json --timeout 60 --qmp "$_sock" \
    --vm "$_vm" --repo "$REPO" --scratch "$SCRATCH" "$@"
  [ "$rc" -eq 0 ] || fail "backup of $_vm ($_bout) exited $rc: $(cat "$_bout.err")"
  _id=$(json_top "$_bout" id)
  [ -n "$_id" ] || fail "backup of $_vm printed no id: $(cat "$_bout")"
  [ -f "$REPO/vms/$_vm/$_id/manifest.json" ] \
    || fail "backup $_id of $_vm has no manifest"
  echo "$_id" >>"$TMPDIR_TEST/ids-$_vm"
}

# expect_kind OUT KIND [PARENT]: the backup of summary OUT is of KIND (and
# its parent is PARENT).
expect_kind () {
  _k=$(json_top "$1" kind)
  [ "$_k" = "$2" ] || fail "expected a $2 backup, got '$_k': $(cat "$1")"
  if [ $# -ge 3 ]; then
    _p=$(json_top "$1" parent)
    [ "$_p" = "$3" ] || fail "expected parent '$3', got '$_p': $(cat "$1")"
  fi
}

# devices SOCK: the ids of the VM's disk devices (vda, vdb...).
devices () {
  "$KNIB" qmp --json "$1" query-block \
    | grep -o '"qdev":"/machine/peripheral/[^/"]*' | sed 's|.*/||'
}

# oracle SOCK2 IMAGE OUT: a copy of the VM's disk IMAGE at this point in
# time, taken with the VM paused and its disks flushed (through the
# test's own monitor SOCK2).
oracle () {
  "$KNIB" qmp "$1" stop >/dev/null || fail "cannot pause the VM on $1"
  for _dev in $(devices "$1"); do
    "$KNIB" qmp "$1" human-monitor-command \
      "command-line=qemu-io -d $_dev/virtio-backend flush" >/dev/null
  done
  qemu-img convert -U -O qcow2 "$2" "$3" || fail "qemu-img convert $2"
  "$KNIB" qmp "$1" cont >/dev/null || fail "cannot resume the VM on $1"
}

# check_image VM ID DISK ORACLE: backup ID's image of DISK is a sound
# qcow2 whose chain reads exactly as ORACLE.
check_image () {
  _img=$REPO/vms/$1/$2/$3.qcow2
  [ -f "$_img" ] || fail "backup $2 of $1 has no image of $3"
  qemu-img check -q "$_img" >"$TMPDIR_TEST/check.txt" 2>&1 \
    || fail "qemu-img check $_img: $(cat "$TMPDIR_TEST/check.txt")"
  qemu-img compare -q "$4" "$_img" >"$TMPDIR_TEST/compare.txt" 2>&1 \
    || fail "backup $2 of $1, disk $3, differs from its oracle $4: $(qemu-img compare "$4" "$_img" 2>&1)"
}

# bitmaps SOCK: "DEVICE NAME recording|disabled" for every dirty bitmap.
bitmaps () {
  "$KNIB" qmp --json "$1" query-block >"$TMPDIR_TEST/query-block.json" \
    || fail "query-block on $1"
  sed 's/{"io-status"/\n&/g' "$TMPDIR_TEST/query-block.json" \
    | while read -r _line; do
      _dev=$(printf '%s\n' "$_line" \
        | sed -n 's|.*"qdev":"/machine/peripheral/\([^/"]*\).*|\1|p')
      [ -n "$_dev" ] || continue
      printf '%s\n' "$_line" | grep -o '"dirty-bitmaps":\[[^]]*\]' \
        | grep -o '{[^{}]*}' | while read -r _b; do
          _name=$(printf '%s\n' "$_b" | sed -n 's/.*"name":"\([^"]*\)".*/\1/p')
          case $_b in
            *'"recording":true'*) _rec=recording ;;
            *) _rec=disabled ;;
          esac
          case $_b in
            *'"inconsistent":true'*) _rec="$_rec inconsistent" ;;
          esac
          echo "$_dev $_name $_rec"
        done
    done
}

# check_qemu_clean SOCK VM DISK...: nothing of knib's is left in QEMU: no
# export, no fleecing node, no job; each DISK has one recording knib
# bitmap, that of VM's latest backup, and at most one other, disabled:
# the frozen bitmap of the backup before it (kept for deleting the latest).
check_qemu_clean () {
  _sock=$1 _vm=$2
  shift 2
  "$KNIB" qmp --json "$_sock" query-block-exports >"$TMPDIR_TEST/q.json"
  [ "$(cat "$TMPDIR_TEST/q.json")" = "[]" ] \
    || fail "$_vm: exports left in QEMU: $(cat "$TMPDIR_TEST/q.json")"
  "$KNIB" qmp --json "$_sock" query-named-block-nodes >"$TMPDIR_TEST/q.json"
  ! grep -q '"node-name":"knib-' "$TMPDIR_TEST/q.json" \
    || fail "$_vm: knib nodes left in QEMU: $(grep -o '"node-name":"knib-[^"]*"' "$TMPDIR_TEST/q.json")"
  "$KNIB" qmp --json "$_sock" query-jobs >"$TMPDIR_TEST/q.json"
  [ "$(cat "$TMPDIR_TEST/q.json")" = "[]" ] \
    || fail "$_vm: jobs left in QEMU: $(cat "$TMPDIR_TEST/q.json")"
  bitmaps "$_sock" >"$TMPDIR_TEST/bitmaps.txt"
  _want=knib-$(last_id "$_vm")
  # The latest backup before it that is not isolated (those have no bitmap).
  _prev=knib-$(sed '$d' "$TMPDIR_TEST/ids-$_vm" | tac | while read -r _i; do
    grep -q '"kind": *"isolated"' "$REPO/vms/$_vm/$_i/manifest.json" \
      2>/dev/null || { echo "$_i"; break; }
  done)
  for _dev in "$@"; do
    _rec=$(grep "^$_dev knib-.* recording" "$TMPDIR_TEST/bitmaps.txt" || :)
    [ "$_rec" = "$_dev $_want recording" ] \
      || fail "$_vm: disk $_dev should have one recording bitmap, $_want; it has: $(grep "^$_dev " "$TMPDIR_TEST/bitmaps.txt" | tr '\n' ';')"
    _other=$(grep "^$_dev knib-" "$TMPDIR_TEST/bitmaps.txt" \
      | grep -v -x "$_dev $_want recording" || :)
    [ -z "$_other" ] || [ "$_other" = "$_dev $_prev disabled" ] \
      || fail "$_vm: disk $_dev has other knib bitmaps than $_want (recording) and $_prev (frozen): $(grep "^$_dev " "$TMPDIR_TEST/bitmaps.txt" | tr '\n' ';')"
  done
}

# check_repo_clean VM DISK...: the VM's directory holds its successful
# backups (each a manifest and one image per DISK), vm.json and the lock,
# nothing else (no .partial, no temporary file); no scratch files are left.
check_repo_clean () {
  _vm=$1
  shift
  {
    echo "$REPO"
    echo "$REPO/knib-repo.json"
    echo "$REPO/vms"
    for _v in "$REPO"/vms/*; do
      echo "$_v"
    done
  } >"$TMPDIR_TEST/want.txt"
  {
    echo "$REPO/vms/$_vm/.lock"
    echo "$REPO/vms/$_vm/vm.json"
    while read -r _id; do
      echo "$REPO/vms/$_vm/$_id"
      echo "$REPO/vms/$_vm/$_id/manifest.json"
      for _dev in "$@"; do
        echo "$REPO/vms/$_vm/$_id/$_dev.qcow2"
      done
    done <"$TMPDIR_TEST/ids-$_vm"
  } >>"$TMPDIR_TEST/want.txt"
  find "$REPO" -path "$REPO/vms/*/*" ! -path "$REPO/vms/$_vm/*" -prune -o -print \
    | sort >"$TMPDIR_TEST/got.txt"
  sort -u -o "$TMPDIR_TEST/want.txt" "$TMPDIR_TEST/want.txt"
  cmp -s "$TMPDIR_TEST/want.txt" "$TMPDIR_TEST/got.txt" \
    || fail "$_vm: the repository holds other files than its backups (< expected, > found): $(diff "$TMPDIR_TEST/want.txt" "$TMPDIR_TEST/got.txt" | grep '^[<>]')"
  if [ -d "$SCRATCH" ]; then
    _left=$(find "$SCRATCH" -mindepth 1 -maxdepth 1 -name "$_vm.*")
    [ -z "$_left" ] || fail "$_vm: scratch files left: $_left"
  fi
}

# repo_state [DIR] OUT: every path under repository DIR (default $REPO),
# and every file's checksum but the lock files' (they record their
# holders), to compare before and after.
repo_state () {
  if [ $# -ge 2 ]; then
    _dir=$1
    shift
  else
    _dir=$REPO
  fi
  (cd "$_dir" && find . | sort && find . -type f ! -name .lock | sort \
    | xargs -r sha256sum) >"$1"
}

# proc_state PID: the state letter of a process ("" when it is gone).
proc_state () {
  sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null || :
}

# start_stopping STOP VM SOCK OUT [OPTION...]: a backup in the background
# that stops itself (SIGSTOP) at KNIB_TEST_STOP_AT=STOP; returns once it
# has.  Its pid is $KNIB_PID, stdout in OUT, stderr in OUT.err.  With
# FSIZE_LIMIT set, it runs under "ulimit -f $FSIZE_LIMIT".
start_stopping () {
  _stop=$1 _vm=$2 _sock=$3 _sout=$4
  shift 4
  require_test_hooks
  (
    [ -z "${FSIZE_LIMIT:-}" ] || ulimit -f "$FSIZE_LIMIT"
    KNIB_TEST_STOP_AT=$_stop
    export KNIB_TEST_STOP_AT
    exec "$KNIB" backup --json --timeout 60 --qmp "$_sock" --vm "$_vm" \
      --repo "$REPO" --scratch "$SCRATCH" "$@" >"$_sout" 2>"$_sout.err"
  ) &
  KNIB_PID=$!
  track_pid $KNIB_PID
  _i=0
  until [ "$(proc_state $KNIB_PID)" = T ]; do
    _i=$((_i + 1))
    if [ "$_i" -gt 300 ] || [ -z "$(proc_state $KNIB_PID)" ] \
      || [ "$(proc_state $KNIB_PID)" = Z ]; then
      fail "knib backup of $_vm did not stop at '$_stop': $(cat "$_sout.err")"
    fi
    sleep 0.1
  done
}

# kill_stopped: kill -9 the stopped knib and reap it.
kill_stopped () {
  kill -9 "$KNIB_PID"
  wait "$KNIB_PID" 2>/dev/null || :
}

# resume_stopped: let the stopped knib go on; its exit status in $rc.
resume_stopped () {
  kill -CONT "$KNIB_PID"
  rc=0
  wait "$KNIB_PID" || rc=$?
}

# expect_failure ERR WHAT TEXT...: a run that had to fail did (non-zero
# $rc) and said each TEXT on stderr (file ERR).
expect_failure () {
  _err=$1 _what=$2
  shift 2
  [ "$rc" -ne 0 ] || fail "$_what: knib exited 0; expected a failure"
  [ -s "$_err" ] || fail "$_what: knib failed ($rc) with nothing on stderr"
  for _text in "$@"; do
    grep -q -- "$_text" "$_err" \
      || fail "$_what: expected '$_text' in the error, got: $(cat "$_err")"
  done
}
