#!/usr/bin/env bash
# btnsd with policies converted by swanctl2btnsd from strongSwan's own
# configuration of the left host, against strongSwan 5.9.8 on the right host
# with its original configuration, in a real kernel (user-mode-linux, one
# boot): PSK with AES-GCM-256/X25519 and ECDSA certificates. For each: the
# CHILD_SA is installed on both sides, a ping goes through ESP (kernel
# counters), btnsd authenticated the peer, and btnsd's SIGTERM leaves no SA.
# The PSK case also runs btnsd as systemd would (Type=notify): READY=1 once
# it is up, RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1.
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  btnsd=$root/daemon/btnsd
  [[ -x $btnsd ]] || btnsd=$root/bazel-bin/daemon/btnsd
  [[ -x $btnsd ]] || { echo "btnsd not found (bazel build //daemon:btnsd)" >&2; exit 2; }
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-300}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$root/tools/uml/lib.sh")" \
    "$(realpath "$root/tools/swanctl2btnsd/swanctl2btnsd")" "$root/tests/swanctl2btnsd"
fi
set -E
trap 'echo "converted_interop_test: line $LINENO: failed: $BASH_COMMAND" >&2' ERR
btnsd=$2
. "$3"
converter=$4
fixtures=$5

work=$TMPDIR/converted-interop
mkdir -p "$work"
failures=0
declare -a results=()
result() { results+=("RESULT $*"); echo "RESULT $*"; }

uml_two_hosts
ip netns exec left ping -c1 -W2 "$UML_RIGHT_V4" >/dev/null

sa_count() { ip -n "$1" xfrm state | grep -c '^src' || true; }
both_have_sas() { (( $(sa_count left) >= 2 && $(sa_count right) >= 2 )); }
no_sas() { (( $(sa_count "$1") == 0 )); }
flush_all() { for ns in left right; do ip -n $ns xfrm state flush; ip -n $ns xfrm policy flush; done; }

start_charon() {
  local peer=$1 dir=$2
  cp -rL "$fixtures/peers/$peer" "$dir/swanctl"
  cat > "$dir/strongswan.conf" <<CONF
swanctl {
  load = random openssl pem pkcs1 pkcs8 x509 pubkey
}
charon {
  load = random nonce openssl gcm aes sha1 sha2 hmac curve25519 kdf pem pkcs1 pkcs8 x509 pubkey kernel-netlink socket-default vici
  install_routes = no
  plugins {
    vici {
      socket = unix://$dir/charon.vici
    }
  }
  filelog {
    log {
      path = $dir/charon.log
      flush_line = yes
      default = 1
      ike = 2
    }
  }
}
CONF
  ip netns exec right unshare -m sh -c "
    mount -t tmpfs none /run
    exec env STRONGSWAN_CONF=$dir/strongswan.conf /usr/lib/ipsec/charon" > "$dir/charon.out" 2>&1 &
  echo $! > "$dir/charon.pid"
  uml_wait_for test -S "$dir/charon.vici" || { echo "charon did not open vici"; return 1; }
  ip netns exec right env STRONGSWAN_CONF="$dir/strongswan.conf" SWANCTL_DIR="$dir/swanctl" \
    swanctl --load-all --file "$dir/swanctl/swanctl.conf" --uri "unix://$dir/charon.vici" >> "$dir/charon.out" 2>&1
}

