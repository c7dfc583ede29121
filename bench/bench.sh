#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# bench.sh: knib's benchmark (`make bench`): knib's full and incremental
# backups of a running VM against qemu-img convert and nbdcopy, all on one
# generated disk (and the same data in disks of 64 GiB and 1 TiB), in
# interleaved rounds, with wall time, peak RSS, output size and targets.
#
# Fairness: each round runs every tool once, one after the other (convert,
# knib, nbdcopy, ...), and before every run the page cache is put in the
# same state: sync, drop every clean page (echo 3 >
# /proc/sys/vm/drop_caches, as root; BENCH_DROP_CACHES=no skips it), then
# read the disk's data and every measured program with its shared
# libraries once, so that every tool reads a warm source, starts as on a
# host that runs it daily, and writes into free memory.  Figures are
# medians of the rounds with min and max; ratios are taken within a round.
# The results also go to bench/results/TIME-COMMIT.json (not committed:
# they describe one machine at one moment).
#
# Environment: BENCH_SIZE (virtual size, default 8G), BENCH_RANDOM (random
# data, default 1G), BENCH_COMPRESSIBLE (text-like data, default 1G), all in
# bytes or with a K/M/G/T suffix and whole MiB; BENCH_ROUNDS (default 3);
# BENCH_DIR (where the scratch directory goes, default /var/tmp);
# BENCH_RESULTS (the JSON's directory, default bench/results); BENCH_CACHE
# (no: generate the workload again, not the one kept in
# BENCH_DIR/knib-bench-cache); KNIB and RUNSTAT (the programs).
#
# Exit status: 0 when every row ran, even if a target is missed (the table
# says so); 1 when something failed to run or a backup does not match.
# The measure function sets KEY_secs, KEY_rss and KEY_status with eval.
# shellcheck disable=SC2034,SC2154
set -eu

here=$(cd "$(dirname "$0")" && pwd)
: "${KNIB:=$here/../src/cli/knib}"
: "${RUNSTAT:=$here/runstat}"
: "${BENCH_SIZE:=8G}"
: "${BENCH_RANDOM:=1G}"
: "${BENCH_COMPRESSIBLE:=1G}"
: "${BENCH_DIR:=/var/tmp}"
: "${BENCH_ROUNDS:=3}"
: "${BENCH_RESULTS:=$here/results}"
: "${BENCH_DROP_CACHES:=yes}"
: "${BENCH_CACHE:=yes}"

die () {
  echo "bench: $*" >&2
  exit 1
}

# Bytes in whole MiB from "8G", "512M", "1048576"...
to_mib () {
  case $1 in
  *[Tt]) n=${1%?}; m=$((n * 1024 * 1024)) ;;
  *[Gg]) n=${1%?}; m=$((n * 1024)) ;;
  *[Mm]) n=${1%?}; m=$n ;;
  *[Kk]) n=${1%?}; [ $((n % 1024)) -eq 0 ] || return 1; m=$((n / 1024)) ;;
  *) n=$1; [ $((n % 1048576)) -eq 0 ] || return 1; m=$((n / 1048576)) ;;
  esac
  case $n in '' | *[!0-9]*) return 1 ;; esac
  echo "$m"
}

size_mib=$(to_mib "$BENCH_SIZE") || die "BENCH_SIZE '$BENCH_SIZE' is not a whole number of MiB (e.g. 8G, 512M)"
random_mib=$(to_mib "$BENCH_RANDOM") || die "BENCH_RANDOM '$BENCH_RANDOM' is not a whole number of MiB"
text_mib=$(to_mib "$BENCH_COMPRESSIBLE") || die "BENCH_COMPRESSIBLE '$BENCH_COMPRESSIBLE' is not a whole number of MiB"
[ "$size_mib" -ge 16 ] || die "BENCH_SIZE must be at least 16M"
[ $((random_mib + text_mib)) -le "$size_mib" ] \
  || die "BENCH_RANDOM + BENCH_COMPRESSIBLE ($((random_mib + text_mib)) MiB) exceed BENCH_SIZE ($size_mib MiB)"
[ $((random_mib + text_mib)) -gt 0 ] || die "the disk needs some data: BENCH_RANDOM or BENCH_COMPRESSIBLE"
case $BENCH_ROUNDS in '' | *[!0-9]* | 0) die "BENCH_ROUNDS must be a positive number" ;; esac

for prog in qemu-img qemu-nbd nbdcopy qemu-system-x86_64 awk dd; do
  command -v "$prog" >/dev/null 2>&1 \
    || die "$prog is not installed (./scripts/deps installs what the bench needs)"
done
[ -x "$RUNSTAT" ] || die "$RUNSTAT is missing: run 'make bench' (it builds it)"
[ -x "$KNIB" ] || die "$KNIB is missing: build knib first (./scripts/build)"
[ -d "$BENCH_DIR" ] || die "BENCH_DIR '$BENCH_DIR' is not a directory"

# Every process started here dies at exit, and the scratch directory goes.
work=$(mktemp -d "$BENCH_DIR/knib-bench.XXXXXX")
pids=""
cleanup () {
  status=$?
  [ -z "${vnb_dom:-}${vnb_libvirtd:-}" ] || vnb_cleanup
  for pid in $pids; do
    kill -9 "$pid" 2>/dev/null || :
  done
  for pid in $pids; do
    wait "$pid" 2>/dev/null || :
  done
  if [ -n "${big_mnt:-}" ]; then
    umount "$big_mnt" 2>/dev/null || umount -l "$big_mnt" 2>/dev/null || :
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# The disk at its biggest, the qemu-img and nbdcopy copies (one at a time,
# each removed once measured), the knib repository and some slack.
data_mib=$((random_mib + text_mib))
need_mib=$((3 * data_mib + size_mib / 50 + 256))
avail_mib=$(($(df -Pk "$work" | awk 'NR == 2 { print $4 }') / 1024))
[ "$avail_mib" -ge "$need_mib" ] \
  || die "$BENCH_DIR has $avail_mib MiB free, the bench needs $need_mib MiB: set BENCH_DIR or smaller BENCH_* sizes"

accel=$("$here/../scripts/accel")
knib_ok=no
if "$KNIB" --help 2>/dev/null | grep -q '^  backup '; then
  knib_ok=yes
fi

# Print a command's stderr (a failure's explanation), indented.
show_log () {
  [ ! -s "$1" ] || sed 's/^/    /' "$1" >&2
}

# Allocated size of files, in MiB with one decimal ("-" if one is missing).
alloc_mib () {
  for f in "$@"; do
    [ -f "$f" ] || { echo -; return 0; }
  done
  du -k -c "$@" | awk 'END { printf "%.1f", $1 / 1024 }'
}

# A ratio a / b with two decimals ("n/a" if b is not positive).
ratio () {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else printf "n/a" }'
}

