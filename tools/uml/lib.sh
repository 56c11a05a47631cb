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

# ---------------------------------------------------------------- strongSwan
# One charon per folder DIR: DIR/strongswan.conf (uml_strongswan_conf),
# DIR/swanctl/ (SWANCTL_DIR: swanctl.conf and credential folders), the vici
# socket DIR/charon.vici, the log DIR/charon.log, swanctl's output
# DIR/charon.out and the pid DIR/charon.pid.

# uml_strongswan_conf DIR [LOG_LEVELS]: a strongswan.conf for DIR. The plugin
# lists are minimal on purpose: swanctl with the system-wide list hangs in
# UML, and strongSwan 5.9.8 needs "kdf" for key derivation. LOG_LEVELS
# replaces the default file log levels (e.g. "default = 1\n ike = 4").
uml_strongswan_conf() {
  local dir=$1
  local levels=${2:-"default = 1
      ike = 2
      cfg = 2
      chd = 2
      knl = 1"}
  mkdir -p "$dir/swanctl"
  cat > "$dir/strongswan.conf" <<CONF
swanctl {
  load = random openssl pem pkcs1 pkcs8 x509 pubkey curve25519
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
      time_format = %s
      flush_line = yes
      $levels
    }
  }
${UML_CHARON_EXTRA:-}
}
CONF
}

# uml_start_charon HOST DIR: starts charon in HOST (own mount namespace and
# /run), waits for its vici socket and loads DIR/swanctl/swanctl.conf.
uml_start_charon() {
  local host=$1 dir=$2
  rm -f "$dir/charon.vici" "$dir/charon.log"
  ip netns exec "$host" unshare -m sh -c '
    mount -t tmpfs none /run
    exec env STRONGSWAN_CONF="$1/strongswan.conf" /usr/lib/ipsec/charon' sh "$dir" \
    > "$dir/charon.stdout" 2>&1 &
  echo $! > "$dir/charon.pid"
  uml_wait_for test -S "$dir/charon.vici" || { echo "charon in $host did not open its vici socket"; return 1; }
  uml_swanctl "$host" "$dir" --load-all --file "$dir/swanctl/swanctl.conf"
}

# uml_swanctl HOST DIR ARGS...: swanctl against DIR's charon (output to DIR/charon.out).
uml_swanctl() {
  local host=$1 dir=$2
  shift 2
  ip netns exec "$host" env STRONGSWAN_CONF="$dir/strongswan.conf" SWANCTL_DIR="$dir/swanctl" \
    swanctl "$@" --uri "unix://$dir/charon.vici" >> "$dir/charon.out" 2>&1
}

# uml_stop_charon DIR [SIGNAL]: stops DIR's charon (SIGTERM unless told) and waits.
uml_stop_charon() {
  local pid
  pid=$(cat "$1/charon.pid" 2>/dev/null) || return 0
  kill -"${2:-TERM}" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$1/charon.pid"
}

# ---------------------------------------------------------------- Libreswan
# Debian's libreswan conflicts with strongswan, so tools/install-deps unpacks
# its .deb into UML_LIBRESWAN_TREE instead of installing it. pluto looks for
# its helpers in /usr/libexec/ipsec: its mount namespace gets the unpacked
# libexec folder bind-mounted over /usr/libexec. One pluto per folder DIR:
# DIR/ipsec.conf, DIR/ipsec.secrets, DIR/nss (NSS database), DIR/pluto.log,
# DIR/pluto.ctl (whack socket) and DIR/pluto.pid.
UML_LIBRESWAN_TREE=${UML_LIBRESWAN_TREE:-/var/cache/btnsd/libreswan}

uml_have_libreswan() { [[ -x $UML_LIBRESWAN_TREE/usr/libexec/ipsec/pluto ]]; }

# uml_start_pluto HOST DIR: starts pluto in HOST and loads every conn of
# DIR/ipsec.conf (auto=add / auto=start apply).
uml_start_pluto() {
  local host=$1 dir=$2
  mkdir -p "$dir/nss"
  [[ -e $dir/nss/cert9.db ]] || certutil -N -d "sql:$dir/nss" --empty-password
  touch "$dir/ipsec.secrets"
  chmod 600 "$dir/ipsec.secrets"
  rm -f "$dir/pluto.ctl" "$dir/pluto.log"
  ip netns exec "$host" unshare -m sh -c '
    mount -t tmpfs none /run
    mount --bind "$2/usr/libexec" /usr/libexec
    exec "$2/usr/libexec/ipsec/pluto" --nofork --no-dnssec --config "$1/ipsec.conf" \
      --rundir "$1" --secretsfile "$1/ipsec.secrets" --ipsecdir "$1" \
      --nssdir "$1/nss" --logfile "$1/pluto.log"' sh "$dir" "$UML_LIBRESWAN_TREE" \
    > "$dir/pluto.stdout" 2>&1 &
  echo $! > "$dir/pluto.pid"
  uml_wait_for test -S "$dir/pluto.ctl" || { echo "pluto in $host did not open its control socket"; return 1; }
  uml_pluto "$host" "$dir" addconn --autoall --config "$dir/ipsec.conf" --ctlsocket "$dir/pluto.ctl"
  uml_pluto "$host" "$dir" whack --ctlsocket "$dir/pluto.ctl" --listen
}

