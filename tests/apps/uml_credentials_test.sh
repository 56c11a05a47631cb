#!/usr/bin/env bash
# The BTNS API's use cases 3 and 4: an initiating application presents its
# own identity and key, on an IKE SA of its connection's own, between two
# btnsd hosts in user-mode-linux (a real kernel with ESP).
#
#   left  192.0.2.1  host fqdn:alice.example.org (raw key); the applications
#   right 192.0.2.2  host fqdn:bob.example.org (raw key); uc1 acceptors
#
# Bob's PAD knows no host key of alice; it accepts only
#   * fqdn:app3.example.org with the key of a SoftHSM2 token made here
#     (pinned by its fingerprint), for TCP ports 7301-7309;
#   * fqdn:app4.example.org with the key of a credential file (pinned), for
#     TCP ports 7401-7409.
# Cases:
#   UC3      uc3 opens the token (dlopen, login, key by label) and sets it
#            as IPSEC_BTNS_CREDENTIAL; btnsd's IKE_AUTH is signed in the
#            token by the library's thread; bob's acceptor sees
#            fqdn:app3.example.org with the token key's fingerprint, the
#            initiator sees bob and itself as fqdn:app3.example.org; bob's
#            kernel counts ESP packets.
#   UC3 bad  another key of the same token: bob's PAD refuses it, uc3 reads
#            AUTHENTICATION_FAILED (why=18), bob's acceptor never accepts,
#            no ESP packet reaches bob.
#   UC3 no   the application logs out of the token before connect(): the
#            token refuses to sign, uc3 reads SA_SETUP_FAILED (why=10) with
#            the token's reason; nothing reaches bob.
#   UC4      uc4 with IPSEC_BTNS_CREDENTIAL_FILE: bob's acceptor sees
#            fqdn:app4.example.org; ESP counted.
#   UC4 bad  a credential file with another key claiming app4: refused with
#            AUTHENTICATION_FAILED, nothing reaches bob.
#
# Output: the applications' lines, then "RESULT uml-credentials PASS|FAIL".
# UC_WORK=DIR keeps the logs.
set -euo pipefail

module=/usr/lib/softhsm/libsofthsm2.so
if [[ ${1:-} != --inside ]]; then
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  bin=${BTNS_BIN:-$root}
  btnsd=$bin/daemon/btnsd
  [[ -x $btnsd ]] || { echo "btnsd not found at $btnsd (bazel build //daemon:btnsd //tests/apps/...; set BTNS_BIN to bazel-bin)" >&2; exit 2; }
  for tool in botan softhsm2-util pkcs11-tool openssl; do
    command -v $tool > /dev/null || { echo "$tool is needed (tools/install-deps)" >&2; exit 2; }
  done
  [[ -r $module ]] || { echo "SoftHSM2's module $module is needed (tools/install-deps)" >&2; exit 2; }
  # Keys and the token are made here: a freshly booted UML kernel may block
  # on getrandom().
  keys=$(mktemp -d "${TEST_TMPDIR:-/tmp}/uc34-keys.XXXXXX")
  (
    cd "$keys"
    for name in left right app4 mallory4; do
      botan keygen --algo=ECDSA --params=secp256r1 > $name.key
      botan pkcs8 --pub-out $name.key > $name.pub
    done
    mkdir tokens
    printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
      "$keys" > softhsm2.conf
    export SOFTHSM2_CONF=$keys/softhsm2.conf
    softhsm2-util --init-token --free --label uc3-token --so-pin 5678 --pin 1234 > /dev/null
    for label in app3 mallory3; do
      pkcs11-tool --module "$module" --token-label uc3-token --login --pin 1234 \
        --keypairgen --key-type EC:prime256v1 --label $label --id "$(printf %s $label | od -An -tx1 | tr -d ' \n')" > /dev/null
    done
    pkcs11-tool --module "$module" --token-label uc3-token --read-object --type pubkey \
      --label app3 -o app3.spki.der > /dev/null
    openssl pkey -pubin -inform DER -in app3.spki.der -noout
    sha256sum app3.spki.der | cut -d' ' -f1 > app3.fingerprint
    openssl pkey -pubin -in app4.pub -outform DER | sha256sum | cut -d' ' -f1 > app4.fingerprint
    chmod -R a+rX .
  )
  rw=()
  [[ -n ${UC_WORK:-} ]] && { mkdir -p "$UC_WORK"; rw=(--rw "$UC_WORK"); }
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-300}" "${rw[@]}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$bin/tests/apps")" "$(realpath "$root/tools/uml/lib.sh")" "$keys"
fi
btnsd=$2 apps=$3
. "$4"
work=${UC_WORK:-$TMPDIR/uc34}
mkdir -p "$work"
cd "$work"
started=$SECONDS