now () {
  date +%s
}

# measure KEY COMMAND...: run it under runstat, stdout to $work/KEY.out and
# stderr to $work/KEY.err; set KEY_secs, KEY_rss (MiB) and KEY_status.
failed=no
measure () {
  key=$1
  shift
  rc=0
  "$RUNSTAT" -o "$work/$key.stat" "$@" >"$work/$key.out" 2>"$work/$key.err" || rc=$?
  if [ ! -s "$work/$key.stat" ]; then
    show_log "$work/$key.err"
    die "$key: runstat did not report (exit status $rc)"
  fi
  secs=$(awk '$1 == "seconds" { print $2 }' "$work/$key.stat")
  rss=$(awk '$1 == "maxrss_kib" { printf "%.1f", $2 / 1024 }' "$work/$key.stat")
  eval "${key}_secs=\$secs ${key}_rss=\$rss ${key}_status=\$rc"
  # Every round's figures, for the medians.
  echo "$secs $rss $rc" >>"$work/runs.$key"
  if [ "$rc" -ne 0 ]; then
    echo "bench: $key: '$*' failed with exit status $rc:" >&2
    show_log "$work/$key.err"
    failed=yes
    return 1
  fi
}

# What knib's --json says about a backup, in one line.
backup_info () {
  awk -v kind="$(json_get kind "$1")" -v why="$(json_get reason "$1")" \
    -v rd="$(json_get bytes_read "$1")" -v wr="$(json_get bytes_written "$1")" \
    -v ext="$(json_get extents "$1")" -v secs="$(json_get seconds "$1")" \
    'BEGIN { printf "kind %s (%s), read %.1f MiB, wrote %.1f MiB, %s extents, disk %.2f s", kind, why, rd / 1048576, wr / 1048576, ext, secs }'
}

# The first value of "KEY": in a JSON file (strings and numbers; enough for
# knib's flat --json objects).
json_get () {
  tr ',{}[]' '\n\n\n\n\n' <"$2" \
    | sed -n "s/^ *\"$1\" *: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *\$/\1/p" | head -n 1
}

echo "knib bench: $size_mib MiB disk: $random_mib MiB random, $text_mib MiB compressible, rest unallocated"
echo "  in $work ($(df -PT "$work" | awk 'NR == 2 { print $2 }')), QEMU accel $accel, $(nproc) CPUs"
echo "  $(qemu-img --version | head -n 1); $(nbdcopy --version | head -n 1)"

#
# The workload: a sparse raw file with the data in 16 stripes (each: random,
# then text-like, then a hole), converted to qcow2. Not measured.
#
t0=$(now)
raw=$work/workload.raw
# Generated once per size and kept (BENCH_CACHE=no makes a new one):
# every tool only reads it, through overlays.
cache=$BENCH_DIR/knib-bench-cache
base=$cache/workload-$size_mib-$random_mib-$text_mib.qcow2
if [ "$BENCH_CACHE" = no ] || ! qemu-img check -q "$base" >/dev/null 2>&1; then
  mkdir -p "$cache"
  : >"$raw"
  truncate -s "${size_mib}M" "$raw"
  stripes=16
  [ "$data_mib" -ge "$stripes" ] || stripes=$data_mib
  i=0
  while [ "$i" -lt "$stripes" ]; do
    start=$((i * size_mib / stripes))
    r=$(((i + 1) * random_mib / stripes - i * random_mib / stripes))
    t=$(((i + 1) * text_mib / stripes - i * text_mib / stripes))
    if [ "$r" -gt 0 ]; then
      head -c "${r}M" /dev/urandom \
        | dd of="$raw" bs=1M seek="$start" conv=notrunc iflag=fullblock status=none
    fi
    if [ "$t" -gt 0 ]; then
      # Log-like lines: about 5:1 with zstd, no two clusters alike.
      awk -v seed="$i" 'BEGIN {
          srand (seed + 1)
          split ("kernel sshd systemd cron nginx postgres qemu dockerd", prog, " ")
          split ("accepted connection|session opened for user root|link is up|request completed|checkpoint starting|checkpoint complete|disk flush|timeout waiting for reply", msg, "|")
          for (n = seed * 100000000; ; n++)
            printf "2024-%02d-%02dT%02d:%02d:%02d.%06d host%03d %s[%d]: %s id=%d len=%d\n",
              n % 12 + 1, n % 28 + 1, n % 24, n % 60, (n * 7) % 60, int (rand () * 1000000),
              n % 97, prog[n % 8 + 1], 1000 + n % 4096, msg[int (rand () * 8) + 1],
              n, int (rand () * 65536)
        }' | head -c "${t}M" \
        | dd of="$raw" bs=1M seek=$((start + r)) conv=notrunc iflag=fullblock status=none
    fi
    i=$((i + 1))
  done
  qemu-img create -q -f qcow2 "$base.tmp.$$" "${size_mib}M"
  qemu-img convert -n -f raw -O qcow2 "$raw" "$base.tmp.$$"
  rm -f "$raw"
  mv -f "$base.tmp.$$" "$base"
  echo "  workload generated in $(($(now) - t0)) s (not measured): $(alloc_mib "$base") MiB allocated"
else
  echo "  workload from $base (not measured): $(alloc_mib "$base") MiB allocated"
fi
echo

