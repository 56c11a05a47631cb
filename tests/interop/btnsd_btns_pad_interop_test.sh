#!/usr/bin/env bash
# btnsd <-> btnsd: an authenticated peer and a BTNS peer side by side on one
# host, each on its own PAD entry (RFC 5386), in a real kernel
# (user-mode-linux, one boot). Four hosts in namespaces, each joined to
# host "a" by its own veth pair:
#
#   a  192.0.2.1 / 198.51.100.1 / 203.0.113.1   fqdn:a.example.net (raw key)
#      PAD: "b"      fqdn:b.example.net, auth pubkey, B's key pinned by its
#                    SHA-256 fingerprint only (no key file), 192.0.2.2
#           "anyone" BTNS: NULL auth and any raw key, the other two segments
#   b  192.0.2.2     fqdn:b.example.net, raw Ed25519 key sent in-band
#                    (CERT encoding 15, RFC 7670)
#   c  198.51.100.2  ID_NULL, NULL authentication (RFC 7619)
#   d  203.0.113.2   claims fqdn:b.example.net with another raw key
#
# b and c initiate at start-up; a only responds. Cases:
#   both-up         both IKE SAs up on a at once; btnsctl list-sas --json
#                   shows b on PAD entry "b" (pinned-key, authenticated,
#                   fqdn:b.example.net) and c on "anyone" (null,
#                   unauthenticated); a's ike-sa-up line names B's key
#                   fingerprint. a holds no file of B's key, so the
#                   signature could only be checked with the key B sent.
#   traffic-b/-c    ping and 200 kB over TCP through each SA; ESP counters
#                   of both kernels of the pair grow.
#   impostor-d      d matches entry "b" by its ID and fails the key check:
#                   a rejects it (pad-auth-mismatch) although the BTNS entry
#                   would take its key and address (RFC 5386: never handed
#                   to BTNS); d reads AUTHENTICATION_FAILED; no SA with d in
#                   either kernel; b's SA keeps its SPIs and carries pings.
#
# Every case prints "RESULT <name> PASS|FAIL ..."; the logs of failing
# cases are shown.
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  btnsd=${BTNSD:-$root/daemon/btnsd}
  [[ -x $btnsd ]] || btnsd=$root/bazel-bin/daemon/btnsd
  [[ -x $btnsd ]] || { echo "btnsd not found (bazel build //daemon:btnsd)" >&2; exit 2; }
  btnsctl=${BTNSCTL:-$root/tools/btnsctl/btnsctl}
  [[ -x $btnsctl ]] || btnsctl=$root/bazel-bin/tools/btnsctl/btnsctl
  [[ -x $btnsctl ]] || { echo "btnsctl not found (bazel build //tools/btnsctl)" >&2; exit 2; }
  for tool in botan jq; do
    command -v $tool > /dev/null || { echo "$tool is needed (tools/install-deps)" >&2; exit 2; }
  done
  # Fresh test-only keys: a, b, and d's impostor key.
  keys=$(mktemp -d "${TEST_TMPDIR:-/tmp}/btns-pad-keys.XXXXXX")
  for name in a b d; do
    botan keygen --algo=Ed25519 > "$keys/$name.key"
    botan pkcs8 --pub-out "$keys/$name.key" > "$keys/$name.pub"
  done
  chmod 644 "$keys"/*
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-300}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$root/tools/uml/lib.sh")" \
    "$(realpath "$root/tests/interop/interop_lib.sh")" "$(realpath "$btnsctl")" "$keys"
fi
btnsd=$2
. "$3"
. "$4"
btnsctl=$5
keys=$6

work=$TMPDIR/btns-pad
mkdir -p "$work"

A_B=192.0.2.1 B=192.0.2.2
A_C=198.51.100.1 C=198.51.100.2
A_D=203.0.113.1 D=203.0.113.2

# Host a with one veth pair to each of b, c, d.
ip netns add a
ip -n a link set lo up
link() {
  local peer=$1 a_addr=$2 peer_addr=$3
  ip netns add "$peer"
  ip -n "$peer" link set lo up
  ip link add "a-$peer" netns a type veth peer name eth0 netns "$peer"
  ip -n a addr add "$a_addr/24" dev "a-$peer"
  ip -n "$peer" addr add "$peer_addr/24" dev eth0
  ip -n a link set "a-$peer" up
  ip -n "$peer" link set eth0 up
}
link b $A_B $B
link c $A_C $C
link d $A_D $D
for target in $B $C $D; do ip netns exec a ping -c1 -W2 $target > /dev/null; done

# The SHA-256 of B's SubjectPublicKeyInfo (DER), as the PAD pins it.
b_fingerprint=sha256:$(sed '/-----/d' "$keys/b.pub" | base64 -d | sha256sum | cut -d' ' -f1)
d_fingerprint=sha256:$(sed '/-----/d' "$keys/d.pub" | base64 -d | sha256sum | cut -d' ' -f1)

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

cat > "$work/a.yaml" <<EOF
daemon:
  listen: [$A_B, $A_C, $A_D]
  log_level: debug
  api_socket: $work/a-api.sock
identities:
  a:
    id: fqdn:a.example.net
    private_key: $keys/a.key
    raw_key: $keys/a.pub
  anonymous:
    id: null
pad:
  - name: b
    peer: fqdn:b.example.net
    auth: pubkey
    pubkey: [$b_fingerprint]     # no key file: B must send its key
    remote_ts: [$B]
    local_identity: a
  - name: anyone
    auth: btns
    btns:
      accept_null: true
      accept_raw_key: true        # d's key would pass here
    remote_ts: [198.51.100.0/24, 203.0.113.0/24]
    local_identity: anonymous
spd:
  - name: to-b
    local: $A_B
    remote: $B
    action: protect
    peer: b
    mode: transport
    ike_proposals: gcm-x25519
    esp_proposals: gcm-esp
    start: none
  - name: to-c
    local: $A_C
    remote: $C
    action: protect
    peer: anyone
    unauthenticated_ok: true
    mode: transport
    ike_proposals: gcm-x25519
    esp_proposals: gcm-esp
    start: none
  - name: to-d
    local: $A_D
    remote: $D
    action: protect
    peer: anyone
    unauthenticated_ok: true
    mode: transport
    ike_proposals: gcm-x25519
    esp_proposals: gcm-esp
    start: none
$proposals
EOF

# peer_config HOST ADDRESS A_ADDRESS IDENTITY_YAML PAD_YAML
peer_config() {
  cat > "$work/$1.yaml" <<EOF
daemon:
  listen: [$2]
  log_level: debug
  api_socket: $work/$1-api.sock
identities:
$4
pad:
$5
spd:
  - name: to-a
    local: $2
    remote: $3
    action: protect
    peer: a
    mode: transport
    ike_proposals: gcm-x25519
    esp_proposals: gcm-esp
    start: start
$([[ $1 == c ]] && echo "    unauthenticated_ok: true")
$proposals
EOF
}
pad_pinned_a="  - name: a
    peer: fqdn:a.example.net
    auth: pubkey
    pubkey: [$keys/a.pub]"
peer_config b $B $A_B "  b:
    id: fqdn:b.example.net
    private_key: $keys/b.key
    raw_key: $keys/b.pub" "$pad_pinned_a"
peer_config c $C $A_C "  anonymous:
    id: null" "  - name: a
    auth: btns
    btns:
      accept_null: true
      accept_raw_key: false"
peer_config d $D $A_D "  impostor:
    id: fqdn:b.example.net
    private_key: $keys/d.key
    raw_key: $keys/d.pub" "$pad_pinned_a"

ctl() { local host=$1; shift; ip netns exec "$host" "$btnsctl" --socket "$work/$host-api.sock" "$@"; }
# sas_json HOST: btnsctl list-sas --json of HOST.
sas_json() { ctl "$1" --json list-sas; }
# established_children HOST REMOTE: CHILD SAs of HOST's established IKE SA
# with REMOTE (0 when there is none).
established_children() {
  local json
  json=$(sas_json "$1") || { echo 0; return; }
  jq -r --arg r "$2" '[.ike_sas[]? | select(.state == "established" and
      (.remote | startswith($r + ":"))) | .children[]?] | length' <<< "$json"
}
both_up() {
  (( $(established_children a $B) >= 1 && $(established_children a $C) >= 1 ))
}
# esp_between NS X Y: packets of NS's ESP SAs from X to Y and from Y to X.
esp_between() {
  local out
  out=$( { ip -n "$1" -s xfrm state list src "$2" dst "$3"; ip -n "$1" -s xfrm state list src "$3" dst "$2"; } )
  awk '/lifetime current:/ {getline; sum += $2} END {print sum + 0}' <<< "$out"
}
show_logs() {
  local host
  for host in "$@"; do
    echo "---- $host btnsd log (decisive lines)"
    grep -E 'level=(error|warn)|event=(ike-sa|child-sa|engine)' "$work/$host-btnsd.log" | tail -n 25 || true
  done
}
cleanup() {
  local host
  for host in d c b a; do stop_btnsd "$host" 2> /dev/null || true; done
}
trap cleanup EXIT

for host in a b c; do start_btnsd "$host" "$work/$host.yaml"; done

# both-up
ok=1 why=
UML_WAIT_SECONDS=30 uml_wait_for both_up || { ok=0; why="not both up:"; }
json=$(sas_json a)
echo "$json" > "$work/a-list-sas.json"
b_sa=$(jq -c --arg r "$B:" '[.ike_sas[] | select(.remote | startswith($r))] | .[0] // {}' <<< "$json")
c_sa=$(jq -c --arg r "$C:" '[.ike_sas[] | select(.remote | startswith($r))] | .[0] // {}' <<< "$json")
b_view=$(jq -r '[.pad_entry, .auth_method, (.authenticated // false), .peer_id] | join(",")' <<< "$b_sa")
c_view=$(jq -r '[.pad_entry, .auth_method, (.authenticated // false), .peer_id] | join(",")' <<< "$c_sa")
[[ $b_view == "b,pinned-key,true,fqdn:b.example.net" ]] || { ok=0; why="$why b_sa=$b_view"; }
[[ $c_view == "anyone,null,false,null" ]] || { ok=0; why="$why c_sa=$c_view"; }
a_log=$(cat "$work/a-btnsd.log")
up_b=$(grep -E "event=ike-sa-up .*remote=$B:" <<< "$a_log" | head -n 1 || true)
grep -q "pad=b authenticated=yes peer_key=$b_fingerprint" <<< "$up_b" ||
  { ok=0; why="$why a's ike-sa-up for b lacks B's fingerprint: ${up_b:-none}"; }
up_c=$(grep -E "event=ike-sa-up .*remote=$C:" <<< "$a_log" | head -n 1 || true)
grep -q "peer_id=null pad=anyone authenticated=no peer_key=none" <<< "$up_c" ||
  { ok=0; why="$why a's ike-sa-up for c: ${up_c:-none}"; }
if ((ok)); then
  result both-up PASS "b=[$b_view] c=[$c_view] b_key=${b_fingerprint:0:23}..."
else
  result both-up FAIL "$why"; show_logs a b c
fi

# traffic-b / traffic-c: ping a -> peer, 200 kB peer -> a over TCP.
traffic() {
  local name=$1 host=$2 peer=$3 a_addr=$4 ok=1 why=
  local a_before peer_before replies a_delta peer_delta
  a_before=$(esp_between a "$a_addr" "$peer")
  peer_before=$(esp_packets "$host")
  replies=$(ping_replies a "$peer" 5)
  [[ $replies == 5 ]] || { ok=0; why="ping=${replies:-0}/5"; }
  tcp_transfer 200000 "$a_addr" a "$host" || { ok=0; why="$why tcp_200kB failed"; }
  a_delta=$(( $(esp_between a "$a_addr" "$peer") - a_before ))
  peer_delta=$(( $(esp_packets "$host") - peer_before ))
  # 5 echo pairs and at least ~140 TCP segments each way
  (( a_delta >= 150 && peer_delta >= 150 )) || { ok=0; why="$why esp a=+$a_delta $host=+$peer_delta"; }
  if ((ok)); then
    result "$name" PASS "ping=$replies/5 tcp_200kB=ok esp_packets_a=+$a_delta esp_packets_$host=+$peer_delta"
  else
    result "$name" FAIL "$why"; show_logs a "$host"
  fi
}
traffic traffic-b b $B $A_B
traffic traffic-c c $C $A_C

# impostor-d
ok=1 why=
b_spis_before=$(ip -n b xfrm state | awk '/proto esp spi/ {print $4}' | sort | tr '\n' ' ')
b_id_before=$(jq -r '.id' <<< "$b_sa")
start_btnsd d "$work/d.yaml"
uml_wait_for grep -q 'reason=pad-auth-mismatch' "$work/a-btnsd.log" ||
  { ok=0; why="no pad-auth-mismatch in a's log"; }
uml_wait_for grep -qi 'authentication-failed\|AUTHENTICATION_FAILED' "$work/d-btnsd.log" ||
  { ok=0; why="$why d did not read AUTHENTICATION_FAILED"; }
a_log=$(cat "$work/a-btnsd.log")
rejection=$(grep 'reason=pad-auth-mismatch' <<< "$a_log" | head -n 1 || true)
grep -q 'PAD rejects fqdn:b.example.net: public key differs from the pinned key' <<< "$rejection" ||
  { ok=0; why="$why rejection=${rejection:-none}"; }
grep -qE "event=ike-sa-up .*remote=$D:" <<< "$a_log" && { ok=0; why="$why a brought d's IKE SA up"; }
grep -q "$d_fingerprint" <<< "$(grep 'event=ike-sa-up' <<< "$a_log")" && { ok=0; why="$why d's key accepted"; }
d_on_a=$(jq -r --arg r "$D:" '[.ike_sas[]? | select((.remote | startswith($r)) and .state == "established")] | length' <<< "$(sas_json a)")
[[ $d_on_a == 0 ]] || { ok=0; why="$why a lists $d_on_a established SA(s) with d"; }
a_d_sas=$(ip -n a xfrm state list dst $D | grep -c '^src' || true)
d_sas=$(sa_count d)
(( a_d_sas == 0 && d_sas == 0 )) || { ok=0; why="$why ESP SAs a->d=$a_d_sas d=$d_sas"; }
stop_btnsd d || true
# b's SA is the same one and still carries traffic.
b_spis_after=$(ip -n b xfrm state | awk '/proto esp spi/ {print $4}' | sort | tr '\n' ' ')
b_id_after=$(jq -r --arg r "$B:" '[.ike_sas[] | select(.remote | startswith($r))] | .[0].id' <<< "$(sas_json a)")
[[ $b_spis_after == "$b_spis_before" && $b_id_after == "$b_id_before" ]] ||
  { ok=0; why="$why b's SA changed: ike $b_id_before->$b_id_after spis [$b_spis_before]->[$b_spis_after]"; }
b_before=$(esp_packets b)
replies=$(ping_replies a $B 3)
b_delta=$(( $(esp_packets b) - b_before ))
[[ $replies == 3 ]] && (( b_delta >= 6 )) || { ok=0; why="$why after d: ping=${replies:-0}/3 esp_b=+$b_delta"; }
if ((ok)); then
  result impostor-d PASS "a: ${rejection##*msg=} d_sas=0 b_spis_kept=[$b_spis_after] ping_b=$replies/3 esp_b=+$b_delta"
else
  result impostor-d FAIL "$why"; show_logs a b d
fi

trap - EXIT
cleanup
print_matrix "btnsd authenticated + BTNS peers on one PAD"
