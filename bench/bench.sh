#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# bench.sh: knib's benchmark (`make bench`): knib's full and incremental
# backups of a running VM against qemu-img convert and nbdcopy, all on one
# generated disk, with wall time, peak RSS, output size and targets.
#
# Environment: BENCH_SIZE (virtual size, default 8G), BENCH_RANDOM (random
# data, default 1G), BENCH_COMPRESSIBLE (text-like data, default 1G), all in
# bytes or with a K/M/G/T suffix and whole MiB; BENCH_DIR (where the scratch
# directory goes, default /var/tmp); KNIB and RUNSTAT (the programs).
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
  for pid in $pids; do
    kill -9 "$pid" 2>/dev/null || :
  done
  for pid in $pids; do
    wait "$pid" 2>/dev/null || :
  done
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
disk=$work/disk.qcow2
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
qemu-img create -q -f qcow2 "$disk" "${size_mib}M"
qemu-img convert -n -f raw -O qcow2 "$raw" "$disk"
rm -f "$raw"
cat "$disk" >/dev/null # every row reads a warm page cache
echo "  workload generated in $(($(now) - t0)) s (not measured): $(alloc_mib "$disk") MiB allocated"
echo

#
# Baselines.
#
echo "measuring qemu-img convert -O qcow2 (then sync of the copy)..."
copy=$work/convert.qcow2
measure convert sh -c 'qemu-img convert -f qcow2 -O qcow2 "$1" "$2" && sync "$2"' \
  sh "$disk" "$copy" || :
convert_size=$(alloc_mib "$copy")
rm -f "$copy"

echo "measuring qemu-img convert -c -O qcow2 -o compression_type=zstd (then sync of the copy)..."
copy=$work/convertz.qcow2
measure convertz sh -c 'qemu-img convert -c -f qcow2 -O qcow2 -o compression_type=zstd "$1" "$2" && sync "$2"' \
  sh "$disk" "$copy" || :
convertz_size=$(alloc_mib "$copy")
rm -f "$copy"

nbd_sock=$work/nbd.sock
qemu-nbd --read-only --format=qcow2 --persistent --shared=8 \
  --socket="$nbd_sock" "$disk" >"$work/qemu-nbd.log" 2>&1 &
nbd_pid=$!
pids="$pids $nbd_pid"
i=0
while [ ! -S "$nbd_sock" ]; do
  i=$((i + 1))
  [ "$i" -le 300 ] || { show_log "$work/qemu-nbd.log"; die "qemu-nbd did not start"; }
  sleep 0.1
done
echo "measuring nbdcopy from qemu-nbd to a file (--flush)..."
copy=$work/nbdcopy.raw
measure nbdcopy nbdcopy --flush "nbd+unix:///?socket=$nbd_sock" "$copy" || :
nbdcopy_size=$(alloc_mib "$copy")
rm -f "$copy"
echo "measuring nbdcopy from qemu-nbd to null:..."
measure nbdnull nbdcopy "nbd+unix:///?socket=$nbd_sock" null: || :
kill "$nbd_pid"
wait "$nbd_pid" 2>/dev/null || :

