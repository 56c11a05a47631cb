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
# UC_WORK=DIR keeps the logs. The host set-up is uml_apps_lib.sh's.
set -euo pipefail
. "$(dirname "$0")/uml_apps_lib.sh"

module=/usr/lib/softhsm/libsofthsm2.so
if [[ ${1:-} != --inside ]]; then
  apps_locate
  apps_require "$btnsd"
  apps_require_commands botan softhsm2-util pkcs11-tool openssl
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
  apps_boot_uml 300 UC_WORK "$0" "$btnsd" "$bin/tests/apps" "$keys"
fi
btnsd=$2 apps=$3
apps_inside uml-credentials "${UC_WORK:-$TMPDIR/uc34}"

cp "$4"/*.key "$4"/*.pub "$work"/
# The token's files, writable here (SoftHSM2 locks them).
rm -rf "$work/tokens"
cp -r "$4/tokens" "$work/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$work" > "$work/softhsm2.conf"
export SOFTHSM2_CONF=$work/softhsm2.conf
token_key=sha256:$(cat "$4/app3.fingerprint")
file_key=sha256:$(cat "$4/app4.fingerprint")
echo "the token's key app3: $token_key; the file's key app4: $file_key"

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
$(apps_proposals)
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
$(apps_proposals)
EOF

uml_two_hosts

cases=0
# acceptor PORT EXPECTED_PEER OUT: a uc1 acceptor on bob, in the background.
acceptor() {
  apps_listener "$3" right bob uc1 accept "$1" "$2" || apps_note "the acceptor on port $1 did not listen"
  acceptor_pid=$apps_listener_pid
}
# refused_case NAME OUT STATUS ACCEPT_OUT ESP_BEFORE: the peer refused the key.
refused_case() {
  local name=$1 out=$2 status=$3 accept_out=$4 before=$5
  ((status == 3)) && grep -q 'why=18 ' "$out" ||
    apps_note "$name was not refused with AUTHENTICATION_FAILED (exit $status)"
  grep -q '^accepted' "$accept_out" && apps_note "bob accepted the connection of $name"
  kill "$acceptor_pid" 2> /dev/null || true
  wait "$acceptor_pid" 2> /dev/null || true
  local after
  after=$(apps_esp_counted right 192.0.2.2)
  echo "ESP packets bob received: $before before $name, $after after"
  ((after == before)) || apps_note "bob received $((after - before)) ESP packets in $name"
}

apps_start_btnsd left:alice right:bob
apps_esp_counter right 192.0.2.2

echo "== UC3: the application's key in a PKCS#11 token"
cases=$((cases + 1))
acceptor 7301 fqdn:app3.example.org uc3-accept.out
status=0
apps_run left alice uc3 192.0.2.2 7301 bob.example.org app3.example.org "$module" uc3-token 1234 app3 \
  > uc3.out 2>&1 || status=$?
wait "$acceptor_pid" || true
apps_show "alice uc3" uc3.out
apps_show "bob uc1 accept" uc3-accept.out
((status == 0)) && grep -q '^UC3 PASS reached fqdn:bob.example.org (method [0-9]*) as fqdn:app3.example.org' uc3.out ||
  apps_note "UC3 (exit $status)"
grep -q '^UC1 PASS acceptor sees fqdn:app3.example.org' uc3-accept.out || apps_note "bob's acceptor did not see app3"
grep -q "^peer key: $token_key" uc3-accept.out || apps_note "bob's acceptor did not see the token's key"
log=$(cat alice-btnsd.log)
grep -q 'event=api-signed' <<< "$log" || apps_note "alice's btnsd never got a signature from the token"
esp_uc3=$(apps_esp_counted right 192.0.2.2)
echo "ESP packets bob received after UC3: $esp_uc3"
((esp_uc3 > 0)) || apps_note "no ESP packet reached bob in UC3"

echo "== UC3 refused: another key of the token"
cases=$((cases + 1))
acceptor 7302 fqdn:app3.example.org uc3-bad-accept.out
status=0
apps_run left alice uc3 192.0.2.2 7302 bob.example.org app3.example.org "$module" uc3-token 1234 mallory3 \
  > uc3-bad.out 2>&1 || status=$?
apps_show "alice uc3 (mallory3)" uc3-bad.out
refused_case "UC3 with another key" uc3-bad.out $status uc3-bad-accept.out "$esp_uc3"

echo "== UC3, the token refuses to sign: the application logged out first"
cases=$((cases + 1))
acceptor 7303 fqdn:app3.example.org uc3-logout-accept.out
status=0
apps_run left alice uc3 192.0.2.2 7303 bob.example.org app3.example.org "$module" uc3-token 1234 app3 logout \
  > uc3-logout.out 2>&1 || status=$?
apps_show "alice uc3 (logged out)" uc3-logout.out
((status == 3)) && grep -q 'why=10 .*did not sign (signer-refused: .*C_Sign' uc3-logout.out ||
  apps_note "UC3 with a logged-out token did not read the token's refusal (exit $status)"
grep -q '^accepted' uc3-logout-accept.out && apps_note "bob accepted a connection the token never signed for"
kill "$acceptor_pid" 2> /dev/null || true
wait "$acceptor_pid" 2> /dev/null || true
esp_now=$(apps_esp_counted right 192.0.2.2)
((esp_now == esp_uc3)) || apps_note "bob received $((esp_now - esp_uc3)) ESP packets without a signature"

echo "== UC4: the application's credential file"
cases=$((cases + 1))
esp_before=$(apps_esp_counted right 192.0.2.2)
acceptor 7401 fqdn:app4.example.org uc4-accept.out
status=0
apps_run left alice uc4 192.0.2.2 7401 app4.example.org "$work/app4.key" bob.example.org \
  > uc4.out 2>&1 || status=$?
wait "$acceptor_pid" || true
apps_show "alice uc4" uc4.out
apps_show "bob uc1 accept" uc4-accept.out
((status == 0)) && grep -q '^UC4 PASS reached fqdn:bob.example.org (method [0-9]*) as fqdn:app4.example.org' uc4.out ||
  apps_note "UC4 (exit $status)"
grep -q '^UC1 PASS acceptor sees fqdn:app4.example.org' uc4-accept.out || apps_note "bob's acceptor did not see app4"
grep -q "^peer key: $file_key" uc4-accept.out || apps_note "bob's acceptor did not see the file's key"
esp_uc4=$(apps_esp_counted right 192.0.2.2)
echo "ESP packets bob received: $esp_before before UC4, $esp_uc4 after"
((esp_uc4 > esp_before)) || apps_note "no ESP packet reached bob in UC4"

echo "== UC4 refused: a file with another key claiming app4"
cases=$((cases + 1))
acceptor 7402 fqdn:app4.example.org uc4-bad-accept.out
status=0
apps_run left alice uc4 192.0.2.2 7402 app4.example.org "$work/mallory4.key" bob.example.org \
  > uc4-bad.out 2>&1 || status=$?
apps_show "alice uc4 (mallory4)" uc4-bad.out
refused_case "UC4 with another key" uc4-bad.out $status uc4-bad-accept.out "$esp_uc4"

# Both refusals were bob's PAD's decision about the key, not a lost packet.
log=$(cat bob-btnsd.log)
mismatches=$(grep -c 'reason=pad-auth-mismatch msg="PAD rejects fqdn:app[34].example.org: public key differs' <<< "$log" || true)
((mismatches == 2)) || apps_note "bob's log shows $mismatches refusals of a wrong key, not 2"

apps_stop_btnsd alice bob
echo "cases: $cases, wall time inside UML: $(apps_elapsed) s"
apps_finish "($cases cases)"
