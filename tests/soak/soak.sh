#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# soak.sh: the chaos soak (make soak): a real guest writing files, backed up again and again while one fault per iteration strikes.
#
# The test guest (tests/guest) runs under TCG in writer mode: it writes
# self-describing files /data/f-SEQ.dat and logs each one complete on its
# serial console once it is durable.  Each iteration picks one fault at
# random (SOAK_SEED makes the sequence repeatable):
#
#   kill-backup, kill-restore, kill-delete, kill-compress, kill-merge:
#                      kill -9 of knib at a random moment of that command
#                      (a compress killed between its phases leaves its
#                      ready copies: compress --finalize-only must take
#                      them)
#   kill-qemu          kill -9 of the guest's QEMU, restarted from its disk
#   repo-full          a backup into a repository (a loop-mounted ext4)
#                      with almost no space left
#   nbd-read-error     a backup whose source fails a read (a blkdebug
#                      node put under the disk with blockdev-reopen)
#   libvirtd-restart   libvirtd restarted while a backup runs
#   concurrent-delete, concurrent-prune
#                      a delete or prune while a backup runs
#
# After each: the next backup succeeds (a full one only with a reason),
# prune keeps the SOAK_KEEP (3) latest, every backup in the repository
# restores (knib restore --format raw) and its ext4 root, read on the host
# (e2fsck replays the journal, debugfs copies /data out), holds every file
# the console had logged complete before that backup started, each intact
# (header, name, sequence, SHA-256 of the payload; a file's bytes once
# checked are remembered, by their SHA-256, for the next checks); and
# nothing is left: no knib node, export, job or foreign bitmap in QEMU,
# no scratch directory, no temporary or partial file in the repository,
# no process of the soak's but the guest.
#
# SOAK_ITERATIONS (200), SOAK_SEED (from the clock; printed), SOAK_KEEP,
# SOAK_KINDS (a space-separated subset of the kinds), SOAK_LOG (a file
# for the iteration log, default stdout), SOAK_WRITER (the writer's
# "MAXLEN INTERVAL", default "2048 1": a file a second, so that the
# files each check reads on its own stay few).  Needs root (a loop mount).
# Exit status 0 when every backup after a fault succeeded, no restore
# was incorrect and nothing was left.

TESTS_DIR=$(cd "$(dirname "$0")/.." && pwd)
: "${KNIB:=$TESTS_DIR/../src/cli/knib}"
: "${QGA_CLIENT:=$TESTS_DIR/qga-client}"
export KNIB QGA_CLIENT
. "$TESTS_DIR/functions.sh"
. "$TESTS_DIR/guest-functions.sh"
GUEST_BUILD=$TESTS_DIR/guest/build-guest.sh
require qemu-img qemu-system-x86_64 e2fsck debugfs mkfs.ext4 mount umount \
  losetup fallocate sha256sum flock

[ "$(id -u)" -eq 0 ] || {
  echo "SKIP: the soak mounts a loop file system: run it as root" >&2
  exit 77
}

ITERATIONS=${SOAK_ITERATIONS:-200}
SEED=${SOAK_SEED:-$(date +%s)}
KEEP=${SOAK_KEEP:-3}
KINDS=${SOAK_KINDS:-"kill-backup kill-restore kill-delete kill-compress kill-merge kill-qemu repo-full nbd-read-error libvirtd-restart concurrent-delete concurrent-prune"}
VM=soak
W=$TMPDIR_TEST
MNT=$W/mnt
REPO=$MNT/repo
SCRATCH=$W/scratch
QMP=$W/guest.qmp   # knib's
QMP2=$W/guest.qmp2 # the soak's own
QGA=$W/guest.qga
DISK=$W/disk.qcow2
# The guest disk's ext4 root starts at 33 MiB (tests/guest/build-guest.sh).
ROOT_OFFSET=$((33 * 1048576))
# The MBR gap (before the first partition at 1 MiB), which the guest
# never reads: the nbd-read-error fault writes there and fails its read.
GAP_OFFSET=524288

if [ -n "${SOAK_LOG:-}" ]; then
  exec 3>>"$SOAK_LOG"
else
  exec 3>&1
fi
say () {
  echo "$*" >&3
}

# ---- cleanup: the loop mount goes before functions.sh removes $W ----
soak_cleanup () {
  if mountpoint -q "$MNT" 2>/dev/null; then
    umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || :
  fi
}
trap '_soak_st=$?; for _p in $_pids; do kill -9 "$_p" 2>/dev/null || :; done; soak_cleanup; (exit $_soak_st); _cleanup' EXIT

# untrack PID: a child that was reaped; its pid may be reused by then,
# so the cleanup must no longer kill it.
untrack () {
  _pids=$(echo " $_pids " | sed "s/ $1 / /; s/^ *//; s/ *$//")
}

