#!/usr/bin/env bash
# The BTNS API use cases of the slides (UC1, UC2, UC5, UC6) and connection
# latching, between btnsd hosts that authenticate with certificates of one
# test CA, in user-mode-linux (a real kernel with ESP).
#
#   left  192.0.2.1  alice.example.org
#   right 192.0.2.2  bob.example.org, later replaced by carol.example.org
#
# Both are acceptable to each other's system policy (PAD: any name below
# example.org with a certificate of the CA), so only the application's
# pToken can insist on bob:
#   A  with bob at 192.0.2.2: UC1 both ways, UC2 asking for bob reaches bob,
#      UC5/UC6 over UDP with the pToken naming the peer;
#   B  a UC2 connection to bob is latched; bob's host is replaced by carol
#      at the same address: the application gets BROKEN, and no packet of
#      the connection reaches carol (her kernel's inbound ESP counters stay
#      0, and no clear packet of it shows at her interface);
#   C  UC2 asking for bob at 192.0.2.2, now carol: connect() fails, the
#      application reads PEER_MISMATCH, carol's acceptor never sees it;
#      UC1 to carol (asking nothing) still works.
#
# Output: the applications' lines, then "RESULT uml-use-cases PASS|FAIL ...".
#
# The host set-up (keys, UML, btnsd per host, listeners, ESP counts) is
# uml_apps_lib.sh's. UC_WORK=DIR keeps the logs and the capture.
set -euo pipefail
. "$(dirname "$0")/uml_apps_lib.sh"

if [[ ${1:-} != --inside ]]; then
  apps_locate
  apps_require "$btnsd"
  apps_require_commands botan
  keys=$(mktemp -d "${TEST_TMPDIR:-/tmp}/uc-keys.XXXXXX")
  apps_make_ca "$keys" "Use Case Test CA" alice bob carol
  apps_boot_uml 200 UC_WORK "$0" "$btnsd" "$bin/tests/apps" "$keys"
