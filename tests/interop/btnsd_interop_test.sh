#!/usr/bin/env bash
# btnsd against real peers in a real kernel (user-mode-linux, one boot):
#
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
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-840}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$root/tools/uml/lib.sh")" \
    "$(realpath "$root/tests/interop/configs")"
fi
btnsd=$2
. "$3"
configs=$4

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
  uml_strongswan_conf "$dir"
  cat > "$dir/swanctl/swanctl.conf" <<CONF
connections {
  to-left {
    version = 2
    local_addrs = $UML_RIGHT_V4
    remote_addrs = $UML_LEFT_V4
    proposals = $ike
    local {
      auth = psk
      id = right.example.net
    }
    remote {
      auth = psk
      id = left.example.net
    }
    children {
      to-left {
        mode = ${SW_MODE:-transport}
        esp_proposals = $esp
        local_ts = ${SW_LOCAL_TS:-$UML_RIGHT_V4/32}
        remote_ts = ${SW_REMOTE_TS:-$UML_LEFT_V4/32}
      }
    }
  }
}
secrets {
  ike-left {
    id-1 = left.example.net
    id-2 = right.example.net
    secret = "interop test secret, not for production use"
  }
}
CONF
  uml_start_charon right "$dir"
}

stop_charon() { uml_stop_charon "$work/sw"; }

# spis_changed BEFORE: the left host holds exactly one new SA pair.
spis_changed() { [[ "$(spis left)" != "$1" ]] && (( $(sa_count left) == 2 )); }
swanctl_right() { uml_swanctl right "$work/sw" "$@"; }

# case_strongswan_psk NAME ROLE CONFIG SW_IKE SW_ESP: ROLE is btnsd's
# (initiator or responder); CONFIG a btnsd config from configs/; SW_* the
# strongSwan proposals that match it. The responder case also lets
# strongSwan rekey the CHILD_SA and then delete the IKE SA; the initiator
# case ends with btnsd's SIGTERM deleting the SA on strongSwan's side.
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
  if [[ $role == responder ]]; then
    swanctl_right --initiate --child to-left --timeout 20 || true
  fi
  local ok=1 why="" packets=0
  if ! UML_WAIT_SECONDS=30 uml_wait_for sh -c "[ \$(ip -n left xfrm state | grep -c '^src') -ge 2 ] && [ \$(ip -n right xfrm state | grep -c '^src') -ge 2 ]"; then
    ok=0; why="no CHILD_SA in the kernel (left $(sa_count left), right $(sa_count right))"
  else
    ip netns exec left ping -c3 -i0.2 -W2 ${PING_TARGET:-$UML_RIGHT_V4} >/dev/null || { ok=0; why="ping failed"; }
    packets=$(esp_packets left)
    ((packets >= 6)) || { ok=0; why="$why only $packets ESP packets"; }
    ip -n left -s xfrm state > "$dir/left-states.txt"
  fi
  if ((ok)); then
    result $name PASS "esp_packets_left=$packets algorithm=$(ip -n left xfrm state | awk '/aead|enc/ {print $2; exit}') mode=$(ip -n left xfrm state | awk '/ mode / {for (i = 1; i < NF; i++) if ($i == "mode") {print $(i + 1); exit}}')"
  else
    result $name FAIL "$why esp_packets_left=$packets"
    cp "$work/sw/charon.log" "$work/$name-charon.log" 2>/dev/null || true
    show_logs
  fi
  if ((ok)) && [[ $role == responder ]]; then
    # CHILD_SA rekey started by strongSwan: new SPIs, traffic still flows.
    local before after rekey_ok=1 rwhy=""
    before=$(spis left)
    swanctl_right --rekey --child to-left || true
    UML_WAIT_SECONDS=15 uml_wait_for spis_changed "$before" ||
      { rekey_ok=0; rwhy="SPIs did not change to one new pair (before: $before now: $(spis left))"; }
    sleep 1
    ip netns exec left ping -c3 -i0.2 -W2 "$UML_RIGHT_V4" >/dev/null || { rekey_ok=0; rwhy="$rwhy ping after rekey failed"; }
    after=$(spis left)
    local rpackets
    rpackets=$(esp_packets left)
    if ((rekey_ok)); then
      result $name-child-rekey-by-strongswan PASS "spis_before=[$before] spis_after=[$after] esp_packets_left=$rpackets"
    else
      result $name-child-rekey-by-strongswan FAIL "$rwhy"; show_logs
    fi
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

tunnel_networks() {
  ip -n left addr add 198.51.100.1/32 dev lo
  ip -n right addr add 203.0.113.1/32 dev lo
  ip -n left route add 203.0.113.0/24 via "$UML_RIGHT_V4" src 198.51.100.1
  ip -n right route add 198.51.100.0/24 via "$UML_LEFT_V4" src 203.0.113.1
}

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
