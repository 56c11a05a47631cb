#!/usr/bin/env bash
# NAT traversal against strongSwan 5.9.8 in a real kernel (user-mode-linux,
# one boot per group). btnsd runs in host "left" on a public address
# (192.0.2.1); strongSwan in host "right" (203.0.113.2) behind namespace
# "nat", which masquerades right's traffic to 192.0.2.254 with new UDP
# source ports (iptables). Tunnel mode 198.51.100.2 (right) <-> 198.51.100.1
# (left), PSK, AES-GCM-256 with X25519.
#
# Group "nat" (btnsd_nat_interop_test):
#   nat-t-strongswan-behind-nat  strongSwan initiates through the NAT; both
#                                sides detect it and move to UDP 4500; the
#                                ESP SAs are UDP-encapsulated (RFC 3948),
#                                pings go through them
#   nat-mapping-change           the NAT's mappings are flushed and its port
#                                range changed; the first ESP packet from the
#                                new port makes the kernel report a MAPPING;
#                                btnsd moves its SAs' encapsulation and its
#                                IKE SA to the new port (RFC 7296 2.23):
#                                pings flow again, and btnsd's liveness
#                                checks (every 3 s) reach the peer through
#                                the new mapping instead of declaring it dead
# Then transport mode across the NAT (RFC 3948 with RFC 7296 2.23.1), btnsd
# in "right" behind the NAT initiating to 192.0.2.1 with selectors naming
# its own address 203.0.113.2, which the public side sees as 192.0.2.254:
#   nat-transport-btnsd-behind-nat-strongswan  strongSwan answers on left
#   nat-transport-btnsd-behind-nat-btnsd       btnsd answers on left: it
#                                substitutes the NAT's address for the
#                                peer's in its policies and answers with
#                                the selectors as proposed; then each btnsd
#                                rekeys the CHILD_SA (btnsctl): the new SAs
#                                keep both views and carry pings
# each with ping and a 200 kB TCP transfer through ESP-in-UDP transport
# SAs (the kernel accepts the TCP checksums computed over the peer's
# original address, RFC 3948 section 3.1.2) and the ESP counters of both
# kernels.
#
# Group "address" (btnsd_nat_address_interop_test):
#   nat-transport-strongswan-behind-nat  strongSwan behind the NAT initiates
#                                transport mode to btnsd on left (TSi names
#                                203.0.113.2, the IKE SA's peer is
#                                192.0.2.254): btnsd's policies and SAs name
#                                the NAT's address, strongSwan's its own;
#                                ping + 200 kB TCP, ESP counters of both
#   on-demand-strongswan-responder  btnsd behind the NAT holds a trap policy
#                                (start: trap) to left; the first ping makes
#                                the kernel raise an ACQUIRE, btnsd initiates
#                                and strongSwan responds; pings through ESP
#   nat-t-strongswan-behind-nat  as in group "nat", then
#   nat-address-change           the NAT's public address becomes
#                                192.0.2.253 (no MOBIKE: strongSwan keeps its
#                                own); btnsd moves its IKE SA, its ESP SAs
#                                (same SPIs and sequence numbers) and its
#                                policies' tunnel templates there; pings work
#                                again and its liveness checks reach the peer
#
# Usage: btnsd_nat_interop_test.sh [nat|address]
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  group=${1:-nat}
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  btnsd=${BTNSD:-$root/daemon/btnsd}
  [[ -x $btnsd ]] || btnsd=$root/bazel-bin/daemon/btnsd
  [[ -x $btnsd ]] || { echo "btnsd not found (bazel build //daemon:btnsd)" >&2; exit 2; }
  btnsctl=${BTNSCTL:-$root/tools/btnsctl/btnsctl}
  [[ -x $btnsctl ]] || btnsctl=$root/bazel-bin/tools/btnsctl/btnsctl
  [[ -x $btnsctl ]] || { echo "btnsctl not found (bazel build //tools/btnsctl)" >&2; exit 2; }
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-840}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$root/tools/uml/lib.sh")" \
    "$(realpath "$root/tests/interop")" "$(realpath "$btnsctl")" "$group"
