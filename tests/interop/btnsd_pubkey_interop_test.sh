#!/usr/bin/env bash
# btnsd against strongSwan 5.9.8 (charon + swanctl) with public-key
# authentication, in a real kernel (user-mode-linux, one boot). btnsd runs
# in host "left" (192.0.2.1), strongSwan in host "right" (192.0.2.2);
# AES-GCM-256 + X25519, ESP in transport mode. Each case is run with btnsd
# as initiator and as responder:
#
#   rawkey-ed25519  raw Ed25519 public keys pinned on both sides (btnsd: a
#                   raw-key identity and a pinned-key PAD entry; strongSwan:
#                   "pubkeys" in the local and remote sections)
#   cert-ecdsa      ECDSA P-256 certificates from a test CA (btnsd: a CA PAD
#                   entry and a key + certificate identity; strongSwan: x509
#                   with certs, cacerts and a private key, and its default
#                   send_cert = ifasked: it sends its certificate only
#                   because btnsd's CERTREQ asks for it, RFC 7296 3.7)
#   cert-ed25519    the same with Ed25519 certificates and an Ed25519 CA
#   cert-rsa        the same with RSA-2048 certificates and an RSA CA
#
# A case passes when both kernels hold the CHILD_SA pair, a ping goes
# through ESP and the left host's ESP counters show it. A certificate case
# also needs the CERTREQ both ways in the logs: strongSwan received btnsd's
# and sent its end-entity certificate, btnsd received strongSwan's. Every case prints
# "RESULT <name> PASS|FAIL esp_packets=N"; a failing case also prints the
# daemons' decisive log lines.
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  btnsd=${BTNSD:-$root/daemon/btnsd}
  [[ -x $btnsd ]] || btnsd=$root/bazel-bin/daemon/btnsd
  [[ -x $btnsd ]] || { echo "btnsd not found (bazel build //daemon:btnsd)" >&2; exit 2; }
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-840}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$root/tools/uml/lib.sh")" \
    "$(realpath "$root/tests/interop/configs/pubkey")"
fi
btnsd=$2
. "$3"
configs=$4


work=$TMPDIR/pubkey-interop
mkdir -p "$work"
failures=0
declare -a results=()
result() { results+=("RESULT $*"); echo "RESULT $*"; }

uml_two_hosts
ip netns exec left ping -c1 -W2 "$UML_RIGHT_V4" >/dev/null

sa_count() { ip -n "$1" xfrm state | grep -c '^src' || true; }
both_have_sas() {
  (( $(sa_count left) >= 2 && $(sa_count right) >= 2 ))
}
flush_all() {
  for ns in left right; do ip -n $ns xfrm state flush; ip -n $ns xfrm policy flush; done
}

# start_btnsd CONFIG: runs btnsd in left, pid in $work/btnsd.pid.
start_btnsd() {
  ip netns exec left "$btnsd" --config "$1" --foreground > "$work/btnsd.log" 2>&1 &
  echo $! > "$work/btnsd.pid"
  uml_wait_for grep -q 'event=started' "$work/btnsd.log" ||
    { echo "btnsd did not start"; tail -n 20 "$work/btnsd.log"; return 1; }
}
stop_btnsd() {
  local pid status=0
  pid=$(cat "$work/btnsd.pid")
  kill -TERM "$pid" 2>/dev/null || return 0
  wait "$pid" || status=$?
  return $status
}

# start_charon KIND DIR: strongSwan in right with its own strongswan.conf,
# vici socket and credential folders (SWANCTL_DIR) under DIR. KIND is
# rawkey-ed25519, cert-ecdsa or cert-ed25519. The swanctl plugin list is
# kept minimal because swanctl with the full system list hangs in UML.
start_charon() {
  local kind=$1 dir=$2
  local sw=$dir/swanctl
  mkdir -p "$sw/pkcs8" "$sw/x509" "$sw/x509ca" "$sw/pubkey"
  local local_auth remote_auth send_cert
  case $kind in
    rawkey-ed25519)
      cp "$configs/keys/right-ed25519.key" "$sw/pkcs8/right.key"
      cp "$configs/keys/right-ed25519.pub" "$sw/pubkey/right.pub"
      cp "$configs/keys/left-ed25519.pub" "$sw/pubkey/left.pub"
      local_auth="pubkeys = right.pub"
      remote_auth="pubkeys = left.pub"
      # A raw key is a CERT payload strongSwan sends only when told to.
      send_cert="send_cert = always"
      ;;
    cert-ecdsa | cert-ed25519 | cert-rsa)
      local alg=${kind#cert-} suffix
      case $alg in ed25519) suffix=ed25519cert ;; *) suffix=$alg ;; esac
      cp "$configs/keys/right-$suffix.key" "$sw/pkcs8/right.key"
      cp "$configs/keys/right-$suffix.crt" "$sw/x509/right.crt"
      cp "$configs/keys/ca-$alg.crt" "$sw/x509ca/ca.crt"
      local_auth="certs = right.crt"
      remote_auth="cacerts = ca.crt"
      # The default (ifasked): btnsd's CERTREQ must ask for the certificate.
      send_cert="# send_cert: default"
      ;;
  esac
  uml_strongswan_conf "$dir"
  cat > "$sw/swanctl.conf" <<CONF
