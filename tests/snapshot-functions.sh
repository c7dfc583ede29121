# SPDX-License-Identifier: Apache-2.0
# snapshot-functions.sh: helpers for the snapshot-*.sh tests (sourced after
# functions.sh).  A VM "vm" with disks vda (a.qcow2) and vdb (b.qcow2) in
# $TMPDIR_TEST runs in plain QEMU (start_vm), is backed up into $R, and
# every state that matters is copied into an oracle image (oracle NAME)
# that backups, reverts and merges are compared against with qemu-img.

require qemu-system-x86_64 qemu-img qemu-io jq

cd "$TMPDIR_TEST"
K=$KNIB
R=$TMPDIR_TEST/repo
SCR=$TMPDIR_TEST/scratch
VMN=0

# new_disks: the VM's two empty disks, $A (64M) and $B (32M).
new_disks () {
  A=$TMPDIR_TEST/a.qcow2
  B=$TMPDIR_TEST/b.qcow2
  qemu-img create -q -f qcow2 "$A" 64M
  qemu-img create -q -f qcow2 "$B" 32M
}

# start_vm: start the VM on the images its disks run on now ($A, $B).
start_vm () {
  VMN=$((VMN + 1))
  start_qemu "vm$VMN" "$A" "$B"
  S=$TMPDIR_TEST/vm$VMN.qmp
  S2=$TMPDIR_TEST/vm$VMN.qmp2
  eval "QPID=\$QEMU_PID_vm$VMN"
}

# stop_vm: a clean shutdown (QEMU stores the persistent bitmaps).
stop_vm () {
  "$K" qmp "$S2" quit >/dev/null 2>&1 || :
  wait "$QPID" 2>/dev/null || :
}

# top DEV: the image device DEV runs on in the running QEMU.
top () {
  "$K" qmp --json "$S2" query-block \
    | jq -r ".[] | select(.qdev | test(\"/$1/\")) | .inserted.file"
}

# oracle NAME: pause, flush, copy what each disk holds now, resume.
oracle () {
  "$K" qmp "$S2" stop >/dev/null
  for dev in vda vdb; do
    "$K" qmp "$S2" human-monitor-command \
      "command-line=qemu-io -d $dev/virtio-backend flush" >/dev/null
  done
  qemu-img convert -U -O qcow2 "$(top vda)" "oracle-a-$1.qcow2"
  qemu-img convert -U -O qcow2 "$(top vdb)" "oracle-b-$1.qcow2"
  "$K" qmp "$S2" cont >/dev/null
}

# write DEV PATTERN OFFSET LENGTH
write () {
  hmp_write "$S2" "$@"
}

# backup N [OPTION...]: a live backup whose summary goes to bN.json.
backup () {
  n=$1
  shift
  "$K" backup --qmp "$S" --vm vm --repo "$R" --scratch "$SCR" --json "$@" \
    > "b$n.json" 2> "b$n.err" || fail "backup $n failed: $(cat "b$n.err")"
}

# kind N: the kind of backup N; read N DEV: bytes it read of DEV.
kind () {
  jq -r .kind "b$1.json"
}
read_bytes () {
  jq -r ".disks[] | select(.name == \"$2\") | .bytes_read" "b$1.json"
}
zero_bytes () {
  jq -r ".disks[] | select(.name == \"$2\") | .bytes_zero" "b$1.json"
}