# ---- repeatable randomness: rand N sets R to 0..N-1 ----
_rs=$SEED
rand () {
  _rs=$(((_rs * 1103515245 + 12345) % 2147483648))
  R=$(((_rs / 65536) % $1))
}
# sleep_ms MS
sleep_ms () {
  sleep "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))"
}

# ---- counters ----
for k in $KINDS; do
  eval "N_$(echo "$k" | tr - _)=0"
done
BACKUPS=0
BACKUPS_FULL=0
BACKUPS_FAILED=0
RESTORES=0
UNCHANGED=0
INCORRECT=0
LEFTOVERS=0
RESTORE_TEMPS=0
COMPRESS_FINALIZED=0
KILLS=0
SKIPPED=0
problem () {
  say "  PROBLEM: $*"
}

# ---- the guest ----
BOOTS=0
guest_start () {
  BOOTS=$((BOOTS + 1))
  CONSOLE=$W/console.$BOOTS
  rm -f "$QMP" "$QMP2" "$QGA"
  qemu-system-x86_64 -name "$VM" -accel tcg -m 256 -smp 1 \
    -nodefaults -no-user-config -display none -nic none \
    -qmp "unix:$QMP,server=on,wait=off" \
    -qmp "unix:$QMP2,server=on,wait=off" \
    -blockdev "driver=file,node-name=disk0-file,filename=$DISK" \
    -blockdev driver=qcow2,node-name=disk0,file=disk0-file \
    -device virtio-blk-pci,drive=disk0,id=vda,bootindex=1 \
    -chardev "socket,id=qga0,path=$QGA,server=on,wait=off" \
    -device virtio-serial-pci \
    -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 \
    -device pvpanic \
    -fw_cfg name=opt/knib/mode,string=writer \
    -fw_cfg "name=opt/knib/writer,string=${SOAK_WRITER:-2048 1}" \
    -serial "file:$CONSOLE" >"$W/qemu.$BOOTS.log" 2>&1 3>&- &
  GUEST_PID=$!
  track_pid "$GUEST_PID"
  GUEST_QGA=$QGA GUEST_CONSOLE=$CONSOLE GUEST_LOG=$W/qemu.$BOOTS.log
  GUEST_STARTED=$(date +%s)
  wait_for_socket "$QMP2"
  wait_for_guest_agent 300
  # Wait for the writer's first file of this boot.
  _i=0
  until grep -q '^knib-writer: complete' "$CONSOLE"; do
    _i=$((_i + 1))
    [ "$_i" -le 600 ] || fail "the guest's writer writes nothing: $(tail -n 5 "$CONSOLE")"
    sleep 0.1
  done
}

# logged: the highest sequence any boot's console logged complete.
logged () {
  cat "$W"/console.* | sed -n 's/^knib-writer: complete f-[0-9]*\.dat seq=\([0-9]*\).*/\1/p' \
    | sort -n | tail -n 1 | grep . || echo 0
}

# ---- knib ----
# knib_bg OUT ARG...: knib in the background, its pid in KPID.
knib_bg () {
  _o=$1
  shift
  "$KNIB" "$@" >"$_o" 2>"$_o.err" 3>&- &
  KPID=$!
  track_pid $KPID
}

# kill_at PID MS: kill -9 PID after MS milliseconds unless it ended;
# sets KILLED=1 when it was killed while running.
kill_at () {
  sleep_ms "$2"
  KILLED=0
  if kill -0 "$1" 2>/dev/null && [ "$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)" != Z ]; then
    kill -9 "$1" 2>/dev/null && KILLED=1
  fi
  wait "$1" 2>/dev/null || :
  untrack "$1"
}

BACKUP_ARGS="--json --timeout 120 --qmp $QMP --vm $VM --repo $REPO --scratch $SCRATCH --chain-size ${SOAK_CHAIN_SIZE:-6}"

# ids [--all]: the VM's backup ids, oldest first.
ids () {
  "$KNIB" list --repo "$REPO" "$VM" "$@" 2>/dev/null | awk 'NR > 1 { print $2 }'
}

# note_points L: every backup not seen before gets the point L (the last
# sequence logged complete before the command that made it started).
note_points () {
  for _id in $(ids --all); do
    grep -q "^$_id " "$W/points" || echo "$_id $1" >>"$W/points"
  done
}

