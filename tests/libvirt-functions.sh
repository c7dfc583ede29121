# SPDX-License-Identifier: Apache-2.0
# libvirt-functions.sh: helpers for the libvirt-*.sh tests (sourced after
# functions.sh): a real libvirtd (started here when none runs) that runs
# knib's hook from where libvirt reads it, a private domain with no guest
# OS, and the knib backups of it.  Whatever a test started, installed or
# defined goes when it exits.

export LIBVIRT_DEFAULT_URI=qemu:///system
: "${HOOK_BIN:=$(cd "$(dirname "$0")/.." && pwd)/hooks/knib-hook}"
HOOK_DIR=/etc/libvirt/hooks/qemu.d
HOOK=$HOOK_DIR/knib
RUN_DIR=/run/knib
STATE_DIR=/var/lib/knib
# A private domain name, also the VM's name in the repository.
DOM=knib-test-$$
REPO=$TMPDIR_TEST/repo
SCRATCH=$TMPDIR_TEST/scratch

_lv_started=""
_lv_saved_hook=""
_lv_new_hook_dir=""

# Skip unless libvirt, QEMU and root are there.
lv_require () {
  require virsh libvirtd virtlogd qemu-system-x86_64 qemu-img qemu-io \
    qemu-storage-daemon flock
  if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: the libvirt tests drive libvirt's qemu:///system: run them as root" >&2
    exit 77
  fi
  [ -x "$HOOK_BIN" ] || fail "$HOOK_BIN is not built"
}

_lv_daemon_pid () {
  cat "/run/$1.pid" 2>/dev/null || :
}

_lv_stop_daemon () {
  _p=$(_lv_daemon_pid "$1")
  [ -n "$_p" ] || return 0
  kill "$_p" 2>/dev/null || :
  _i=0
  while kill -0 "$_p" 2>/dev/null && [ "$_i" -lt 100 ]; do
    sleep 0.1
    _i=$((_i + 1))
  done
}

_lv_wait_libvirtd () {
  _i=0
  until virsh version >/dev/null 2>&1; do
    _i=$((_i + 1))
    [ "$_i" -le 300 ] || fail "libvirtd does not answer"
    sleep 0.1
  done
}

# Where root may open /dev/kvm but libvirt's QEMU user may not (crw-------
# root), libvirt 9 probes QEMU's capabilities with KVM enabled, then finds
# that cache invalid at each look-up ("KVM was enabled when probing ...,
# but it is not available now") and probes again: about 4 s a time, 36 s
# for one virsh define.  A first libvirtd that sees no usable /dev/kvm
# (an empty root-only file bound over it in a mount namespace of its own)
# writes the capabilities cache that is true for its domains, which the
# real libvirtd then keeps using; it is stopped before that one starts.
_lv_seed_capabilities () {
  [ -c /dev/kvm ] || return 0
  [ "$("$ACCEL" --libvirt 2>/dev/null)" = qemu ] || return 0
  command -v unshare >/dev/null 2>&1 || return 0
  : >"$TMPDIR_TEST/kvm-hidden"
  chmod 0600 "$TMPDIR_TEST/kvm-hidden"
  unshare --mount --propagation private sh -c \
    'mount --bind "$1" /dev/kvm && exec libvirtd -d' sh \
    "$TMPDIR_TEST/kvm-hidden" 9>&- || return 0
  _lv_wait_libvirtd
  virsh -q domcapabilities --virttype qemu --arch x86_64 >/dev/null 2>&1 || :
  _lv_stop_daemon libvirtd
}

_lv_start_libvirtd () {
  _lv_seed_capabilities
  libvirtd -d 9>&- || fail "cannot start libvirtd"
  _lv_wait_libvirtd
}

lv_cleanup () {
  virsh destroy "$DOM" >/dev/null 2>&1 || :
  virsh undefine "$DOM" >/dev/null 2>&1 || :
  rm -f "$RUN_DIR/domains/$DOM.json" "$STATE_DIR/domains/$DOM.xml"
  if [ -n "$_lv_saved_hook" ]; then
    cp -p "$_lv_saved_hook" "$HOOK" || :
  else
    rm -f "$HOOK"
  fi
  [ -z "$_lv_new_hook_dir" ] || rmdir "$HOOK_DIR" 2>/dev/null || :
  for _d in $_lv_started; do
    _lv_stop_daemon "$_d"
  done
}