fi
btnsd=$2
. "$3"
interop=$4
btnsctl=$5
group=$6
configs=$interop/configs
work=$TMPDIR/nat
mkdir -p "$work"
. "$interop/interop_lib.sh"

uml_nat_hosts
ip -n left addr add 198.51.100.1/32 dev lo
ip -n right addr add 198.51.100.2/32 dev lo
ip -n left route add 198.51.100.2/32 via "$UML_NAT_OUTSIDE_V4" src 198.51.100.1
ip -n right route add 198.51.100.1/32 via "$UML_NAT_INSIDE_V4" src 198.51.100.2
ip netns exec right ping -c1 -W2 "$UML_LEFT_V4" >/dev/null

dir=$work/sw
uml_strongswan_conf "$dir"
swanctl_psk_conf "$dir/swanctl/swanctl.conf" local="$UML_INSIDE_V4" mode=tunnel \
  local_ts=198.51.100.2/32 remote_ts=198.51.100.1/32
cp "$configs/psk-btnsd-left-nat.yaml" "$work/btnsd.yaml"
cp "$configs/interop.secrets" "$work/"
chmod 600 "$work/interop.secrets"

show_logs() {
  local f
  for f in "$work/btnsd.log" "$dir/charon.log"; do echo "   == $f"; tail -n 30 "$f" | sed 's/^/     /'; done
  echo "   == left SAs"; ip -n left -s xfrm state | sed 's/^/     /'
  echo "   == left XFRM errors"; ip netns exec left awk '$2 != 0' /proc/net/xfrm_stat | sed 's/^/     /'
  echo "   == NAT mappings"; ip netns exec nat conntrack -L 2>&1 | sed 's/^/     /'
}
# encap_dports HOST: the UDP destination ports of HOST's outbound
# encapsulated SAs (those whose source is HOST's public address).
encap_dports() {
  ip -n "$1" xfrm state |
    awk -v me="$UML_LEFT_V4" '/^src/ {src = $2} /encap type espinudp/ && src == me {print $7}' |
    sort -u | tr '\n' ' '
}
ping_from_right() {
  ip netns exec right ping -c "$1" -i 0.3 -W 2 -I 198.51.100.2 198.51.100.1 2>/dev/null |
    awk '/packets transmitted/ {print $4}'
}

reset_hosts() {
  stop_btnsd left || true
  stop_btnsd right || true
  flush_all
  uml_nat_masquerade 20000-20999
}
# transport_checks: the SAs of both hosts in transport mode and UDP-
# encapsulated, ping and TCP from behind the NAT, ESP counted on both
# sides; sets ok/why and details.
transport_checks() {
  local left_state right_state before_left before_right replies
  if ! UML_WAIT_SECONDS=30 uml_wait_for both_have_sas; then
    ok=0; why="no CHILD_SA (left $(sa_count left), right $(sa_count right))"; return
  fi
  left_state=$(ip -n left xfrm state) right_state=$(ip -n right xfrm state)
  grep -q 'mode tunnel' <<<"$left_state$right_state" && { ok=0; why="$why a tunnel-mode SA"; }
  grep -q 'encap type espinudp sport 4500' <<<"$right_state" || { ok=0; why="$why right's SAs are not UDP-encapsulated"; }
  grep -q "src $UML_NAT_OUTSIDE_V4 dst $UML_LEFT_V4" <<<"$left_state" ||
    { ok=0; why="$why left has no SA from the NAT's address"; }
  before_left=$(esp_packets left) before_right=$(esp_packets right)
  replies=$(ping_replies right "$UML_LEFT_V4" 5)
  [[ $replies == 5 ]] || { ok=0; why="$why ping: $replies of 5"; }
  tcp_transfer 200000 "$UML_LEFT_V4" left right || { ok=0; why="$why TCP transfer failed"; }
  local grew_left=$(( $(esp_packets left) - before_left )) grew_right=$(( $(esp_packets right) - before_right ))
  ((grew_left >= 10 && grew_right >= 10)) || { ok=0; why="$why ESP counters grew too little (left $grew_left, right $grew_right)"; }
  details="ping=$replies/5 tcp_200kB=ok esp_packets_left=+$grew_left esp_packets_right=+$grew_right right_encap=$(awk '/encap type/ {print $5 "->" $7; exit}' <<<"$right_state")"
}

