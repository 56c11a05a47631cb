#!/usr/bin/env bash
# btnsd <-> btnsd over the algorithm and authentication matrix, in a real
# kernel (user-mode-linux, one boot). btnsd runs in both hosts: "left"
# (fqdn:left.example.net) and "right" (fqdn:right.example.net). Each row
# starts both daemons, lets one of them initiate, and checks:
#
#   up        the CHILD_SA pair in both kernels; ping and 200 kB over TCP
#             through it; the ESP counters of both kernels grow; the kernel
#             SAs carry the row's ESP algorithm (ip xfrm state: name and key
#             length) and mode; btnsctl --json list-sas on each side shows
#             the row's IKE and ESP transforms, mode, role and how the peer
#             was authenticated (PAD entry, method)
#   ike-rekey btnsctl rekey of the IKE SA by one side: new IKE SPIs on both
#             sides, the old IKE SA gone, the id kept, the CHILD_SA kept;
#             the next exchange (the CHILD rekey) runs on the new IKE SA
#   child-rekey  btnsctl rekey --child by one side: one new SA pair in each
#             kernel, the old SPIs gone, ping through the new pair; with PFS
#             the new keys came from the row's KE group (child-sa-up pfs=)
#   delete    btnsctl terminate (IKE SA, or one CHILD_SA) or SIGTERM by one
#             side: both kernels drop the SAs, both daemons forget them
#
# Rows (credentials, IKE/ESP transforms, mode, family, who initiates):
#   psk            AES-GCM-256 + X25519, transport, IPv4, left
#   cert-ecdsa     ChaCha20-Poly1305 + ECP-256, tunnel, IPv4, right
#   cert-ed25519   AES-CBC-256 + HMAC-SHA2-256 + MODP-2048 with PFS,
#                  transport, IPv6, left
#   cert-rsa       AES-GCM-128 + X25519, tunnel, IPv6, right
#   rawkey-files   raw Ed25519 keys pinned as files on both sides (RFC 7670),
#                  AES-GCM-256 + X25519, transport, IPv4, left
#   rawkey-inband-btns  raw keys sent in-band: right pins left's key by its
#                  SHA-256 fingerprint only; left has no authenticated entry
#                  for right, only a BTNS entry that lists right's
#                  fingerprint (RFC 5386 BTNS PAD matching by key), IPv4,
#                  right
# The certificates are the test CA's of btnsd_pubkey_interop_test
# (configs/pubkey/keys). A killed peer (liveness check) is not repeated
# here: btnsd_lifecycle_dpd_interop_test kills btnsd under btnsd.
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
  command -v jq > /dev/null || { echo "jq is needed (tools/install-deps)" >&2; exit 2; }
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-780}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$root/tools/uml/lib.sh")" \
    "$(realpath "$root/tests/interop")" "$(realpath "$btnsctl")"
fi
btnsd=$2
. "$3"
interop=$4
btnsctl=$5
configs=$interop/configs
keys=$configs/pubkey/keys
work=$TMPDIR/b2b
mkdir -p "$work"
. "$interop/interop_lib.sh"

uml_two_hosts
tunnel_networks
tunnel_networks_v6
ip netns exec left ping -c1 -W2 "$UML_RIGHT_V4" > /dev/null
ip netns exec left ping -c1 -W2 "$UML_RIGHT_V6" > /dev/null
cp "$configs/interop.secrets" "$work/"
chmod 600 "$work/interop.secrets"

# fingerprint PUBKEY_PEM: sha256:HEX of the SubjectPublicKeyInfo, as the PAD pins it.
fingerprint() { echo "sha256:$(sed '/-----/d' "$1" | base64 -d | sha256sum | cut -d' ' -f1)"; }

other() { [[ $1 == left ]] && echo right || echo left; }

