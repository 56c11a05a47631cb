#!/usr/bin/env bash
# btnsd against Libreswan 4.10 (pluto) with NULL authentication (RFC 7619)
# in a real kernel (user-mode-linux, one boot). strongSwan cannot do NULL
# authentication, so Libreswan is the independent reference. btnsd runs in
# host "left" (192.0.2.1) with only a BTNS PAD entry; pluto in host
# "right" (192.0.2.2) with authby=null and leftid/rightid=%null; AES-GCM-256
# with X25519 (IKE) and ESP in transport mode. Each role:
#
#   libreswan-null-btnsd-initiator  btnsd starts at start-up; ping and a
#                                   TCP transfer through ESP, the ESP
#                                   counters of both kernels checked; btnsd's
#                                   SIGTERM deletes the SAs on pluto's side
#   libreswan-null-btnsd-responder  pluto initiates (whack --initiate); the
#                                   same traffic checks; pluto's delete
#                                   (whack --terminate) empties btnsd's kernel
#
# Debian's libreswan package conflicts with strongswan: tools/install-deps
# unpacks its .deb into /var/cache/btnsd/libreswan, which tools/uml/lib.sh
# mounts into pluto's private mount namespace.
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  btnsd=${BTNSD:-$root/daemon/btnsd}
  [[ -x $btnsd ]] || btnsd=$root/bazel-bin/daemon/btnsd
  [[ -x $btnsd ]] || { echo "btnsd not found (bazel build //daemon:btnsd)" >&2; exit 2; }
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-840}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$root/tools/uml/lib.sh")" \
    "$(realpath "$root/tests/interop")"
fi
btnsd=$2
. "$3"
interop=$4
configs=$interop/configs
work=$TMPDIR/libreswan-interop
mkdir -p "$work"
. "$interop/interop_lib.sh"

if ! uml_have_libreswan; then
  echo "Libreswan is not unpacked in $UML_LIBRESWAN_TREE: run tools/install-deps"
  result libreswan-available FAIL "no $UML_LIBRESWAN_TREE/usr/libexec/ipsec/pluto"
  print_matrix "btnsd <-> Libreswan 4.10"
  exit 1
fi

uml_two_hosts
ip netns exec left ping -c1 -W2 "$UML_RIGHT_V4" >/dev/null

# pluto_conf DIR: pluto's side of the NULL-authenticated transport SA.
pluto_conf() {
  local dir=$1
  mkdir -p "$dir"
  cat > "$dir/ipsec.conf" <<CONF
config setup
    uniqueids=no

conn to-left
    ikev2=yes
    authby=null
    left=$UML_RIGHT_V4
    leftid=%null
    right=$UML_LEFT_V4
    rightid=%null
    type=transport
    ike=aes_gcm256-sha2_256-dh31
    esp=aes_gcm256
    leftupdown=%disabled
    auto=add
CONF
}

show_logs() {
  local dir=$1
  echo "   btnsd:"; tail -n 25 "$dir/btnsd.log" | sed 's/^/     /'
  echo "   pluto:"; tail -n 25 "$dir/pluto.log" 2>/dev/null | sed 's/^/     /'
  tail -n 5 "$dir/pluto.out" "$dir/pluto.stdout" 2>/dev/null | sed 's/^/     /'
}

# run_case ROLE: btnsd as initiator or responder.
run_case() {
  local role=$1 name=libreswan-null-btnsd-$1
  local dir=$work/$name
  mkdir -p "$dir"
  if [[ $role == initiator ]]; then
    cp "$configs/btns-null-left.yaml" "$dir/btnsd.yaml"
  else
    sed 's/^    start: start .*/    start: none/' "$configs/btns-null-left.yaml" > "$dir/btnsd.yaml"
  fi
  pluto_conf "$dir"
  local ok=1 why="" start=$SECONDS packets_left=0 packets_right=0 setup=""
  if ! uml_start_pluto right "$dir"; then
    ok=0; why="pluto did not start"
  elif ! start_btnsd left "$dir/btnsd.yaml" "$dir/btnsd.log"; then
    ok=0; why="btnsd did not start"
  else
    local t0=$SECONDS
    [[ $role == responder ]] && { uml_pluto right "$dir" whack --ctlsocket "$dir/pluto.ctl" --name to-left --initiate --asynchronous || true; }
    if ! UML_WAIT_SECONDS=30 uml_wait_for both_have_sas; then
      ok=0; why="no CHILD_SA in the kernel (left $(sa_count left), right $(sa_count right))"
    else
      setup=$((SECONDS - t0))
      [[ $(ping_replies left "$UML_RIGHT_V4" 3) == 3 ]] || { ok=0; why="ping lost replies"; }
      tcp_transfer 200000 || { ok=0; why="$why TCP transfer failed"; }
      packets_left=$(esp_packets left)
      packets_right=$(esp_packets right)
      # 3 echo requests and replies plus ~140 TCP segments and their ACKs.
      ((packets_left >= 40 && packets_right >= 40)) ||
        { ok=0; why="$why too few ESP packets (left $packets_left, right $packets_right)"; }
      grep -q 'event=ike-sa-up.*peer_id=null.*authenticated=no' "$dir/btnsd.log" ||
        { ok=0; why="$why btnsd logged no unauthenticated ID_NULL peer"; }
      grep -qiE 'authenticated peer using authby=null|established IKE SA' "$dir/pluto.log" ||
        { ok=0; why="$why pluto logged no established IKE SA"; }
    fi
  fi
  if ((ok)); then
    result "$name" PASS "esp_packets_left=$packets_left esp_packets_right=$packets_right setup_s=$setup"
  else
    result "$name" FAIL "$why"; show_logs "$dir"
  fi
  # Delete from each side: btnsd's SIGTERM (initiator case) or pluto's
  # terminate (responder case).
  if ((ok)) && [[ $role == initiator ]]; then
    local status=0
    stop_btnsd left || status=$?
    if ((status == 0)) && UML_WAIT_SECONDS=10 uml_wait_for no_sas right && no_sas left; then
      result "$name-delete-by-btnsd" PASS "right_sas_after=0 left_sas_after=0 left_policies_after=$(policy_count left)"
    else
      result "$name-delete-by-btnsd" FAIL "exit $status, right $(sa_count right) SAs, left $(sa_count left) SAs"; show_logs "$dir"
    fi
  elif ((ok)); then
    uml_pluto right "$dir" whack --ctlsocket "$dir/pluto.ctl" --name to-left --terminate || true
    if UML_WAIT_SECONDS=10 uml_wait_for no_sas left; then
      result "$name-delete-by-libreswan" PASS "left_sas_after=0 btnsd: $(grep -c 'event=ike-sa-down.*deleted-by-peer' "$dir/btnsd.log") ike-sa-down deleted-by-peer"
    else
      result "$name-delete-by-libreswan" FAIL "left still has $(sa_count left) SAs"; show_logs "$dir"
    fi
  fi
  stop_btnsd left || true
  uml_stop_pluto "$dir"
  flush_all
  echo "   $name took $((SECONDS - start)) s"
}

run_case initiator
run_case responder
print_matrix "btnsd <-> Libreswan 4.10, NULL authentication"