# tunnel_through_nat: strongSwan in right initiates the tunnel through the
# NAT to btnsd in left (nat-t-strongswan-behind-nat); sets ok.
tunnel_through_nat() {
  ok=1 why="" port1="" port2=""
  uml_start_charon right "$dir" || { ok=0; why="charon did not start"; }
  start_btnsd left "$work/btnsd.yaml" "$work/btnsd.log" || { ok=0; why="$why btnsd did not start"; }
  if ((ok)); then
    uml_swanctl right "$dir" --initiate --child to-left --timeout 20 || true
    if ! UML_WAIT_SECONDS=30 uml_wait_for both_have_sas; then
      ok=0; why="no CHILD_SA (left $(sa_count left), right $(sa_count right))"
    else
      [[ $(ping_from_right 3) == 3 ]] || { ok=0; why="ping through the NAT failed"; }
      port1=$(encap_dports left)
      grep -q "event=ike-sa-up.*remote=$UML_NAT_OUTSIDE_V4:2[0-9][0-9][0-9][0-9]" "$work/btnsd.log" ||
        { ok=0; why="$why btnsd's IKE SA is not on the NAT's translated port"; }
      [[ $port1 =~ ^2[0-9]{4}\ $ ]] || { ok=0; why="$why left's ESP is not UDP-encapsulated to a NAT port (ports: '$port1')"; }
      grep -q 'encap type espinudp sport 4500' <<<"$(ip -n left xfrm state)" || { ok=0; why="$why no encapsulation from port 4500"; }
      (( $(esp_packets left) >= 6 )) || { ok=0; why="$why too few ESP packets"; }
    fi
  fi
  if ((ok)); then
    result nat-t-strongswan-behind-nat PASS "ike_$(grep -o "event=ike-sa-up.*remote=[0-9.:]*" "$work/btnsd.log" | grep -o 'remote=[0-9.:]*' | head -1) esp_encap_dport=$port1 esp_packets_left=$(esp_packets left)"
  else
    result nat-t-strongswan-behind-nat FAIL "$why"; show_logs
  fi
}

# port_change: the NAT's mappings move to other ports (nat-mapping-change).
port_change() {
  if ((ok)); then
    why=""
    uml_nat_masquerade 21000-21999
    replies=$(ping_from_right 6)
    # The first packets may be lost until btnsd has moved its SAs.
    ((replies >= 3)) || { ok=0; why="only $replies of 6 pings answered after the mapping change"; }
    port2=$(encap_dports left)
    [[ $port2 =~ ^21[0-9]{3}\ $ ]] || { ok=0; why="$why left's ESP still goes to port(s) '$port2'"; }
    grep -q 'NAT mapping changed' "$work/btnsd.log" || { ok=0; why="$why btnsd logged no mapping change"; }
    grep -q 'event=kernel-sa-encap-updated' "$work/btnsd.log" || { ok=0; why="$why btnsd updated no kernel SA"; }
    # Which authenticated packet told btnsd first: ESP (kernel MAPPING) or IKE.
    learned_from=$(grep -m1 -o 'NAT mapping changed ([A-Z]*)' "$work/btnsd.log" | tr -dc 'A-Z' | sed 's/^NAT//')
    # Liveness checks every 3 s (three retries over 5 s) must reach the peer
    # through the new mapping: after 12 s the SAs are still up and carry traffic.
    sleep 12
    grep -q 'reason=dead-peer' "$work/btnsd.log" && { ok=0; why="$why btnsd declared the peer dead"; }
    both_have_sas || { ok=0; why="$why SAs gone (left $(sa_count left), right $(sa_count right))"; }
    [[ $(ping_from_right 3) == 3 ]] || { ok=0; why="$why ping after the liveness checks failed"; }
    dpd_after=$(grep -c 'INFORMATIONAL request' "$dir/charon.log" || true)
    if ((ok)); then
      result nat-mapping-change PASS "esp_encap_dport $port1-> $port2 learned_from=$learned_from pings_answered=$replies/6 nat_ports_now=$(uml_nat_ports) informational_requests_at_strongswan=$dpd_after"
    else
      result nat-mapping-change FAIL "$why"; show_logs
    fi
  fi
}

