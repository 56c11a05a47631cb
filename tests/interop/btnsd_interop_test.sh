#!/usr/bin/env bash
# btnsd against real peers in a real kernel (user-mode-linux, one boot per
# run). The argument picks a group of cases (one test target each):
#
# psk (default):
#   1. btnsd <-> btnsd, NULL authentication (BTNS PAD entry), transport mode:
#      ping and a TCP transfer through ESP, ESP counters checked, then a
#      clean SIGTERM that leaves no SA or policy behind.
#   2. btnsd <-> strongSwan 5.9.8 (charon + swanctl), PSK, transport mode,
#      ping through ESP with the counters checked: AES-GCM-256 + X25519 with
#      btnsd as initiator and as responder (then a CHILD_SA rekey and an IKE
#      delete started by strongSwan, and a delete started by btnsd's
#      SIGTERM); ChaCha20-Poly1305 + X25519; AES-CBC + HMAC-SHA2-256 with
#      ECP-256; tunnel mode (198.51.100.1 <-> 203.0.113.0/24).
#   3. btnsd <-> btnsd over IPv6, NULL authentication, transport mode, ping
#      through ESP and a clean SIGTERM.
# modp-ipv6: strongSwan with MODP-2048 for IKE and as PFS for CHILD_SA
#   rekeys (started by btnsd through btnsctl, and by strongSwan), IPv6 outer
#   addresses in transport and tunnel mode; ping and 200 kB over TCP.
# shards: btnsd with daemon.threads: 2 answers six strongSwan IKE SAs from
#   six addresses; they land on both shards, carry traffic, are rekeyed by
#   btnsd and deleted by btnsctl, by strongSwan and by SIGTERM.
#
# Every case prints "RESULT <name> PASS|FAIL ..." with the ESP packet count
# of the left host's SAs; the daemons' logs are shown for failing cases.
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
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-840}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$root/tools/uml/lib.sh")" \
    "$(realpath "$root/tests/interop/configs")" "$(realpath "$btnsctl")" "${1:-psk}"
fi
btnsd=$2
. "$3"
configs=$4
btnsctl=$5
group=$6

work=$TMPDIR/interop
mkdir -p "$work"
. "$configs/../interop_lib.sh"

uml_two_hosts
ip netns exec left ping -c1 -W2 "$UML_RIGHT_V4" >/dev/null


