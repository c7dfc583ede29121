#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# files.sh: the files part of `make bench`: seconds to the first answer of
# "knib files ls" (libguestfs's appliance starting) and the throughput of
# "knib files get" of a tree against "guestfish --ro ... copy-out" of the
# same tree from the same backup, in the same run.
#
# Environment: BENCH_FILES_SIZE (the tree's size, default 1G, in MiB with
# an M or G suffix), BENCH_DIR (scratch, default /var/tmp), KNIB, RUNSTAT.
# Exit status: 0 when every row ran (targets may be missed), 1 otherwise.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
: "${KNIB:=$here/../src/cli/knib}"
: "${RUNSTAT:=$here/runstat}"
: "${BENCH_FILES_SIZE:=1G}"
: "${BENCH_DIR:=/var/tmp}"

die () {
  echo "bench files: $*" >&2
  exit 1
}

case $BENCH_FILES_SIZE in
*[Gg]) mib=$((${BENCH_FILES_SIZE%?} * 1024)) ;;
*[Mm]) mib=${BENCH_FILES_SIZE%?} ;;
*) die "BENCH_FILES_SIZE '$BENCH_FILES_SIZE': a size in M or G" ;;
esac
for prog in guestfish mkfs.ext4 qemu-img; do
  command -v "$prog" >/dev/null 2>&1 || die "$prog is not installed (./scripts/deps)"
done
[ -x "$RUNSTAT" ] || die "$RUNSTAT is missing: run 'make bench'"

work=$(mktemp -d "$BENCH_DIR/knib-bench-files.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg

# The tree: 16 MiB files of random data, and a thousand small files.
mkdir -p tree/big tree/small
n=$((mib / 16))
i=0
while [ $i -lt "$n" ]; do
  head -c 16M /dev/urandom >"tree/big/f$i"
  i=$((i + 1))
done
i=0
while [ $i -lt 1000 ]; do
  head -c 4096 /dev/urandom >"tree/small/s$i"
  i=$((i + 1))
done
mkdir root && mv tree root/
mkfs.ext4 -q -F -d root fs.raw "$((mib + mib / 4 + 64))M" >mkfs.log 2>&1 \
  || die "mkfs.ext4: $(cat mkfs.log)"
"$KNIB" backup --repo repo --vm bench --image vda=fs.raw >backup.log 2>&1 \
  || die "backup: $(cat backup.log)"
id=$(ls repo/vms/bench | grep '^2')
image=repo/vms/bench/$id/vda.qcow2

# measure KEY COMMAND...: seconds into KEY_secs.
measure () {
  key=$1
  shift
  "$RUNSTAT" -o "$key.stat" "$@" >"$key.out" 2>"$key.err" \
    || die "$key: '$*' failed: $(tail -5 "$key.err")"
  eval "${key}_secs=$(awk '$1 == "seconds" { print $2 }' "$key.stat")"
}

echo "measuring knib files ls (the appliance's first answer)..."
measure ls "$KNIB" files ls --repo repo "$id"
echo "measuring knib files get of a $mib MiB tree..."
measure get "$KNIB" files get --repo repo "$id" /tree --to get -q
echo "measuring guestfish --ro copy-out of the same tree..."
mkdir gf
measure gf guestfish --ro --format=qcow2 -a "$image" run : mount-ro /dev/sda / \
  : copy-out /tree gf
diff -r get/tree gf/tree >/dev/null || die "knib's copy differs from guestfish's"

echo
printf '%-40s %8.2f s\n' "knib files ls (first answer)" "$ls_secs"
printf '%-40s %8.2f s  %8.1f MiB/s\n' "knib files get" "$get_secs" \
  "$(awk "BEGIN { print $mib / $get_secs }")"
printf '%-40s %8.2f s  %8.1f MiB/s\n' "guestfish copy-out" "$gf_secs" \
  "$(awk "BEGIN { print $mib / $gf_secs }")"
for t in "first answer within 30 s (TCG)|$ls_secs <= 30|$ls_secs s" \
  "get no slower than 1.25 x guestfish copy-out|$get_secs <= 1.25 * $gf_secs|$get_secs s vs $gf_secs s"; do
  label=${t%%|*}
  rest=${t#*|}
  if awk "BEGIN { exit !(${rest%%|*}) }"; then
    printf 'target: %-46s PASS (%s)\n' "$label" "${rest#*|}"
  else
    printf 'target: %-46s MISS (%s)\n' "$label" "${rest#*|}"
  fi
done