# The disks every tool reads: thin overlays on the workload (which only
# QEMU's and qemu-nbd's read-only backing nodes open, so they can share
# it), of the workload's size and of 64 GiB and 1 TiB: the same data in
# a bigger disk, the rest unallocated.
disk=$work/disk.qcow2
qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$disk" "${size_mib}M"
big_rows=""
for big in 64G:65536 1T:1048576; do
  name=${big%%:*} mib=${big#*:}
  [ "$mib" -gt "$size_mib" ] || continue
  qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$work/disk-$name.qcow2" "${mib}M"
  big_rows="$big_rows $name"
done
nbd_disk=$work/nbd.qcow2
qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$nbd_disk" "${size_mib}M"

drop=no
if [ "$BENCH_DROP_CACHES" != no ] && [ "$(id -u)" -eq 0 ] && [ -w /proc/sys/vm/drop_caches ]; then
  drop=yes
fi
if [ "$drop" = yes ]; then
  echo "  before each run: sync, drop the page cache (drop_caches), read the source and the programs once"
else
  echo "  before each run: sync, read the source and the programs once (the page cache is NOT dropped: needs root, or BENCH_DROP_CACHES=no)"
fi

# The programs the runs start and their shared libraries, as ldd finds
# them: a host that backs up every day has them in its page cache, and
# dropping them would charge each run the reading of its own libraries
# (about 30 ms for knib's libnbd and libxml2) but not of those the running
# QEMU keeps mapped, which qemu-img shares.
programs=""
for prog in "$KNIB" "$RUNSTAT" "$(command -v qemu-img)" "$(command -v nbdcopy)"; do
  programs="$programs $prog $(ldd "$prog" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | tr '\n' ' ')"
done

# The page cache in the same state for every run: the workload and the
# overlays on it (which hold the incrementals' dirtied data) read once,
# and the programs.
settle () {
  sync
  if [ "$drop" = yes ]; then
    echo 3 >/proc/sys/vm/drop_caches
  fi
  # shellcheck disable=SC2086
  cat "$base" "$work"/disk*.qcow2 $programs >/dev/null
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "  load average at the start: $load_start"
echo

nbd_sock=$work/nbd.sock
qemu-nbd --read-only --format=qcow2 --persistent --shared=8 \
  --socket="$nbd_sock" "$nbd_disk" >"$work/qemu-nbd.log" 2>&1 &
nbd_pid=$!
pids="$pids $nbd_pid"
i=0
while [ ! -S "$nbd_sock" ]; do
  i=$((i + 1))
  [ "$i" -le 300 ] || { show_log "$work/qemu-nbd.log"; die "qemu-nbd did not start"; }
  sleep 0.1
done

qmp=$work/qmp.sock
if [ "$knib_ok" = yes ]; then
  devs="-blockdev driver=qcow2,node-name=disk0,file.driver=file,file.filename=$disk"
  devs="$devs -device virtio-blk-pci,drive=disk0,id=vda"
  n=1
  for name in $big_rows; do
    dev=vd$(printf "\\$(printf '%03o' $((97 + n)))")
    devs="$devs -blockdev driver=qcow2,node-name=disk$n,file.driver=file,file.filename=$work/disk-$name.qcow2"
    devs="$devs -device virtio-blk-pci,drive=disk$n,id=$dev"
    eval "dev_$name=$dev"
    n=$((n + 1))
  done
  # shellcheck disable=SC2086
  qemu-system-x86_64 -name bench -machine "accel=$accel" -m 128 -nodefaults \
    -display none -no-user-config \
    -qmp "unix:$qmp,server=on,wait=off" $devs >"$work/qemu.log" 2>&1 &
  qemu_pid=$!
  pids="$pids $qemu_pid"
  i=0
  while [ ! -S "$qmp" ]; do
    i=$((i + 1))
    [ "$i" -le 300 ] || { show_log "$work/qemu.log"; die "QEMU did not start"; }
    sleep 0.1
  done
fi

# knib_full KEY DEV [OPTION...]: a timed full backup of one disk into a
# repository of its own, removed afterwards (each run starts alike).
knib_full () {
  key=$1 dev=$2
  shift 2
  rm -rf "$work/repo-$key"
  settle
  measure "$key" "$KNIB" backup --qmp "$qmp" --vm bench --repo "$work/repo-$key" \
    --scratch "${scratch:-$work/scratch}" --disk "$dev" --json "$@" || return 1
  img=$work/repo-$key/vms/bench/$(json_get id "$work/$key.out")/$dev.qcow2
  [ -f "$img" ] || die "knib backup printed no id or wrote no $img: $(cat "$work/$key.out")"
  eval "${key}_size=\$(alloc_mib \"\$img\")"
}

# run_convert KEY SOURCE [OPTION...]: a timed qemu-img convert (then sync).
run_convert () {
  key=$1 src=$2
  shift 2
  settle
  measure "$key" sh -c 'src=$1 dst=$2; shift 2; qemu-img convert -U -f qcow2 -O qcow2 "$@" "$src" "$dst" && sync "$dst"' \
    sh "$src" "$work/$key.qcow2" "$@" || :
  eval "${key}_size=\$(alloc_mib \"\$work/\$key.qcow2\")"
  rm -f "$work/$key.qcow2"
}

# QEMU's own fleecing export of the bench disk (not timed): a temporary
# qcow2 overlay on disk0 that a sync=none blockdev-backup keeps at this
# point in time, served by QEMU's NBD server as "fleece" on fleece.sock:
# what a backup tool reads from a running VM.  fleece_stop removes it
# all (knib refuses to start beside another tool's jobs and exports).
fleece_sock=$work/fleece.sock
fleece_start () {
  rm -f "$work/fleece.qcow2" "$fleece_sock"
  qemu-img create -q -f qcow2 "$work/fleece.qcow2" "${size_mib}M"
  cat >"$work/fleece-start.cmds" <<EOF
{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "bench-fleece", "file": {"driver": "file", "filename": "$work/fleece.qcow2"}, "backing": "disk0"}}
{"execute": "blockdev-backup", "arguments": {"job-id": "bench-fleece", "device": "disk0", "target": "bench-fleece", "sync": "none"}}
{"execute": "nbd-server-start", "arguments": {"addr": {"type": "unix", "data": {"path": "$fleece_sock"}}}}
{"execute": "block-export-add", "arguments": {"type": "nbd", "id": "bench-fleece", "node-name": "bench-fleece", "name": "fleece"}}
EOF
  "$KNIB" qmp --json "$qmp" <"$work/fleece-start.cmds" >"$work/fleece.out" 2>&1 \
    || { show_log "$work/fleece.out"; die "the fleecing export did not start"; }
}
fleece_stop () {
  cat >"$work/fleece-stop.cmds" <<EOF
{"execute": "block-export-del", "arguments": {"id": "bench-fleece"}}
.wait BLOCK_EXPORT_DELETED 60
{"execute": "nbd-server-stop"}
{"execute": "job-cancel", "arguments": {"id": "bench-fleece"}}
.wait BLOCK_JOB_CANCELLED 60
{"execute": "blockdev-del", "arguments": {"node-name": "bench-fleece"}}
EOF
  "$KNIB" qmp --json "$qmp" <"$work/fleece-stop.cmds" >"$work/fleece.out" 2>&1 \
    || { show_log "$work/fleece.out"; die "the fleecing export did not stop"; }
  rm -f "$work/fleece.qcow2"
}

# knib refuses a live backup unless the fleecing images' file system
# could take the worst case, a guest overwriting the whole disk while the
# backup runs: a 1 TiB disk needs 1 TiB free.  No guest writes here, so
# when BENCH_DIR has less, the big disks' backups get their scratch on
# an XFS in a sparse file of 1.1 TiB (loop-mounted; needs root), which
# says it has the room and takes almost none.
big_scratch=$work/scratch
big_mnt=""
big_need_mib=0
for name in $big_rows; do
  case $name in 64G) m=65536 ;; 1T) m=1048576 ;; *) m=0 ;; esac
  [ "$m" -le "$big_need_mib" ] || big_need_mib=$m