cp "$5"/*.key "$5"/*.pub "$work"/
# The token's files, writable here (SoftHSM2 locks them).
rm -rf "$work/tokens"
cp -r "$5/tokens" "$work/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$work" > "$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
token_key=sha256:$(cat "$5/app3.fingerprint")
file_key=sha256:$(cat "$5/app4.fingerprint")
echo "the token's key app3: $token_key; the file's key app4: $file_key"

proposals='proposals:
  gcm-x25519:
    proposals:
      - encryption: [aes256gcm16]
        prf: [sha256]
        ke: [x25519]
  gcm-esp:
    proposals:
      - encryption: [aes256gcm16]
        esn: [noesn]'

cat > alice.yaml <<EOF
daemon:
  listen: [192.0.2.1]
  # Several protocol shards: the token's signature must find the shard
  # that owns the IKE SA.
  threads: 3
  log_level: info
  api_socket: $work/alice-api.sock
identities:
  alice:
    id: fqdn:alice.example.org
    private_key: left.key
    raw_key: left.pub
pad:
  - name: bob
    peer: fqdn:bob.example.org
    auth: pubkey
    pubkey: right.pub
    remote_ts: [192.0.2.2]
spd:
  - name: to-bob
    local: 192.0.2.1
    remote: 192.0.2.2
    protocol: tcp
    action: protect
    peer: bob
    mode: transport
    ike_proposals: gcm-x25519
    esp_proposals: gcm-esp
    start: trap
$proposals
EOF

cat > bob.yaml <<EOF
daemon:
  listen: [192.0.2.2]
  log_level: info
  api_socket: $work/bob-api.sock
identities:
  bob:
    id: fqdn:bob.example.org
    private_key: right.key
    raw_key: right.pub
pad:
  - name: app4
    peer: fqdn:app4.example.org
    auth: pubkey
    pubkey: app4.pub
    remote_ts: [192.0.2.1]
  - name: app3
    peer: fqdn:app3.example.org
    auth: pubkey
    pubkey: [$token_key]
    remote_ts: [192.0.2.1]
spd:
  - name: from-app3
    local: 192.0.2.2
    remote: 192.0.2.1
    protocol: tcp
    local_ports: 7301-7309
    action: protect
    peer: app3
    mode: transport
    ike_proposals: gcm-x25519
    esp_proposals: gcm-esp
    start: none
  - name: from-app4
    local: 192.0.2.2
    remote: 192.0.2.1
    protocol: tcp
    local_ports: 7401-7409
    action: protect
    peer: app4
    mode: transport
    ike_proposals: gcm-x25519
    esp_proposals: gcm-esp
    start: none
$proposals
EOF

uml_two_hosts

# start_btnsd NS NAME
start_btnsd() {
  ip netns exec "$1" "$btnsd" --config "$work/$2.yaml" > "$work/$2-btnsd.log" 2>&1 &
  echo $! > "$work/$2.pid"
  uml_wait_for grep -q 'event=api-listening' "$work/$2-btnsd.log" ||
    { echo "btnsd $2 did not open its API"; cat "$work/$2-btnsd.log"; exit 1; }
}
# app NS NAME PROGRAM ARGS...: runs a use-case program against NAME's btnsd.
app() {
  local ns=$1 name=$2 program=$3; shift 3
  BTNS_API_SOCKET=$work/$name-api.sock ip netns exec "$ns" timeout 30 "$apps/$program" "$@"
}
# inbound_esp NS ADDRESS: ESP packets NS received for ADDRESS, counted by a
# netfilter rule (esp_counter): unlike the SAs' own counters, the count does
# not fall when a socket's own SA is deleted after its socket closed.
esp_counter() {
  ip netns exec "$1" iptables-legacy -w -I INPUT -p esp -d "$2"
}
inbound_esp() {
  local rules
  rules=$(ip netns exec "$1" iptables-legacy -w -nvxL INPUT)
  awk -v dst="$2" '$0 ~ / (esp|50) / && index($0, dst) { print $1; found = 1; exit }
    END { if (!found) { print "no ESP counter rule for " dst > "/dev/stderr"; exit 1 } }' <<< "$rules"
}

why=""
cases=0
note() { why="$why $*;"; echo "CHECK FAILED: $*"; }
show() { sed "s/^/[$1] /" "$2"; }
# acceptor PORT EXPECTED_PEER OUT: a uc1 acceptor on bob, in the background
# (a simple command, so $! is timeout(1), which passes a kill on to uc1).
acceptor() {
  BTNS_API_SOCKET=$work/bob-api.sock ip netns exec right timeout 30 "$apps/uc1" accept "$1" "$2" \
    > "$3" 2>&1 &
  acceptor_pid=$!
  uml_wait_for grep -q '^listening' "$3" || note "the acceptor on port $1 did not listen"
}
# refused_case NAME OUT STATUS ACCEPT_OUT ESP_BEFORE: the peer refused the key.
refused_case() {
  local name=$1 out=$2 status=$3 accept_out=$4 before=$5
  ((status == 3)) && grep -q 'why=18 ' "$out" ||
    note "$name was not refused with AUTHENTICATION_FAILED (exit $status)"
  grep -q '^accepted' "$accept_out" && note "bob accepted the connection of $name"
  kill "$acceptor_pid" 2> /dev/null || true
  wait "$acceptor_pid" 2> /dev/null || true
  local after
  after=$(inbound_esp right 192.0.2.2)
  echo "ESP packets bob received: $before before $name, $after after"
  ((after == before)) || note "bob received $((after - before)) ESP packets in $name"
}

start_btnsd left alice
start_btnsd right bob
esp_counter right 192.0.2.2

echo "== UC3: the application's key in a PKCS#11 token"
cases=$((cases + 1))
acceptor 7301 fqdn:app3.example.org uc3-accept.out
status=0
app left alice uc3 192.0.2.2 7301 bob.example.org app3.example.org "$module" uc3-token 1234 app3 \
  > uc3.out 2>&1 || status=$?
wait "$acceptor_pid" || true
show "alice uc3" uc3.out
show "bob uc1 accept" uc3-accept.out
((status == 0)) && grep -q '^UC3 PASS reached fqdn:bob.example.org (method [0-9]*) as fqdn:app3.example.org' uc3.out ||
  note "UC3 (exit $status)"
grep -q '^UC1 PASS acceptor sees fqdn:app3.example.org' uc3-accept.out || note "bob's acceptor did not see app3"
grep -q "^peer key: $token_key" uc3-accept.out || note "bob's acceptor did not see the token's key"
log=$(cat alice-btnsd.log)
grep -q 'event=api-signed' <<< "$log" || note "alice's btnsd never got a signature from the token"
esp_uc3=$(inbound_esp right 192.0.2.2)
echo "ESP packets bob received after UC3: $esp_uc3"
((esp_uc3 > 0)) || note "no ESP packet reached bob in UC3"

echo "== UC3 refused: another key of the token"
cases=$((cases + 1))
acceptor 7302 fqdn:app3.example.org uc3-bad-accept.out
status=0
app left alice uc3 192.0.2.2 7302 bob.example.org app3.example.org "$module" uc3-token 1234 mallory3 \
  > uc3-bad.out 2>&1 || status=$?
show "alice uc3 (mallory3)" uc3-bad.out
refused_case "UC3 with another key" uc3-bad.out $status uc3-bad-accept.out "$esp_uc3"

echo "== UC3, the token refuses to sign: the application logged out first"
cases=$((cases + 1))
acceptor 7303 fqdn:app3.example.org uc3-logout-accept.out
status=0
app left alice uc3 192.0.2.2 7303 bob.example.org app3.example.org "$module" uc3-token 1234 app3 logout \
  > uc3-logout.out 2>&1 || status=$?
show "alice uc3 (logged out)" uc3-logout.out
((status == 3)) && grep -q 'why=10 .*did not sign (signer-refused: .*C_Sign' uc3-logout.out ||
  note "UC3 with a logged-out token did not read the token's refusal (exit $status)"
grep -q '^accepted' uc3-logout-accept.out && note "bob accepted a connection the token never signed for"
kill "$acceptor_pid" 2> /dev/null || true
wait "$acceptor_pid" 2> /dev/null || true
esp_now=$(inbound_esp right 192.0.2.2)
((esp_now == esp_uc3)) || note "bob received $((esp_now - esp_uc3)) ESP packets without a signature"

echo "== UC4: the application's credential file"
cases=$((cases + 1))
esp_before=$(inbound_esp right 192.0.2.2)
acceptor 7401 fqdn:app4.example.org uc4-accept.out
status=0
app left alice uc4 192.0.2.2 7401 app4.example.org "$work/app4.key" bob.example.org \
  > uc4.out 2>&1 || status=$?
wait "$acceptor_pid" || true
show "alice uc4" uc4.out
show "bob uc1 accept" uc4-accept.out
((status == 0)) && grep -q '^UC4 PASS reached fqdn:bob.example.org (method [0-9]*) as fqdn:app4.example.org' uc4.out ||
  note "UC4 (exit $status)"
grep -q '^UC1 PASS acceptor sees fqdn:app4.example.org' uc4-accept.out || note "bob's acceptor did not see app4"
grep -q "^peer key: $file_key" uc4-accept.out || note "bob's acceptor did not see the file's key"
esp_uc4=$(inbound_esp right 192.0.2.2)
echo "ESP packets bob received: $esp_before before UC4, $esp_uc4 after"
((esp_uc4 > esp_before)) || note "no ESP packet reached bob in UC4"

echo "== UC4 refused: a file with another key claiming app4"
cases=$((cases + 1))
acceptor 7402 fqdn:app4.example.org uc4-bad-accept.out
status=0
app left alice uc4 192.0.2.2 7402 app4.example.org "$work/mallory4.key" bob.example.org \
  > uc4-bad.out 2>&1 || status=$?
show "alice uc4 (mallory4)" uc4-bad.out
refused_case "UC4 with another key" uc4-bad.out $status uc4-bad-accept.out "$esp_uc4"

# Both refusals were bob's PAD's decision about the key, not a lost packet.
log=$(cat bob-btnsd.log)
mismatches=$(grep -c 'reason=pad-auth-mismatch msg="PAD rejects fqdn:app[34].example.org: public key differs' <<< "$log" || true)
((mismatches == 2)) || note "bob's log shows $mismatches refusals of a wrong key, not 2"

for name in alice bob; do
  pid=$(cat $name.pid)
  kill -TERM "$pid"
  status=0
  wait "$pid" || status=$?
  ((status == 0)) || note "btnsd $name exited $status"
done
echo "cases: $cases, wall time inside UML: $((SECONDS - started)) s"
if [[ -n $why ]]; then
  for f in "$work"/*-btnsd.log; do echo "== $f"; grep -v 'level=debug' "$f" | tail -n 40; done
  echo "RESULT uml-credentials FAIL$why"
  exit 1
fi
echo "RESULT uml-credentials PASS ($cases cases)"
