#!/usr/bin/env bash
# Proves the harness gives a real kernel with ESP: two hosts, a transport-mode
# AES-GCM SA pair set up by hand with iproute2, ping through it, and the
# kernel's SA counters show the packets went through ESP.
set -euo pipefail
here=$(dirname "$(realpath "$0")")
if [[ ${1:-} != --inside ]]; then
  exec "$here/run-in-uml" --timeout 120 "$0" --inside
fi
. "$here/lib.sh"
uml_two_hosts
ip netns exec left ping -c1 -W2 "$UML_RIGHT_V4" >/dev/null
ip netns exec left ping -6 -c1 -W2 "$UML_RIGHT_V6" >/dev/null
key=0x0102030405060708090a0b0c0d0e0f1011121314
for ns in left right; do
  ip -n $ns xfrm state add src $UML_LEFT_V4 dst $UML_RIGHT_V4 proto esp spi 0x1001 mode transport \
    aead 'rfc4106(gcm(aes))' $key 128
  ip -n $ns xfrm state add src $UML_RIGHT_V4 dst $UML_LEFT_V4 proto esp spi 0x1002 mode transport \
    aead 'rfc4106(gcm(aes))' $key 128
done
ip -n left xfrm policy add src $UML_LEFT_V4 dst $UML_RIGHT_V4 dir out tmpl proto esp mode transport
ip -n right xfrm policy add src $UML_RIGHT_V4 dst $UML_LEFT_V4 dir out tmpl proto esp mode transport
ip -n right xfrm policy add src $UML_LEFT_V4 dst $UML_RIGHT_V4 dir in tmpl proto esp mode transport
ip -n left xfrm policy add src $UML_RIGHT_V4 dst $UML_LEFT_V4 dir in tmpl proto esp mode transport
ip netns exec left ping -c3 -i0.2 -W2 "$UML_RIGHT_V4" >/dev/null
packets=$(esp_packets left)
echo "ESP packets counted by the left host's SAs: $packets"
if ((packets < 6)); then
  echo "FAIL: expected at least 6 ESP packets (3 echo requests + 3 replies)" >&2
  exit 1
fi
echo "PASS: harness self-test"