show_logs() {
  local f
  for f in "$work"/*.log; do echo "== $f"; tail -n 40 "$f"; done
}

# ------------------------------------------------------------------ case 1
case_btnsd_null() {
  local name=btnsd-btnsd-null-transport
  mkdir -p "$work/c1"
  cp "$configs/btns-null-left.yaml" "$configs/btns-null-right.yaml" "$work/c1/"
  start_btnsd right "$work/c1/btns-null-right.yaml" || { result $name FAIL "right did not start"; return 1; }
  start_btnsd left "$work/c1/btns-null-left.yaml" || { result $name FAIL "left did not start"; return 1; }
  if ! UML_WAIT_SECONDS=30 uml_wait_for sh -c "[ \$(ip -n left xfrm state | grep -c '^src') -ge 2 ] && [ \$(ip -n right xfrm state | grep -c '^src') -ge 2 ]"; then
    result $name FAIL "no CHILD_SA in the kernel (left $(sa_count left), right $(sa_count right))"
    show_logs; stop_btnsd left || true; stop_btnsd right || true; return 1
  fi
  local ok=1 why=""
  ip netns exec left ping -c3 -i0.2 -W2 "$UML_RIGHT_V4" >/dev/null || { ok=0; why="ping failed"; }
  tcp_transfer 200000 || { ok=0; why="$why TCP transfer failed"; }
  local packets
  packets=$(esp_packets left)
  # 3 echo requests + 3 replies + the TCP segments (200 kB) and their ACKs.
  ((packets >= 40)) || { ok=0; why="$why only $packets ESP packets"; }
  ip -n left -s xfrm state > "$work/c1-left-states.txt"
  local exit_left=0 exit_right=0
  stop_btnsd left || exit_left=$?
  stop_btnsd right || exit_right=$?
  local left_sas left_policies
  left_sas=$(sa_count left)
  left_policies=$(policy_count left)
  if ((exit_left != 0 || exit_right != 0)); then ok=0; why="$why exit status $exit_left/$exit_right"; fi
  if ((left_sas != 0 || left_policies != 0)); then ok=0; why="$why after SIGTERM $left_sas SAs $left_policies policies left"; fi
  grep -q 'event=ike-sa-up.*authenticated=no' "$work/left-btnsd.log" || { ok=0; why="$why no unauthenticated ike-sa-up logged"; }
  if ((ok)); then
    result $name PASS "esp_packets_left=$packets clean_exit=yes"
  else
    result $name FAIL "$why esp_packets_left=$packets"; show_logs; cat "$work/c1-left-states.txt"
  fi
  mkdir -p "$work/c1-logs"; mv "$work"/*-btnsd.log "$work/c1-logs/"
  flush_all
  ((ok))
}

# ------------------------------------------------------------------ case 2
# strongSwan on the right host, in $work/sw (tools/uml/lib.sh).
start_charon_right() {
  local esp=$1 ike=$2
  local dir=$work/sw
  local -a keys=(name=to-left ike="$ike" esp="$esp" mode="${SW_MODE:-transport}")
  [[ -z ${SW_LOCAL:-} ]] || keys+=(local="$SW_LOCAL" remote="$SW_REMOTE")
  [[ -z ${SW_LOCAL_TS:-} ]] || keys+=(local_ts="$SW_LOCAL_TS" remote_ts="$SW_REMOTE_TS")
  uml_strongswan_conf "$dir"
  swanctl_psk_conf "$dir/swanctl/swanctl.conf" "${keys[@]}"
  uml_start_charon right "$dir"
}

stop_charon() { uml_stop_charon "$work/sw"; }

# spis_changed BEFORE: the left host holds exactly one new SA pair.
spis_changed() { [[ "$(spis left)" != "$1" ]] && (( $(sa_count left) == 2 )); }
swanctl_right() { uml_swanctl right "$work/sw" "$@"; }

# sw_child_transforms: the transforms of strongSwan's CHILD_SA(s), as
# swanctl --list-sas prints them (with the KE group when the SA was made
# with PFS).
sw_child_transforms() {
  ip netns exec right env STRONGSWAN_CONF="$work/sw/strongswan.conf" \
    swanctl --list-sas --uri "unix://$work/sw/charon.vici" 2>/dev/null |
    awk '/INSTALLED/ {print $NF}' | tr '\n' ' '
}

# child_rekey CASE BY: a CHILD_SA rekey started by BY (strongswan, or btnsd
# through btnsctl): one new SA pair, traffic through it, and with
# $EXPECT_PFS the new CHILD_SA made with that KE group.
child_rekey() {
  local name=$1-child-rekey-by-$2 before after ok=1 why="" id
  before=$(spis left)
  if [[ $2 == strongswan ]]; then
    swanctl_right --rekey --child to-left || true
  else
    id=$(ip netns exec left "$btnsctl" list-sas | awk '/CHILD SA #/ {sub("#", "", $3); print $3; exit}')
    ip netns exec left "$btnsctl" rekey "child:$id" >> "$work/btnsctl.out" 2>&1 ||
      { ok=0; why="btnsctl rekey child:$id failed"; }
  fi
  UML_WAIT_SECONDS=15 uml_wait_for spis_changed "$before" ||
    { ok=0; why="$why SPIs did not change to one new pair (before: $before now: $(spis left))"; }
  sleep 1
  local packets_before packets
  packets_before=$(esp_packets left)
  ip netns exec left ping -c3 -i0.2 -W2 ${PING_TARGET:-$UML_RIGHT_V4} >/dev/null || { ok=0; why="$why ping after rekey failed"; }
  packets=$(esp_packets left)
  ((packets - packets_before >= 6)) || { ok=0; why="$why only $((packets - packets_before)) ESP packets on the new SAs"; }
  after=$(spis left)
  local transforms
  transforms=$(sw_child_transforms)
  if [[ -n ${EXPECT_PFS:-} && $transforms != *"$EXPECT_PFS"* ]]; then
    ok=0; why="$why strongSwan's new CHILD_SA has no $EXPECT_PFS ($transforms)"
  fi
  if ((ok)); then
    result $name PASS "spis_before=[$before] spis_after=[$after] esp_packets_new_sa=$((packets - packets_before)) strongswan_child=$transforms"
  else
    result $name FAIL "$why"; show_logs
  fi
  ((ok))
}

# case_strongswan_psk NAME ROLE CONFIG SW_IKE SW_ESP: ROLE is btnsd's
# (initiator or responder); CONFIG a btnsd config from configs/; SW_* the
# strongSwan proposals that match it. The responder case also lets
# strongSwan rekey the CHILD_SA and then delete the IKE SA; the initiator
# case ends with btnsd's SIGTERM deleting the SA on strongSwan's side.
# Optional: PING_TARGET (default right's IPv4), TCP_TARGET (a 200 kB TCP
# transfer to that address of right), BTNSD_REKEY=1 (the initiator case
# rekeys the CHILD_SA with btnsctl), EXPECT_PFS (the KE group of rekeyed
# CHILD_SAs), SW_LOCAL/SW_REMOTE and SW_LOCAL_TS/SW_REMOTE_TS, SW_MODE.
case_strongswan_psk() {
  local name=$1 role=$2 config=$3 sw_ike=$4 sw_esp=$5
  local dir=$work/$name
  mkdir -p "$dir"
  cp "$configs/interop.secrets" "$dir/"
  chmod 600 "$dir/interop.secrets"
  if [[ $role == initiator ]]; then
    cp "$configs/$config" "$dir/btnsd.yaml"
  else
    sed 's/^    start: start .*/    start: none/' "$configs/$config" > "$dir/btnsd.yaml"
  fi
  start_charon_right "$sw_esp" "$sw_ike" ||
    { result $name FAIL "charon did not start"; show_logs; return 1; }
  start_btnsd left "$dir/btnsd.yaml" || { result $name FAIL "btnsd did not start"; stop_charon; return 1; }
  local started=$SECONDS
  if [[ $role == responder ]]; then
    swanctl_right --initiate --child to-left --timeout 20 || true
  fi
  local ok=1 why="" packets=0 tcp=""
  if ! UML_WAIT_SECONDS=30 uml_wait_for sh -c "[ \$(ip -n left xfrm state | grep -c '^src') -ge 2 ] && [ \$(ip -n right xfrm state | grep -c '^src') -ge 2 ]"; then
    ok=0; why="no CHILD_SA in the kernel (left $(sa_count left), right $(sa_count right))"
  else
    local setup_s=$((SECONDS - started))
    ip netns exec left ping -c3 -i0.2 -W2 ${PING_TARGET:-$UML_RIGHT_V4} >/dev/null || { ok=0; why="ping failed"; }
    if [[ -n ${TCP_TARGET:-} ]]; then
      if tcp_transfer 200000 "$TCP_TARGET"; then tcp=" tcp_200kB=ok"; else ok=0; why="$why TCP transfer failed"; fi
    fi
    packets=$(esp_packets left)
    # 3 echo requests and replies; with TCP also 200 kB of segments and ACKs.
    ((packets >= (${TCP_TARGET:+40}+6))) || { ok=0; why="$why only $packets ESP packets"; }
    local right_packets
    right_packets=$(esp_packets right)
    ((right_packets >= (${TCP_TARGET:+40}+6))) || { ok=0; why="$why only $right_packets ESP packets at strongSwan"; }
    ip -n left -s xfrm state > "$dir/left-states.txt"
  fi
  if ((ok)); then
    result $name PASS "esp_packets_left=$packets esp_packets_right=$right_packets$tcp setup_s=$setup_s algorithm=$(ip -n left xfrm state | awk '/aead|enc/ {print $2; exit}') mode=$(ip -n left xfrm state | awk '/ mode / {for (i = 1; i < NF; i++) if ($i == "mode") {print $(i + 1); exit}}') strongswan_ike=$(grep -o 'selected proposal: IKE:[^ ]*' "$work/sw/charon.log" | head -1 | sed 's/.*IKE://')"
  else
    result $name FAIL "$why esp_packets_left=$packets"
    cp "$work/sw/charon.log" "$work/$name-charon.log" 2>/dev/null || true
    show_logs
  fi
  if ((ok)) && [[ $role == initiator && -n ${BTNSD_REKEY:-} ]]; then
    child_rekey "$name" btnsd || true
  fi
  if ((ok)) && [[ $role == responder ]]; then
    child_rekey "$name" strongswan || true
    # Delete started by strongSwan: btnsd removes its SAs.
    swanctl_right --terminate --ike to-left --timeout 10 || true
    if UML_WAIT_SECONDS=10 uml_wait_for no_sas left; then
      result $name-delete-by-strongswan PASS "left_sas_after=0"
    else
      result $name-delete-by-strongswan FAIL "left still has $(sa_count left) SAs"; show_logs
    fi
  fi
  local exit_left=0
  stop_btnsd left || exit_left=$?
  ((exit_left == 0)) || { ok=0; result $name-exit FAIL "btnsd exit status $exit_left"; }
  if ((ok)) && [[ $role == initiator ]]; then
    # btnsd's SIGTERM deletes the IKE SA; strongSwan must drop its SAs.
    if UML_WAIT_SECONDS=10 uml_wait_for no_sas right; then
      result $name-delete-by-btnsd PASS "right_sas_after=0 left_sas_after=$(sa_count left) left_policies_after=$(policy_count left)"
    else
      result $name-delete-by-btnsd FAIL "strongSwan still has $(sa_count right) SAs"
    fi
  fi
  stop_charon
  mkdir -p "$dir/logs"; mv "$work"/*.log "$dir/logs/" 2>/dev/null || true
  flush_all
  ((ok))
}

# ------------------------------------------------------------------ case 3
# IPv6, NULL authentication, started by left at start-up.
case_btnsd_v6() {
  local name=btnsd-btnsd-null-ipv6-transport
  mkdir -p "$work/c3"
  cp "$configs/btns-null-v6-left.yaml" "$configs/btns-null-v6-right.yaml" "$work/c3/"
  start_btnsd right "$work/c3/btns-null-v6-right.yaml" || { result $name FAIL "right did not start"; return 1; }
  start_btnsd left "$work/c3/btns-null-v6-left.yaml" || { result $name FAIL "left did not start"; return 1; }
  local ok=1 why=""
  if ! UML_WAIT_SECONDS=30 uml_wait_for sh -c "[ \$(ip -n left xfrm state | grep -c '^src') -ge 2 ] && [ \$(ip -n right xfrm state | grep -c '^src') -ge 2 ]"; then
    ok=0; why="$why no CHILD_SA (left $(sa_count left), right $(sa_count right))"
  fi
  local before
  before=$(esp_packets left)
  ip netns exec left ping -6 -c3 -i0.2 -W2 "$UML_RIGHT_V6" >/dev/null || { ok=0; why="$why ping failed"; }
  local packets
  packets=$(esp_packets left)
  ((packets - before >= 6)) || { ok=0; why="$why only $((packets - before)) new ESP packets"; }
  local exit_left=0 exit_right=0
  stop_btnsd left || exit_left=$?
  stop_btnsd right || exit_right=$?
  ((exit_left == 0 && exit_right == 0)) || { ok=0; why="$why exit status $exit_left/$exit_right"; }
  (( $(sa_count left) == 0 && $(policy_count left) == 0 )) ||
    { ok=0; why="$why state left after SIGTERM: $(ip -n left xfrm state) $(ip -n left xfrm policy)"; }
  if ((ok)); then
    result $name PASS "esp_packets_left=$packets clean_exit=yes"
  else
    result $name FAIL "$why esp_packets_left=$packets"; show_logs
  fi
  mkdir -p "$work/c3-logs"; mv "$work"/*-btnsd.log "$work/c3-logs/" 2>/dev/null || true
  flush_all
  ((ok))
}

group_psk() {
  case_btnsd_null || true
  case_btnsd_v6 || true
  case_strongswan_psk strongswan-psk-gcm-btnsd-initiator initiator psk-btnsd-left.yaml \
    aes256gcm16-prfsha256-x25519 aes256gcm16 || true
  case_strongswan_psk strongswan-psk-gcm-btnsd-responder responder psk-btnsd-left.yaml \
    aes256gcm16-prfsha256-x25519 aes256gcm16 || true
  case_strongswan_psk strongswan-psk-chacha20-btnsd-initiator initiator psk-btnsd-left-chacha20.yaml \
    chacha20poly1305-prfsha256-x25519 chacha20poly1305 || true
  case_strongswan_psk strongswan-psk-aescbc-sha256-btnsd-initiator initiator psk-btnsd-left-aescbc.yaml \
    aes128-sha256-prfsha256-ecp256 aes128-sha256 || true
  tunnel_networks
  SW_MODE=tunnel SW_LOCAL_TS=203.0.113.0/24 SW_REMOTE_TS=198.51.100.1/32 \
    PING_TARGET="-I 198.51.100.1 203.0.113.1" \
    case_strongswan_psk strongswan-psk-gcm-tunnel-btnsd-initiator initiator psk-btnsd-left-tunnel.yaml \
    aes256gcm16-prfsha256-x25519 aes256gcm16 || true
  print_matrix "btnsd <-> btnsd and strongSwan 5.9.8, PSK and NULL"
}

# MODP-2048 (IKE, and PFS for CHILD_SA rekeys) and IPv6 outer addresses
# against strongSwan: MODP-2048 with btnsd as initiator (btnsd rekeys) and
# as responder (strongSwan rekeys); IPv6 outer addresses in transport mode
# and in tunnel mode (AES-GCM, MODP-2048), each with btnsd as initiator
# (btnsd rekeys) and as responder (strongSwan rekeys). Six cases rather
# than every combination: each costs about 30 s of UML time.
group_modp_ipv6() {
  ip netns exec left ping -c1 -W2 "$UML_RIGHT_V6" >/dev/null
  EXPECT_PFS=MODP_2048 BTNSD_REKEY=1 TCP_TARGET=$UML_RIGHT_V4 \
    case_strongswan_psk strongswan-psk-modp2048-aescbc-btnsd-initiator initiator \
    psk-btnsd-left-modp2048.yaml aes128-sha256-modp2048 aes128-sha256-modp2048 || true
  EXPECT_PFS=MODP_2048 TCP_TARGET=$UML_RIGHT_V4 \
    case_strongswan_psk strongswan-psk-modp2048-aescbc-btnsd-responder responder \
    psk-btnsd-left-modp2048.yaml aes128-sha256-modp2048 aes128-sha256-modp2048 || true
  env_run SW_LOCAL="$UML_RIGHT_V6" SW_REMOTE="$UML_LEFT_V6" PING_TARGET="$UML_RIGHT_V6" \
    TCP_TARGET="$UML_RIGHT_V6" BTNSD_REKEY=1 \
    case_strongswan_psk strongswan-psk-ipv6-transport-btnsd-initiator initiator \
    psk-btnsd-left-v6.yaml aes256gcm16-prfsha256-x25519 aes256gcm16 || true
  env_run SW_LOCAL="$UML_RIGHT_V6" SW_REMOTE="$UML_LEFT_V6" PING_TARGET="$UML_RIGHT_V6" \
    TCP_TARGET="$UML_RIGHT_V6" \
    case_strongswan_psk strongswan-psk-ipv6-transport-btnsd-responder responder \
    psk-btnsd-left-v6.yaml aes256gcm16-prfsha256-x25519 aes256gcm16 || true
  tunnel_networks_v6
  env_run SW_LOCAL="$UML_RIGHT_V6" SW_REMOTE="$UML_LEFT_V6" SW_MODE=tunnel \
    SW_LOCAL_TS=2001:db8:2::/64 SW_REMOTE_TS=2001:db8:1::1/128 \
    PING_TARGET="-I 2001:db8:1::1 2001:db8:2::1" TCP_TARGET=2001:db8:2::1 EXPECT_PFS=MODP_2048 \
    case_strongswan_psk strongswan-psk-ipv6-tunnel-gcm-modp2048-btnsd-responder responder \
    psk-btnsd-left-v6-tunnel.yaml aes256gcm16-prfsha256-modp2048 aes256gcm16-modp2048 || true
  env_run SW_LOCAL="$UML_RIGHT_V6" SW_REMOTE="$UML_LEFT_V6" SW_MODE=tunnel \
    SW_LOCAL_TS=2001:db8:2::/64 SW_REMOTE_TS=2001:db8:1::1/128 \
    PING_TARGET="-I 2001:db8:1::1 2001:db8:2::1" TCP_TARGET=2001:db8:2::1 EXPECT_PFS=MODP_2048 \
    BTNSD_REKEY=1 \
    case_strongswan_psk strongswan-psk-ipv6-tunnel-gcm-modp2048-btnsd-initiator initiator \
    psk-btnsd-left-v6-tunnel.yaml aes256gcm16-prfsha256-modp2048 aes256gcm16-modp2048 || true
  print_matrix "btnsd <-> strongSwan 5.9.8: MODP-2048 with PFS, IPv6 transport and tunnel"
}

# ------------------------------------------------------------------ shards
# btnsd with daemon.threads: 2 answers six strongSwan IKE SAs, one from each
# of right's addresses 192.0.2.11-16 (psk-btnsd-left-shards.yaml). An IKE
# SA's shard is bits 48-55 of its handle (btnsctl's IKE SA id) and the top
# bit of the IKE SPI btnsd chose; both are checked.
shard_peers=(11 12 13 14 15 16)
ctl() { ip netns exec left "$btnsctl" "$@"; }
# ike_ids: btnsd's IKE SA ids, one per line.
ike_ids() { ctl list-sas | awk '/^IKE SA #/ {sub("#", "", $3); print $3}'; }
shard_of() { echo $(($1 >> 48)); }
# shard_list: "shard:count" of btnsd's IKE SAs.
shard_list() {
  local id
  for id in $(ike_ids); do shard_of "$id"; done | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}'
}
# spi_band_ok: every IKE SA's SPI chosen by btnsd (the responder SPI, or
# the initiator SPI after btnsd rekeyed it) has its shard in the top bit.
spi_band_ok() {
  ctl list-sas | awk '
    /^IKE SA #/ { id = substr($3, 2); role = $5 }
    /^  spi:/ {
      spi = (role == "responder") ? $3 : $2
      sub(/_[ir]$/, "", spi)
      # the top bit of the 64-bit SPI; ids of shard 1 are >= 2^48
      top = index("89abcdef", substr(spi, 1, 1)) > 0
      shard = (id + 0 >= 281474976710656) ? 1 : 0
      if (top != shard) { print "IKE SA " id " SPI " spi " outside shard " shard; bad = 1 }
    }
    END { exit bad }'
}
# all_sas_carried MIN: every ESP SA in left's kernel counted at least MIN packets.
all_sas_carried() {
  ip -n left -s xfrm state | awk -v min="$1" '
    /^src/ { n++ } /lifetime current:/ { getline; if ($2 < min) low++ }
    END { exit !(n > 0 && low == 0) }'
}
# count_new BEFORE NOW: how many words of NOW are not in BEFORE.
count_new() {
  awk -v before="$1" -v now="$2" 'BEGIN {
    n = split(before, b, " "); for (i = 1; i <= n; i++) seen[b[i]] = 1
    n = split(now, a, " "); for (i = 1; i <= n; i++) if (!(a[i] in seen)) c++
    print c + 0 }'
}
ping_all_peers() {
  local i lost=0
  for i in "${shard_peers[@]}"; do
    [[ $(ping_replies left 192.0.2.$i 2) == 2 ]] || lost=$((lost + 1))
  done
  echo $lost
}

group_shards() {
  local i dir=$work/shards name=strongswan-psk-6-ike-sas-2-shards
  mkdir -p "$dir"
  for i in "${shard_peers[@]}"; do ip -n right addr add 192.0.2.$i/24 dev eth0; done
  cp "$configs/psk-btnsd-left-shards.yaml" "$dir/btnsd.yaml"
  cp "$configs/interop.secrets" "$dir/"
  chmod 600 "$dir/interop.secrets"
  local -a keys=()
  for i in "${shard_peers[@]}"; do keys+=(name=peer-$i local=192.0.2.$i); done
  uml_strongswan_conf "$work/sw"
  swanctl_psk_conf "$work/sw/swanctl/swanctl.conf" "${keys[@]}"
  uml_start_charon right "$work/sw" || { result $name FAIL "charon did not start"; print_matrix shards; return; }
  # The address hash is keyed with a random seed per start: all six peers
  # share one shard with probability 1/32. Then btnsd starts again once
  # (a new seed) rather than the test proving nothing about the other shard.
  local attempt shards ok why started
  for attempt in 1 2; do
    ok=1 why=""
    start_btnsd left "$dir/btnsd.yaml" || { result $name FAIL "btnsd did not start"; show_logs; print_matrix shards; return; }
    started=$SECONDS
    local -a initiators=()
    for i in "${shard_peers[@]}"; do
      swanctl_right --initiate --ike peer-$i --child peer-$i --timeout 20 &
      initiators+=($!)
    done
    wait "${initiators[@]}" || true
    UML_WAIT_SECONDS=30 uml_wait_for sh -c "[ \$(ip -n left xfrm state | grep -c '^src') -ge 12 ]" ||
      { ok=0; why="only $(sa_count left) ESP SAs in left's kernel (12 expected)"; }
    shards=$(shard_list)
    [[ $shards == *"0:"* && $shards == *"1:"* ]] && break
    ((attempt == 1)) || break
    echo "attempt 1: all IKE SAs on one shard ($shards); restarting btnsd"
    stop_btnsd left || true
    for i in "${shard_peers[@]}"; do swanctl_right --terminate --ike peer-$i --timeout 5 || true; done
    flush_all
  done
  local setup_s=$((SECONDS - started))
  [[ $(ike_ids | wc -l) == 6 ]] || { ok=0; why="$why btnsd lists $(ike_ids | wc -l) IKE SAs"; }
  [[ $shards == *"0:"* && $shards == *"1:"* ]] || { ok=0; why="$why not on both shards: $shards"; }
  local band
  band=$(spi_band_ok) || { ok=0; why="$why $band"; }
  local stats ike_sas
  stats=$(ctl stats)
  ike_sas=$(awk '$1 == "ike_sas" {print $2}' <<<"$stats")
  [[ $ike_sas == 6 ]] || { ok=0; why="$why btnsctl stats ike_sas=$ike_sas"; }
  local lost
  lost=$(ping_all_peers)
  ((lost == 0)) || { ok=0; why="$why $lost of 6 peers did not answer 2 pings"; }
  all_sas_carried 2 || { ok=0; why="$why an ESP SA carried fewer than 2 packets: $(ip -n left -s xfrm state | grep -A1 'lifetime current' | awk '/packets/' | tr '\n' ' ')"; }
  if ((ok)); then
    result $name PASS "shard:ike_sas=[$shards] attempt=$attempt esp_sas_left=$(sa_count left) each_sa_packets>=2 setup_s=$setup_s stats_ike_sas=$ike_sas"
  else
    result $name FAIL "$why"; show_logs
    stop_btnsd left || true; uml_stop_charon "$work/sw"; print_matrix "strongSwan, btnsd with 2 shards"; return
  fi

  # Rekeys started by btnsd through btnsctl: the IKE SA and the CHILD_SA
  # of one IKE SA per shard; the request reaches the owning shard by the
  # handle's shard bits.
  local id0 id1 s before after
  for id in $(ike_ids); do
    s=$(shard_of "$id")
    [[ $s == 0 && -z ${id0:-} ]] && id0=$id
    [[ $s == 1 && -z ${id1:-} ]] && id1=$id
  done
  ok=1 why=""
  local spis_before child
  ike_spi_pairs() { ctl list-sas | awk '/^  spi:/ {print $2 $3}' | tr '\n' ' '; }
  ike_spis_changed() { [[ $(count_new "$1" "$(ike_spi_pairs)") == 2 ]]; }
  esp_spis_changed() { (( $(sa_count left) == 12 )) && [[ $(count_new "$1" "$(spis left)") == 4 ]]; }
  spis_before=$(ike_spi_pairs)
  local esp_before
  esp_before=$(spis left)
  for id in $id0 $id1; do
    ctl rekey "$id" >> "$dir/btnsctl.out" 2>&1 || { ok=0; why="$why rekey $id refused"; }
    child=$(ctl list-sas | awk -v id="$id" '/^IKE SA #/ {cur = substr($3, 2)} cur == id && /CHILD SA #/ {print substr($3, 2); exit}')
    ctl rekey "child:$child" >> "$dir/btnsctl.out" 2>&1 || { ok=0; why="$why rekey child:$child refused"; }
  done
  # Two IKE SPI pairs and two ESP SA pairs replaced, the other four kept.
  UML_WAIT_SECONDS=20 uml_wait_for ike_spis_changed "$spis_before" ||
    { ok=0; why="$why IKE SPIs: $(count_new "$spis_before" "$(ike_spi_pairs)") new pairs (2 expected), before [$spis_before] now [$(ike_spi_pairs)]"; }
  UML_WAIT_SECONDS=20 uml_wait_for esp_spis_changed "$esp_before" ||
    { ok=0; why="$why ESP SPIs: $(count_new "$esp_before" "$(spis left)") new (4 expected), before [$esp_before] now [$(spis left)]"; }
  band=$(spi_band_ok) || { ok=0; why="$why after rekey: $band"; }
  local ids_after
  ids_after=$(ike_ids | sort | tr '\n' ' ')
  [[ $ids_after == *"$id0"* && $ids_after == *"$id1"* ]] || { ok=0; why="$why rekeyed IKE SAs lost their ids"; }
  local rekey_esp_before
  rekey_esp_before=$(esp_packets left)
  lost=$(ping_all_peers)
  ((lost == 0)) || { ok=0; why="$why $lost peers unreachable after the rekeys"; }
  all_sas_carried 1 || { ok=0; why="$why a new ESP SA carried nothing"; }
  if ((ok)); then
    result $name-rekey-by-btnsd PASS "ike_sas_rekeyed=[$id0 (shard 0) $id1 (shard 1)] child_sas_rekeyed=2 spi_bands_ok=yes esp_packets=$rekey_esp_before->$(esp_packets left)"
  else
    result $name-rekey-by-btnsd FAIL "$why"; show_logs
  fi

  # Deletes: btnsd deletes one IKE SA per shard (btnsctl terminate),
  # strongSwan deletes two more, SIGTERM deletes the last two.
  ok=1 why=""
  for id in $id0 $id1; do
    ctl terminate "$id" >> "$dir/btnsctl.out" 2>&1 || { ok=0; why="$why terminate $id refused"; }
  done
  UML_WAIT_SECONDS=15 uml_wait_for sh -c "[ \$(ip -n right xfrm state | grep -c '^src') -eq 8 ] && [ \$(ip -n left xfrm state | grep -c '^src') -eq 8 ]" ||
    { ok=0; why="$why after btnsctl terminate: right $(sa_count right) left $(sa_count left) ESP SAs (8 expected)"; }
  local by_peer=() remaining
  remaining=$(ctl list-sas | awk '/^IKE SA #/ {split($8, a, ":"); print a[1]}' | head -2)
  for i in $remaining; do swanctl_right --terminate --ike "peer-${i##*.}" --timeout 10 || true; by_peer+=("$i"); done
  UML_WAIT_SECONDS=15 uml_wait_for sh -c "[ \$(ip -n left xfrm state | grep -c '^src') -eq 4 ]" ||
    { ok=0; why="$why after strongSwan's deletes: left $(sa_count left) ESP SAs (4 expected)"; }
  [[ $(ike_ids | wc -l) == 2 ]] || { ok=0; why="$why btnsd lists $(ike_ids | wc -l) IKE SAs (2 expected)"; }
  local exit_left=0
  stop_btnsd left || exit_left=$?
  ((exit_left == 0)) || { ok=0; why="$why btnsd exit status $exit_left"; }
  UML_WAIT_SECONDS=10 uml_wait_for no_sas right || { ok=0; why="$why strongSwan still has $(sa_count right) SAs after SIGTERM"; }
  (( $(sa_count left) == 0 && $(sa_policy_count left) == 0 )) || { ok=0; why="$why left kept $(sa_count left) SAs"; }
  if ((ok)); then
    result $name-delete PASS "by_btnsctl=[$id0 $id1] by_strongswan=[${by_peer[*]}] by_sigterm=2 right_sas_after=0 left_sas_after=0"
  else
    result $name-delete FAIL "$why"; show_logs
  fi
  uml_stop_charon "$work/sw"
  print_matrix "btnsd with 2 protocol shards <-> strongSwan 5.9.8, 6 IKE SAs"
}

# env_run NAME=VALUE... FUNCTION ARGS...: FUNCTION with those variables set
# for its duration (the shell's "NAME=VALUE cmd" form cannot take an array).
env_run() {
  local -a assignments=()
  while [[ $1 == *=* ]]; do assignments+=("$1"); shift; done
  local a
  for a in "${assignments[@]}"; do local "$a"; done
  "$@"
}

case $group in
  psk) group_psk ;;
  modp-ipv6) group_modp_ipv6 ;;
  shards) group_shards ;;
  *) echo "unknown group $group (psk, modp-ipv6, shards)"; exit 2 ;;
esac
