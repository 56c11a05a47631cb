#!/usr/bin/env bash
# kernel_glue against a kernel with ESP (user-mode-linux, one boot): two hosts
# whose SAs and policies are installed only through kernel_glue (xfrm_tool),
# then ping and a TCP transfer through ESP for AES-GCM, ChaCha20-Poly1305 and
# AES-CBC+HMAC-SHA2, transport and tunnel mode, IPv4 and IPv6, with the SA
# counters read back through kernel_glue; an ACQUIRE from a trap policy; a
# soft and hard EXPIRE from byte and time lifetimes; a per-socket policy; ESN with a large
# replay window; NAT-T (ESP in UDP 4500) and a NAT mapping change.
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  tool=${XFRM_TOOL:-$root/tests/kernel/xfrm_tool}
  [[ -x $tool ]] || tool=$root/bazel-bin/tests/kernel/xfrm_tool
  [[ -x $tool ]] || { echo "xfrm_tool not found (bazel build //tests/kernel:xfrm_tool)" >&2; exit 2; }
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-1200}" "$(realpath "$0")" --inside \
    "$(realpath "$tool")" "$(realpath "$root/tools/uml/lib.sh")"
fi
tool=$2
. "$3"

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
on() { local ns=$1; shift; ip netns exec "$ns" "$tool" "$@"; }

uml_two_hosts
# Inner networks for tunnel mode (documentation prefixes), reachable only
# through the other host.
ip -n left addr add 198.51.100.1/32 dev lo
ip -n right addr add 203.0.113.1/32 dev lo
ip -n left addr add 2001:db8:1::1/128 dev lo
ip -n right addr add 2001:db8:2::1/128 dev lo
ip -n left route add 203.0.113.0/24 via $UML_RIGHT_V4 src 198.51.100.1
ip -n right route add 198.51.100.0/24 via $UML_LEFT_V4 src 203.0.113.1
ip -n left -6 route add 2001:db8:2::/48 via $UML_RIGHT_V6 src 2001:db8:1::1
ip -n right -6 route add 2001:db8:1::/48 via $UML_LEFT_V6 src 2001:db8:2::1
ip netns exec left ping -c1 -W2 $UML_RIGHT_V4 >/dev/null
ip netns exec left ping -6 -c1 -W2 $UML_RIGHT_V6 >/dev/null || sleep 1

