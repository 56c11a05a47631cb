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
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  bin=${BTNS_BIN:-$root}
  btnsd=$bin/daemon/btnsd
  [[ -x $btnsd ]] || { echo "btnsd not found at $btnsd (bazel build //daemon:btnsd //tests/apps/...; set BTNS_BIN to bazel-bin)" >&2; exit 2; }
  command -v botan > /dev/null || { echo "the botan command (package botan) is needed to make test certificates" >&2; exit 2; }
  # A throwaway CA and one certificate per host (SAN dNSName = the name),
  # made here: a freshly booted UML kernel may block on getrandom().
  keys=$(mktemp -d "${TEST_TMPDIR:-/tmp}/uc-keys.XXXXXX")
  (
    cd "$keys"
    botan keygen --algo=ECDSA --params=secp256r1 > ca.key
    botan gen_self_signed --ca --days=30 ca.key "Use Case Test CA" --organization=Example > ca.crt
    for name in alice bob carol; do
      botan keygen --algo=ECDSA --params=secp256r1 > $name.key
      botan gen_pkcs10 $name.key $name.example.org --dns=$name.example.org --organization=Example > $name.csr
      botan sign_cert --duration=30 ca.crt ca.key $name.csr > $name.crt
    done
    chmod 644 ./*
  )
  # UC_WORK=DIR keeps the logs and captures in a host folder for reading.
  rw=()
  [[ -n ${UC_WORK:-} ]] && { mkdir -p "$UC_WORK"; rw=(--rw "$UC_WORK"); }
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-200}" "${rw[@]}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$bin/tests/apps")" "$(realpath "$root/tools/uml/lib.sh")" "$keys"
fi
btnsd=$2 apps=$3
. "$4"
work=${UC_WORK:-$TMPDIR/uc}
mkdir -p "$work"
cd "$work"

cp "$5"/*.key "$5"/*.crt "$work"/

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
proposals:
  gcm-x25519:
    proposals:
      - encryption: [aes256gcm16]
        prf: [sha256]
        ke: [x25519]
  gcm-esp:
    proposals:
      - encryption: [aes256gcm16]
        esn: [noesn]
EOF
}
host_config alice 192.0.2.1 192.0.2.0/24 trap
host_config bob 192.0.2.2 192.0.2.0/24 trap
# Carol starts the IKE SA herself, as a replacement host would.
host_config carol 192.0.2.2 192.0.2.1 start

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
  BTNS_API_SOCKET=$work/$name-api.sock ip netns exec "$ns" timeout 25 "$apps/$program" "$@"
}

# inbound_esp NS ADDRESS: packets counted by the ESP SAs whose destination
# is ADDRESS in NS (what that host received under IPsec).
inbound_esp() {
  ip -n "$1" -s xfrm state | awk -v dst="$2" '
    /^src / { mine = ($4 == dst) }
    /lifetime current:/ { getline; if (mine) sum += $2 }
    END { print sum + 0 }'
}

why=""
note() { why="$why $*;"; echo "CHECK FAILED: $*"; }
show() { sed "s/^/[$1] /" "$2"; }

start_btnsd left alice
start_btnsd right bob

echo "== A: bob at 192.0.2.2"
app right bob uc1 accept 7001 fqdn:alice.example.org > a-uc1-accept.out 2>&1 &
acceptor=$!
uml_wait_for grep -q '^listening' a-uc1-accept.out || note "uc1 acceptor did not listen"
app left alice uc1 connect 192.0.2.2 7001 fqdn:bob.example.org > a-uc1-connect.out 2>&1 || true
wait $acceptor || true
show "bob uc1 accept" a-uc1-accept.out
show "alice uc1 connect" a-uc1-connect.out
grep -q '^UC1 PASS acceptor sees fqdn:alice.example.org' a-uc1-accept.out || note "UC1 acceptor"
grep -q '^UC1 PASS initiator sees fqdn:bob.example.org' a-uc1-connect.out || note "UC1 initiator"

app right bob uc1 accept 7002 fqdn:alice.example.org > a-uc2-accept.out 2>&1 &
acceptor=$!
uml_wait_for grep -q '^listening' a-uc2-accept.out || note "uc2's acceptor did not listen"
status=0
app left alice uc2 192.0.2.2 7002 bob.example.org > a-uc2.out 2>&1 || status=$?
wait $acceptor || true
show "alice uc2" a-uc2.out
((status == 0)) && grep -q '^UC2 PASS reached fqdn:bob.example.org' a-uc2.out || note "UC2 to bob (exit $status)"
grep -q 'event=api-socket-bound' "$work/alice-btnsd.log" || note "alice's btnsd never bound a socket to an SA"

app right bob uc5 7005 fqdn:alice.example.org > a-uc5.out 2>&1 &
acceptor=$!
uml_wait_for grep -q '^listening' a-uc5.out || note "uc5 did not listen"
status=0
app left alice uc6 192.0.2.2 7005 bob.example.org > a-uc6.out 2>&1 || status=$?
wait $acceptor || true
show "bob uc5" a-uc5.out
show "alice uc6" a-uc6.out
grep -q '^UC5 PASS datagram from fqdn:alice.example.org' a-uc5.out || note "UC5"
((status == 0)) && grep -q '^UC6 PASS' a-uc6.out || note "UC6 (exit $status)"

echo "== B: the latched connection's peer is replaced"
app right bob uc1 accept 7003 fqdn:alice.example.org > b-accept.out 2>&1 &
bob_acceptor=$!
uml_wait_for grep -q '^listening' b-accept.out || note "latch acceptor did not listen"
app left alice uc_latch 192.0.2.2 7003 bob.example.org 40 > b-latch.out 2>&1 &
latcher=$!
UML_WAIT_SECONDS=15 uml_wait_for grep -q '^latched' b-latch.out || note "the latch client did not latch"
# Bob's host goes away (its btnsd deletes its SAs and tells alice), and
# carol's btnsd takes the address. Bob's application goes first: its
# socket lives in the kernel carol's btnsd will use, and must not outlive
# bob's SAs there.
kill -KILL $bob_acceptor 2> /dev/null || true
wait $bob_acceptor 2> /dev/null || true
sleep 1
kill -TERM "$(cat bob.pid)"; wait "$(cat bob.pid)" || true
capture=""
if command -v dumpcap > /dev/null; then
  ip netns exec right dumpcap -q -i eth0 -f 'tcp port 7003' -w "$work/b-right.pcap" > /dev/null 2>&1 &
  capture=$!
  sleep 1
fi
start_btnsd right carol
status=0
wait $latcher || status=$?
show "alice uc_latch" b-latch.out
((status == 0)) && grep -q '^LATCH BROKEN peer=fqdn:carol.example.org' b-latch.out || note "no BROKEN event naming carol (exit $status)"
carol_esp=$(inbound_esp right 192.0.2.2)
echo "ESP packets carol received after the latch broke: $carol_esp"
((carol_esp == 0)) || note "carol received $carol_esp ESP packets: the latched connection reached her"
if [[ -n $capture ]]; then
  kill -INT $capture; wait $capture 2> /dev/null || true
  seen=$(tshark -r "$work/b-right.pcap" 2> /dev/null | wc -l)
  echo "clear TCP packets of the latched connection seen at carol's interface: $seen"
  ((seen == 0)) || note "$seen clear packets of the connection reached carol's host"
fi

echo "== C: carol at 192.0.2.2; alice's application insists on bob"
app right carol uc1 accept 7004 fqdn:alice.example.org > c-accept.out 2>&1 &
carol_acceptor=$!
uml_wait_for grep -q '^listening' c-accept.out || note "carol's acceptor did not listen"
status=0
app left alice uc2 192.0.2.2 7004 bob.example.org > c-uc2.out 2>&1 || status=$?
show "alice uc2" c-uc2.out
((status == 3)) && grep -q 'why=9 the host at 192.0.2.2 authenticated as .fqdn:carol.example.org.' c-uc2.out ||
  note "UC2 asking for bob at carol's address was not refused with PEER_MISMATCH (exit $status)"
grep -q '^accepted' c-accept.out && note "carol accepted the connection meant for bob"
carol_esp=$(inbound_esp right 192.0.2.2)
echo "ESP packets carol received after the refusal: $carol_esp"
((carol_esp == 0)) || note "carol received $carol_esp ESP packets after the refusal"
# The same path without a wish works: the refusal was about identity.
app left alice uc1 connect 192.0.2.2 7004 fqdn:carol.example.org > c-uc1.out 2>&1 || true
wait $carol_acceptor || true
show "alice uc1 to carol" c-uc1.out
show "carol uc1 accept" c-accept.out
grep -q '^UC1 PASS initiator sees fqdn:carol.example.org' c-uc1.out || note "UC1 to carol"
grep -q '^UC1 PASS acceptor sees fqdn:alice.example.org' c-accept.out || note "UC1 carol's acceptor"

for name in alice carol; do
  pid=$(cat $name.pid)
  kill -TERM "$pid"
  status=0
  wait "$pid" || status=$?
  ((status == 0)) || note "btnsd $name exited $status"
done
if [[ -n $why ]]; then
  for f in "$work"/*-btnsd.log; do echo "== $f"; grep -v 'level=debug' "$f" | tail -n 25; done
  echo "RESULT uml-use-cases FAIL$why"
  exit 1
fi
echo "RESULT uml-use-cases PASS"
