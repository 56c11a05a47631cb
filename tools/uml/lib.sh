# Shell helpers for scripts that run inside user-mode-linux (tools/uml/run-in-uml).
# Source it: . "$(dirname "$0")/../../tools/uml/lib.sh" (or by absolute path).
#
# Test hosts live only in network namespaces created here, on veth pairs, with
# documentation addresses (RFC 5737 / RFC 3849).

UML_LEFT_V4=192.0.2.1
UML_RIGHT_V4=192.0.2.2
UML_LEFT_V6=2001:db8::1
UML_RIGHT_V6=2001:db8::2

# uml_two_hosts: namespaces "left" and "right" joined by a veth pair
# (left: eth0 192.0.2.1/24 2001:db8::1/64; right: eth0 192.0.2.2/24 2001:db8::2/64).
uml_two_hosts() {
  local ns
  for ns in left right; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  ip link add veth-left netns left type veth peer name veth-right netns right
  ip -n left link set veth-left name eth0
  ip -n right link set veth-right name eth0
  ip -n left addr add "$UML_LEFT_V4/24" dev eth0
  ip -n right addr add "$UML_RIGHT_V4/24" dev eth0
  ip -n left addr add "$UML_LEFT_V6/64" dev eth0 nodad
  ip -n right addr add "$UML_RIGHT_V6/64" dev eth0 nodad
  ip -n left link set eth0 up
  ip -n right link set eth0 up
}

# uml_netem NS "delay 20ms loss 5%": shape the host's outgoing traffic.
uml_netem() {
  ip netns exec "$1" tc qdisc replace dev eth0 root netem $2
}

# in_ns NS CMD...: run CMD in NS with a private mount namespace and its own
# /run, so daemons in different hosts do not share pid files or sockets.
in_ns() {
  local ns=$1; shift
  ip netns exec "$ns" unshare -m sh -c 'mount -t tmpfs none /run && exec "$@"' sh "$@"
}

# uml_wait_for CMD...: retry CMD for up to ${UML_WAIT_SECONDS:-20} s.
uml_wait_for() {
  local deadline=$((SECONDS + ${UML_WAIT_SECONDS:-20}))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# esp_packets NS: the sum of packet counters of all ESP SAs in NS.
esp_packets() {
  ip -n "$1" -s xfrm state | awk '/lifetime current:/ {getline; sum += $2} END {print sum + 0}'
}