# backup_next: the backup after a fault; it must succeed, and be full
# only with a reason.
backup_next () {
  _l=$(logged)
  rc=0
  # shellcheck disable=SC2086
  "$KNIB" backup $BACKUP_ARGS >"$W/next.json" 2>"$W/next.err" || rc=$?
  note_points "$_l"
  if [ "$rc" -ne 0 ]; then
    BACKUPS_FAILED=$((BACKUPS_FAILED + 1))
    problem "the backup after the fault failed ($rc): $(tail -n 3 "$W/next.err")"
    return 1
  fi
  BACKUPS=$((BACKUPS + 1))
  NEXT_ID=$(json_top "$W/next.json" id)
  NEXT_KIND=$(json_top "$W/next.json" kind)
  if [ "$NEXT_KIND" = full ]; then
    BACKUPS_FULL=$((BACKUPS_FULL + 1))
    NEXT_WHY=$(json_top "$W/next.json" reason)
    echo "$NEXT_WHY" | sed 's/[0-9]\{8\}T[0-9]\{6\}Z/ID/g; s/knib-[0-9a-f]*-ID/knib-RID-ID/g' >>"$W/fulls"
    if [ -z "$NEXT_WHY" ] && [ "$BACKUPS" -gt 1 ]; then
      BACKUPS_FAILED=$((BACKUPS_FAILED + 1))
      problem "backup $NEXT_ID is full and does not say why: $(cat "$W/next.json")"
    fi
  fi
  return 0
}