done
if [ "$knib_ok" = yes ] && [ "$big_need_mib" -gt 0 ] \
  && [ $(($(df -Pk "$work" | awk 'NR == 2 { print $4 }') / 1024)) -lt $((big_need_mib + big_need_mib / 16)) ]; then
  if [ "$(id -u)" -eq 0 ] && command -v mkfs.xfs >/dev/null 2>&1; then
    truncate -s $((big_need_mib + big_need_mib / 16))M "$work/big-scratch.img"
    mkfs.xfs -q -K -l size=64m "$work/big-scratch.img" \
      || die "mkfs.xfs of the big disks' scratch failed"
    mkdir "$work/big-scratch"
    mount -o loop "$work/big-scratch.img" "$work/big-scratch" \
      || die "cannot loop-mount the big disks' scratch"
    big_mnt=$work/big-scratch
    big_scratch=$big_mnt/scratch
    echo "  big disks: scratch on a sparse $((big_need_mib / 1024 + big_need_mib / 16384)) GiB XFS ($work has less free)"
  else
    echo "  big disks: $work has too little free space for knib's fleecing check (and no root for a sparse XFS): those rows fail"
  fi
fi

direct_ok=no
if dd if=/dev/zero of="$work/dd.raw" bs=4096 count=1 oflag=direct 2>/dev/null; then
  direct_ok=yes
else
  echo "  $work has no O_DIRECT: no dd row"
fi
rm -f "$work/dd.raw"

round=1
while [ "$round" -le "$BENCH_ROUNDS" ]; do
  echo "round $round of $BENCH_ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "  qemu-img convert -O qcow2 + sync"
  run_convert convert "$disk"
  if [ "$knib_ok" = yes ]; then
    echo "  knib backup --full"
    if knib_full full vda --full && [ "$round" -eq 1 ]; then
      # Sanity, not timed: no guest runs, so the disk still holds what it held.
      qemu-img compare -U -f qcow2 -F qcow2 "$disk" "$img" >"$work/cmp-full.log" 2>&1 \
        || { show_log "$work/cmp-full.log"; die "the full backup $img differs from the disk"; }
      full_info=$(backup_info "$work/full.out")
    fi
    rm -rf "$work/repo-full"
  fi
  echo "  nbdcopy qemu-nbd -> file --flush"
  settle
  measure nbdcopy nbdcopy --flush "nbd+unix:///?socket=$nbd_sock" "$work/nbdcopy.raw" || :
  nbdcopy_size=$(alloc_mib "$work/nbdcopy.raw")
  rm -f "$work/nbdcopy.raw"
  if [ "$knib_ok" = yes ]; then
    echo "  nbdcopy QEMU's fleecing export -> null:"
    fleece_start
    settle
    measure nbdnull nbdcopy "nbd+unix:///fleece?socket=$fleece_sock" null: || :
    fleece_stop
  else
    echo "  nbdcopy qemu-nbd -> null:"
    settle
    measure nbdnull nbdcopy "nbd+unix:///?socket=$nbd_sock" null: || :
  fi
  # The other floor of a full backup: the disk writing as many bytes (the
  # workload's image, read from the page cache), in 4 MiB O_DIRECT writes
  # one after the other.  Not where the file system has no O_DIRECT.
  if [ "$direct_ok" = yes ]; then
    echo "  dd of the same MiB to a file, oflag=direct"
    settle
    measure ddwrite dd if="$base" of="$work/dd.raw" bs=4M count=$(((random_mib + text_mib + 3) / 4)) \
      oflag=direct conv=fsync || :
    rm -f "$work/dd.raw"
  fi
  echo "  qemu-img convert -c zstd + sync"
  run_convert convertz "$disk" -c -o compression_type=zstd
  if [ "$knib_ok" = yes ]; then
    echo "  knib backup --compress zstd"
    if knib_full fullz vda --full --compress zstd && [ "$round" -eq 1 ]; then
      qemu-img compare -U -f qcow2 -F qcow2 "$disk" "$img" >"$work/cmp-fullz.log" 2>&1 \
        || { show_log "$work/cmp-fullz.log"; die "the zstd backup $img differs from the disk"; }
    fi
    rm -rf "$work/repo-fullz"
  fi
  for name in $big_rows; do
    echo "  $name disk: qemu-img convert, knib backup --full"
    run_convert "convert$name" "$work/disk-$name.qcow2"
    if [ "$knib_ok" = yes ]; then
      eval "dev=\$dev_$name"
      scratch=$big_scratch knib_full "full$name" "$dev" --full || :
      rm -rf "$work/repo-full$name"
    fi
  done
  round=$((round + 1))
done