# identity_yaml HOST CRED: HOST's own identity for credentials CRED.
identity_yaml() {
  local host=$1 cred=$2
  echo "identities:"
  echo "  $host:"
  echo "    id: fqdn:$host.example.net"
  case $cred in
    psk) echo "    psk: left-right-psk" ;;
    cert-ecdsa | cert-rsa) echo "    private_key: $keys/$host-${cred#cert-}.key"
                           echo "    certificate: $keys/$host-${cred#cert-}.crt" ;;
    cert-ed25519) echo "    private_key: $keys/$host-ed25519cert.key"
                  echo "    certificate: $keys/$host-ed25519cert.crt" ;;
    rawkey-*) echo "    private_key: $keys/$host-ed25519.key"
              echo "    raw_key: $keys/$host-ed25519.pub" ;;
  esac
}

# pad_yaml HOST CRED REMOTE_TS: HOST's PAD entry "peer" for the other host.
pad_yaml() {
  local host=$1 cred=$2 remote_ts=$3 peer
  peer=$(other "$host")
  echo "pad:"
  echo "  - name: peer"
  if [[ $cred == rawkey-inband-btns && $host == left ]]; then
    # No authenticated entry for right: only a BTNS entry that takes raw
    # keys and lists right's (RFC 5386); NULL authentication is refused.
    echo "    auth: btns"
    echo "    btns: {accept_null: false, accept_raw_key: true, keys: [$(fingerprint "$keys/right-ed25519.pub")]}"
  else
    echo "    peer: fqdn:$peer.example.net"
    case $cred in
      psk) echo "    auth: psk"; echo "    psk: left-right-psk" ;;
      cert-*) echo "    auth: ca"; echo "    ca: [$keys/ca-${cred#cert-}.crt]" ;;
      rawkey-files) echo "    auth: pubkey"; echo "    pubkey: [$keys/$peer-ed25519.pub]" ;;
      # Pinned by fingerprint only: the key must come in the CERT payload.
      rawkey-inband-btns) echo "    auth: pubkey"; echo "    pubkey: [$(fingerprint "$keys/$peer-ed25519.pub")]" ;;
    esac
  fi
  echo "    remote_ts: [\"$remote_ts\"]"
}

# Outer and inner addresses of a row, from r[family] and r[mode].
declare -A r=()
outer() {  # outer HOST
  if [[ ${r[family]} == 6 ]]; then
    [[ $1 == left ]] && echo "$UML_LEFT_V6" || echo "$UML_RIGHT_V6"
  else
    [[ $1 == left ]] && echo "$UML_LEFT_V4" || echo "$UML_RIGHT_V4"
  fi
}
# inner HOST: HOST's side of the selectors.
inner() {
  if [[ ${r[mode]} == transport ]]; then outer "$1"; return; fi
  case ${r[family]}-$1 in
    4-left) echo 198.51.100.1/32 ;;
    4-right) echo 203.0.113.0/24 ;;
    6-left) echo 2001:db8:1::1/128 ;;
    6-right) echo 2001:db8:2::/64 ;;
  esac
}
# target_of HOST: the address HOST's peer pings and sends TCP to.
target_of() {
  if [[ ${r[mode]} == transport ]]; then outer "$1"; return; fi
  case ${r[family]}-$1 in
    4-left) echo 198.51.100.1 ;;
    4-right) echo 203.0.113.1 ;;
    6-left) echo 2001:db8:1::1 ;;
    6-right) echo 2001:db8:2::1 ;;
  esac
}