# Install the hook where libvirtd reads it, and have a libvirtd that
# knows it: libvirtd looks for its hooks when it starts (then, once
# qemu.d existed, at each call).
lv_setup () {
  # One libvirt test at a time (make -j check): they share libvirtd and
  # the hook.  The lock goes when the test's shell exits.
  exec 9>"${TMPDIR:-/tmp}/knib-libvirt-tests.lock"
  flock 9
  trap '_lv_st=$?; lv_cleanup; (exit $_lv_st); _cleanup' EXIT
  # QEMU runs as libvirt's user (libvirt-qemu): it must reach the images
  # and knib's scratch directory in here.
  chmod 755 "$TMPDIR_TEST"
  if [ ! -d "$HOOK_DIR" ]; then
    mkdir -p "$HOOK_DIR"
    _lv_new_hook_dir=1
  elif [ -e "$HOOK" ]; then
    _lv_saved_hook=$TMPDIR_TEST/saved-hook
    cp -p "$HOOK" "$_lv_saved_hook"
  fi
  install -m 0755 "$HOOK_BIN" "$HOOK"
  if ! virsh version >/dev/null 2>&1; then
    if [ -z "$(_lv_daemon_pid virtlogd)" ] \
      || ! kill -0 "$(_lv_daemon_pid virtlogd)" 2>/dev/null; then
      virtlogd -d 9>&- || fail "cannot start virtlogd"
      _lv_started="virtlogd"
    fi
    _lv_start_libvirtd
    _lv_started="libvirtd $_lv_started"
  elif [ -n "$_lv_new_hook_dir" ]; then
    # A running libvirtd that saw no qemu.d when it started.
    echo "restarting libvirtd so that it reads $HOOK_DIR"
    _lv_stop_daemon libvirtd
    _lv_start_libvirtd
  fi
}

# lv_define DISK...: define $DOM with these qcow2 disks (vda, vdb, ...)
# and no guest OS: the halting firmware of start_qemu, not SeaBIOS, which
# resets the disks' devices when it retries its boot every 60 s (a reset
# drains every request, also the NBD read of a backup that a test holds
# stopped: QEMU would hang there); ACPI on, so that disks can be
# hot-plugged; kvm when
# libvirt's QEMU can use it, else qemu (TCG):
# root opening /dev/kvm does not mean libvirt's QEMU user can.
lv_define () {
  _type=$("$ACCEL" --libvirt) || fail "scripts/accel --libvirt"
  _disks=""
  _n=0
  for _img in "$@"; do
    _dev=vd$(printf "\\$(printf '%03o' $((97 + _n)))")
    _disks="$_disks<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$_img'/><target dev='$_dev' bus='virtio'/></disk>"
    _n=$((_n + 1))
  done
  cat >"$TMPDIR_TEST/domain.xml" <<EOF
<domain type='$_type'>
  <name>$DOM</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><loader type='rom'>$(halt_firmware)</loader></os>
  <features><acpi/></features>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    $_disks
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
  </devices>
</domain>
EOF
  virsh define "$TMPDIR_TEST/domain.xml" >/dev/null || fail "virsh define"
  UUID=$(virsh domuuid "$DOM" | head -n 1)
  [ -n "$UUID" ] || fail "virsh domuuid $DOM"
}

lv_state () {
  virsh domstate "$DOM" | head -n 1
}

# lv_source DEV: the image libvirt says the disk is on now.
lv_source () {
  virsh domblklist "$DOM" | awk -v d="$1" '$1 == d { print $2 }'
}

# lv_alias DEV: QEMU's device id of vda, vdb, ...: libvirt's alias.
lv_alias () {
  case $1 in
  vda) echo virtio-disk0 ;;
  vdb) echo virtio-disk1 ;;
  *) fail "no alias for $1" ;;
  esac
}

# lv_write DEV PATTERN OFFSET LENGTH: a guest-like write through the
# device, which the dirty bitmaps see.
lv_write () {
  _alias=$(lv_alias "$1")
  virsh qemu-monitor-command "$DOM" --hmp \
    "qemu-io -d $_alias/virtio-backend \"write -P $2 $3 $4\"" >/dev/null \
    || fail "write to $1"
}