#
# Incremental: a full backup (not timed), then per round 1% of the disk
# dirtied in scattered 1 MiB guest writes and an incremental backup.
#
repo=$work/repo
inc_size=""
if [ "$knib_ok" = yes ]; then
  echo "incremental: a full backup first (not timed)"
  "$KNIB" backup --qmp "$qmp" --vm bench --repo "$repo" --scratch "$work/scratch" \
    --disk vda --full --json >"$work/base-full.out" 2>"$work/base-full.err" \
    || { show_log "$work/base-full.err"; die "the full backup before the incrementals failed"; }
  nwrites=$(((size_mib + 99) / 100))
  slot=$((size_mib / nwrites))
  round=1
  while [ "$round" -le "$BENCH_ROUNDS" ]; do
    i=0
    : >"$work/dirty.cmds"
    while [ "$i" -lt "$nwrites" ]; do
      off=$((i * slot + (i * 37 + round * 13) % (slot > 1 ? slot / 2 : 1)))
      printf 'human-monitor-command {"command-line": "qemu-io -d vda/virtio-backend \\"write -P 0x5%d %dM 1M\\""}\n' \
        "$round" "$off" >>"$work/dirty.cmds"
      i=$((i + 1))
    done
    # qemu-io prints to QEMU's stdout, not to the monitor, and its writes
    # are not in the device's statistics: a bitmap of our own counts them.
    "$KNIB" qmp "$qmp" block-dirty-bitmap-add node=disk0 name=bench-check >/dev/null \
      || die "block-dirty-bitmap-add failed"
    "$KNIB" qmp --json "$qmp" <"$work/dirty.cmds" >"$work/dirty.out" 2>"$work/dirty.err" \
      || { show_log "$work/dirty.err"; die "the guest writes through HMP failed"; }
    ! grep -v '^""$' "$work/dirty.out" >/dev/null \
      || die "the guest writes through HMP failed: $(grep -v '^""$' "$work/dirty.out" | head -n 3)"
    "$KNIB" qmp --json "$qmp" query-block >"$work/query-block.out" || die "query-block failed"
    "$KNIB" qmp "$qmp" block-dirty-bitmap-remove node=disk0 name=bench-check >/dev/null \
      || die "block-dirty-bitmap-remove failed"
    wrote=$(awk 'BEGIN { RS = "{" }
      /"name": *"bench-check"/ { if (match ($0, /"count": *[0-9]+/)) { s = substr ($0, RSTART, RLENGTH); sub (/.*: */, "", s); print s } }' \
      "$work/query-block.out")
    [ "${wrote:-0}" -eq $((nwrites * 1048576)) ] \
      || die "${wrote:-0} bytes of the $nwrites MiB of guest writes went through (see $work/qemu.log)"
    echo "  round $round: dirtied $nwrites MiB in $nwrites scattered writes; knib backup --incremental"
    settle
    if measure inc "$KNIB" backup --qmp "$qmp" --vm bench --repo "$repo" \
      --scratch "$work/scratch" --disk vda --incremental --json; then
      inc_id=$(json_get id "$work/inc.out")
      inc_img=$repo/vms/bench/$inc_id/vda.qcow2
      [ -n "$inc_id" ] && [ -f "$inc_img" ] \
        || die "knib backup --incremental printed no id or wrote no $inc_img: $(cat "$work/inc.out")"
      inc_size=$(alloc_mib "$inc_img")
      inc_info=$(backup_info "$work/inc.out")
    fi
    round=$((round + 1))
  done
  if [ -n "$inc_size" ]; then
    # Sanity, not timed: pause the VM (QEMU flushes the disk), then the
    # chain must equal the disk, as no write came after the backup.
    "$KNIB" qmp "$qmp" stop >/dev/null
    qemu-img compare -U -f qcow2 -F qcow2 "$disk" "$inc_img" >"$work/cmp-inc.log" 2>&1 \
      || { show_log "$work/cmp-inc.log"; die "the incremental backup chain $inc_img differs from the disk"; }
  fi
  # For the quick restore of a big disk: a full backup of the 64 GiB one
  # (not timed).
  case " $big_rows " in
  *" 64G "*)
    "$KNIB" backup --qmp "$qmp" --vm bench --repo "$work/repo64" --scratch "$big_scratch" \
      --disk "$dev_64G" --full --json >"$work/full64.out" 2>"$work/full64.err" \
      || { show_log "$work/full64.err"; die "the full backup of the 64G disk failed"; }
    id64=$(json_get id "$work/full64.out")
    ;;
  esac
  "$KNIB" qmp "$qmp" quit >/dev/null 2>&1 || :
  wait "$qemu_pid" 2>/dev/null || :
fi
#
# Restore: the chain of the last incremental (a full and its
# incrementals) to a new file, against qemu-img convert of the same
# chain; a quick restore (an overlay on the backup) until a VM runs on
# it, against a restore then the same start; the quick restore's
# consolidation (block-stream in that VM's QEMU) against qemu-img
# convert again.  The same quick start for the 64 GiB disk.
#
vmr_sock=$work/vmr.sock
vmr_pidfile=$work/vmr.pid

# start_vmr IMAGE: a VM on IMAGE (as vda), daemonized: QEMU returns once
# the VM runs.  Run timed, inside measure.
start_vmr_cmd='img=$1; shift; qemu-system-x86_64 -name bench-restore -machine "accel=$BENCH_ACCEL" -m 128 -nodefaults -display none -no-user-config -daemonize -pidfile "$BENCH_VMR_PID" -qmp "unix:$BENCH_VMR_SOCK,server=on,wait=off" -blockdev "driver=qcow2,node-name=disk0,file.driver=file,file.filename=$img" -device virtio-blk-pci,drive=disk0,id=vda'
export BENCH_ACCEL="$accel" BENCH_VMR_PID="$vmr_pidfile" BENCH_VMR_SOCK="$vmr_sock"

# The VM that start_vmr started, gone (not timed); "running" checked first.
stop_vmr () {
  [ -s "$vmr_pidfile" ] || return 0
  vpid=$(cat "$vmr_pidfile")
  pids="$pids $vpid"
  st=$("$KNIB" qmp --json "$vmr_sock" query-status 2>&1 || :)
  "$KNIB" qmp "$vmr_sock" quit >/dev/null 2>&1 || :
  i=0
  while kill -0 "$vpid" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 300 ] || { kill -9 "$vpid" 2>/dev/null || :; break; }
    sleep 0.1
  done
  rm -f "$vmr_pidfile" "$vmr_sock"
  case $st in
  *'"running"'*) ;;
  *) die "the restored VM was not running: $st" ;;
  esac
}