stop_tunnel() {
  stop_btnsd left || true
  uml_stop_charon "$dir"
}

# transport_btnsd_behind_nat: btnsd in right initiates in transport mode to
# strongSwan and to btnsd in left.
transport_btnsd_behind_nat() {
  reset_hosts
  cp "$configs/psk-btnsd-right-nat-transport.yaml" "$work/btnsd-right.yaml"
  dir=$work/sw-transport
  uml_strongswan_conf "$dir"
  swanctl_psk_conf "$dir/swanctl/swanctl.conf" local="$UML_LEFT_V4" remote=%any \
    id=left.example.net peer_id=right.example.net mode=transport local_ts=dynamic remote_ts=dynamic
  ok=1 why="" details=""
  uml_start_charon left "$dir" || { ok=0; why="charon did not start"; }
  start_btnsd right "$work/btnsd-right.yaml" "$work/btnsd-right.log" || { ok=0; why="$why btnsd did not start"; }
  ((ok)) && transport_checks
  if ((ok)); then
    result nat-transport-btnsd-behind-nat-strongswan PASS "$details strongswan_policy=$(ip -n left xfrm policy | awk '/^src/ && /dst 192.0.2.254/ {print $2 "->" $4; exit}')"
  else
    result nat-transport-btnsd-behind-nat-strongswan FAIL "$why"
    for f in "$work/btnsd-right.log" "$dir/charon.log"; do echo "   == $f"; tail -n 40 "$f" | sed 's/^/     /'; done
    ip -n left xfrm state | sed 's/^/     /'; ip -n right xfrm state | sed 's/^/     /'
  fi
  uml_stop_charon "$dir"

  reset_hosts
  cp "$configs/psk-btnsd-left-nat-transport.yaml" "$work/btnsd-left-transport.yaml"
  ok=1 why="" details=""
  start_btnsd left "$work/btnsd-left-transport.yaml" "$work/btnsd-left-transport.log" || { ok=0; why="btnsd in left did not start"; }
  ((ok)) && { start_btnsd right "$work/btnsd-right.yaml" "$work/btnsd-right2.log" || { ok=0; why="btnsd in right did not start"; }; }
  ((ok)) && transport_checks
  left_policies=$(ip -n left xfrm policy)
  grep -q "src $UML_LEFT_V4/32 dst $UML_NAT_OUTSIDE_V4/32" <<<"$left_policies" ||
    { ok=0; why="$why left's outbound policy does not name the NAT's address"; }
  right_policies=$(ip -n right xfrm policy)
  grep -q "src $UML_INSIDE_V4/32 dst $UML_LEFT_V4/32" <<<"$right_policies" ||
    { ok=0; why="$why right's outbound policy does not name its own address"; }
  # child_rekey_by HOST: HOST's btnsd rekeys the CHILD_SA; both kernels end
  # with one new SA pair and the policies of before, and pings go through.
  child_rekey_by() {
    local host=$1 socket=/run/btnsd-$1/api.sock id before
    before="$(spis left)"
    id=$(ip netns exec "$host" "$btnsctl" --socket "$socket" list-sas | awk '/CHILD SA #/ {sub("#", "", $3); print $3; exit}')
    ip netns exec "$host" "$btnsctl" --socket "$socket" rekey "child:$id" >> "$work/btnsctl.out" 2>&1 ||
      { ok=0; why="$why btnsctl rekey child:$id in $host failed"; return; }
    UML_WAIT_SECONDS=15 uml_wait_for sh -c "[ \"\$(ip -n left xfrm state | awk '/proto esp spi/ {print \$4}' | sort | tr '\n' ' ')\" != '$before' ] &&
      [ \$(ip -n left xfrm state | grep -c '^src') -eq 2 ] && [ \$(ip -n right xfrm state | grep -c '^src') -eq 2 ]" ||
      { ok=0; why="$why rekey by $host: SAs now left [$(spis left)] (before [$before]), right $(sa_count right)"; return; }
    [[ $(ip -n left xfrm policy) == "$left_policies" ]] || { ok=0; why="$why rekey by $host changed left's policies"; }
    [[ $(ip -n right xfrm policy) == "$right_policies" ]] || { ok=0; why="$why rekey by $host changed right's policies"; }
    local packets=$(esp_packets left)
    [[ $(ping_replies right "$UML_LEFT_V4" 3) == 3 ]] || { ok=0; why="$why ping after the rekey by $host failed"; }
    (( $(esp_packets left) - packets >= 6 )) || { ok=0; why="$why no ESP on the SAs of the rekey by $host"; }
    rekeys+=" $host:[$before]->[$(spis left)]"
  }
  rekeys=""
  if ((ok)); then
    child_rekey_by left
    ((ok)) && child_rekey_by right
  fi
  if ((ok)); then
    result nat-transport-btnsd-behind-nat-btnsd PASS "$details left_policy=$UML_LEFT_V4->$UML_NAT_OUTSIDE_V4 right_policy=$UML_INSIDE_V4->$UML_LEFT_V4 child_rekeys=$rekeys"
  else
    result nat-transport-btnsd-behind-nat-btnsd FAIL "$why"
    for f in "$work/btnsd-left-transport.log" "$work/btnsd-right2.log"; do echo "   == $f"; tail -n 40 "$f" | sed 's/^/     /'; done
    ip -n left xfrm state | sed 's/^/     /'; ip -n left xfrm policy | sed 's/^/     /'
  fi
  stop_btnsd left || true
  stop_btnsd right || true
}

