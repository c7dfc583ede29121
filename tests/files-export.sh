#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# files-export.sh: "knib export" serves a backup point read-only over NBD.
# An incremental backup's disk, exported on a unix socket, reads (nbdcopy)
# exactly as qemu-img convert reads its chain; a write through it is
# refused; the server ends on SIGTERM and on --timeout; bad input is named.
# With --tls-creds (certificates made here by openssl) a TCP export takes
# only TLS clients: nbdcopy over nbds:// reads the chain, a plain client
# is turned away.
. "$(dirname "$0")/functions.sh"
require qemu-img qemu-io qemu-storage-daemon nbdcopy nbdinfo openssl

cd "$TMPDIR_TEST"
REPO=$TMPDIR_TEST/repo
A=$TMPDIR_TEST/a.qcow2
B=$TMPDIR_TEST/b.qcow2
qemu-img create -q -f qcow2 "$A" 64M
qemu-img create -q -f qcow2 "$B" 16M
qemu-io -f qcow2 -c "write -P 0x11 0 4M" -c "write -P 0x12 40M 1M" "$A" >/dev/null
"$KNIB" backup --repo "$REPO" --vm ex --image vda="$A" --image vdb="$B" \
  >b1.out 2>&1 || fail "backup 1: $(cat b1.out)"
qemu-io -f qcow2 -c "write -P 0x13 1M 64k" -c "write -P 0x14 60M 2M" "$A" >/dev/null
"$KNIB" backup --repo "$REPO" --vm ex --image vda="$A" --image vdb="$B" \
  >b2.out 2>&1 || fail "backup 2: $(cat b2.out)"