#
# knib: a full backup of a running VM, 1% of the disk dirtied in scattered
# 1 MiB guest writes, an incremental backup.
#
repo=$work/repo
full_size="" inc_size=""
if [ "$knib_ok" = yes ]; then
  qmp=$work/qmp.sock
  qemu-system-x86_64 -name bench -machine "accel=$accel" -m 128 -nodefaults \
    -display none -no-user-config \
    -qmp "unix:$qmp,server=on,wait=off" \
    -blockdev "driver=qcow2,node-name=disk0,file.driver=file,file.filename=$disk" \
    -device virtio-blk-pci,drive=disk0,id=vda >"$work/qemu.log" 2>&1 &
  qemu_pid=$!
  pids="$pids $qemu_pid"
  i=0
  while [ ! -S "$qmp" ]; do
    i=$((i + 1))
    [ "$i" -le 300 ] || { show_log "$work/qemu.log"; die "QEMU did not start"; }
    sleep 0.1
  done

  echo "measuring knib backup --full..."
  if measure full "$KNIB" backup --qmp "$qmp" --vm bench --repo "$repo" \
    --scratch "$work/scratch" --full --json; then
    full_id=$(json_get id "$work/full.out")
    full_img=$repo/vms/bench/$full_id/vda.qcow2
    [ -n "$full_id" ] && [ -f "$full_img" ] \
      || die "knib backup --full printed no id or wrote no $full_img: $(cat "$work/full.out")"
    full_size=$(alloc_mib "$repo/vms/bench/$full_id"/*.qcow2)
    full_info=$(backup_info "$work/full.out")
    # Sanity, not timed: no guest runs, so the disk still holds what it held.
    qemu-img compare -U -f qcow2 -F qcow2 "$disk" "$full_img" >"$work/cmp-full.log" 2>&1 \
      || { show_log "$work/cmp-full.log"; die "the full backup $full_img differs from the disk"; }
  fi

  # Compressed: an isolated backup leaves the chain's bitmaps alone.
  fullz_size=""
  echo "measuring knib backup --isolated --compress zstd..."
  if measure fullz "$KNIB" backup --qmp "$qmp" --vm bench --repo "$repo" \
    --scratch "$work/scratch" --isolated --compress zstd --json; then
    fullz_img=$repo/vms/bench/$(json_get id "$work/fullz.out")/vda.qcow2
    fullz_size=$(alloc_mib "$fullz_img")
    qemu-img compare -U -f qcow2 -F qcow2 "$disk" "$fullz_img" >"$work/cmp-fullz.log" 2>&1 \
      || { show_log "$work/cmp-fullz.log"; die "the zstd backup $fullz_img differs from the disk"; }
  fi

  # 1% of the disk: evenly spread 1 MiB writes, each nudged off its slot's
  # start, in one QMP session.
  nwrites=$(((size_mib + 99) / 100))
  slot=$((size_mib / nwrites))
  i=0
  : >"$work/dirty.cmds"
  while [ "$i" -lt "$nwrites" ]; do
    off=$((i * slot + (i * 37) % (slot > 1 ? slot / 2 : 1)))
    printf 'human-monitor-command {"command-line": "qemu-io -d vda/virtio-backend \\"write -P 0x5a %dM 1M\\""}\n' \
      "$off" >>"$work/dirty.cmds"
    i=$((i + 1))
  done
  # qemu-io prints to QEMU's stdout, not to the monitor, and its writes
  # are not in the device's statistics: a bitmap of our own counts them.
  "$KNIB" qmp "$qmp" block-dirty-bitmap-add node=disk0 name=bench-check >/dev/null \
    || die "block-dirty-bitmap-add failed"
  t0=$(now)
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
  echo "  dirtied $nwrites MiB in $nwrites scattered writes ($(($(now) - t0)) s, not measured)"

  if [ -n "$full_size" ]; then
    echo "measuring knib backup --incremental..."
    if measure inc "$KNIB" backup --qmp "$qmp" --vm bench --repo "$repo" \
      --scratch "$work/scratch" --incremental --json; then
      inc_id=$(json_get id "$work/inc.out")
      inc_img=$repo/vms/bench/$inc_id/vda.qcow2
      [ -n "$inc_id" ] && [ -f "$inc_img" ] \
        || die "knib backup --incremental printed no id or wrote no $inc_img: $(cat "$work/inc.out")"
      inc_size=$(alloc_mib "$repo/vms/bench/$inc_id"/*.qcow2)
      inc_info=$(backup_info "$work/inc.out")
      # Sanity, not timed: pause the VM (QEMU flushes the disk), then the
      # chain must equal the disk, as no write came after the backup.
      "$KNIB" qmp "$qmp" stop >/dev/null
      qemu-img compare -U -f qcow2 -F qcow2 "$disk" "$inc_img" >"$work/cmp-inc.log" 2>&1 \
        || { show_log "$work/cmp-inc.log"; die "the incremental backup chain $inc_img differs from the disk"; }
    fi
  fi
  "$KNIB" qmp "$qmp" quit >/dev/null 2>&1 || :
  wait "$qemu_pid" 2>/dev/null || :
fi

#
# The table, the ratios, the targets.
#
row () {
  # row LABEL KEY SIZE [WHY-NOT-MEASURED]
  eval "s=\${$2_secs:-} r=\${$2_rss:-} st=\${$2_status:-}"
  if [ -z "$s" ]; then
    printf '%-34s %s\n' "$1" "${4:-not measured}"
  elif [ "$st" -ne 0 ]; then
    printf '%-34s %10.2f %10s %10s  FAILED (exit status %s)\n' "$1" "$s" "$r" "-" "$st"
  else
    printf '%-34s %10.2f %10s %10s\n' "$1" "$s" "$r" "${3:--}"
  fi
}

echo
printf '%-34s %10s %10s %10s\n' "" "wall s" "RSS MiB" "out MiB"
row "qemu-img convert -O qcow2 + sync" convert "$convert_size"
row "nbdcopy qemu-nbd -> file --flush" nbdcopy "$nbdcopy_size"
row "nbdcopy qemu-nbd -> null:" nbdnull ""
row "qemu-img convert -c zstd + sync" convertz "$convertz_size"
if [ "$knib_ok" = yes ]; then
  row "knib backup --full" full "$full_size"
  row "knib backup --incremental" inc "$inc_size" "not measured (no full backup)"
  row "knib backup --compress zstd" fullz "${fullz_size:-}"
else
  printf '%-34s %s\n' "knib backup --full" "knib backup: not available"
  printf '%-34s %s\n' "knib backup --incremental" "knib backup: not available"
fi
[ -z "${full_info:-}" ] || echo "  full: $full_info"
[ -z "${inc_info:-}" ] || echo "  incremental: $inc_info"

full_ok=no inc_ok=no
[ -z "$full_size" ] || full_ok=yes
[ -z "$inc_size" ] || inc_ok=yes
echo
if [ "$full_ok" = yes ]; then
  printf '%-34s %s\n' "knib full / qemu-img convert" "$(ratio "$full_secs" "$convert_secs")"
  printf '%-34s %s\n' "knib full / nbdcopy to file" "$(ratio "$full_secs" "$nbdcopy_secs")"
else
  printf '%-34s %s\n' "knib full / qemu-img convert" "n/a"
  printf '%-34s %s\n' "knib full / nbdcopy to file" "n/a"
fi
if [ "$inc_ok" = yes ]; then
  printf '%-34s %s\n' "knib incremental / knib full" "$(ratio "$inc_secs" "$full_secs")"
else
  printf '%-34s %s\n' "knib incremental / knib full" "n/a"
fi

# target LABEL OK-CONDITION-AWK DETAIL (or "n/a" when not measured)
target () {
  if [ "$2" = n/a ]; then
    printf 'target: %-46s n/a (not measured)\n' "$1"
  elif awk "BEGIN { exit !($2) }"; then
    printf 'target: %-46s PASS (%s)\n' "$1" "$3"
  else
    printf 'target: %-46s MISS (%s)\n' "$1" "$3"
  fi
}
echo
if [ "$full_ok" = yes ]; then
  target "full backup no slower than qemu-img convert" "$full_secs <= $convert_secs" \
    "$(printf '%.2f s vs %.2f s' "$full_secs" "$convert_secs")"
else
  target "full backup no slower than qemu-img convert" n/a
fi
if [ "$inc_ok" = yes ]; then
  target "incremental under a tenth of the full" "$inc_secs < $full_secs / 10" \
    "$(printf '%.2f s vs %.2f s' "$inc_secs" "$full_secs")"
else
  target "incremental under a tenth of the full" n/a
fi
if [ -n "${fullz_size:-}" ]; then
  target "zstd backup 1.5x faster than qemu-img -c" "$fullz_secs * 1.5 <= $convertz_secs" \
    "$(printf '%.2f s vs %.2f s' "$fullz_secs" "$convertz_secs")"
  target "zstd backup no larger than qemu-img -c" "$fullz_size <= $convertz_size" \
    "$fullz_size MiB vs $convertz_size MiB"
else
  target "zstd backup 1.5x faster than qemu-img -c" n/a
fi
if [ "$full_ok" = yes ]; then
  peak=$full_rss
  [ -z "${fullz_size:-}" ] || peak=$(awk -v a="$peak" -v b="$fullz_rss" 'BEGIN { print (a > b ? a : b) }')
  [ "$inc_ok" = no ] || peak=$(awk -v a="$full_rss" -v b="$inc_rss" 'BEGIN { print (a > b ? a : b) }')
  target "knib peak RSS under 32 MiB" "$peak < 32" "$peak MiB"
else
  target "knib peak RSS under 32 MiB" n/a
fi

if [ "$failed" = yes ]; then
  echo "bench: some commands failed (see above)" >&2
  exit 1
fi