# ---- group "address"

# address_change: the NAT's public address changes (192.0.2.254 is removed,
# 192.0.2.253 added, new UDP ports, every mapping dropped). strongSwan
# keeps its own addresses (no MOBIKE); its next ESP reaches btnsd from the
# new address, the kernel reports the mapping, and btnsd moves its IKE SA,
# both ESP SAs (same SPIs, sequence numbers carried over) and its tunnel
# policies' templates to the new address (RFC 7296 2.23).
address_change() {
  ((ok)) || return 0
  why=""
  local spis_before port_before state policies informational_before informational_after replies packets
  spis_before=$(spis left) port_before=$(encap_dports left)
  informational_before=$(grep -c 'parsed INFORMATIONAL request' "$dir/charon.log" || true)
  # The kernel's view of what happens next, shown on failure.
  ip -n left xfrm monitor > "$work/xfrm-monitor.log" 2>&1 &
  local monitor=$!
  uml_nat_renumber "$UML_NAT_OUTSIDE2_V4" 22000-22999
  replies=$(ping_from_right 6 || true)
  # The first packets may be lost until btnsd has moved its SAs.
  ((replies >= 3)) || { ok=0; why="only $replies of 6 pings answered after the address change"; }
  state=$(ip -n left xfrm state) policies=$(ip -n left xfrm policy)
  grep -q "src $UML_LEFT_V4 dst $UML_NAT_OUTSIDE2_V4" <<<"$state" || { ok=0; why="$why no outbound SA to the new address"; }
  grep -q "src $UML_NAT_OUTSIDE2_V4 dst $UML_LEFT_V4" <<<"$state" || { ok=0; why="$why no inbound SA from the new address"; }
  grep -q "$UML_NAT_OUTSIDE_V4" <<<"$state" && { ok=0; why="$why an SA still names the old address"; }
  [[ $(spis left) == "$spis_before" ]] || { ok=0; why="$why SPIs changed: [$spis_before] -> [$(spis left)]"; }
  [[ $(encap_dports left) =~ ^22[0-9]{3}\ $ ]] || { ok=0; why="$why ESP goes to port(s) '$(encap_dports left)'"; }
  grep -q "tmpl src $UML_LEFT_V4 dst $UML_NAT_OUTSIDE2_V4" <<<"$policies" || { ok=0; why="$why the outbound policy's template does not name the new address"; }
  grep -q "tmpl src $UML_NAT_OUTSIDE2_V4 dst $UML_LEFT_V4" <<<"$policies" || { ok=0; why="$why the inbound policies' templates do not name the new address"; }
  grep -q "$UML_NAT_OUTSIDE_V4" <<<"$policies" && { ok=0; why="$why a policy still names the old address"; }
  grep -q "NAT mapping changed.*-> $UML_NAT_OUTSIDE2_V4" "$work/btnsd.log" || { ok=0; why="$why btnsd logged no address change"; }
  grep -q 'event=kernel-sa-moved' "$work/btnsd.log" || { ok=0; why="$why btnsd moved no kernel SA"; }
  # Liveness checks every 3 s (retries over 5 s) must reach the peer at the
  # new address: after 12 s the SAs are still up and carry traffic.
  sleep 12
  grep -q 'reason=dead-peer' "$work/btnsd.log" && { ok=0; why="$why btnsd declared the peer dead"; }
  both_have_sas || { ok=0; why="$why SAs gone (left $(sa_count left), right $(sa_count right))"; }
  packets=$(esp_packets left)
  [[ $(ping_from_right 3) == 3 ]] || { ok=0; why="$why ping after the liveness checks failed"; }
  (( $(esp_packets left) - packets >= 6 )) || { ok=0; why="$why no ESP through the moved SAs"; }
  informational_after=$(grep -c 'parsed INFORMATIONAL request' "$dir/charon.log" || true)
  ((informational_after > informational_before)) || { ok=0; why="$why no liveness check of btnsd reached strongSwan"; }
  local ike_remote
  ike_remote=$(ip netns exec left "$btnsctl" list-sas 2>&1 | grep -o "$UML_NAT_OUTSIDE2_V4:[0-9]*" | head -1 || true)
  [[ -n $ike_remote ]] || { ok=0; why="$why btnsctl does not show the IKE SA at the new address"; }
  kill "$monitor"; wait "$monitor" || true
  if ((ok)); then
    result nat-address-change PASS "nat_address $UML_NAT_OUTSIDE_V4 -> $UML_NAT_OUTSIDE2_V4 esp_encap_dport $port_before-> $(encap_dports left)spis_kept=[$spis_before] ike_remote=$ike_remote pings_answered=$replies/6 learned_from=$(grep -o "NAT mapping changed ([A-Z]*).*-> $UML_NAT_OUTSIDE2_V4" "$work/btnsd.log" | head -1 | grep -o '([A-Z]*)' | tr -d '()') informational_requests_at_strongswan=$informational_before->$informational_after"
  else
    result nat-address-change FAIL "$why"; show_logs
    ip -n left xfrm policy | sed 's/^/     /'
    echo "   == left xfrm monitor"; sed 's/^/     /' "$work/xfrm-monitor.log"
    echo "   == right SAs"; ip -n right -s xfrm state | sed 's/^/     /'
  fi
}