connections {
  to-left {
    version = 2
    local_addrs = $UML_RIGHT_V4
    remote_addrs = $UML_LEFT_V4
    proposals = aes256gcm16-prfsha256-x25519
    $send_cert
    local {
      auth = pubkey
      id = right.example.net
      $local_auth
    }
    remote {
      auth = pubkey
      id = left.example.net
      $remote_auth
    }
    children {
      to-left {
        mode = transport
        esp_proposals = aes256gcm16
        local_ts = $UML_RIGHT_V4/32
        remote_ts = $UML_LEFT_V4/32
      }
    }
  }
}
CONF
  uml_start_charon right "$dir"
}
swanctl_right() {
  local dir=$1
  shift
  uml_swanctl right "$dir" "$@"
}
stop_charon() { uml_stop_charon "$1"; }

# decisive_lines DIR: the log lines that say why authentication or the
# CHILD_SA failed, from both daemons.
decisive_lines() {
  local dir=$1
  echo "   btnsd:"
  grep -iE 'auth|cert|key|error|fail|reject|notify|ike-sa' "$dir/btnsd.log" | tail -n 15 | sed 's/^/     /' || true
  echo "   strongSwan:"
  grep -iE 'authentic|signature|cert|public key|trust|error|fail|NOTIFY|AUTH|no .*found|constraint' \
    "$dir/charon.log" | tail -n 15 | sed 's/^/     /' || true
  grep -iE 'error|fail|loaded' "$dir/charon.out" | tail -n 8 | sed 's/^/     swanctl: /' || true
}

# run_case KIND ROLE: one handshake between btnsd (ROLE = initiator or
# responder) and strongSwan with credentials KIND, then a ping through ESP.
run_case() {
  local kind=$1 role=$2
  local name=strongswan-$kind-btnsd-$role
  local dir=$work/$name
  mkdir -p "$dir"
  cp -r "$configs/keys" "$dir/keys"
  if [[ $role == initiator ]]; then
    cp "$configs/$kind-left.yaml" "$dir/btnsd.yaml"
  else
    sed 's/^    start: start .*/    start: none/' "$configs/$kind-left.yaml" > "$dir/btnsd.yaml"
  fi
  local ok=1 why="" packets=0
  if ! start_charon "$kind" "$dir"; then
    ok=0; why="charon did not start or load its credentials"
  elif ! start_btnsd "$dir/btnsd.yaml"; then
    ok=0; why="btnsd did not start"
  else
    if [[ $role == responder ]]; then
      swanctl_right "$dir" --initiate --child to-left --timeout 20 || true
    fi
    if ! UML_WAIT_SECONDS=30 uml_wait_for both_have_sas; then
      ok=0; why="no CHILD_SA in the kernel (left $(sa_count left), right $(sa_count right))"
    else
      ip netns exec left ping -c3 -i0.2 -W2 "$UML_RIGHT_V4" >/dev/null || { ok=0; why="ping failed"; }
      packets=$(esp_packets left)
      # 3 echo requests out + 3 replies in on the left host's SA pair.
      ((packets >= 6)) || { ok=0; why="$why only $packets ESP packets"; }
    fi
    # btnsd must have authenticated the peer (not fallen back to BTNS).
    if ((ok)) && ! grep -q 'event=ike-sa-up.*authenticated=yes' "$work/btnsd.log"; then
      ok=0; why="$why btnsd logged no authenticated ike-sa-up"
    fi
    # strongSwan must have verified btnsd's signature (ECDSA, Ed25519, RSA).
    if ((ok)) && ! grep -qE "authentication of 'left.example.net' with (ECDSA|ED25519|RSA)[A-Z0-9_]* successful" "$dir/charon.log"; then
      ok=0; why="$why strongSwan logged no public-key authentication of left.example.net"
    fi
    if ((ok)) && [[ $kind == cert-* ]]; then
      # RFC 7296 3.7 both ways: btnsd's CERTREQ reached strongSwan, which
      # then sent its certificate (send_cert = ifasked), and strongSwan's
      # CERTREQ reached btnsd.
      grep -q 'received cert request for' "$dir/charon.log" ||
        { ok=0; why="$why strongSwan logged no CERTREQ from btnsd"; }
      grep -q 'sending end entity cert' "$dir/charon.log" ||
        { ok=0; why="$why strongSwan did not send its certificate"; }
      grep -q 'peer sent CERTREQ' "$work/btnsd.log" ||
        { ok=0; why="$why btnsd logged no CERTREQ from strongSwan"; }
    fi
    stop_btnsd || { ok=0; why="$why btnsd exit status not 0"; }
  fi
  stop_charon "$dir"
  mv "$work/btnsd.log" "$dir/btnsd.log" 2>/dev/null || true
  flush_all
  if ((ok)); then
    result "$name" PASS "esp_packets=$packets"
    return 0
  fi
  result "$name" FAIL "esp_packets=$packets $why"
  failures=$((failures + 1))
  decisive_lines "$dir"
  return 0
}

for kind in rawkey-ed25519 cert-ecdsa cert-ed25519 cert-rsa; do
  for role in initiator responder; do
    run_case "$kind" "$role"
  done
done

echo "---- summary"
printf '%s\n' "${results[@]}"
if ((failures)); then
  echo "FAIL: $failures public-key interop case(s) failed"
  exit 1
fi
echo "PASS: all public-key interop cases"