# quick_run KEY REPO ID DISK IMAGE SIZE-MIB: time a quick restore of DISK
# of backup ID onto IMAGE (a stopped VM's disk, made here) and the start
# of a VM on it; the VM stays up for the consolidation.
quick_run () {
  key=$1 qrepo=$2 qid=$3 qdisk=$4 qimg=$5 qmib=$6
  rm -f "$qimg"
  qemu-img create -q -f qcow2 "$qimg" "${qmib}M"
  settle
  measure "$key" sh -c '"$1" restore --repo "$2" --vm bench "$3" --image "$4=$5" --quick && shift 4 && '"$start_vmr_cmd" \
    sh "$KNIB" "$qrepo" "$qid" "$qdisk" "$qimg"
}

# full_run KEY REPO ID DISK IMAGE: time a restore of DISK of backup ID to
# IMAGE and the start of a VM on it.
full_run () {
  key=$1 qrepo=$2 qid=$3 qdisk=$4 qimg=$5
  rm -f "$qimg"
  settle
  measure "$key" sh -c '"$1" restore --repo "$2" --vm bench "$3" --disk "$4" --to "$5" && shift 4 && '"$start_vmr_cmd" \
    sh "$KNIB" "$qrepo" "$qid" "$qdisk" "$qimg"
}

if [ "$knib_ok" = yes ] && [ -n "${inc_id:-}" ]; then
  round=1
  while [ "$round" -le "$BENCH_ROUNDS" ]; do
    echo "restore round $round of $BENCH_ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "  qemu-img convert of the chain + sync"
    run_convert restconv "$inc_img"
    echo "  knib restore of the chain to a file"
    rm -f "$work/restore.qcow2"
    settle
    if measure restore "$KNIB" restore --repo "$repo" --vm bench "$inc_id" --disk vda \
      --to "$work/restore.qcow2" && [ "$round" -eq 1 ]; then
      qemu-img compare -f qcow2 -F qcow2 "$inc_img" "$work/restore.qcow2" >"$work/cmp-restore.log" 2>&1 \
        || { show_log "$work/cmp-restore.log"; die "the restored image differs from the chain"; }
    fi
    restore_size=$(alloc_mib "$work/restore.qcow2")
    rm -f "$work/restore.qcow2"
    echo "  knib restore, then a VM started on it"
    full_run restrun "$repo" "$inc_id" vda "$work/restrun.qcow2" && stop_vmr
    rm -f "$work/restrun.qcow2"
    echo "  knib restore --quick, then a VM started on it; knib restore --consolidate --wait"
    if quick_run quickrun "$repo" "$inc_id" vda "$work/quick.qcow2" "$size_mib"; then
      # The quick restore read the chain to hash it: the consolidation
      # starts from the same page cache as the convert it is held to.
      settle
      measure consol "$KNIB" restore --repo "$repo" --consolidate --qmp "$vmr_sock" \
        --vm bench --wait || :
      stop_vmr
      if [ "$round" -eq 1 ]; then
        qemu-img compare -f qcow2 -F qcow2 "$inc_img" "$work/quick.qcow2" >"$work/cmp-quick.log" 2>&1 \
          || { show_log "$work/cmp-quick.log"; die "the consolidated image differs from the chain"; }
      fi
    fi
    rm -f "$work/quick.qcow2"
    if [ -n "${id64:-}" ]; then
      echo "  64G disk: knib restore, then a VM; knib restore --quick, then a VM"
      full_run restrun64 "$work/repo64" "$id64" "$dev_64G" "$work/restrun64.qcow2" && stop_vmr
      rm -f "$work/restrun64.qcow2"
      quick_run quickrun64 "$work/repo64" "$id64" "$dev_64G" "$work/quick64.qcow2" 65536 && stop_vmr
      rm -f "$work/quick64.qcow2"
    fi
    round=$((round + 1))
  done
fi

#
# virtnbdbackup (scripts/deps --bench installs it), what users would pick
# instead: a full and an incremental backup of the same disk (an overlay
# on the workload, the same 1% dirtied) of a libvirt domain with no guest
# OS, libvirt's QEMU on KVM when its user can open /dev/kvm (scripts/accel
# --libvirt).  libvirtd is started when none answers, and stopped at the
# end when it was started here and runs no other domain.
#
vnb_dom=""
vnb_libvirtd=""
vnb_cleanup () {
  if [ -n "$vnb_dom" ]; then
    virsh destroy "$vnb_dom" >/dev/null 2>&1 || :
    virsh undefine "$vnb_dom" --checkpoints-metadata >/dev/null 2>&1 || :
  fi
  if [ -n "$vnb_libvirtd" ] && [ -z "$(virsh list --name 2>/dev/null | tr -d '[:space:]')" ]; then
    kill "$vnb_libvirtd" 2>/dev/null || :
  fi
}
if command -v virtnbdbackup >/dev/null 2>&1 && command -v virsh >/dev/null 2>&1 \
  && command -v libvirtd >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  export LIBVIRT_DEFAULT_URI=qemu:///system
  if ! virsh version >/dev/null 2>&1; then
    pgrep -x virtlogd >/dev/null 2>&1 || virtlogd -d
    libvirtd -d
    i=0
    until virsh version >/dev/null 2>&1; do
      i=$((i + 1))
      [ "$i" -le 300 ] || die "libvirtd does not answer"
      sleep 0.1
    done
    vnb_libvirtd=$(cat /run/libvirtd.pid 2>/dev/null || :)
  fi
  # libvirt's QEMU user must reach the images in here.
  chmod 755 "$work"
  vnb_disk=$work/vnb.qcow2
  qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$vnb_disk" "${size_mib}M"
  vnb_dom=knib-bench-$$
  cat >"$work/vnb.xml" <<EOF
<domain type='$("$here/../scripts/accel" --libvirt)'>
  <name>$vnb_dom</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$vnb_disk'/><target dev='vda' bus='virtio'/></disk>
  </devices>
