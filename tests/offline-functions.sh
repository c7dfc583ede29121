# SPDX-License-Identifier: Apache-2.0
# offline-functions.sh: helpers for the backup-offline-*.sh tests (sourced
# after functions.sh): VMs that stop and start again on the same images,
# backups through --qmp or --image, and their oracles.

REPO=$TMPDIR_TEST/repo
SCRATCH=$TMPDIR_TEST/scratch

# start_vm NAME FORMAT:IMAGE...: a VM with no guest OS on these images
# (node names disk0, disk1, ... on devices vda, vdb, ...), its QMP
# sockets $TMPDIR_TEST/NAME.qmp (for knib) and NAME.qmp2 (for the test),
# its pid in $VM_PID.  The sockets of an earlier run of NAME go first.
start_vm () {
  _name=$1
  shift
  rm -f "$TMPDIR_TEST/$_name.qmp" "$TMPDIR_TEST/$_name.qmp2"
  set -- "$@"
  _args=""
  _n=0
  for _spec in "$@"; do
    _dev=vd$(printf "\\$(printf '%03o' $((97 + _n)))")
    _args="$_args -blockdev driver=${_spec%%:*},node-name=disk$_n,file.driver=file,file.filename=${_spec#*:}"
    _args="$_args -device virtio-blk-pci,drive=disk$_n,id=$_dev"
    _n=$((_n + 1))
  done
  # shellcheck disable=SC2086
  qemu-system-x86_64 -name "$_name" -machine "accel=$(qemu_accel)" -m 64 \
    -nodefaults -display none -no-user-config \
    -qmp "unix:$TMPDIR_TEST/$_name.qmp,server=on,wait=off" \
    -qmp "unix:$TMPDIR_TEST/$_name.qmp2,server=on,wait=off" \
    $_args >"$TMPDIR_TEST/$_name.log" 2>&1 &
  VM_PID=$!
  track_pid $VM_PID
  _i=0
  until [ -S "$TMPDIR_TEST/$_name.qmp2" ]; do
    _i=$((_i + 1))
    [ "$_i" -le 300 ] || fail "QEMU $_name did not start: $(cat "$TMPDIR_TEST/$_name.log")"
    kill -0 "$VM_PID" 2>/dev/null \
      || fail "QEMU $_name exited: $(cat "$TMPDIR_TEST/$_name.log")"
    sleep 0.1
  done
}

# stop_vm NAME: shut the VM started last down cleanly (QEMU stores the
# persistent bitmaps in the images then).
stop_vm () {
  "$KNIB" qmp "$TMPDIR_TEST/$1.qmp2" quit >/dev/null || fail "quit $1"
  wait "$VM_PID" 2>/dev/null || :
}

# crash_vm: kill -9 the VM started last (its bitmaps stay "in-use").
crash_vm () {
  kill -9 "$VM_PID"
  wait "$VM_PID" 2>/dev/null || :
}

# vm_write NAME DEV PATTERN OFFSET LENGTH: a guest write (bitmaps see it).
vm_write () {
  hmp_write "$TMPDIR_TEST/$1.qmp2" "$2" "$3" "$4" "$5"
}

# img_write IMAGE FORMAT PATTERN OFFSET LENGTH: a write to a stopped VM's
# image; qemu-io loads the image's persistent bitmaps and records it there.
img_write () {
  qemu-io -f "$2" -c "write -P $3 $4 $5" "$1" >/dev/null \
    || fail "qemu-io write to $1"
}

# offline_oracle N IMAGE...: copies of the stopped VM's images, N-IMAGE.
offline_oracle () {
  _n=$1
  shift
  for _img in "$@"; do
    qemu-img convert -O qcow2 "$_img" "$TMPDIR_TEST/oracle-$_n-$(basename "$_img")" \
      || fail "qemu-img convert $_img"
  done
}