# check_backup N ORACLE: backup N's images equal oracle ORACLE and are
# clean (the chain of backups opens in qemu-img).
check_backup () {
  id=$(jq -r .id "b$1.json")
  for d in a:vda b:vdb; do
    img=$R/vms/vm/$id/${d#*:}.qcow2
    qemu-img check -q "$img" || fail "qemu-img check of $img failed"
    qemu-img compare -q "oracle-${d%:*}-$2.qcow2" "$img" \
      || fail "backup $1 (${d#*:}) differs from oracle $2"
  done
}

# incremental N MAXBYTES: backup N is incremental and read at most
# MAXBYTES of each disk.
incremental () {
  [ "$(kind "$1")" = incremental ] \
    || fail "backup $1 is $(kind "$1"), not incremental: $(cat "b$1.json")"
  for dev in vda vdb; do
    [ "$(read_bytes "$1" $dev)" -le "$2" ] \
      || fail "backup $1 read $(read_bytes "$1" $dev) bytes of $dev (> $2)"
  done
  echo "  backup $1: $(kind "$1"), read vda $(read_bytes "$1" vda) vdb" \
    "$(read_bytes "$1" vdb) bytes, zeroed vda $(zero_bytes "$1" vda) vdb" \
    "$(zero_bytes "$1" vdb)"
}

# snap ARG...: knib snapshot ARG... --vm vm --repo $R, output in snap.out.
snap () {
  "$K" snapshot "$@" --vm vm --repo "$R" > snap.out 2> snap.err \
    || fail "knib snapshot $*: $(cat snap.err)"
  cat snap.out
}

# current DEV: the image knib records DEV to run on.
current () {
  "$K" snapshot list --vm vm --repo "$R" --json | jq -r ".disks.$1.image"
}

# chain IMAGE: the files of IMAGE's backing chain, by base name, " < "
# between them (qemu-img info --backing-chain).
chain () {
  qemu-img info -U --backing-chain --output=json "$1" \
    | jq -r '[.[].filename | split("/") | last] | join(" < ")'
}

# expect_chain DEV "x < y": the chain DEV's image is.
expect_chain () {
  got=$(chain "$(current "$1")")
  [ "$got" = "$2" ] || fail "chain of $1 is '$got', not '$2'"
  echo "  $1: $got"
}

# same DEV ORACLE: what DEV's image holds equals the oracle.
same () {
  f=a
  [ "$1" = vdb ] && f=b
  qemu-img compare -q -U "oracle-$f-$2.qcow2" "$(current "$1")" \
    || fail "$1 differs from oracle $2"
}

# wr PATTERN MB: write 64k of PATTERN at MB MiB into vda and at MB/2 MiB
# into vdb (the second digit of PATTERN becomes 2 on vdb).
wr () {
  write vda "$1" "$2M" 64k
  write vdb "0x2${1#0x?}" "$(($2 / 2))M" 64k
}

# exact N BYTES: backup N is incremental and read BYTES of each disk.
exact () {
  incremental "$1" "$2"
  for dev in vda vdb; do
    [ "$(read_bytes "$1" $dev)" -eq "$2" ] \
      || fail "backup $1 read $(read_bytes "$1" $dev) bytes of $dev, not $2"
  done
}

# quiesced CMD...: run CMD with the VM paused and its caches flushed (so
# that qemu-img sees what the guest sees), then resume.
quiesced () {
  "$K" qmp "$S2" stop >/dev/null
  for dev in vda vdb; do
    "$K" qmp "$S2" human-monitor-command \
      "command-line=qemu-io -d $dev/virtio-backend flush" >/dev/null
  done
  "$@"
  "$K" qmp "$S2" cont >/dev/null
}

# state NAME: the state of snapshot NAME in knib's list ("" when gone).
state () {
  "$K" snapshot list --vm vm --repo "$R" --json \
    | jq -r ".snapshots[] | select(.name == \"$1\") | .state"
}

# killed_at POINT ARG...: knib snapshot ARG... stops itself at POINT
# (KNIB_TEST_STOP_AT), and is killed with SIGKILL there.
killed_at () {
  require_test_hooks
  _point=$1
  shift
  ( KNIB_TEST_STOP_AT=$_point exec "$K" snapshot "$@" --vm vm --repo "$R" \
      >kill.out 2>kill.err ) &
  _pid=$!
  track_pid $_pid
  kill_stopped $_pid kill.err
}

# The VM stopped: its images are $A and $B.
# owrite DEV PATTERN MB: 64k written into the stopped disk's image with
# qemu-io, which records it in the image's persistent bitmaps.
owrite () {
  img=$A
  [ "$1" = vdb ] && img=$B
  qemu-io -f qcow2 -c "write -P $2 $3M 64k" "$img" >/dev/null \
    || fail "qemu-io write to $img"
}

# owr PATTERN MB: as wr, for the stopped VM.
owr () {
  owrite vda "$1" "$2"
  owrite vdb "0x2${1#0x?}" "$(($2 / 2))"
}

# ooracle NAME: copies of what the stopped disks hold.
ooracle () {
  qemu-img convert -O qcow2 "$A" "oracle-a-$1.qcow2"
  qemu-img convert -O qcow2 "$B" "oracle-b-$1.qcow2"
}

# obackup N: an offline backup of the stopped VM into bN.json.
obackup () {
  "$K" backup --image "vda=$A" --image "vdb=$B" --vm vm --repo "$R" \
    --scratch "$SCR" --json > "b$1.json" 2> "b$1.err" \
    || fail "backup $1 failed: $(cat "b$1.err")"
}

# restart_and_backup N PATTERN MB: stop the VM, check its images, start it
# again on what knib records, write, and backup N is an incremental of
# exactly that write, equal to its oracle.
restart_and_backup () {
  stop_vm
  for dev in vda vdb; do
    qemu-img check -q "$(current $dev)" || fail "qemu-img check of $dev"
  done
  A=$(current vda)
  B=$(current vdb)
  start_vm
  wr "$2" "$3"
  oracle "$1"
  backup "$1"
  check_backup "$1" "$1"
  exact "$1" 65536
}