# transport_strongswan_behind_nat: strongSwan in right (behind the NAT)
# initiates transport mode to btnsd in left, naming its own address
# 203.0.113.2 in TSi; btnsd as responder installs the NAT's address.
transport_strongswan_behind_nat() {
  reset_hosts
  dir=$work/sw-behind
  uml_strongswan_conf "$dir"
  swanctl_psk_conf "$dir/swanctl/swanctl.conf" local="$UML_INSIDE_V4" remote="$UML_LEFT_V4" \
    mode=transport local_ts=dynamic remote_ts=dynamic
  cp "$configs/psk-btnsd-left-nat-transport.yaml" "$work/btnsd-left-transport.yaml"
  ok=1 why="" details=""
  uml_start_charon right "$dir" || { ok=0; why="charon did not start"; }
  start_btnsd left "$work/btnsd-left-transport.yaml" "$work/btnsd-left-sw.log" || { ok=0; why="$why btnsd did not start"; }
  ((ok)) && uml_swanctl right "$dir" --initiate --child to-left --timeout 20 || true
  ((ok)) && transport_checks
  local left_policies right_policies sw_sas
  left_policies=$(ip -n left xfrm policy) right_policies=$(ip -n right xfrm policy)
  grep -q "src $UML_LEFT_V4/32 dst $UML_NAT_OUTSIDE_V4/32" <<<"$left_policies" ||
    { ok=0; why="$why btnsd's outbound policy does not name the NAT's address"; }
  grep -q "src $UML_NAT_OUTSIDE_V4/32 dst $UML_LEFT_V4/32" <<<"$left_policies" ||
    { ok=0; why="$why btnsd's inbound policy does not name the NAT's address"; }
  grep -q "$UML_INSIDE_V4" <<<"$left_policies" && { ok=0; why="$why btnsd's policies name the private address"; }
  grep -q "src $UML_INSIDE_V4/32 dst $UML_LEFT_V4/32" <<<"$right_policies" ||
    { ok=0; why="$why strongSwan's outbound policy does not name its own address"; }
  uml_swanctl right "$dir" --list-sas || true
  sw_sas=$(cat "$dir/charon.out")
  grep -q "local  $UML_INSIDE_V4/32" <<<"$sw_sas" && grep -q "remote $UML_LEFT_V4/32" <<<"$sw_sas" ||
    { ok=0; why="$why strongSwan's CHILD_SA selectors are not 203.0.113.2/32 === 192.0.2.1/32"; }
  grep -q "event=ike-sa-up.*remote=$UML_NAT_OUTSIDE_V4:2[0-9]*.*initiator=no" "$work/btnsd-left-sw.log" ||
    { ok=0; why="$why btnsd's IKE SA is not a responder SA on the NAT's address"; }
  if ((ok)); then
    result nat-transport-strongswan-behind-nat PASS "$details left_policy=$UML_LEFT_V4->$UML_NAT_OUTSIDE_V4 strongswan_ts=$UML_INSIDE_V4/32===$UML_LEFT_V4/32"
  else
    result nat-transport-strongswan-behind-nat FAIL "$why"
    for f in "$work/btnsd-left-sw.log" "$dir/charon.log"; do echo "   == $f"; tail -n 40 "$f" | sed 's/^/     /'; done
    ip -n left xfrm state | sed 's/^/     /'; ip -n left xfrm policy | sed 's/^/     /'
  fi
  stop_btnsd left || true
  uml_stop_charon "$dir"
}