# live_oracle NAME N DEV:IMAGE...: the same of a running VM: pause it,
# flush each disk to its image, copy, resume.
live_oracle () {
  _s=$TMPDIR_TEST/$1.qmp2 _n=$2
  shift 2
  "$KNIB" qmp "$_s" stop >/dev/null || fail "cannot pause $1"
  for _spec in "$@"; do
    "$KNIB" qmp "$_s" human-monitor-command \
      "command-line=qemu-io -d ${_spec%%:*}/virtio-backend flush" >/dev/null
    qemu-img convert -U -O qcow2 "${_spec#*:}" \
      "$TMPDIR_TEST/oracle-$_n-$(basename "${_spec#*:}")" \
      || fail "qemu-img convert ${_spec#*:}"
  done
  "$KNIB" qmp "$_s" cont >/dev/null || fail "cannot resume $1"
}

# backup N ARG...: "knib backup" that must succeed; its JSON summary in
# $TMPDIR_TEST/bN.json, its stderr in bN.err.
backup () {
  _n=$1
  shift
  "$KNIB" backup --json --timeout 60 --repo "$REPO" --scratch "$SCRATCH" \
    "$@" >"$TMPDIR_TEST/b$_n.json" 2>"$TMPDIR_TEST/b$_n.err" \
    || fail "backup $_n ($*) failed: $(cat "$TMPDIR_TEST/b$_n.err")"
}

# backup_fails N ARG...: "knib backup" that must fail; stderr in bN.err.
backup_fails () {
  _n=$1
  shift
  if "$KNIB" backup --json --timeout 60 --repo "$REPO" --scratch "$SCRATCH" \
    "$@" >"$TMPDIR_TEST/b$_n.json" 2>"$TMPDIR_TEST/b$_n.err"; then
    fail "backup $_n ($*) succeeded, but had to fail: $(cat "$TMPDIR_TEST/b$_n.json")"
  fi
}

# top N KEY: a top-level string of backup N's summary.
top () {
  json_top "$TMPDIR_TEST/b$1.json" "$2"
}

# disk N DEV KEY: a member of disk DEV in backup N's summary (string or
# number; empty when null).
disk () {
  tr '{' '\n' <"$TMPDIR_TEST/b$1.json" | grep "^\"name\":\"$2\"" \
    | sed -n -e "s/.*\"$3\":\"\\([^\"]*\\)\".*/\\1/p" \
      -e "s/.*\"$3\":\\([0-9][0-9]*\\).*/\\1/p"
}

# expect_kind N KIND [PARENT-N]: backup N is KIND (with backup PARENT-N as
# its parent).
expect_kind () {
  [ "$(top "$1" kind)" = "$2" ] \
    || fail "backup $1 is $(top "$1" kind), not $2: $(cat "$TMPDIR_TEST/b$1.json")"
  if [ $# -ge 3 ]; then
    [ "$(top "$1" parent)" = "$(top "$3" id)" ] \
      || fail "backup $1's parent is '$(top "$1" parent)', not backup $3 ($(top "$3" id))"
  fi
}

# expect_disk N DEV KIND [REASON-TEXT]: disk DEV of backup N is KIND (and
# its reason contains REASON-TEXT).
expect_disk () {
  [ "$(disk "$1" "$2" kind)" = "$3" ] \
    || fail "backup $1: disk $2 is $(disk "$1" "$2" kind), not $3: $(cat "$TMPDIR_TEST/b$1.json")"
  if [ $# -ge 4 ]; then
    disk "$1" "$2" reason | grep -q -- "$4" \
      || fail "backup $1: disk $2's reason '$(disk "$1" "$2" reason)' does not say '$4'"
  fi
}

# check N DEV IMAGE: backup N's image of DEV is sound qcow2 and its chain
# reads exactly as oracle N of IMAGE.
check () {
  _img=$REPO/vms/$VM/$(top "$1" id)/$2.qcow2
  qemu-img check -q "$_img" || fail "qemu-img check $_img"
  qemu-img compare -q "$TMPDIR_TEST/oracle-$1-$(basename "$3")" "$_img" \
    || fail "backup $1 ($2) differs from its oracle: $(qemu-img compare "$TMPDIR_TEST/oracle-$1-$(basename "$3")" "$_img" 2>&1)"
}

# image_bitmaps IMAGE: "NAME FLAG,FLAG" per persistent bitmap in the image.
image_bitmaps () {
  qemu-img info -U --output=json "$1" | tr -d ' \n' \
    | grep -o '{"flags":\[[^]]*\],"name":"[^"]*"' \
    | sed 's/{"flags":\[\([^]]*\)\],"name":"\([^"]*\)"/\2 \1/' | tr -d '"'
}

# no_daemon: no qemu-storage-daemon of this test is alive (zombies, which
# hold nothing, aside).
no_daemon () {
  for _p in $(pgrep -f "qemu-storage-daemon.*$SCRATCH" || :); do
    case $(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$_p/stat" 2>/dev/null) in
    '' | Z) ;;
    *) return 1 ;;
    esac
  done
  return 0
}
