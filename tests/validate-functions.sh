# SPDX-License-Identifier: Apache-2.0
# validate-functions.sh: helpers for the validate-*.sh tests (sourced after functions.sh): backups of small disks, the repository's hash, leftovers.

REPO=$TMPDIR_TEST/repo
SCRATCH=$TMPDIR_TEST/scratch
CONF=$TMPDIR_TEST/knib.conf
printf 'validation-jobs-per-host = 1\n' >"$CONF"

# knib with the test's settings (not the host's /etc/knib/knib.conf).
vknib () {
  "$KNIB" --config "$CONF" "$@"
}

# backup_image VM IMAGE: an offline backup of IMAGE as disk vda of VM;
# prints the backup's id.
backup_image () {
  "$KNIB" backup --image "vda=$2" --vm "$1" --repo "$REPO" \
    --scratch "$SCRATCH" >"$TMPDIR_TEST/backup-$1.out" 2>&1 ||
    fail "backup of $2: $(cat "$TMPDIR_TEST/backup-$1.out")"
  ls "$REPO/vms/$1" | grep '^2' | sort | tail -n 1
}

# blank_disk PATH: a qcow2 disk with nothing on it.
blank_disk () {
  qemu-img create -q -f qcow2 "$1" 64M
}

# spinning_disk PATH: a raw disk whose boot sector loops for ever
# ("jmp $"): the BIOS boots it and the guest never answers.
spinning_disk () {
  truncate -s 64M "$1"
  printf '\353\376' | dd of="$1" conv=notrunc status=none
  printf '\125\252' | dd of="$1" bs=1 seek=510 conv=notrunc status=none
}

# repo_hash: a hash of every file of the repository but the manifests,
# the validation's own files and the VMs' pins (what a validation may
# write).
repo_hash () {
  (cd "$REPO" && find . -type f ! -name manifest.json ! -path '*/validation/*' \
    ! -name pins.json ! -name .pins.lock -print0 | sort -z |
    xargs -0 sha256sum) | sha256sum
}

# qemu_started PID LOG: wait (up to 60 s) until a validation QEMU of the
# test's scratch directory runs; knib PID must live meanwhile (else LOG
# says why).
qemu_started () {
  i=0
  until pgrep -f "qemu-system-x86_64.*$SCRATCH" >/dev/null; do
    i=$((i + 1))
    [ "$i" -le 600 ] || fail "no validation QEMU started: $(cat "$2")"
    kill -0 "$1" 2>/dev/null || fail "knib ended early: $(cat "$2")"
    sleep 0.1
  done
}

# qemu_gone [SECONDS]: wait (default 10 s) until no validation QEMU of
# the test's scratch directory runs.
qemu_gone () {
  i=0
  while pgrep -f "qemu-system-x86_64.*$SCRATCH" >/dev/null; do
    i=$((i + 1))
    [ "$i" -le $((${1:-10} * 10)) ] ||
      fail "a validation QEMU still runs: $(pgrep -af "qemu-system-x86_64.*$SCRATCH")"
    sleep 0.1
  done
}

# no_leftovers: no QEMU of the test's scratch directory runs, no VM
# directory or overlay is left in it.
no_leftovers () {
  qemu_gone
  left=$(find "$SCRATCH" -mindepth 1 -maxdepth 1 -name 'vm-*' 2>/dev/null)
  [ -z "$left" ] || fail "scratch left behind: $left"
  ! find "$SCRATCH" -name '*.qcow2' 2>/dev/null | grep -q . ||
    fail "an overlay was left: $(find "$SCRATCH" -name '*.qcow2')"
}

# The validation's files of backup ID of VM.
validation_dir () {
  echo "$REPO/vms/$1/$2/validation"
}