</domain>
EOF
  vnb_ok=yes
  if ! virsh define "$work/vnb.xml" >/dev/null || ! virsh start "$vnb_dom" >/dev/null; then
    echo "bench: the virtnbdbackup domain $vnb_dom did not start: no virtnbdbackup rows" >&2
    failed=yes
    vnb_ok=no
  fi
  vnb_ver=$(virtnbdbackup -V 2>&1 | tail -n 1)
  round=1
  while [ "$vnb_ok" = yes ] && [ "$round" -le "$BENCH_ROUNDS" ]; do
    echo "virtnbdbackup round $round of $BENCH_ROUNDS ($vnb_ver; load average $(cut -d' ' -f1-3 /proc/loadavg))"
    rm -rf "$work/vnb-out"
    settle
    measure vnbfull virtnbdbackup -d "$vnb_dom" -l full -n -S "$work" -o "$work/vnb-out" || :
    vnbfull_size=$(du -sk "$work/vnb-out" 2>/dev/null | awk '{ printf "%.1f", $1 / 1024 }')
    nwrites=$(((size_mib + 99) / 100))
    slot=$((size_mib / nwrites))
    i=0
    while [ "$i" -lt "$nwrites" ]; do
      off=$((i * slot + (i * 37 + round * 13) % (slot > 1 ? slot / 2 : 1)))
      # libvirtd is shared: another user may restart it under us.
      virsh qemu-monitor-command "$vnb_dom" --hmp \
        "qemu-io -d virtio-disk0/virtio-backend \"write -P 0x6$round ${off}M 1M\"" >/dev/null \
        || break
      i=$((i + 1))
    done
    if [ "$i" -lt "$nwrites" ]; then
      echo "bench: the guest writes through libvirt's monitor failed: no more virtnbdbackup rounds" >&2
      failed=yes
      break
    fi
    du -sk "$work/vnb-out" | awk '{ print $1 }' >"$work/vnb-before"
    settle
    measure vnbinc virtnbdbackup -d "$vnb_dom" -l inc -n -S "$work" -o "$work/vnb-out" || :
    vnbinc_size=$(du -sk "$work/vnb-out" | awk -v b="$(cat "$work/vnb-before")" '{ printf "%.1f", ($1 - b) / 1024 }')
    round=$((round + 1))
  done
  rm -rf "$work/vnb-out"
  vnb_cleanup
  # A libvirtd restarted meanwhile may have missed the destroy: again.
  if virsh domstate "$vnb_dom" >/dev/null 2>&1; then
    sleep 1
    vnb_cleanup
  fi
  vnb_dom="" vnb_libvirtd=""
else
  echo "virtnbdbackup: not installed (scripts/deps --bench), or not root: no virtnbdbackup rows"
fi

kill "$nbd_pid" 2>/dev/null || :
wait "$nbd_pid" 2>/dev/null || :
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

#
# The table, the ratios, the targets.
#

# stats KEY FIELD: median, min and max of a column of runs.KEY (1: seconds,
# 2: RSS), "" when it never ran; only runs that succeeded count.
stats () {
  [ -s "$work/runs.$1" ] || return 0
  awk -v f="$2" '$3 == 0 { print $f }' "$work/runs.$1" | sort -n \
    | awk '{ v[NR] = $1 } END { if (NR == 0) exit; m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f %.2f %d\n", m, v[1], v[NR], NR }'
}

# ratios A B: the per-round ratios A/B, one a line ("" when a side failed).
ratios () {
  [ -s "$work/runs.$1" ] && [ -s "$work/runs.$2" ] || return 0
  paste -d' ' "$work/runs.$1" "$work/runs.$2" \
    | awk '$3 == 0 && $6 == 0 && $4 > 0 { printf "%.3f\n", $1 / $4 }'
}

# median of stdin's numbers; min and max too with "all".
median () {
  sort -n | awk -v all="${1:-}" '{ v[NR] = $1 } END { if (NR == 0) exit; m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; if (all) printf "%.3f %.3f %.3f\n", m, v[1], v[NR]; else printf "%.3f\n", m }'
}

row () {
  # row LABEL KEY SIZE
  st=$(stats "$2" 1)
  if [ -z "$st" ]; then
    if [ -s "$work/runs.$2" ]; then
      printf '%-34s %s\n' "$1" "FAILED"
    else
      printf '%-34s %s\n' "$1" "not measured"
    fi
    return 0
  fi
  set -- "$1" "$2" "$3" $st
  rss=$(stats "$2" 2 | cut -d' ' -f3)
  printf '%-34s %8.2f %6.2f-%-6.2f %8s %9s\n' "$1" "$4" "$5" "$6" "$rss" "${3:--}"
}

echo
printf '%-34s %8s %13s %8s %9s\n' "" "median s" "min-max" "RSS MiB" "out MiB"
row "qemu-img convert -O qcow2 + sync" convert "${convert_size:-}"
row "knib backup --full" full "${full_size:-}"
row "nbdcopy qemu-nbd -> file --flush" nbdcopy "${nbdcopy_size:-}"
if [ "$knib_ok" = yes ]; then
  row "nbdcopy fleecing export -> null:" nbdnull ""
else
  row "nbdcopy qemu-nbd -> null:" nbdnull ""
fi
row "dd to a file, oflag=direct" ddwrite "$((random_mib + text_mib))"
row "qemu-img convert -c zstd + sync" convertz "${convertz_size:-}"
row "knib backup --compress zstd" fullz "${fullz_size:-}"
for name in $big_rows; do
  eval "cs=\${convert${name}_size:-} ks=\${full${name}_size:-}"
  row "qemu-img convert ($name disk)" "convert$name" "$cs"
  row "knib backup --full ($name disk)" "full$name" "$ks"
done
row "knib backup --incremental (1%)" inc "$inc_size"
row "virtnbdbackup full (libvirt)" vnbfull "${vnbfull_size:-}"
row "virtnbdbackup inc (libvirt, 1%)" vnbinc "${vnbinc_size:-}"
row "qemu-img convert of the chain + sync" restconv "${restconv_size:-}"
row "knib restore of the chain" restore "${restore_size:-}"
row "knib restore + VM start" restrun ""
row "knib restore --quick + VM start" quickrun ""
row "knib restore --consolidate --wait" consol ""
row "knib restore + VM start (64G)" restrun64 ""
row "knib restore --quick + VM start (64G)" quickrun64 ""
[ -z "${full_info:-}" ] || echo "  full: $full_info"
[ -z "${inc_info:-}" ] || echo "  incremental: $inc_info"
echo "  (RSS: the largest of the rounds; rounds: $BENCH_ROUNDS; load average $load_start at the start, $load_end at the end)"