# uml_pluto HOST DIR PROGRAM ARGS...: runs a Libreswan program (whack,
# addconn) from the unpacked tree in HOST (output to DIR/pluto.out).
uml_pluto() {
  local host=$1 dir=$2 program=$3
  shift 3
  ip netns exec "$host" "$UML_LIBRESWAN_TREE/usr/libexec/ipsec/$program" "$@" >> "$dir/pluto.out" 2>&1
}

# uml_stop_pluto DIR [SIGNAL]: stops DIR's pluto and waits.
uml_stop_pluto() {
  local pid
  pid=$(cat "$1/pluto.pid" 2>/dev/null) || return 0
  kill -"${2:-TERM}" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$1/pluto.pid"
}

# ---------------------------------------------------------------- NAT
UML_NAT_OUTSIDE_V4=192.0.2.254   # the NAT's public address (left's segment)
UML_NAT_INSIDE_V4=203.0.113.1    # the NAT's address on the private segment
UML_INSIDE_V4=203.0.113.2        # "right" behind the NAT
UML_NAT_OUTSIDE2_V4=192.0.2.253  # the NAT's public address after uml_nat_renumber

# uml_nat_hosts: "left" 192.0.2.1 on the public segment; "right" 203.0.113.2
# on a private segment behind namespace "nat", which masquerades right's
# traffic to 192.0.2.254 (iptables MASQUERADE) with UDP source ports from
# 20000-20999 (so every mapping differs from the original port). left has
# no route to the private segment.
uml_nat_hosts() {
  local ns
  for ns in left nat right; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  ip link add veth-left netns left type veth peer name nat-out netns nat
  ip link add veth-right netns right type veth peer name nat-in netns nat
  ip -n left link set veth-left name eth0
  ip -n right link set veth-right name eth0
  ip -n left addr add "$UML_LEFT_V4/24" dev eth0
  ip -n nat addr add "$UML_NAT_OUTSIDE_V4/24" dev nat-out
  ip -n nat addr add "$UML_NAT_INSIDE_V4/24" dev nat-in
  ip -n right addr add "$UML_INSIDE_V4/24" dev eth0
  ip -n left link set eth0 up
  ip -n right link set eth0 up
  ip -n nat link set nat-out up
  ip -n nat link set nat-in up
  ip -n right route add default via "$UML_NAT_INSIDE_V4"
  ip netns exec nat sysctl -qw net.ipv4.ip_forward=1
  uml_nat_masquerade 20000-20999
}

# uml_nat_masquerade FIRST-LAST: (re)writes the NAT rule so right's UDP
# leaves with a source port in FIRST-LAST, and drops every existing
# mapping (conntrack -F): the peer's next packet gets a new mapping, as
# after a NAT reboot or a mapping timeout.
uml_nat_masquerade() {
  # iptables-legacy: the UML kernel has iptable_nat and xt_MASQUERADE but
  # no nf_tables NAT chain type.
  local ipt="ip netns exec nat iptables-legacy -w -t nat"
  $ipt -F POSTROUTING
  $ipt -A POSTROUTING -o nat-out -p udp -j MASQUERADE --to-ports "$1"
  $ipt -A POSTROUTING -o nat-out -j MASQUERADE
  ip netns exec nat conntrack -F >/dev/null 2>&1 || true
}

# uml_nat_renumber ADDRESS FIRST-LAST: the NAT's public address becomes
# ADDRESS (the old one is removed, as when an ISP hands out a new one) and
# right's UDP leaves with source ports in FIRST-LAST; every mapping is
# dropped.
uml_nat_renumber() {
  ip -n nat addr flush dev nat-out
  ip -n nat addr add "$1/24" dev nat-out
  uml_nat_masquerade "$2"
}

# uml_nat_ports: right's current public UDP source ports, from the NAT's
# conntrack table.
uml_nat_ports() {
  ip netns exec nat conntrack -L -p udp 2>/dev/null |
    awk '{for (i = 1; i <= NF; i++) if ($i ~ /^dport=/) d = $i; print d}' | sort -u | tr '\n' ' '
}