spi=$((0x2000))
port=7000
# check_pair ALG FAMILY MODE [extra sa-pair options...]
check_pair() {
  local alg=$1 family=$2 mode=$3; shift 3
  local l r ln rn target ping_flag=""
  if [[ $family == 4 ]]; then
    l=$UML_LEFT_V4 r=$UML_RIGHT_V4 ln=198.51.100.1/32 rn=203.0.113.1/32
  else
    l=$UML_LEFT_V6 r=$UML_RIGHT_V6 ln=2001:db8:1::1/128 rn=2001:db8:2::1/128 ping_flag=-6
  fi
  local name="$alg IPv$family $mode $*"
  local out=$((spi += 2)) in=$((spi + 1))
  port=$((port + 1))
  local nets=() from=""
  if [[ $mode == tunnel ]]; then
    nets=(--local-net "$ln" --remote-net "$rn")
    target=${rn%/*}
    from=${ln%/*}
  else
    target=$r
  fi
  if ! on left sa-pair --local "$l" --remote "$r" --spi-out $out --spi-in $in --alg "$alg" \
         --mode "$mode" "${nets[@]}" "$@" ||
     ! on right sa-pair --local "$r" --remote "$l" --spi-out $in --spi-in $out --alg "$alg" \
         --mode "$mode" ${nets:+--local-net "$rn" --remote-net "$ln"} "$@"; then
    fail "$name: install"; return
  fi
  if ! ip netns exec left ping $ping_flag -c3 -i0.2 -W2 ${from:+-I $from} "$target" >/dev/null; then
    fail "$name: ping"
  fi
  ip netns exec right "$tool" tcp-serve --port $port --bytes 300000 > /var/tmp/serve.log 2>&1 &
  local server=$!
  if ! on left tcp-send --to "$target" --port $port --bytes 300000 >/dev/null; then
    fail "$name: TCP transfer"
  fi
  wait $server || fail "$name: TCP server ($(cat /var/tmp/serve.log))"
  # Packets counted by the sender's outbound SA and by the receiver's
  # inbound copy of it: 3 echo requests plus the TCP data (300 kB).
  local readback
  readback=$(on left counters --dst "$r" --spi $out --min-packets 20 --min-bytes 300000) ||
    fail "$name: left out SA"
  echo "$readback"
  # The SA as the kernel holds it matches what was asked for.
  [[ $readback == *"mode=$mode "* ]] || fail "$name: mode not read back"
  if [[ " $* " == *" --encap "* ]]; then
    [[ $readback == *"encap=udp:4500->4500"* ]] || fail "$name: UDP encapsulation not read back"
  fi
  if [[ " $* " == *" --esn "* ]]; then
    [[ $readback == *"esn=1"* ]] || fail "$name: ESN not read back"
  fi
  on right counters --dst "$r" --spi $out --min-packets 20 --min-bytes 300000 || fail "$name: right in SA"
  on right counters --dst "$l" --spi $in --min-packets 10 || fail "$name: right out SA"
  on left flush && on right flush || fail "$name: flush"
  # (Socket policies, listed as "socket in/out", are not flushed: they
  # belong to their sockets.)
  local rest
  rest=$(ip -n left xfrm state; for d in in out fwd; do ip -n left xfrm policy list dir $d; done)
  [[ -z $rest ]] || fail "$name: left not empty after flush: $rest"
  echo "checked: $name"
}

for alg in gcm chacha cbc-sha256; do
  for family in 4 6; do
    for mode in transport tunnel; do
      check_pair $alg $family $mode
    done
  done
done
check_pair cbc-sha384 4 transport
check_pair cbc-sha512 6 transport
check_pair gcm 4 transport --esn --replay 128
check_pair chacha 6 tunnel --esn --replay 1024

# NAT-T: ESP in UDP 4500; each host holds an ESP-in-UDP socket.
for ns in left right; do
  ip netns exec $ns "$tool" encap-socket --seconds 30 > /var/tmp/encap-$ns.log 2>&1 &
done
uml_wait_for grep -q ready /var/tmp/encap-left.log
uml_wait_for grep -q ready /var/tmp/encap-right.log
check_pair gcm 4 transport --encap

# NAT mapping change: right believes left sends from port 4501; ESP-in-UDP
# arriving from 4500 makes right's kernel report the new mapping.
spi=$((0x5000))
on left sa-pair --local $UML_LEFT_V4 --remote $UML_RIGHT_V4 --spi-out $spi --spi-in $((spi + 1)) --encap
on right sa-pair --local $UML_RIGHT_V4 --remote $UML_LEFT_V4 --spi-out $((spi + 1)) --spi-in $spi \
  --encap --encap-peer-port 4501
ip netns exec right "$tool" mapping --spi $spi --peer $UML_LEFT_V4 --old-port 4501 --new-port 4500 \
  > /var/tmp/mapping.log 2>&1 &
watcher=$!
uml_wait_for grep -q ready /var/tmp/mapping.log
on left send-udp --to $UML_RIGHT_V4 --port 9
wait $watcher || fail "NAT mapping event"
cat /var/tmp/mapping.log
on left flush; on right flush

# ACQUIRE from a trap policy (no SA installed).
on left acquire --local $UML_LEFT_V4 --remote $UML_RIGHT_V4 || fail "acquire IPv4"
on left acquire --local $UML_LEFT_V6 --remote $UML_RIGHT_V6 || fail "acquire IPv6"
on left flush

# Soft EXPIRE after a 2000-byte soft limit.
spi=$((0x3000))
on left sa-pair --local $UML_LEFT_V4 --remote $UML_RIGHT_V4 --spi-out $spi --spi-in $((spi + 1)) --soft-bytes 2000
on right sa-pair --local $UML_RIGHT_V4 --remote $UML_LEFT_V4 --spi-out $((spi + 1)) --spi-in $spi --soft-bytes 2000
on left expire --remote $UML_RIGHT_V4 --spi $spi || fail "soft expire"
on left flush; on right flush

# Hard EXPIRE after a 3000-byte hard limit (the SA disappears), and a soft
# EXPIRE from a 4-second time limit without traffic (long enough for the
# watcher to subscribe first).
spi=$((0x3100))
on left sa-pair --local $UML_LEFT_V4 --remote $UML_RIGHT_V4 --spi-out $spi --spi-in $((spi + 1)) --hard-bytes 3000
on right sa-pair --local $UML_RIGHT_V4 --remote $UML_LEFT_V4 --spi-out $((spi + 1)) --spi-in $spi --hard-bytes 3000
on left expire --remote $UML_RIGHT_V4 --spi $spi --hard || fail "hard expire"
on left flush; on right flush
spi=$((0x3200))
on left sa-pair --local $UML_LEFT_V6 --remote $UML_RIGHT_V6 --spi-out $spi --spi-in $((spi + 1)) \
  --soft-add-seconds 4 --hard-add-seconds 60
on left expire --remote $UML_RIGHT_V6 --spi $spi --no-traffic --timeout-ms 10000 || fail "soft time expire"
on left flush

# Per-socket policy: SAs without global policies; only the socket that
# carries the policy uses ESP.
spi=$((0x4000))
on left sa-pair --local $UML_LEFT_V4 --remote $UML_RIGHT_V4 --spi-out $spi --spi-in $((spi + 1)) --no-policies
on right sa-pair --local $UML_RIGHT_V4 --remote $UML_LEFT_V4 --spi-out $((spi + 1)) --spi-in $spi --no-policies
on left socket-policy --local $UML_LEFT_V4 --remote $UML_RIGHT_V4 --spi-out $spi || fail "socket policy"
on right counters --dst $UML_RIGHT_V4 --spi $spi --min-packets 2 || fail "socket policy: receiver counted no ESP"
on left flush; on right flush

wait 2>/dev/null || true
if ((failures)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "PASS: all kernel_glue checks in UML"