# lv_oracle N DEV...: pause the domain, flush, copy each disk's current
# image (through its backing chain) to oracle-N-DEV.qcow2, resume.
lv_oracle () {
  _n=$1
  shift
  virsh suspend "$DOM" >/dev/null || fail "virsh suspend"
  for _dev in "$@"; do
    _alias=$(lv_alias "$_dev")
    virsh qemu-monitor-command "$DOM" --hmp "qemu-io -d $_alias/virtio-backend flush" \
      >/dev/null || fail "flush of $_dev"
    qemu-img convert -U -O qcow2 "$(lv_source "$_dev")" "$TMPDIR_TEST/oracle-$_n-$_dev.qcow2" \
      || fail "oracle $_n of $_dev"
  done
  virsh resume "$DOM" >/dev/null || fail "virsh resume"
}

# lv_backup N ARG...: "knib backup --domain" that must succeed; its JSON
# summary in bN.json, its stderr in bN.err.
lv_backup () {
  _n=$1
  shift
  "$KNIB" backup --domain "$DOM" --repo "$REPO" --scratch "$SCRATCH" --json \
    --timeout 60 "$@" >"$TMPDIR_TEST/b$_n.json" 2>"$TMPDIR_TEST/b$_n.err" \
    || fail "backup $_n ($*) failed: $(cat "$TMPDIR_TEST/b$_n.err")"
}

# lv_backup_fails N ARG...: one that must fail; stderr in bN.err.
lv_backup_fails () {
  _n=$1
  shift
  if "$KNIB" backup --domain "$DOM" --repo "$REPO" --scratch "$SCRATCH" \
    --json --timeout 60 "$@" >"$TMPDIR_TEST/b$_n.json" 2>"$TMPDIR_TEST/b$_n.err"; then
    fail "backup $_n ($*) succeeded, but had to fail"
  fi
}

# lv_backup_stopped N ARG...: the same in the background, stopped
# (SIGSTOP) when it starts copying; its pid in $BG_PID.
lv_backup_stopped () {
  require_test_hooks
  _n=$1
  shift
  KNIB_TEST_STOP_AT=copy "$KNIB" backup --domain "$DOM" --repo "$REPO" \
    --scratch "$SCRATCH" --json --timeout 60 "$@" \
    >"$TMPDIR_TEST/b$_n.json" 2>"$TMPDIR_TEST/b$_n.err" &
  BG_PID=$!
  track_pid $BG_PID
  _i=0
  until [ "$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$BG_PID/stat" 2>/dev/null)" = T ]; do
    _i=$((_i + 1))
    [ "$_i" -le 600 ] || fail "backup $_n did not reach its copy: $(cat "$TMPDIR_TEST/b$_n.err")"
    kill -0 "$BG_PID" 2>/dev/null \
      || fail "backup $_n ended early: $(cat "$TMPDIR_TEST/b$_n.err")"
    sleep 0.1
  done
}

# lv_backup_resume N: let it go on, and it must succeed.
lv_backup_resume () {
  kill -CONT "$BG_PID"
  wait "$BG_PID" || fail "backup $1 failed: $(cat "$TMPDIR_TEST/b$1.err")"
}

# field N KEY: a top-level string of backup N's summary.
field () {
  json_top "$TMPDIR_TEST/b$1.json" "$2"
}

# disk_field N DEV KEY: a member of disk DEV in backup N's summary.
disk_field () {
  tr '{' '\n' <"$TMPDIR_TEST/b$1.json" | grep "^\"name\":\"$2\"" \
    | sed -n -e "s/.*\"$3\":\"\\([^\"]*\\)\".*/\\1/p" \
      -e "s/.*\"$3\":\\([0-9][0-9]*\\).*/\\1/p"
}

# expect_kind N KIND: backup N is KIND.
expect_kind () {
  [ "$(field "$1" kind)" = "$2" ] \
    || fail "backup $1 is $(field "$1" kind), not $2: $(cat "$TMPDIR_TEST/b$1.json")"
}

# check N DEV: backup N's image of DEV is sound and reads as oracle N.
check () {
  _img=$REPO/vms/$DOM/$(field "$1" id)/$2.qcow2
  qemu-img check -q "$_img" || fail "qemu-img check $_img"
  qemu-img compare -q "$TMPDIR_TEST/oracle-$1-$2.qcow2" "$_img" \
    || fail "backup $1 ($2) differs from its oracle"
}