fi
btnsd=$2 apps=$3
apps_inside uml-use-cases "${UC_WORK:-$TMPDIR/uc}"
cp "$4"/*.key "$4"/*.crt "$work"/

# host_config NAME ADDRESS REMOTE START
host_config() {
  cat > "$work/$1.yaml" <<EOF
daemon:
  listen: [$2]
  log_level: info
  api_socket: $work/$1-api.sock
identities:
  $1:
    id: fqdn:$1.example.org
    private_key: $1.key
    certificate: $1.crt
pad:
  - name: lab
    peer: fqdn:*.example.org
    auth: ca
    ca: [ca.crt]
    remote_ts: [192.0.2.0/24]
spd:
  - name: lab-hosts
    local: $2
    remote: $3
    action: protect
    peer: lab
    mode: transport
    ike_proposals: gcm-x25519
    esp_proposals: gcm-esp
    start: $4
EOF
  apps_proposals >> "$work/$1.yaml"
}
host_config alice 192.0.2.1 192.0.2.0/24 trap
host_config bob 192.0.2.2 192.0.2.0/24 trap
# Carol starts the IKE SA herself, as a replacement host would.
host_config carol 192.0.2.2 192.0.2.1 start

uml_two_hosts

# The listeners of A ask their btnsd nothing before a peer comes, so they
# start with the daemons; their time limit covers all of A.
APPS_LIMIT=150 apps_command right bob uc1 accept 7001 fqdn:alice.example.org
"${apps_cmd[@]}" > a-uc1-accept.out 2>&1 &
uc1_acceptor=$!
APPS_LIMIT=150 apps_command right bob uc1 accept 7002 fqdn:alice.example.org
"${apps_cmd[@]}" > a-uc2-accept.out 2>&1 &
uc2_acceptor=$!
APPS_LIMIT=150 apps_command right bob uc5 7005 fqdn:alice.example.org
"${apps_cmd[@]}" > a-uc5.out 2>&1 &
uc5_acceptor=$!
apps_start_btnsd left:alice right:bob
apps_wait_line a-uc1-accept.out '^listening' || apps_note "uc1 acceptor did not listen"
apps_wait_line a-uc2-accept.out '^listening' || apps_note "uc2's acceptor did not listen"
apps_wait_line a-uc5.out '^listening' || apps_note "uc5 did not listen"

echo "== A: bob at 192.0.2.2"
apps_run left alice uc1 connect 192.0.2.2 7001 fqdn:bob.example.org > a-uc1-connect.out 2>&1 || true
wait $uc1_acceptor || true
apps_show "bob uc1 accept" a-uc1-accept.out
apps_show "alice uc1 connect" a-uc1-connect.out
grep -q '^UC1 PASS acceptor sees fqdn:alice.example.org' a-uc1-accept.out || apps_note "UC1 acceptor"
grep -q '^UC1 PASS initiator sees fqdn:bob.example.org' a-uc1-connect.out || apps_note "UC1 initiator"

status=0
apps_run left alice uc2 192.0.2.2 7002 bob.example.org > a-uc2.out 2>&1 || status=$?
wait $uc2_acceptor || true
apps_show "alice uc2" a-uc2.out
((status == 0)) && grep -q '^UC2 PASS reached fqdn:bob.example.org' a-uc2.out || apps_note "UC2 to bob (exit $status)"
grep -q 'event=api-socket-bound' "$work/alice-btnsd.log" || apps_note "alice's btnsd never bound a socket to an SA"

status=0
apps_run left alice uc6 192.0.2.2 7005 bob.example.org > a-uc6.out 2>&1 || status=$?
wait $uc5_acceptor || true
apps_show "bob uc5" a-uc5.out
apps_show "alice uc6" a-uc6.out
grep -q '^UC5 PASS datagram from fqdn:alice.example.org' a-uc5.out || apps_note "UC5"
((status == 0)) && grep -q '^UC6 PASS' a-uc6.out || apps_note "UC6 (exit $status)"

echo "== B: the latched connection's peer is replaced"
APPS_LIMIT=60 apps_listener b-accept.out right bob uc1 accept 7003 fqdn:alice.example.org ||
  apps_note "latch acceptor did not listen"
bob_acceptor=$apps_listener_pid
# The latch client waits up to 40 s for its event and then shows it 3 s.
APPS_LIMIT=60 apps_command left alice uc_latch 192.0.2.2 7003 bob.example.org 40
"${apps_cmd[@]}" > b-latch.out 2>&1 &
latcher=$!
apps_wait_line b-latch.out '^latched' 15 || apps_note "the latch client did not latch"
# Bob's host goes away (its btnsd deletes its SAs and tells alice), and
# carol's btnsd takes the address. Bob's application goes first: its
# socket lives in the kernel carol's btnsd will use, and must not outlive
# bob's SAs there.
kill -KILL $bob_acceptor 2> /dev/null || true
wait $bob_acceptor 2> /dev/null || true
apps_pause 1
apps_stop_btnsd bob
capturing=no
apps_capture_start right 'tcp port 7003' "$work/b-right.pcap" && capturing=yes
# Carol's listener for C starts with her btnsd.
APPS_LIMIT=90 apps_command right carol uc1 accept 7004 fqdn:alice.example.org
"${apps_cmd[@]}" > c-accept.out 2>&1 &
carol_acceptor=$!
apps_start_btnsd right:carol
status=0
wait $latcher || status=$?
apps_show "alice uc_latch" b-latch.out
((status == 0)) && grep -q '^LATCH BROKEN peer=fqdn:carol.example.org' b-latch.out ||
  apps_note "no BROKEN event naming carol (exit $status)"
carol_esp=$(apps_esp_received right 192.0.2.2)
echo "ESP packets carol received after the latch broke: $carol_esp"
((carol_esp == 0)) || apps_note "carol received $carol_esp ESP packets: the latched connection reached her"
if [[ $capturing == yes ]]; then
  apps_capture_stop
  seen=$apps_captured
  echo "clear TCP packets of the latched connection seen at carol's interface: $seen"
  [[ $seen == 0 ]] || apps_note "$seen clear packets of the connection reached carol's host"
fi

echo "== C: carol at 192.0.2.2; alice's application insists on bob"
apps_wait_line c-accept.out '^listening' || apps_note "carol's acceptor did not listen"
status=0
apps_run left alice uc2 192.0.2.2 7004 bob.example.org > c-uc2.out 2>&1 || status=$?
apps_show "alice uc2" c-uc2.out
((status == 3)) && grep -q 'why=9 the host at 192.0.2.2 authenticated as .fqdn:carol.example.org.' c-uc2.out ||
  apps_note "UC2 asking for bob at carol's address was not refused with PEER_MISMATCH (exit $status)"
grep -q '^accepted' c-accept.out && apps_note "carol accepted the connection meant for bob"
carol_esp=$(apps_esp_received right 192.0.2.2)
echo "ESP packets carol received after the refusal: $carol_esp"
((carol_esp == 0)) || apps_note "carol received $carol_esp ESP packets after the refusal"
# The same path without a wish works: the refusal was about identity.
apps_run left alice uc1 connect 192.0.2.2 7004 fqdn:carol.example.org > c-uc1.out 2>&1 || true
wait $carol_acceptor || true
apps_show "alice uc1 to carol" c-uc1.out
apps_show "carol uc1 accept" c-accept.out
grep -q '^UC1 PASS initiator sees fqdn:carol.example.org' c-uc1.out || apps_note "UC1 to carol"
grep -q '^UC1 PASS acceptor sees fqdn:alice.example.org' c-accept.out || apps_note "UC1 carol's acceptor"

apps_stop_btnsd alice carol
echo "wall time inside UML: $(apps_elapsed) s"
apps_finish