# on_demand_strongswan_responder: btnsd in right holds a trap policy
# (start: trap) for transport mode to left; the first ping makes the kernel
# raise an ACQUIRE, btnsd initiates, strongSwan in left responds; pings then
# flow through ESP.
on_demand_strongswan_responder() {
  reset_hosts
  sed 's/^    start: start$/    start: trap/' "$configs/psk-btnsd-right-nat-transport.yaml" > "$work/btnsd-right-trap.yaml"
  grep -q '^    start: trap$' "$work/btnsd-right-trap.yaml" || { echo "could not make the trap configuration"; return 1; }
  dir=$work/sw-ondemand
  uml_strongswan_conf "$dir"
  swanctl_psk_conf "$dir/swanctl/swanctl.conf" local="$UML_LEFT_V4" remote=%any \
    id=left.example.net peer_id=right.example.net mode=transport local_ts=dynamic remote_ts=dynamic
  ok=1 why="" details=""
  local log=$work/btnsd-right-trap.log first before_left before_right
  uml_start_charon left "$dir" || { ok=0; why="charon did not start"; }
  start_btnsd right "$work/btnsd-right-trap.yaml" "$log" || { ok=0; why="$why btnsd did not start"; }
  if ((ok)); then
    UML_WAIT_SECONDS=5 uml_wait_for grep -q 'event=trap-installed' "$log" || { ok=0; why="no trap installed"; }
    grep -q "src $UML_INSIDE_V4/32 dst $UML_LEFT_V4/32" <<<"$(ip -n right xfrm policy)" ||
      { ok=0; why="$why no trap policy for $UML_INSIDE_V4 -> $UML_LEFT_V4"; }
    (( $(sa_count right) == 0 && $(sa_count left) == 0 )) || { ok=0; why="$why SAs before any traffic"; }
    grep -q 'IKE_SA_INIT' "$dir/charon.log" && { ok=0; why="$why an IKE_SA_INIT before any traffic"; }
  fi
  if ((ok)); then
    first=$(ping_replies right "$UML_LEFT_V4" 5 || true)
    UML_WAIT_SECONDS=30 uml_wait_for both_have_sas ||
      { ok=0; why="no CHILD_SA after the first ping (left $(sa_count left), right $(sa_count right))"; }
  fi
  if ((ok)); then
    grep -q 'event=kernel-acquire ' "$log" || { ok=0; why="$why btnsd logged no ACQUIRE"; }
    grep -q "event=ike-sa-up.*remote=$UML_LEFT_V4:.*initiator=yes" "$log" || { ok=0; why="$why btnsd did not initiate the IKE SA"; }
    grep -q 'parsed IKE_SA_INIT request' "$dir/charon.log" || { ok=0; why="$why strongSwan did not answer an IKE_SA_INIT request"; }
    grep -q 'mode tunnel' <<<"$(ip -n right xfrm state)" && { ok=0; why="$why a tunnel-mode SA"; }
    before_left=$(esp_packets left) before_right=$(esp_packets right)
    [[ $(ping_replies right "$UML_LEFT_V4" 5) == 5 ]] || { ok=0; why="$why ping through the SA failed"; }
    local grew_left=$(( $(esp_packets left) - before_left )) grew_right=$(( $(esp_packets right) - before_right ))
    ((grew_left >= 10 && grew_right >= 10)) || { ok=0; why="$why ESP counters grew too little (left $grew_left, right $grew_right)"; }
    # From btnsd's log: the ACQUIRE to the IKE SA (and CHILD_SA) being up.
    local acquired up
    acquired=$(date -d "$(grep -m1 'event=kernel-acquire ' "$log" | cut -d' ' -f1)" +%s%3N)
    up=$(date -d "$(grep -m1 'event=ike-sa-up' "$log" | cut -d' ' -f1)" +%s%3N)
    details="first_ping=$first/5 ping=5/5 esp_packets_left=+$grew_left esp_packets_right=+$grew_right acquire_to_sa_up=$((up - acquired))ms"
  fi
  if ((ok)); then
    result on-demand-strongswan-responder PASS "$details"
  else
    result on-demand-strongswan-responder FAIL "$why"
    for f in "$log" "$dir/charon.log"; do echo "   == $f"; tail -n 40 "$f" | sed 's/^/     /'; done
    ip -n right xfrm policy | sed 's/^/     /'; ip -n right xfrm state | sed 's/^/     /'
  fi
  stop_btnsd right || true
  uml_stop_charon "$dir"
}

case $group in
  nat)
    tunnel_through_nat
    port_change
    stop_tunnel
    transport_btnsd_behind_nat
    print_matrix "NAT traversal: strongSwan behind a NAT; btnsd behind it in transport mode"
    ;;
  address)
    transport_strongswan_behind_nat
    on_demand_strongswan_responder
    reset_hosts
    dir=$work/sw
    tunnel_through_nat
    address_change
    stop_tunnel
    print_matrix "NAT traversal: strongSwan behind a NAT in transport mode; a new NAT address; on demand"
    ;;
  address-change)  # the last two of "address" alone, for debugging
    tunnel_through_nat
    address_change
    stop_tunnel
    print_matrix "NAT traversal: a new NAT address"
    ;;
  *) echo "unknown group '$group' (nat, address)" >&2; exit 2 ;;
esac