# run_case FIXTURE PEER: converts FIXTURE (strongSwan's config of the left
# host), runs btnsd with it against strongSwan with PEER.
run_case() {
  local fixture=$1 peer=$2 notify=${3:-}
  local name=converted-$fixture
  local dir=$work/$fixture
  mkdir -p "$dir"
  local ok=1 why="" packets=0
  if ! "$converter" -o "$dir/btnsd.yaml" --swanctl-dir "$fixtures/$fixture" \
       "$fixtures/$fixture/swanctl.conf" 2> "$dir/convert.err"; then
    result "$name" FAIL "conversion failed: $(cat "$dir/convert.err")"; failures=$((failures + 1)); return 0
  fi
  local listener=""
  if [[ -n $notify ]]; then
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as log:
    while True:
        log.write(s.recv(4096).decode().replace("\n", " ") + "\n")
' "$dir/notify.sock" "$dir/notify.log" 2> "$dir/notify.err" &
    listener=$!
    UML_WAIT_SECONDS=60 uml_wait_for test -S "$dir/notify.sock" || { ok=0; why="$why the notify listener did not start: $(cat "$dir/notify.err")"; }
  fi
  if ! start_charon "$peer" "$dir"; then
    ok=0; why="charon did not start"
  else
    NOTIFY_SOCKET=${notify:+$dir/notify.sock} ip netns exec left "$btnsd" --config "$dir/btnsd.yaml" --foreground > "$dir/btnsd.log" 2>&1 &
    local pid=$!
    if ! uml_wait_for grep -q 'event=started' "$dir/btnsd.log"; then
      ok=0; why="btnsd did not start: $(tail -n 5 "$dir/btnsd.log")"
    elif ! UML_WAIT_SECONDS=30 uml_wait_for both_have_sas; then
      ok=0; why="no CHILD_SA in the kernel (left $(sa_count left), right $(sa_count right))"
    else
      ip netns exec left ping -c3 -i0.2 -W2 "$UML_RIGHT_V4" >/dev/null || { ok=0; why="ping failed"; }
      packets=$(esp_packets left)
      ((packets >= 6)) || { ok=0; why="$why only $packets ESP packets"; }
      grep -q 'event=ike-sa-up.*authenticated=yes' "$dir/btnsd.log" ||
        { ok=0; why="$why btnsd logged no authenticated ike-sa-up"; }
    fi
    if ((ok)) && [[ -n $notify ]]; then
      grep -qx 'READY=1' "$dir/notify.log" || { ok=0; why="$why no READY=1 at start"; }
      kill -HUP "$pid" || { ok=0; why="$why btnsd was gone before the reload"; }
      UML_WAIT_SECONDS=10 uml_wait_for sh -c "[ \$(grep -c '^READY=1' '$dir/notify.log') -ge 2 ]" ||
        { ok=0; why="$why no READY=1 after the reload"; }
      grep -q '^RELOADING=1 MONOTONIC_USEC=[0-9]' "$dir/notify.log" || { ok=0; why="$why no RELOADING=1"; }
      grep -q 'event=reloaded' "$dir/btnsd.log" || { ok=0; why="$why no event=reloaded"; }
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local status=0
    wait "$pid" || status=$?
    if [[ -n $notify ]]; then
      kill "$listener" 2>/dev/null || true
      [[ $(grep -cx 'STOPPING=1' "$dir/notify.log") == 1 ]] ||
        { ok=0; why="$why not exactly one STOPPING=1"; }
      echo "   sd_notify messages: $(tr '\n' '|' < "$dir/notify.log" 2>/dev/null)"
    fi
    ((status == 0)) || { ok=0; why="$why btnsd exit status $status"; }
    if ((ok)) && ! UML_WAIT_SECONDS=10 uml_wait_for no_sas right; then
      ok=0; why="strongSwan kept $(sa_count right) SAs after btnsd's SIGTERM"
    fi
  fi
  kill -TERM "$(cat "$dir/charon.pid" 2>/dev/null)" 2>/dev/null || true
  wait "$(cat "$dir/charon.pid" 2>/dev/null)" 2>/dev/null || true
  flush_all
  if ((ok)); then
    result "$name" PASS "esp_packets_left=$packets"
  else
    result "$name" FAIL "$why esp_packets_left=$packets"
    failures=$((failures + 1))
    tail -n 15 "$dir/btnsd.log" "$dir/charon.log" "$dir/charon.out" 2>/dev/null | sed 's/^/   /'
  fi
}

run_case psk-left psk-right notify
run_case cert-left cert-right

echo "---- summary"
printf '%s\n' "${results[@]}"
if ((failures)); then
  echo "FAIL: $failures converted-policy case(s) failed"
  exit 1
fi
echo "PASS: converted policies interoperate with strongSwan's original peer configuration"