# random_id [incremental]: a random listed backup ("" when none).
random_id () {
  if [ "${1:-}" = incremental ]; then
    set -- $("$KNIB" list --repo "$REPO" "$VM" 2>/dev/null \
      | awk 'NR > 1 && $3 == "incremental" { print $2 }')
  else
    set -- $(ids)
  fi
  [ $# -gt 0 ] || { RID=""; return 0; }
  rand $#
  shift $R
  RID=$1
}

# ---- the restore check ----
# signature ID: the inode, size and mtime of the manifest and image of
# ID and of each backup it depends on; a backup whose signature did not
# change since its last good check restores to the same bytes.
signature () {
  _b=$1
  while [ -n "$_b" ] && [ "$_b" != null ]; do
    stat -c '%i %s %Y' "$REPO/vms/$VM/$_b/manifest.json" \
      "$REPO/vms/$VM/$_b/vda.qcow2" 2>&1 | tr '\n' ' '
    _b=$(sed -n 's/^ *"parent": *"\([^"]*\)".*/\1/p' \
      "$REPO/vms/$VM/$_b/manifest.json" 2>/dev/null | head -n 1)
  done
}

# check_backup ID: restore ID and check its files against its point
# (unless SOAK_RECHECK=changed and nothing of its chain changed since it
# was last found good).
check_backup () {
  _id=$1
  _sig=$(signature "$_id")
  if [ "${SOAK_RECHECK:-changed}" = changed ] &&
    grep -q -x -F "$_id $_sig" "$W/good"; then
    UNCHANGED=$((UNCHANGED + 1))
    return 0
  fi
  sed -i "/^$_id /d" "$W/good"
  _point=$(sed -n "s/^$_id \\([0-9]*\\)$/\\1/p" "$W/points" | head -n 1)
  [ -n "$_point" ] || _point=0
  RESTORES=$((RESTORES + 1))
  rm -rf "$W/check"
  mkdir "$W/check"
  if ! "$KNIB" restore -q --repo "$REPO" --vm "$VM" "$_id" --format raw \
    --to "$W/check/disk.raw" >"$W/check/restore.out" 2>&1; then
    INCORRECT=$((INCORRECT + 1))
    problem "backup $_id does not restore: $(tail -n 3 "$W/check/restore.out")"
    return 0
  fi
  _img="$W/check/disk.raw?offset=$ROOT_OFFSET"
  # The guest's own recovery: the journal replayed; then a clean file
  # system.
  e2fsck -E journal_only -y "$_img" >"$W/check/fsck1.out" 2>&1 || :
  if ! e2fsck -fn "$_img" >"$W/check/fsck2.out" 2>&1; then
    INCORRECT=$((INCORRECT + 1))
    problem "backup $_id: its file system has errors: $(grep -v '^Pass\|^e2fsck' "$W/check/fsck2.out" | head -n 5 | tr '\n' ' ')"
    return 0
  fi
  mkdir "$W/check/out"
  debugfs -R "rdump /data $W/check/out" "$_img" >"$W/check/debugfs.out" 2>&1 || :
  _d=$W/check/out/data
  [ -d "$_d" ] || {
    INCORRECT=$((INCORRECT + 1))
    problem "backup $_id: no /data: $(cat "$W/check/debugfs.out")"
    return 0
  }
  if ! check_files "$_d" "$_point" >"$W/check/files.out" 2>&1; then
    INCORRECT=$((INCORRECT + 1))
    problem "backup $_id (point $_point): $(head -n 5 "$W/check/files.out" | tr '\n' ' ')"
    cp -r "$W/check" "$W/failed-$_id.$RESTORES" 2>/dev/null || :
  else
    echo "$_id $_sig" >>"$W/good"
  fi
  rm -rf "$W/check"
}

# check_files DIR POINT: every f-SEQ.dat for SEQ 1..POINT is there, none
# is missing below the highest, and each is intact.  Files up to POINT
# are durable and never rewritten: once checked, their SHA-256 goes into
# $W/known and later restores compare against it; a file above POINT is
# checked on its own each time (the guest may have rewritten it after a
# crash, before it was ever logged complete).
check_files () {
  _dir=$1 _pt=$2
  (cd "$_dir" && ls) | grep '^f-[0-9]*\.dat$' | sort >"$W/check/names"
  _count=$(wc -l <"$W/check/names")
  _high=$(tail -n 1 "$W/check/names" | sed 's/^f-0*\([0-9][0-9]*\)\.dat$/\1/')
  _high=${_high:-0}
  _ok=0
  if [ "$_high" -lt "$_pt" ]; then
    echo "files up to seq $_pt were complete, the highest restored is $_high"
    _ok=1
  fi
  if [ "$_count" -ne "$_high" ]; then
    echo "$((_high - _count)) files missing below seq $_high"
    _ok=1
  fi
  # Known files: compare whole-file hashes in one pass.
  awk '{ print $2 }' "$W/known" | sort >"$W/check/known-names"
  comm -12 "$W/check/names" "$W/check/known-names" >"$W/check/old"
  if [ -s "$W/check/old" ]; then
    grep -F -f "$W/check/old" "$W/known" >"$W/check/old.sums"
    if ! (cd "$_dir" && sha256sum -c --quiet "$W/check/old.sums") >"$W/check/old.out" 2>&1; then
      head -n 5 "$W/check/old.out"
      _ok=1
    fi
  fi
  comm -23 "$W/check/names" "$W/check/known-names" >"$W/check/new"
  while read -r _n; do
    _s=${_n#f-}
    _s=${_s%.dat}
    _s=${_s#"${_s%%[!0]*}"}
    _hdr=""
    read -r _hdr <"$_dir/$_n" || :
    set -f
    # shellcheck disable=SC2086
    set -- $_hdr
    set +f
    if [ "$#" -ne 5 ] || [ "$1" != knib-guest-file ] || [ "$2" != "name=$_n" ] \
      || [ "$3" != "seq=$_s" ]; then
      echo "bad $_n: header '$_hdr'"
      _ok=1
      continue
    fi
    _sum=$(tail -c +257 "$_dir/$_n" | sha256sum)
    if [ "sha256=${_sum%% *}" != "$5" ]; then
      echo "bad $_n: checksum (size $(stat -c %s "$_dir/$_n"), $4)"
      _ok=1
      continue
    fi
    [ "$_s" -gt "$_pt" ] || echo "$_n" >>"$W/check/learn"
  done <"$W/check/new"
  if [ -s "$W/check/learn" ]; then
    (cd "$_dir" && xargs sha256sum <"$W/check/learn") >>"$W/known"
  fi
  return $_ok
}

# ---- what must not be left ----
# leftovers: count and report what a fault left behind.
leftovers () {
  _left=""
  _q=$("$KNIB" qmp --json "$QMP2" query-block-exports 2>&1 || :)
  [ "$_q" = "[]" ] || _left="$_left exports: $_q;"
  _q=$("$KNIB" qmp --json "$QMP2" query-jobs 2>&1 || :)
  [ "$_q" = "[]" ] || _left="$_left jobs: $_q;"
  _q=$("$KNIB" qmp --json "$QMP2" query-named-block-nodes 2>&1 \
    | grep -o '"node-name":"[^"]*"' | sort -u \
    | grep -v -x -e '"node-name":"disk0"' -e '"node-name":"disk0-file"' || :)
  [ -z "$_q" ] || _left="$_left block nodes: $(echo $_q);"
  # Bitmaps: only the repository's, the latest backup's recording, at
  # most one other (the frozen one of the backup before).
  _rid=$(sed -n 's/^ *"id": *"\([0-9a-f]*\)".*/\1/p' "$REPO/knib-repo.json")
  "$KNIB" qmp --json "$QMP2" query-block 2>/dev/null \
    | grep -o '"dirty-bitmaps":\[[^]]*\]' | grep -o '{[^{}]*}' >"$W/bitmaps" || :
  _foreign=$(grep -o '"name":"[^"]*"' "$W/bitmaps" | grep -v "\"name\":\"knib-$_rid-" || :)
  [ -z "$_foreign" ] || _left="$_left foreign bitmaps: $(echo $_foreign);"
  _rec=$(grep '"recording":true' "$W/bitmaps" | grep -o '"name":"[^"]*"' || :)
  [ "$_rec" = "\"name\":\"knib-$_rid-$NEXT_ID\"" ] ||
    _left="$_left recording bitmap is not the latest backup's ($NEXT_ID): $(echo $_rec);"
  [ "$(wc -l <"$W/bitmaps")" -le 2 ] ||
    _left="$_left $(wc -l <"$W/bitmaps") bitmaps: $(grep -o '"name":"[^"]*"' "$W/bitmaps" | tr '\n' ' ');"
  # Scratch.
  _q=$(find "$SCRATCH" -mindepth 1 -maxdepth 1 2>/dev/null)
  [ -z "$_q" ] || _left="$_left scratch: $_q;"
  # The repository: the VM's lock, vm.json, each backup's directory with
  # its manifest and image (and the domain file a backup may keep).
  _all=$(ids --all | tr '\n' ' ')
  _q=$(cd "$REPO/vms/$VM" && find . -mindepth 1 | sed 's|^\./||' | while read -r _p; do
    case $_p in
      .lock | vm.json) continue ;;
    esac
    _top=${_p%%/*}
    case " $_all " in
      *" $_top "*) ;;
      *) echo "$_p"; continue ;;
    esac
    case ${_p#*/} in
      "$_top" | manifest.json | vda.qcow2) ;;
      *) echo "$_p" ;;
    esac
  done)
  [ -z "$_q" ] || _left="$_left repository: $(echo $_q);"
  _q=$(find "$REPO" -maxdepth 1 -mindepth 1 ! -name vms ! -name knib-repo.json)
  [ -z "$_q" ] || _left="$_left repository top: $(echo $_q);"
  # Processes: none but the guest's QEMU names the soak's directory.
  _q=$(ps -eo pid=,args= | grep -F "$W" | grep -v -e "^ *$GUEST_PID " -e "grep -F" -e "ps -eo" || :)
  [ -z "$_q" ] || _left="$_left processes: $_q;"
  if [ -n "$_left" ]; then
    LEFTOVERS=$((LEFTOVERS + 1))
    problem "left over:$_left"
  fi
}

# ---- the faults ----
# fault_kill KEY LABEL ARG...: knib ARG... killed with SIGKILL at a
# moment picked uniformly in [0, DUR_KEY) ms.  DUR_KEY (from MAXMS at
# first) follows the command's length: it shrinks by a third when the
# command ended before the kill and grows by a quarter when it was
# killed, so that about half the kills land inside the command, at any
# point of it, whatever the machine's speed.
fault_kill () {
  _key=$1 _label=$2
  shift 2
  eval "_dur=\${DUR_$_key:-$MAXMS}"
  rand "$_dur"
  _ms=$R
  _l=$(logged)
  knib_bg "$W/fault.out" "$@"
  kill_at "$KPID" "$_ms"
  note_points "$_l"
  if [ "$KILLED" = 1 ]; then
    KILLS=$((KILLS + 1))
    _dur=$((_dur * 5 / 4))
    [ "$_dur" -le $((MAXMS * 4)) ] || _dur=$((MAXMS * 4))
  else
    _dur=$((_dur * 2 / 3))
    [ "$_dur" -ge 20 ] || _dur=20
  fi
  eval "DUR_$_key=$_dur"
  FAULT_NOTE="$_label killed after ${_ms} ms (killed=$KILLED)"
}

fault_kill_backup () {
  MAXMS=3000
  # shellcheck disable=SC2086
  fault_kill backup backup backup $BACKUP_ARGS
}

fault_kill_restore () {
  random_id
  [ -n "$RID" ] || { FAULT_NOTE="no backup"; return 0; }
  rm -rf "$W/krestore"
  mkdir "$W/krestore"
  MAXMS=1200
  fault_kill restore restore restore -q --repo "$REPO" --vm "$VM" "$RID" \
    --to "$W/krestore/disk.qcow2"
  _t=$(find "$W/krestore" -name '.knib-restore-*' | wc -l)
  [ "$_t" -eq 0 ] || RESTORE_TEMPS=$((RESTORE_TEMPS + 1))
  FAULT_NOTE="$FAULT_NOTE, $_t temporary file(s) left"
  # The next restore to that target removes what the killed one left.
  if ! "$KNIB" restore -q --repo "$REPO" --vm "$VM" "$RID" --force \
    --to "$W/krestore/disk.qcow2" >"$W/krestore.out" 2>&1; then
    problem "a restore after a killed one failed: $(tail -n 2 "$W/krestore.out")"
    INCORRECT=$((INCORRECT + 1))
  fi
  _t=$(find "$W/krestore" -name '.knib-restore-*')
  if [ -n "$_t" ]; then
    problem "the next restore left the killed one's temporary file: $_t"
    LEFTOVERS=$((LEFTOVERS + 1))
  fi
  rm -rf "$W/krestore"
}

fault_kill_delete () {
  random_id
  [ -n "$RID" ] || { FAULT_NOTE="no backup"; return 0; }
  MAXMS=400
  fault_kill delete "delete $RID" delete --repo "$REPO" --vm "$VM" "$RID"
}

fault_kill_compress () {
  random_id
  [ -n "$RID" ] || { FAULT_NOTE="no backup"; return 0; }
  MAXMS=2500
  fault_kill compress "compress $RID" compress --repo "$REPO" --vm "$VM" "$RID" \
    --compress zstd
  # Killed after its start phase, a compress leaves each finished copy
  # (.compressed-IMAGE.HASH) for the next compress to swap in: the
  # finalize of knib compress --finalize-only takes them, leaving none.
  _d="$REPO/vms/$VM/$RID"
  _t=$(find "$_d" -maxdepth 1 -name '.compressed-*' 2>/dev/null | wc -l)
  [ "$_t" -gt 0 ] || return 0
  if ! "$KNIB" compress -q --repo "$REPO" --vm "$VM" "$RID" --finalize-only \
    >"$W/kcompress.out" 2>&1; then
    problem "finalizing a killed compress failed: $(tail -n 2 "$W/kcompress.out")"
    LEFTOVERS=$((LEFTOVERS + 1))
  fi
  _left=$(find "$_d" -maxdepth 1 -name '.compress*' 2>/dev/null)
  if [ -n "$_left" ]; then
    problem "left after compress --finalize-only: $(echo $_left)"
    LEFTOVERS=$((LEFTOVERS + 1))
  fi
  COMPRESS_FINALIZED=$((COMPRESS_FINALIZED + 1))
  FAULT_NOTE="$FAULT_NOTE, its $_t ready copy finalized"
}

fault_kill_merge () {
  random_id incremental
  [ -n "$RID" ] || { FAULT_NOTE="no incremental backup"; return 0; }
  MAXMS=5000
  fault_kill merge "merge $RID" merge --repo "$REPO" --vm "$VM" "$RID"
}

fault_kill_qemu () {
  rand 3000
  sleep_ms "$R"
  kill -9 "$GUEST_PID" 2>/dev/null || :
  wait "$GUEST_PID" 2>/dev/null || :
  untrack "$GUEST_PID"
  guest_start
  FAULT_NOTE="QEMU killed after $R ms, rebooted in ${GUEST_BOOT_SECONDS} s"
}

fault_repo_full () {
  _free=$(df -B1 --output=avail "$REPO" | tail -n 1)
  rand 8
  _leave=$((R * 65536))
  fallocate -l $((_free - _leave)) "$MNT/filler" 2>/dev/null ||
    fallocate -l $((_free - _leave - 4 * 1048576)) "$MNT/filler" || :
  _l=$(logged)
  rc=0
  # shellcheck disable=SC2086
  "$KNIB" backup $BACKUP_ARGS >"$W/fault.out" 2>"$W/fault.out.err" || rc=$?
  note_points "$_l"
  rm -f "$MNT/filler"
  FAULT_NOTE="backup with $((_leave / 1024)) KiB free: exit $rc $(grep -o 'No space left on device' "$W/fault.out.err" | head -n 1)"
}

fault_nbd_read_error () {
  # Dirty a cluster of the MBR gap, find where it lives in the image,
  # and put a blkdebug node that fails reads of it under the disk.
  "$KNIB" qmp "$QMP2" human-monitor-command \
    "command-line=qemu-io -d vda/virtio-backend \"write -P 0x5a $GAP_OFFSET 64k\"" >/dev/null || :
  "$KNIB" qmp "$QMP2" human-monitor-command \
    "command-line=qemu-io -d vda/virtio-backend \"flush\"" >/dev/null || :
  _host=$(qemu-img map -U --output=json "$DISK" | grep "\"start\": $GAP_OFFSET," \
    | sed -n 's/.*"offset": \([0-9]*\).*/\1/p')
  if [ -z "$_host" ]; then
    FAULT_NOTE="the gap cluster is not in the map"
    return 0
  fi
  "$KNIB" qmp "$QMP2" blockdev-add "{\"driver\":\"blkdebug\",\"node-name\":\"soak-dbg\",\"image\":\"disk0-file\",\"inject-error\":[{\"event\":\"read_aio\",\"sector\":$((_host / 512 + 1)),\"errno\":5}]}" >/dev/null ||
    fail "blockdev-add blkdebug"
  "$KNIB" qmp "$QMP2" blockdev-reopen '{"options":[{"driver":"qcow2","node-name":"disk0","file":"soak-dbg"}]}' >/dev/null ||
    fail "blockdev-reopen onto blkdebug"
  _l=$(logged)
  rc=0
  # shellcheck disable=SC2086
  "$KNIB" backup $BACKUP_ARGS >"$W/fault.out" 2>"$W/fault.out.err" || rc=$?
  note_points "$_l"
  "$KNIB" qmp "$QMP2" blockdev-reopen '{"options":[{"driver":"qcow2","node-name":"disk0","file":"disk0-file"}]}' >/dev/null ||
    fail "blockdev-reopen back"
  "$KNIB" qmp "$QMP2" blockdev-del node-name=soak-dbg >/dev/null || fail "blockdev-del soak-dbg"
  FAULT_NOTE="backup reading a failing cluster: exit $rc: $(tail -n 1 "$W/fault.out.err")"
  if [ "$rc" -eq 0 ]; then
    problem "a backup that read a failing cluster succeeded"
    BACKUPS_FAILED=$((BACKUPS_FAILED + 1))
  fi
}

LIBVIRT_LOCK=${TMPDIR:-/tmp}/knib-libvirt-tests.lock
fault_libvirtd_restart () {
  command -v libvirtd >/dev/null 2>&1 || { FAULT_NOTE="no libvirtd"; SKIPPED=$((SKIPPED + 1)); return 0; }
  _l=$(logged)
  knib_bg "$W/fault.out" backup $BACKUP_ARGS
  # Only when no libvirt test of another developer holds libvirtd.
  if (
    flock -w 5 9 || exit 1
    _p=$(cat /run/libvirtd.pid 2>/dev/null || :)
    if [ -n "$_p" ] && kill -0 "$_p" 2>/dev/null; then
      kill "$_p"
      _i=0
      while kill -0 "$_p" 2>/dev/null && [ "$_i" -lt 200 ]; do
        sleep 0.1
        _i=$((_i + 1))
      done
      libvirtd -d 9>&- || exit 2
    else
      # None ran: one starts and stops.
      libvirtd -d 9>&- || exit 2
      _i=0
      until virsh -c qemu:///system version >/dev/null 2>&1 || [ "$_i" -ge 100 ]; do
        sleep 0.1
        _i=$((_i + 1))
      done
      _p=$(cat /run/libvirtd.pid 2>/dev/null || :)
      [ -z "$_p" ] || kill "$_p"
      exit 0
    fi
    _i=0
    until virsh -c qemu:///system version >/dev/null 2>&1 || [ "$_i" -ge 300 ]; do
      sleep 0.1
      _i=$((_i + 1))
    done
  ) 9>"$LIBVIRT_LOCK"; then
    FAULT_NOTE="libvirtd restarted during a backup"
  else
    FAULT_NOTE="libvirtd not restarted (busy or failed)"
    SKIPPED=$((SKIPPED + 1))
  fi
  rc=0
  wait "$KPID" || rc=$?
  untrack "$KPID"
  note_points "$_l"
  FAULT_NOTE="$FAULT_NOTE; the backup exited $rc"
  if [ "$rc" -ne 0 ]; then
    problem "a backup during a libvirtd restart failed: $(tail -n 2 "$W/fault.out.err")"
    BACKUPS_FAILED=$((BACKUPS_FAILED + 1))
  fi
}

# concurrent WHAT: a backup and a delete or prune at once; each succeeds
# or fails at once on the other's lock, saying so.
fault_concurrent () {
  _l=$(logged)
  knib_bg "$W/fault.out" backup $BACKUP_ARGS
  rand 2000
  sleep_ms "$R"
  rc2=0
  if [ "$1" = delete ]; then
    random_id
    [ -n "$RID" ] || RID=$(ids --all | tail -n 1)
    "$KNIB" delete --repo "$REPO" --vm "$VM" "$RID" >"$W/fault2.out" 2>&1 || rc2=$?
  else
    "$KNIB" prune --repo "$REPO" --vm "$VM" --keep-last 1 >"$W/fault2.out" 2>&1 || rc2=$?
  fi
  rc=0
  wait "$KPID" || rc=$?
  untrack "$KPID"
  note_points "$_l"
  FAULT_NOTE="$1 after $R ms: exit $rc2; the backup: exit $rc"
  if [ "$rc2" -ne 0 ] && ! grep -qi 'lock\|held\|holds\|running' "$W/fault2.out"; then
    problem "$1 beside a backup failed without naming the lock: $(tail -n 2 "$W/fault2.out")"
    LEFTOVERS=$((LEFTOVERS + 1))
  fi
  if [ "$rc" -ne 0 ] && ! grep -qi 'lock\|held\|holds\|running' "$W/fault.out.err"; then
    problem "a backup beside $1 failed: $(tail -n 2 "$W/fault.out.err")"
    BACKUPS_FAILED=$((BACKUPS_FAILED + 1))
  fi
}

# ---- the table ----
# table: what the iterations so far found.
table () {
  ELAPSED=$(($(date +%s) - START))
  {
    echo
    echo "soak: $it iterations in $ELAPSED s ($((ELAPSED / (it > 0 ? it : 1))) s each), SOAK_SEED=$SEED"
    printf '%-28s %8s\n' "injection" "count"
    for k in $KINDS; do
      printf '%-28s %8s\n' "$k" "$(eval echo "\$N_$(echo "$k" | tr - _)")"
    done
    printf '%-28s %8s\n' "kill -9 inside the command" "$KILLS"
    printf '%-28s %8s\n' "backups (after a fault)" "$BACKUPS"
    printf '%-28s %8s\n' "  of which full" "$BACKUPS_FULL"
    printf '%-28s %8s\n' "failed backups" "$BACKUPS_FAILED"
    printf '%-28s %8s\n' "restores checked" "$RESTORES"
    printf '%-28s %8s\n' "restores skipped, unchanged" "$UNCHANGED"
    printf '%-28s %8s\n' "incorrect restores" "$INCORRECT"
    printf '%-28s %8s\n' "leftovers" "$LEFTOVERS"
    printf '%-28s %8s\n' "restores killed mid-write" "$RESTORE_TEMPS"
    printf '%-28s %8s\n' "compresses killed when ready" "$COMPRESS_FINALIZED"
    printf '%-28s %8s\n' "faults skipped" "$SKIPPED"
    printf '%-28s %8s\n' "guest files logged complete" "$(logged)"
    echo "full backups, by reason:"
    sort "$W/fulls" | uniq -c | sed 's/^/  /'
  } >&3
}

# ---- setup ----
say "soak: $ITERATIONS iterations, SOAK_SEED=$SEED, keep $KEEP, kinds: $KINDS"
guest_disk soak
# A standalone copy: blockdev-reopen then needs no backing node.
qemu-img convert -O qcow2 "$GUEST_BASE" "$DISK" || fail "cannot copy the guest's disk"
rm -f "$GUEST_DISK"
truncate -s "${SOAK_REPO_MIB:-1536}M" "$W/repo.img"
mkfs.ext4 -q -F -m 0 "$W/repo.img" || fail "mkfs.ext4"
mkdir "$MNT"
mount -o loop "$W/repo.img" "$MNT" || fail "cannot mount the repository's file system"
: >"$W/points"
: >"$W/known"
: >"$W/good"
: >"$W/fulls"
guest_start
say "soak: the guest booted in ${GUEST_BOOT_SECONDS} s"
NEXT_ID=""
backup_next || fail "the first backup failed: $(cat "$W/next.err")"
START=$(date +%s)
it=0
# Stopped early (^C, SIGTERM): the table of the iterations so far.
trap 'table; exit 130' INT TERM

set -- $KINDS
NKINDS=$#
while [ "$it" -lt "$ITERATIONS" ]; do
  it=$((it + 1))
  t0=$(date +%s)
  rand "$NKINDS"
  kind=$(echo "$KINDS" | awk -v i=$((R + 1)) '{ print $i }')
  var=N_$(echo "$kind" | tr - _)
  eval "$var=\$(($var + 1))"
  FAULT_NOTE=""
  case $kind in
    kill-backup) fault_kill_backup ;;
    kill-restore) fault_kill_restore ;;
    kill-delete) fault_kill_delete ;;
    kill-compress) fault_kill_compress ;;
    kill-merge) fault_kill_merge ;;
    kill-qemu) fault_kill_qemu ;;
    repo-full) fault_repo_full ;;
    nbd-read-error) fault_nbd_read_error ;;
    libvirtd-restart) fault_libvirtd_restart ;;
    concurrent-delete) fault_concurrent delete ;;
    concurrent-prune) fault_concurrent prune ;;
    *) fail "unknown fault kind $kind" ;;
  esac
  # The guest must still be there (only kill-qemu kills it).
  if ! kill -0 "$GUEST_PID" 2>/dev/null; then
    problem "the guest's QEMU died: $(tail -n 3 "$GUEST_LOG")"
    wait "$GUEST_PID" 2>/dev/null || :
    untrack "$GUEST_PID"
    guest_start
  fi
  t1=$(date +%s)
  say "[$it/$ITERATIONS] $kind: $FAULT_NOTE"
  if backup_next; then
    _why=""
    [ "$NEXT_KIND" != full ] || _why=" ($NEXT_WHY)"
    say "  next backup $NEXT_ID: $NEXT_KIND$_why"
  fi
  "$KNIB" prune --repo "$REPO" --vm "$VM" --keep-last "$KEEP" >"$W/prune.out" 2>&1 ||
    problem "prune failed: $(tail -n 2 "$W/prune.out")"
  # The points of backups that are gone are of no use any more.
  _all=$(ids --all)
  for bid in $(awk '{ print $1 }' "$W/points"); do
    case " $(echo $_all) " in
      *" $bid "*) ;;
      *) sed -i "/^$bid /d" "$W/points" ;;
    esac
  done
  t2=$(date +%s)
  nchecked=0
  for bid in $(ids); do
    check_backup "$bid"
    nchecked=$((nchecked + 1))
  done
  leftovers
  t3=$(date +%s)
  say "  checked $nchecked restores, logged seq $(logged); $((t3 - t0)) s (fault $((t1 - t0)), backup $((t2 - t1)), checks $((t3 - t2)))"
done
table
[ "$BACKUPS_FAILED" -eq 0 ] && [ "$INCORRECT" -eq 0 ] && [ "$LEFTOVERS" -eq 0 ]