grep -q incremental b2.out || fail "backup 2 is not incremental: $(cat b2.out)"
F=$(ls "$REPO/vms/ex" | grep '^2' | head -1)
I=$(ls "$REPO/vms/ex" | grep '^2' | tail -1)
sha256sum "$REPO"/vms/ex/*/*.qcow2 >hashes.before

# Bad input.
status=0
"$KNIB" export --repo "$REPO" "$I" --socket s.sock >bad.out 2>&1 || status=$?
[ "$status" = 1 ] && grep -q "backup '$I' has 2 disks: name one with --disk" bad.out \
  || fail "two disks without --disk: $status $(cat bad.out)"
status=0
"$KNIB" export --repo "$REPO" "$I" --disk vdz --socket s.sock >bad.out 2>&1 || status=$?
[ "$status" = 1 ] && grep -q "backup '$I' has no disk 'vdz'" bad.out \
  || fail "a missing disk: $status $(cat bad.out)"
status=0
"$KNIB" export --repo "$REPO" "$I" --socket s.sock --port 10809 >bad.out 2>&1 || status=$?
[ "$status" = 2 ] || fail "--socket and --port: $status $(cat bad.out)"
status=0
"$KNIB" export --repo "$REPO" 20200101T000000Z --socket s.sock >bad.out 2>&1 || status=$?
[ "$status" = 1 ] || fail "a missing backup: $status $(cat bad.out)"

status=0
"$KNIB" export --repo "$REPO" "$I" --socket s.sock --tls-creds . >bad.out 2>&1 || status=$?
[ "$status" = 2 ] || fail "--tls-creds without --port: $status $(cat bad.out)"
status=0
"$KNIB" export --repo "$REPO" "$I" --disk vda --port 10809 --tls-creds nowhere \
  >bad.out 2>&1 || status=$?
[ "$status" = 1 ] && grep -q "tls-creds 'nowhere': cannot read ca-cert.pem" bad.out \
  || fail "--tls-creds of a missing directory: $status $(cat bad.out)"

# The export of the incremental equals its chain.
SOCK=$TMPDIR_TEST/nbd.sock
"$KNIB" export --repo "$REPO" "$I" --disk vda --socket "$SOCK" --json \
  >export.out 2>export.err &
EXPORT_PID=$!
track_pid $EXPORT_PID
wait_for_text export.out '"uri"' 60 || fail "export did not start: $(cat export.err)"
grep -q "\"uri\": *\"nbd+unix:///vda?socket=$SOCK\"" export.out \
  || fail "export --json: $(cat export.out)"
nbdcopy "nbd+unix:///vda?socket=$SOCK" exported.raw || fail "nbdcopy"
qemu-img convert -U -O raw "$REPO/vms/ex/$I/vda.qcow2" chain.raw
cmp exported.raw chain.raw || fail "the export differs from its chain"
qemu-img convert -U -O raw "$A" source.raw
cmp exported.raw source.raw || fail "the export differs from the disk"
nbdinfo --json "nbd+unix:///vda?socket=$SOCK" >info.json
grep -q '"is_read_only": true' info.json || fail "export is writable: $(cat info.json)"
if qemu-io -f raw -c "write -P 0x66 0 4k" "nbd+unix:///vda?socket=$SOCK" \
  >write.out 2>&1; then
  fail "a write to the export was accepted: $(cat write.out)"
fi
kill -TERM $EXPORT_PID
wait $EXPORT_PID || fail "export did not end cleanly on SIGTERM: $(cat export.err)"
[ ! -e "$SOCK" ] || ! nbdinfo "nbd+unix:///vda?socket=$SOCK" >/dev/null 2>&1 \
  || fail "the server still serves after SIGTERM"

# --timeout ends it on its own.
"$KNIB" export --repo "$REPO" "$F" --disk vdb --socket "$SOCK.2" --timeout 2 \
  >t.out 2>&1 || fail "export --timeout: $(cat t.out)"
grep -q "serving disk 'vdb' of backup '$F' read-only at nbd+unix:///vdb?socket=$SOCK.2" t.out \
  || fail "export: $(cat t.out)"

# TLS: a CA and a server certificate for localhost, made here.
mkdir tls client
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=knib-test-ca \
  -keyout ca-key.pem -out tls/ca-cert.pem >openssl.out 2>&1 \
  || fail "openssl (CA): $(cat openssl.out)"
printf '%s\n' 'subjectAltName = DNS:localhost, IP:127.0.0.1' \
  'keyUsage = critical, digitalSignature, keyEncipherment' \
  'extendedKeyUsage = serverAuth' >server.ext
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
  -keyout tls/server-key.pem -out server.csr >openssl.out 2>&1 \
  || fail "openssl (server key): $(cat openssl.out)"
openssl x509 -req -in server.csr -CA tls/ca-cert.pem -CAkey ca-key.pem \
  -CAcreateserial -days 2 -extfile server.ext -out tls/server-cert.pem \
  >openssl.out 2>&1 || fail "openssl (server certificate): $(cat openssl.out)"
cp tls/ca-cert.pem client/
# A free port: the next one when something else holds it.
port=$((20000 + $$ % 20000))
for try in 1 2 3 4 5 6 7 8; do
  rm -f tls.out
  "$KNIB" export --repo "$REPO" "$I" --disk vda --port "$port" --bind localhost \
    --tls-creds "$TMPDIR_TEST/tls" --json >tls.out 2>tls.err &
  TLS_PID=$!
  track_pid $TLS_PID
  i=0
  until grep -q '"uri"' tls.out 2>/dev/null || ! kill -0 $TLS_PID 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 600 ] || fail "export --tls-creds did not start: $(cat tls.err)"
    sleep 0.1
  done
  grep -q '"uri"' tls.out 2>/dev/null && break
  grep -qi "address already in use" tls.err || fail "export --tls-creds: $(cat tls.err)"
  wait $TLS_PID 2>/dev/null || :
  port=$((port + 1))
done
grep -q "\"uri\": *\"nbds://localhost:$port/vda\"" tls.out \
  || fail "export --tls-creds --json: $(cat tls.out)"
grep -q '"tls": *true' tls.out || fail "export --tls-creds --json: $(cat tls.out)"
URI="nbds://localhost:$port/vda?tls-certificates=$TMPDIR_TEST/client"
nbdinfo --json "$URI" >tls-info.json 2>tls-info.err \
  || fail "nbdinfo over TLS: $(cat tls-info.err)"
grep -q '"is_read_only": true' tls-info.json || fail "TLS export is writable"
nbdcopy "$URI" tls.raw 2>nbdcopy.err || fail "nbdcopy over TLS: $(cat nbdcopy.err)"
cmp tls.raw chain.raw || fail "the TLS export differs from its chain"
if nbdinfo "nbd://localhost:$port/vda" >plain.out 2>&1; then
  fail "a client without TLS was served: $(cat plain.out)"
fi
kill -TERM $TLS_PID
wait $TLS_PID || fail "the TLS export did not end cleanly: $(cat tls.err)"

sha256sum "$REPO"/vms/ex/*/*.qcow2 >hashes.after
cmp hashes.before hashes.after || fail "the repository's images changed"