# write_config HOST: $work/HOST.yaml for the row in r.
write_config() {
  local host=$1 peer start=none tunnel=""
  peer=$(other "$host")
  [[ ${r[initiator]} == "$host" ]] && start=start
  [[ ${r[mode]} == tunnel ]] &&
    tunnel="    tunnel: {local: \"$(outer "$host")\", remote: \"$(outer "$peer")\"}"
  {
    cat <<EOF
daemon:
  listen: ["$(outer "$host")"]
  log_level: debug
  api_socket: $work/$host-api.sock
secrets: $work/interop.secrets
EOF
    identity_yaml "$host" "${r[cred]}"
    pad_yaml "$host" "${r[cred]}" "$(inner "$peer")"
    cat <<EOF
spd:
  - name: to-$peer
    local: "$(inner "$host")"
    remote: "$(inner "$peer")"
    action: protect
    peer: peer
    mode: ${r[mode]}
$tunnel
    ike_proposals: row-ike
    esp_proposals: row-esp
    start: $start
EOF
    [[ ${r[cred]} == rawkey-inband-btns && $host == left ]] && echo "    unauthenticated_ok: true"
    cat <<EOF
proposals:
  row-ike:
    proposals:
      - ${r[ike]}
  row-esp:
    proposals:
      - ${r[esp]}
EOF
  } > "$work/$host.yaml"
}