echo
echo "ratios in the same round (median, min, max):"
ratio_row () {
  r=$(ratios "$2" "$3" | median all)
  printf '  %-40s %s\n' "$1" "${r:-n/a}"
}
ratio_row "knib full / qemu-img convert" full convert
ratio_row "knib full / nbdcopy to file" full nbdcopy
ratio_row "knib full / nbdcopy to null:" full nbdnull
ratio_row "knib full / dd to a file (O_DIRECT)" full ddwrite
ratio_row "dd to a file / nbdcopy to null:" ddwrite nbdnull
ratio_row "qemu-img convert -c / knib zstd" convertz fullz
for name in $big_rows; do
  ratio_row "knib full $name disk / knib full" "full$name" full
done
ratio_row "knib full / virtnbdbackup full" full vnbfull
ratio_row "knib inc / virtnbdbackup inc" inc vnbinc
ratio_row "knib restore / qemu-img convert (chain)" restore restconv
ratio_row "knib consolidation / qemu-img convert" consol restconv
ratio_row "quick + start / restore + start" quickrun restrun
ratio_row "quick + start / restore + start (64G)" quickrun64 restrun64

# target LABEL OK-CONDITION-AWK DETAIL (or "n/a" when not measured)
targets_json=""
target () {
  if [ "$2" = n/a ]; then
    verdict=n/a
    printf 'target: %-52s n/a (not measured)\n' "$1"
  elif awk "BEGIN { exit !($2) }"; then
    verdict=PASS
    printf 'target: %-52s PASS (%s)\n' "$1" "$3"
  else
    verdict=MISS
    printf 'target: %-52s MISS (%s)\n' "$1" "$3"
  fi
  targets_json="$targets_json${targets_json:+, }{\"target\": \"$1\", \"result\": \"$verdict\", \"detail\": \"${3:-}\"}"
}
# ratio_target LABEL A B CONDITION: the median of the rounds' A/B ratios
# against CONDITION ("<= 1.0").
ratio_target () {
  r=$(ratios "$2" "$3" | median)
  if [ -n "$r" ]; then
    target "$1" "$r $4" "median ${r}x"
  else
    target "$1" n/a
  fi
}
echo
r=$(ratios full convert | median all)
if [ -n "$r" ]; then
  set -- $r
  target "full <= 0.8x qemu-img convert (median of rounds)" "$1 <= 0.8" "median $1x"
  target "full <= 1.0x qemu-img convert in every round" "$3 <= 1.0" "worst round $3x"
else
  target "full <= 0.8x qemu-img convert (median of rounds)" n/a
  target "full <= 1.0x qemu-img convert in every round" n/a
fi
ratio_target "stretch: full within 1.2x nbdcopy to null:" full nbdnull "<= 1.2"
last=""
for name in $big_rows; do
  last=$name
done
r=""
[ -z "$last" ] || r=$(ratios "full$last" full | median)
if [ -n "$r" ]; then
  target "time follows data: $last disk <= 1.3x the small one" "$r <= 1.3" "median ${r}x"
else
  target "time follows data: big disk <= 1.3x the small one" n/a
fi
fm=$(stats full 1 | cut -d' ' -f1)
im=$(stats inc 1 | cut -d' ' -f1)
if [ -n "$fm" ] && [ -n "$im" ]; then
  target "incremental 1% <= 0.1x full (medians)" "$im <= $fm * 0.1" "$im s vs $fm s"
else
  target "incremental 1% <= 0.1x full (medians)" n/a
fi
r=$(ratios convertz fullz | median)
if [ -n "$r" ]; then
  target "zstd backup >= 2x faster than qemu-img -c" "$r >= 2" "median ${r}x"
  target "zstd backup no larger than qemu-img -c" "${fullz_size:-0} <= ${convertz_size:-0}" \
    "${fullz_size:-?} MiB vs ${convertz_size:-?} MiB"
else
  target "zstd backup >= 2x faster than qemu-img -c" n/a
fi
ratio_target "restore of a chain no slower than qemu-img convert" restore restconv "<= 1.0"
ratio_target "quick-restore consolidation no slower than convert" consol restconv "<= 1.0"
peak=""
for key in full fullz inc $(for name in $big_rows; do echo "full$name"; done); do
  v=$(stats "$key" 2 | cut -d' ' -f3)
  [ -n "$v" ] || continue
  peak=$(awk -v a="${peak:-0}" -v b="$v" 'BEGIN { print (a > b ? a : b) }')
done
if [ -n "$peak" ]; then
  target "knib peak RSS <= 32 MiB (also with compression)" "$peak <= 32" "$peak MiB"
else
  target "knib peak RSS <= 32 MiB (also with compression)" n/a
fi

# The JSON: every run, and the targets.
mkdir -p "$BENCH_RESULTS"
commit=$(cd "$here" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
json=$BENCH_RESULTS/$(date -u +%Y%m%dT%H%M%SZ)-$commit.json
{
  printf '{"commit": "%s", "size_mib": %s, "random_mib": %s, "compressible_mib": %s, ' \
    "$commit" "$size_mib" "$random_mib" "$text_mib"
  printf '"rounds": %s, "cpus": %s, "accel": "%s", "page_cache_dropped": %s, ' \
    "$BENCH_ROUNDS" "$(nproc)" "$accel" "$([ "$drop" = yes ] && echo true || echo false)"
  printf '"load_start": "%s", "load_end": "%s", "runs": {' "$load_start" "$load_end"
  sep=""
  for f in "$work"/runs.*; do
    [ -e "$f" ] || continue
    printf '%s"%s": [' "$sep" "${f##*/runs.}"
    awk '{ printf "%s{\"seconds\": %s, \"rss_mib\": %s, \"status\": %s}", (NR > 1 ? ", " : ""), $1, $2, $3 }' "$f"
    printf ']'
    sep=", "
  done
  printf '}, "targets": [%s]}\n' "$targets_json"
} >"$json"
echo
echo "results: $json"

if [ "$failed" = yes ]; then
  echo "bench: some commands failed (see above)" >&2
  exit 1
fi
