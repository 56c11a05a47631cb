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

# Forks and execs are what costs inside user-mode-linux (most of a second
# each on a loaded machine), so the checks below wait on the daemons' logs
# with shell builtins and look at each kernel and each daemon once per step.

# pause SECONDS: sleep without a process (a read that times out on a
# FIFO nobody writes; /dev/fd, and so <(...), is missing in UML).
mkfifo "$work/never"
exec {never_fd}<> "$work/never"
pause() { read -r -t "$1" -u "$never_fd" || true; }
# wait_for SECONDS CMD...: retries CMD (a shell function) every 0.3 s.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    pause 0.3
  done
}

# log_read HOST: log_text = HOST's btnsd log (builtin read, no process).
log_read() { IFS= read -r -d '' log_text < "$work/$1-btnsd.log" || true; }
# mark HOST: remember how far HOST's log goes, for logged_since.
declare -A log_mark=()
mark() { local h; for h in "$@"; do log_read "$h"; log_mark[$h]=${#log_text}; done; }
# logged_since HOST REGEX...: every REGEX matches HOST's log after its mark;
# BASH_REMATCH holds the last match.
logged_since() {
  local host=$1 re
  shift
  log_read "$host"
  local text=${log_text:${log_mark[$host]:-0}}
  for re in "$@"; do [[ $text =~ $re ]] || return 1; done
}
both_logged() { logged_since left "$@" && logged_since right "$@"; }

# kernel HOST: one look at HOST's SAD (ip -s: with counters, and each key's
# length in bits after it): k_count SAs, k_spis ("0x... "), k_packets (sum
# of the packet counters) and k_text.
kernel() {
  local line current=0
  k_text=$(ip -n "$1" -s xfrm state)
  k_count=0 k_spis="" k_packets=0
  while IFS= read -r line; do
    [[ $line == src* ]] && k_count=$((k_count + 1))
    [[ $line =~ proto\ esp\ spi\ (0x[0-9a-f]+) ]] && k_spis+="${BASH_REMATCH[1]} "
    if ((current)) && [[ $line =~ ([0-9]+)\(packets\) ]]; then
      k_packets=$((k_packets + BASH_REMATCH[1]))
    fi
    [[ $line == *"lifetime current:"* ]] && current=1 || current=0
  done <<< "$k_text"
}
# kernel_sas_are N: both kernels hold N SAs.
kernel_sas_are() {
  kernel left; local l=$k_count
  kernel right
  ((l == $1 && k_count == $1))
}
# disjoint "A B" "C D": no word in common.
disjoint() {
  local x
  for x in $2; do [[ " $1 " != *" $x "* ]] || return 1; done
}

# snapshot HOST: one btnsctl --json list-sas of HOST, as s_* variables:
# s_count IKE SAs listed; of the first: s_state s_id s_spis (i/r) s_active
# (active CHILD_SAs) s_ike_alg s_initiator s_pad s_auth s_authd s_peer_id;
# of its active CHILD_SA: s_child s_replaces s_esp_alg s_mode.
snapshot() {
  local line
  line=$("$btnsctl" --socket "$work/$1-api.sock" --json list-sas | jq -r '
    [.ike_sas[]?] as $s | ($s[0] // {}) as $i
    | ([$i.children[]? | select(.state == "active")]) as $a | ($a[0] // {}) as $c
    | [($s | length), ($i.state // "-"), ($i.id // "-"),
       "\($i.initiator_spi // "-")/\($i.responder_spi // "-")", ($a | length),
       ($i.algorithms // "-"), ($i.initiator // false), ($i.pad_entry // "-"),
       ($i.auth_method // "-"), ($i.authenticated // false), ($i.peer_id // "-"),
       ($c.id // "-"), ($c.replaces // "0"), ($c.algorithms // "-"), ($c.mode // "-")]
    | map(tostring) | join(" ")') || { s_count=error; return 1; }
  read -r s_count s_state s_id s_spis s_active s_ike_alg s_initiator s_pad s_auth \
    s_authd s_peer_id s_child s_replaces s_esp_alg s_mode <<< "$line"
}
# established HOST: HOST lists exactly one IKE SA, established, with one
# active CHILD_SA (snapshot variables set).
established() { snapshot "$1" && [[ $s_count == 1 && $s_state == established && $s_active == 1 ]]; }

show_logs() {
  local host
  for host in left right; do
    echo "   == $host btnsd log (decisive lines)"
    grep -E 'level=(error|warn)|event=(ike-sa|child-sa|engine)' "$work/$host-btnsd.log" | tail -n 25 | sed 's/^/     /' || true
    echo "   == $host SAs"; ip -n "$host" xfrm state | sed 's/^/     /'
  done
}

# ping_count FROM TO COUNT: pings TO's inner address; replies in $replies.
ping_count() {
  local out
  out=$(ip netns exec "$1" ping -c "$3" -i 0.2 -W 2 "$(target_of "$2")" 2>&1) || true
  [[ $out =~ ([0-9]+)\ received ]] && replies=${BASH_REMATCH[1]} || replies=0
}

# check_traffic FROM TO COUNT [tcp]: COUNT pings each way between the inner
# addresses and, with "tcp", 200 kB over TCP from FROM to TO; both kernels'
# ESP counters must grow by the packets that implies.
check_traffic() {
  local from=$1 to=$2 count=$3 before_l before_r grown_l grown_r min=$((4 * $3)) replies
  kernel left; before_l=$k_packets
  kernel right; before_r=$k_packets
  ping_count "$from" "$to" "$count"
  [[ $replies == "$count" ]] || { ok=0; why+=" ping $from->$to $replies/$count"; }
  details+=" ping_$from=$replies/$count"
  ping_count "$to" "$from" "$count"
  [[ $replies == "$count" ]] || { ok=0; why+=" ping $to->$from $replies/$count"; }
  details+=" ping_$to=$replies/$count"
  if [[ ${4:-} == tcp ]]; then
    # 200 kB: at least ~140 segments one way and their ACKs the other.
    min=$((min + 150))
    tcp_transfer 200000 "$(target_of "$to")" "$to" "$from" || { ok=0; why+=" tcp_200kB $from->$to failed"; }
    details+=" tcp_200kB=ok"
  fi
  kernel left; grown_l=$((k_packets - before_l))
  kernel right; grown_r=$((k_packets - before_r))
  (( grown_l >= min && grown_r >= min )) ||
    { ok=0; why+=" esp counters grew left +$grown_l right +$grown_r (< $min)"; }
  details+=" esp_left=+$grown_l esp_right=+$grown_r"
}

# check_algorithms: each kernel's two SAs match every regex in r[xfrm]
# (";"-separated) and the row's mode; each side's list-sas shows the IKE
# transforms r[ike_alg], ESP r[esp_alg], the mode, its role, and the
# peer's authentication r[auth_left] / r[auth_right] ("entry,method,authenticated")
# and, where the row names it, the peer's recorded ID r[peer_id_HOST].
check_algorithms() {
  local host re matches line role view want seen
  local -a res
  for host in left right; do
    kernel "$host"
    IFS=';' read -ra res <<< "${r[xfrm]};mode ${r[mode]}"
    for re in "${res[@]}"; do
      matches=0 seen=""
      while IFS= read -r line; do
        if [[ $line =~ $re ]]; then matches=$((matches + 1)); fi
        if [[ $line =~ ^[[:space:]]*(aead|enc|auth-trunc)\ ([^ ]+)\ 0x[0-9a-f]*(.*) ]]; then
          seen+="[${BASH_REMATCH[1]} ${BASH_REMATCH[2]}${BASH_REMATCH[3]}]"
        fi
      done <<< "$k_text"
      [[ $matches == 2 ]] || { ok=0; why+=" $host: $matches of 2 SAs match /$re/ (kernel: $seen)"; }
    done
    [[ ${r[initiator]} == "$host" ]] && role=true || role=false
    snapshot "$host" || true
    view="$s_ike_alg,$s_initiator,$s_pad,$s_auth,$s_authd,$s_esp_alg,$s_mode"
    want="${r[ike_alg]},$role,${r[auth_$host]},${r[esp_alg]},${r[mode]}"
    [[ $view =~ ^$want$ ]] || { ok=0; why+=" $host list-sas [$view] wanted /$want/"; }
    details+=" $host=[$view]"
    if [[ -n ${r[peer_id_$host]:-} ]]; then
      [[ $s_peer_id == "${r[peer_id_$host]}" ]] || { ok=0; why+=" $host records the peer as $s_peer_id, not ${r[peer_id_$host]}"; }
      details+=" ${host}_peer_id=${s_peer_id:0:23}..."
    fi
  done
}

# ike_rekey BY: BY's btnsd rekeys the IKE SA (btnsctl rekey ID).
ike_rekey() {
  local by=$1 peer id before_by before_peer esp_before
  peer=$(other "$by")
  established "$peer" || true
  before_peer=$s_spis
  established "$by" || true
  before_by=$s_spis id=$s_id
  kernel left; esp_before=$k_spis
  mark left right
  btnsctl_at "$by" rekey "$id" >> "$work/btnsctl.out" 2>&1 || { ok=0; why+=" btnsctl rekey $id in $by failed"; return; }
  # Both sides took the new SPIs and ended the old IKE SA.
  wait_for 15 both_logged 'IKE SA rekeyed' 'reason=rekeyed msg="IKE SA [0-9a-f]+/[0-9a-f]+ with .* ended: rekeyed' ||
    { ok=0; why+=" ike rekey by $by not logged on both sides"; return; }
  # Each lists one IKE SA again (the old SPIs gone), with other SPIs.
  established "$peer" && [[ $s_spis != "$before_peer" ]] ||
    { ok=0; why+=" ike rekey by $by: $peer lists $s_count IKE SA(s), $s_state, SPIs [$s_spis] (before [$before_peer])"; }
  local peer_spis=$s_spis
  established "$by" && [[ $s_spis != "$before_by" && $s_id == "$id" ]] ||
    { ok=0; why+=" ike rekey by $by: $by lists $s_count IKE SA(s), $s_state, id $s_id (before $id), SPIs [$s_spis] (before [$before_by])"; }
  [[ $s_spis == "$peer_spis" ]] || { ok=0; why+=" ike SPIs differ: $by [$s_spis] $peer [$peer_spis]"; }
  [[ $s_ike_alg =~ ^${r[ike_alg]}$ ]] || { ok=0; why+=" rekeyed IKE SA uses $s_ike_alg"; }
  kernel left
  [[ $k_spis == "$esp_before" ]] || { ok=0; why+=" ike rekey changed the ESP SPIs [$esp_before] -> [$k_spis]"; }
  details+=" ike_rekey_by_$by=[$before_by]->[$s_spis]"
}

# child_rekey BY: BY's btnsd rekeys the CHILD_SA (btnsctl rekey --child).
child_rekey() {
  local by=$1 peer before child_id host
  peer=$(other "$by")
  kernel left; before=$k_spis
  established "$by" || true
  child_id=$s_child
  mark left right
  btnsctl_at "$by" rekey --child "$child_id" >> "$work/btnsctl.out" 2>&1 ||
    { ok=0; why+=" btnsctl rekey --child $child_id in $by failed"; return; }
  wait_for 15 both_logged 'event=child-sa-up [^
]* replaces=[1-9]' 'event=child-sa-down [^
]*reason=rekeyed' || { ok=0; why+=" child rekey by $by not logged on both sides"; return; }
  # The key exchange behind the new keys: the row's PFS group or none.
  local pfs
  for host in left right; do
    pfs="?"
    if logged_since "$host" 'event=child-sa-up [^
]* replaces=[1-9][^
]* pfs=([a-z0-9]+)'; then pfs=${BASH_REMATCH[1]}; fi
    [[ $pfs == "${r[pfs]:-none}" ]] ||
      { ok=0; why+=" $host's rekeyed child-sa-up: pfs=$pfs (${r[pfs]:-none} wanted)"; }
  done
  # One new SA pair in each kernel, the old SPIs gone from both.
  wait_for 10 kernel_sas_are 2 || { ok=0; why+=" after the child rekey: left/right hold $(sa_count left)/$(sa_count right) SAs"; }
  kernel right; local right_spis=$k_spis
  kernel left
  disjoint "$before" "$k_spis" && disjoint "$before" "$right_spis" ||
    { ok=0; why+=" old SPIs kept: before [$before] left [$k_spis] right [$right_spis]"; }
  established "$by" && [[ $s_replaces == "$child_id" ]] ||
    { ok=0; why+=" $by's new CHILD_SA ($s_child) replaces $s_replaces, not $child_id"; }
  details+=" child_rekey_by_$by=[$before]->[$k_spis] pfs=${r[pfs]:-none}"
  check_traffic "$by" "$peer" 3
}

# delete_by HOW BY: terminate (the IKE SA), terminate-child (the CHILD_SA
# only) or sigterm, by BY's btnsd.
delete_by() {
  local how=$1 by=$2 peer status=0 h
  peer=$(other "$by")
  established "$by" || true
  mark left right
  case $how in
    terminate)
      btnsctl_at "$by" terminate "$s_id" >> "$work/btnsctl.out" 2>&1 || { ok=0; why+=" btnsctl terminate $s_id failed"; }
      wait_for 10 both_logged 'event=ike-sa-down' || { ok=0; why+=" no ike-sa-down on both sides"; }
      wait_for 5 kernel_sas_are 0 || { ok=0; why+=" after terminate: left $(sa_count left) right $(sa_count right) SAs"; }
      for h in left right; do
        snapshot "$h" || true
        [[ $s_count == 0 ]] || { ok=0; why+=" $h still lists $s_count IKE SA(s)"; }
      done
      details+=" delete=terminate-ike-by-$by sas_after=0/0 ike_sas_after=0/0"
      ;;
    terminate-child)
      btnsctl_at "$by" terminate --child "$s_child" >> "$work/btnsctl.out" 2>&1 ||
        { ok=0; why+=" btnsctl terminate --child $s_child failed"; }
      wait_for 10 both_logged 'event=child-sa-down' || { ok=0; why+=" no child-sa-down on both sides"; }
      wait_for 5 kernel_sas_are 0 || { ok=0; why+=" after terminate --child: left $(sa_count left) right $(sa_count right) SAs"; }
      # The IKE SA stays, without CHILD_SAs, on both sides.
      for h in left right; do
        snapshot "$h" || true
        [[ $s_count == 1 && $s_state == established && $s_active == 0 && $s_child == - ]] ||
          { ok=0; why+=" $h after terminate --child: $s_count IKE SA(s) $s_state, $s_active active CHILD_SA(s)"; }
      done
      details+=" delete=terminate-child-by-$by sas_after=0/0 ike_sas_kept=1/1"
      ;;
    sigterm)
      stop_btnsd "$by" || status=$?
      ((status == 0)) || { ok=0; why+=" $by exit status $status"; }
      wait_for 10 logged_since "$peer" 'event=ike-sa-down[^
]*reason=deleted-by-peer' || { ok=0; why+=" $peer logged no ike-sa-down deleted-by-peer"; }
      kernel "$peer"
      ((k_count == 0)) || { ok=0; why+=" $peer kept $k_count SAs"; }
      snapshot "$peer" || true
      [[ $s_count == 0 ]] || { ok=0; why+=" $peer still lists $s_count IKE SA(s)"; }
      (( $(sa_count "$by") == 0 && $(sa_policy_count "$by") == 0 )) ||
        { ok=0; why+=" $by kept $(sa_count "$by") SAs $(sa_policy_count "$by") policies"; }
      details+=" delete=sigterm-by-$by exit=$status sas_after=0/0"
      ;;
  esac
}

# row_up: both daemons logged the IKE SA and the CHILD_SA, both kernels
# hold the pair and both daemons list it.
row_up() {
  wait_for 30 both_logged 'event=ike-sa-up' 'event=child-sa-up' &&
    wait_for 10 kernel_sas_are 2 && established left && established right
}

# step NAME: the seconds since the last step, into the row's line.
step() {
  steps+=" $1:$((SECONDS - step_start))"
  step_start=$SECONDS
}

# run_row KEY=VALUE...: one row (keys in the header of each call below).
run_row() {
  r=()
  local arg
  for arg in "$@"; do r[${arg%%=*}]=${arg#*=}; done
  local name=${r[name]} started responder
  ok=1 why="" details="" steps="" step_start=$SECONDS
  log_mark=()
  responder=$(other "${r[initiator]}")
  write_config left
  write_config right
  started=$SECONDS
  # The responder first, so the initiator's first IKE_SA_INIT is answered.
  if ! start_btnsd "$responder" "$work/$responder.yaml" || ! start_btnsd "${r[initiator]}" "$work/${r[initiator]}.yaml"; then
    ok=0; why="btnsd did not start"
  elif ! row_up; then
    ok=0; why="not up: left $(sa_count left) right $(sa_count right) SAs"
  else
    step up
    check_traffic "${r[initiator]}" "$responder" 3 tcp
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
gcm256_xfrm='aead rfc4106\(gcm\(aes\)\) 0x[0-9a-f]{72}( \(288 bits\))? 128 ?$'
gcm256_ike='AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519'
gcm256_child='rfc4106\(gcm\(aes\)\)-256'

run_row name=psk-gcm256-x25519-transport-v4 cred=psk family=4 mode=transport initiator=left \
  ike="$gcm256" esp="$gcm256_esp" xfrm="$gcm256_xfrm" ike_alg="$gcm256_ike" esp_alg="$gcm256_child" \
  auth_left=peer,psk,true auth_right=peer,psk,true \
  child_rekey_by=left ike_rekey_by=right delete=terminate delete_by=left

run_row name=cert-ecdsa-chacha20-ecp256-tunnel-v4 cred=cert-ecdsa family=4 mode=tunnel initiator=right \
  ike='{encryption: [chacha20poly1305], prf: [sha256], ke: [ecp256]}' \
  esp='{encryption: [chacha20poly1305], esn: [noesn]}' \
  xfrm='aead rfc7539esp\(chacha20,poly1305\) 0x[0-9a-f]{72}( \(288 bits\))? 128 ?$' \
  ike_alg='CHACHA20_POLY1305(-256)?/PRF_HMAC_SHA2_256/ECP_256' esp_alg='rfc7539esp\(chacha20,poly1305\)(-256)?' \
  auth_left=peer,certificate,true auth_right=peer,certificate,true \
  ike_rekey_by=right child_rekey_by=left delete=sigterm delete_by=right

run_row name=cert-ed25519-aescbc-sha256-modp2048-pfs-transport-v6 cred=cert-ed25519 family=6 mode=transport initiator=left \
  ike='{encryption: [aes256cbc], integrity: [sha256], prf: [sha256], ke: [modp2048]}' \
  esp='{encryption: [aes256cbc], integrity: [sha256], ke: [modp2048], esn: [noesn]}' \
  xfrm='enc cbc\(aes\) 0x[0-9a-f]{64}( \(256 bits\))? ?$;auth-trunc hmac\(sha256\) 0x[0-9a-f]{64}( \(256 bits\))? 128 ?$' \
  ike_alg='AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP/14' esp_alg='cbc\(aes\)-256\+hmac\(sha256\)' \
  auth_left=peer,certificate,true auth_right=peer,certificate,true pfs=modp2048 \
  ike_rekey_by=left child_rekey_by=right delete=terminate delete_by=right

run_row name=cert-rsa-gcm128-x25519-tunnel-v6 cred=cert-rsa family=6 mode=tunnel initiator=right \
  ike='{encryption: [aes128gcm16], prf: [sha256], ke: [x25519]}' esp='{encryption: [aes128gcm16], esn: [noesn]}' \
  xfrm='aead rfc4106\(gcm\(aes\)\) 0x[0-9a-f]{40}( \(160 bits\))? 128 ?$' \
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