sas_json() { btnsctl_at "$1" --json list-sas; }
# ike_sas HOST FILTER: jq FILTER over HOST's IKE SAs (an array).
ike_sas() {
  local json
  json=$(sas_json "$1") || return 1
  jq -c "[.ike_sas[]?] | $2" <<< "$json"
}
# established HOST: "id ispi rspi" of HOST's one established IKE SA with an
# active CHILD_SA, and nothing else listed; fails otherwise.
established() {
  local out
  out=$(ike_sas "$1" 'if length == 1 and .[0].state == "established" and
      ([.[0].children[]? | select((.state // "active") == "active")] | length) == 1
    then .[0] | "\(.id) \(.initiator_spi) \(.responder_spi)" else empty end') || return 1
  [[ -n $out ]] || return 1
  tr -d '"' <<< "$out"
}
row_up() { both_have_sas && established left > /dev/null && established right > /dev/null; }

show_logs() {
  local host
  for host in left right; do
    echo "   == $host btnsd log (decisive lines)"
    grep -E 'level=(error|warn)|event=(ike-sa|child-sa|engine)' "$work/$host-btnsd.log" | tail -n 25 | sed 's/^/     /' || true
    echo "   == $host SAs"; ip -n "$host" xfrm state | sed 's/^/     /'
  done
}

# check_traffic FROM TO COUNT: ping and (with TCP=1) 200 kB over TCP from
# FROM to TO's inner address; both kernels' ESP counters must grow by the
# packets that implies. Appends to why and details.
check_traffic() {
  local from=$1 to=$2 count=$3 replies before_l before_r grown_l grown_r min=$(( 2 * $3 ))
  before_l=$(esp_packets left) before_r=$(esp_packets right)
  replies=$(ping_replies "$from" "$(target_of "$to")" "$count")
  [[ $replies == "$count" ]] || { ok=0; why+=" ping $from->$to ${replies:-0}/$count"; }
  if [[ ${TCP:-} == 1 ]]; then
    # 200 kB: at least ~140 segments one way and their ACKs the other.
    min=$((min + 140))
    tcp_transfer 200000 "$(target_of "$to")" "$to" "$from" || { ok=0; why+=" tcp_200kB $from->$to failed"; }
  fi
  grown_l=$(( $(esp_packets left) - before_l )) grown_r=$(( $(esp_packets right) - before_r ))
  (( grown_l >= min && grown_r >= min )) ||
    { ok=0; why+=" esp counters grew left +$grown_l right +$grown_r (< $min)"; }
  details+=" ping=$replies/$count${TCP:+ tcp_200kB=ok} esp_left=+$grown_l esp_right=+$grown_r"
}

# check_algorithms: each kernel's two SAs match every regex in r[xfrm]
# (";"-separated) and the row's mode; each side's list-sas shows the IKE
# transforms r[ike_alg], ESP r[esp_alg], the mode, its role, and the
# peer's authentication r[auth_left] / r[auth_right] ("entry,method,authenticated").
check_algorithms() {
  local host state re matches view want role
  for host in left right; do
    state=$(ip -n "$host" xfrm state)
    IFS=';' read -ra res <<< "${r[xfrm]};mode ${r[mode]}"
    for re in "${res[@]}"; do
      matches=$(grep -cE "$re" <<< "$state" || true)
      [[ $matches == 2 ]] || { ok=0; why+=" $host: $matches of 2 SAs match /$re/"; }
    done
    [[ ${r[initiator]} == "$host" ]] && role=true || role=false
    view=$(ike_sas "$host" '.[0] | [.algorithms, (.initiator // false), .pad_entry, .auth_method,
        (.authenticated // false), .children[0].algorithms, .children[0].mode] | map(tostring) | join(",")')
    view=${view//\"/}
    want="${r[auth_$host]}"
    [[ $view =~ ^${r[ike_alg]},$role,$want,${r[esp_alg]},${r[mode]}$ ]] ||
      { ok=0; why+=" $host list-sas [$view] wanted /${r[ike_alg]},$role,$want,${r[esp_alg]},${r[mode]}/"; }
    details+=" $host=[$view]"
    if [[ -n ${r[peer_id_$host]:-} ]]; then
      view=$(ike_sas "$host" '.[0].peer_id')
      [[ ${view//\"/} == "${r[peer_id_$host]}" ]] || { ok=0; why+=" $host records the peer as ${view//\"/}, not ${r[peer_id_$host]}"; }
      details+=" ${host}_peer_id=${view//\"/}"
    fi
  done
}

# ike_rekey BY: BY's btnsd rekeys the IKE SA (btnsctl rekey ID).
ike_rekey() {
  local by=$1 peer before_by before_peer esp_before after_by after_peer id
  peer=$(other "$by")
  before_by=$(established "$by") before_peer=$(established "$peer") esp_before=$(spis left)
  id=${before_by%% *}
  btnsctl_at "$by" rekey "$id" >> "$work/btnsctl.out" 2>&1 || { ok=0; why+=" btnsctl rekey $id in $by failed"; return; }
  # Both sides list exactly one IKE SA again (the old SPIs deleted), with
  # SPIs other than before.
  changed() {
    local now_by now_peer
    now_by=$(established "$by") && now_peer=$(established "$peer") &&
      [[ ${now_by#* } != "${before_by#* }" && ${now_peer#* } != "${before_peer#* }" ]]
  }
  UML_WAIT_SECONDS=15 uml_wait_for changed ||
    { ok=0; why+=" ike rekey by $by: $by lists $(ike_sas "$by" 'map([.id, .state, .initiator_spi, .responder_spi])'), $peer $(ike_sas "$peer" 'map([.id, .state, .initiator_spi, .responder_spi])') (before [$before_by] [$before_peer])"; return; }
  after_by=$(established "$by") after_peer=$(established "$peer")
  [[ ${after_by%% *} == "$id" ]] || { ok=0; why+=" ike rekey by $by: id $id -> ${after_by%% *}"; }
  # The IKE SPIs seen from both sides agree.
  [[ ${after_by#* } == "${after_peer#* }" ]] || { ok=0; why+=" ike SPIs differ: $by [${after_by#* }] $peer [${after_peer#* }]"; }
  [[ $(spis left) == "$esp_before" ]] || { ok=0; why+=" ike rekey changed the ESP SPIs [$esp_before] -> [$(spis left)]"; }
  local algs
  algs=$(ike_sas "$peer" '.[0].algorithms')
  [[ ${algs//\"/} =~ ^${r[ike_alg]}$ ]] || { ok=0; why+=" rekeyed IKE SA on $peer uses ${algs//\"/}"; }
  details+=" ike_rekey_by_$by=[${before_by#* }]->[${after_by#* }]"
}

# child_rekey BY: BY's btnsd rekeys the CHILD_SA (btnsctl rekey --child).
child_rekey() {
  local by=$1 peer before child_id json replaces
  peer=$(other "$by")
  before=$(spis left)
  child_id=$(ike_sas "$by" '.[0].children[0].id')
  child_id=${child_id//\"/}
  btnsctl_at "$by" rekey --child "$child_id" >> "$work/btnsctl.out" 2>&1 ||
    { ok=0; why+=" btnsctl rekey --child $child_id in $by failed"; return; }
  replaced() {
    (( $(sa_count left) == 2 && $(sa_count right) == 2 )) &&
      [[ $(count_new "$before" "$(spis left)") == 2 ]] &&
      established left > /dev/null && established right > /dev/null
  }
  UML_WAIT_SECONDS=15 uml_wait_for replaced ||
    { ok=0; why+=" child rekey by $by: left [$(spis left)] right [$(spis right)] (before [$before])"; return; }
  replaces=$(ike_sas "$by" '.[0].children[0].replaces')
  [[ ${replaces//\"/} == "$child_id" ]] || { ok=0; why+=" $by's new CHILD_SA replaces ${replaces//\"/}, not $child_id"; }
  # The key exchange behind the new keys: the row's PFS group or none.
  local host line
  for host in left right; do
    line=$(grep 'event=child-sa-up' "$work/$host-btnsd.log" | grep -v 'replaces=0 ' | tail -n 1 || true)
    grep -q "pfs=${r[pfs]:-none}\b" <<< "$line" || { ok=0; why+=" $host's rekeyed child-sa-up: ${line:-none} (pfs=${r[pfs]:-none} wanted)"; }
  done
  details+=" child_rekey_by_$by=[$before]->[$(spis left)] pfs=${r[pfs]:-none}"
  check_traffic "$by" "$peer" 3
}

# count_new BEFORE NOW: how many words of NOW are not in BEFORE.
count_new() {
  awk -v before="$1" -v now="$2" 'BEGIN {
    n = split(before, b, " "); for (i = 1; i <= n; i++) seen[b[i]] = 1
    n = split(now, a, " "); for (i = 1; i <= n; i++) if (!(a[i] in seen)) c++
    print c + 0 }'
}

no_ike_sas() { [[ $(ike_sas "$1" 'length') == 0 ]]; }

# delete_by HOW BY: terminate (the IKE SA), terminate-child (the CHILD_SA
# only) or sigterm, by BY's btnsd.
delete_by() {
  local how=$1 by=$2 peer status=0 id
  peer=$(other "$by")
  id=$(established "$by") id=${id%% *}
  case $how in
    terminate)
      btnsctl_at "$by" terminate "$id" >> "$work/btnsctl.out" 2>&1 || { ok=0; why+=" btnsctl terminate $id failed"; }
      UML_WAIT_SECONDS=10 uml_wait_for sh -c "! ip -n left xfrm state | grep -q . && ! ip -n right xfrm state | grep -q ." ||
        { ok=0; why+=" after terminate: left $(sa_count left) right $(sa_count right) SAs"; }
      UML_WAIT_SECONDS=5 uml_wait_for no_ike_sas "$peer" || { ok=0; why+=" $peer still lists an IKE SA"; }
      no_ike_sas "$by" || { ok=0; why+=" $by still lists an IKE SA"; }
      details+=" delete=terminate-ike-by-$by sas_after=0/0 ike_sas_after=0/0"
      ;;
    terminate-child)
      local child
      child=$(ike_sas "$by" '.[0].children[0].id')
      btnsctl_at "$by" terminate --child "${child//\"/}" >> "$work/btnsctl.out" 2>&1 ||
        { ok=0; why+=" btnsctl terminate --child ${child//\"/} failed"; }
      UML_WAIT_SECONDS=10 uml_wait_for sh -c "! ip -n left xfrm state | grep -q . && ! ip -n right xfrm state | grep -q ." ||
        { ok=0; why+=" after terminate --child: left $(sa_count left) right $(sa_count right) SAs"; }
      # The IKE SA stays, with no CHILD_SA, on both sides.
      local h view
      for h in left right; do
        view=$(ike_sas "$h" 'map([.state, (.children | length)] | map(tostring) | join(":")) | join(" ")')
        [[ ${view//\"/} == established:0 ]] || { ok=0; why+=" $h after terminate --child: [${view//\"/}]"; }
      done
      details+=" delete=terminate-child-by-$by sas_after=0/0 ike_sas_kept=1/1"
      ;;
    sigterm)
      stop_btnsd "$by" || status=$?
      ((status == 0)) || { ok=0; why+=" $by exit status $status"; }
      UML_WAIT_SECONDS=10 uml_wait_for no_sas "$peer" || { ok=0; why+=" $peer kept $(sa_count "$peer") SAs"; }
      UML_WAIT_SECONDS=5 uml_wait_for no_ike_sas "$peer" || { ok=0; why+=" $peer still lists an IKE SA"; }
      (( $(sa_count "$by") == 0 && $(sa_policy_count "$by") == 0 )) ||
        { ok=0; why+=" $by kept $(sa_count "$by") SAs $(sa_policy_count "$by") policies"; }
      details+=" delete=sigterm-by-$by exit=$status sas_after=0/0"
      ;;
  esac
}

# step NAME: the seconds since the last step, into the row's line.
step() {
  steps+=" $1:$((SECONDS - step_start))"
  step_start=$SECONDS
  echo "$(date +%T) ${r[name]}: $1 done"
}

# run_row KEY=VALUE...: one row (keys in the header of each call below).
run_row() {
  r=()
  local arg
  for arg in "$@"; do r[${arg%%=*}]=${arg#*=}; done
  local name=${r[name]} started responder
  ok=1 why="" details="" steps="" step_start=$SECONDS
  responder=$(other "${r[initiator]}")
  write_config left
  write_config right
  started=$SECONDS
  # The responder first, so the initiator's first IKE_SA_INIT is answered.
  if ! start_btnsd "$responder" "$work/$responder.yaml" || ! start_btnsd "${r[initiator]}" "$work/${r[initiator]}.yaml"; then
    ok=0; why="btnsd did not start"
  elif ! UML_WAIT_SECONDS=30 uml_wait_for row_up; then
    ok=0; why="not up: left $(sa_count left) right $(sa_count right) SAs"
  else
    step up
    TCP=1 check_traffic "${r[initiator]}" "$responder" 5
    check_traffic "$responder" "${r[initiator]}" 2
    step traffic
    check_algorithms
    step algorithms
    if ((ok)) && [[ -n ${r[ike_rekey_by]:-} ]]; then ike_rekey "${r[ike_rekey_by]}"; step ike_rekey; fi
    if ((ok)) && [[ -n ${r[child_rekey_by]:-} ]]; then child_rekey "${r[child_rekey_by]}"; step child_rekey; fi
    if ((ok)); then delete_by "${r[delete]}" "${r[delete_by]}"; step delete; fi
  fi
  if ((ok)); then
    result "$name" PASS "row_s=$((SECONDS - started)) steps_s=[${steps# }]$details"
  else
    result "$name" FAIL "$why steps_s=[${steps# }]"; show_logs
  fi
  stop_btnsd left || true
  stop_btnsd right || true
  mkdir -p "$work/$name"
  mv "$work"/*-btnsd.log "$work"/*.yaml "$work/$name/" 2>/dev/null || true
  flush_all
}

gcm256='{encryption: [aes256gcm16], prf: [sha256], ke: [x25519]}'
gcm256_esp='{encryption: [aes256gcm16], esn: [noesn]}'
gcm256_xfrm='aead rfc4106\(gcm\(aes\)\) 0x[0-9a-f]{72} 128'
gcm256_ike='AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519'
gcm256_child='rfc4106\(gcm\(aes\)\)-256'

run_row name=psk-gcm256-x25519-transport-v4 cred=psk family=4 mode=transport initiator=left \
  ike="$gcm256" esp="$gcm256_esp" xfrm="$gcm256_xfrm" ike_alg="$gcm256_ike" esp_alg="$gcm256_child" \
  auth_left=peer,psk,true auth_right=peer,psk,true \
  child_rekey_by=left ike_rekey_by=right delete=terminate delete_by=left

run_row name=cert-ecdsa-chacha20-ecp256-tunnel-v4 cred=cert-ecdsa family=4 mode=tunnel initiator=right \
  ike='{encryption: [chacha20poly1305], prf: [sha256], ke: [ecp256]}' \
  esp='{encryption: [chacha20poly1305], esn: [noesn]}' \
  xfrm='aead rfc7539esp\(chacha20,poly1305\) 0x[0-9a-f]{72} 128' \
  ike_alg='CHACHA20_POLY1305(-256)?/PRF_HMAC_SHA2_256/ECP_256' esp_alg='rfc7539esp\(chacha20,poly1305\)(-256)?' \
  auth_left=peer,certificate,true auth_right=peer,certificate,true \
  ike_rekey_by=right child_rekey_by=left delete=sigterm delete_by=right

run_row name=cert-ed25519-aescbc-sha256-modp2048-pfs-transport-v6 cred=cert-ed25519 family=6 mode=transport initiator=left \
  ike='{encryption: [aes256cbc], integrity: [sha256], prf: [sha256], ke: [modp2048]}' \
  esp='{encryption: [aes256cbc], integrity: [sha256], ke: [modp2048], esn: [noesn]}' \
  xfrm='enc cbc\(aes\) 0x[0-9a-f]{64}$;auth-trunc hmac\(sha256\) 0x[0-9a-f]{64} 128' \
  ike_alg='AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP/14' esp_alg='cbc\(aes\)-256\+hmac\(sha256\)' \
  auth_left=peer,certificate,true auth_right=peer,certificate,true pfs=modp2048 \
  ike_rekey_by=left child_rekey_by=right delete=terminate delete_by=right

run_row name=cert-rsa-gcm128-x25519-tunnel-v6 cred=cert-rsa family=6 mode=tunnel initiator=right \
  ike='{encryption: [aes128gcm16], prf: [sha256], ke: [x25519]}' esp='{encryption: [aes128gcm16], esn: [noesn]}' \
  xfrm='aead rfc4106\(gcm\(aes\)\) 0x[0-9a-f]{40} 128' \
  ike_alg='AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519' esp_alg='rfc4106\(gcm\(aes\)\)-128' \
  auth_left=peer,certificate,true auth_right=peer,certificate,true \
  ike_rekey_by=left child_rekey_by=right delete=sigterm delete_by=left

run_row name=rawkey-files-gcm256-transport-v4 cred=rawkey-files family=4 mode=transport initiator=left \
  ike="$gcm256" esp="$gcm256_esp" xfrm="$gcm256_xfrm" ike_alg="$gcm256_ike" esp_alg="$gcm256_child" \
  auth_left=peer,pinned-key,true auth_right=peer,pinned-key,true \
  delete=terminate-child delete_by=right

run_row name=rawkey-inband-btns-pad-gcm256-transport-v4 cred=rawkey-inband-btns family=4 mode=transport initiator=right \
  ike="$gcm256" esp="$gcm256_esp" xfrm="$gcm256_xfrm" ike_alg="$gcm256_ike" esp_alg="$gcm256_child" \
  auth_left=peer,raw-key,false auth_right=peer,pinned-key,true \
  peer_id_left="$(fingerprint "$keys/right-ed25519.pub")" delete=terminate delete_by=left

echo "dpd: not repeated here (btnsd_lifecycle_dpd_interop_test kills btnsd under btnsd)"
print_matrix "btnsd <-> btnsd: credentials, transforms, modes, families, rekeys and deletes by each side"
