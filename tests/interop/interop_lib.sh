# Helpers shared by the interop tests, sourced inside user-mode-linux after
# tools/uml/lib.sh. The caller sets $btnsd (the binary) and $work (scratch).

declare -a results=()
failures=0
# result NAME PASS|FAIL DETAILS...: records one scenario line.
result() {
  results+=("$(printf '%-52s %-4s %s' "$1" "$2" "${*:3}")")
  echo "RESULT $*"
  [[ $2 == PASS ]] || failures=$((failures + 1))
}

# print_matrix TITLE: the scenario matrix, then exit status 0 or 1.
print_matrix() {
  echo "---- scenario matrix: $1 (${SECONDS}s in UML)"
  printf '%s\n' "${results[@]}"
  if ((failures)); then
    echo "FAIL: $failures scenario(s) failed"
    return 1
  fi
  echo "PASS: all ${#results[@]} scenarios"
}

sa_count() { ip -n "$1" xfrm state | grep -c '^src' || true; }
policy_count() { ip -n "$1" xfrm policy | grep -c '^src' || true; }
# sa_policy_count HOST: policies other than the per-socket bypasses of the
# daemons' IKE sockets.
sa_policy_count() { ip -n "$1" xfrm policy | grep -cE '^[[:space:]]*dir (in|out|fwd)' || true; }
# holding_policy_count HOST / child_policy_count HOST: btnsd's policies with
# an ESP template, split by their reqid. Every SPD PROTECT entry has a
# holding (trap) policy whose reqid lies in the top 4096 of the default
# owned band 0x10000-0x1ffff (kTrapReqids in daemon/kernel_translate.h); it
# holds the entry's traffic back while no CHILD_SA's policy replaces it.
# CHILD_SA policies carry reqids below that.
holding_policy_count() { policy_reqids "$1" | awk '$1 >= 126976' | wc -l; }
child_policy_count() { policy_reqids "$1" | awk '$1 < 126976' | wc -l; }
policy_reqids() {
  ip -n "$1" xfrm policy | awk '{for (i = 1; i < NF; i++) if ($i == "reqid") print $(i + 1)}'
}
no_sas() { (( $(sa_count "$1") == 0 )); }
both_have_sas() { (( $(sa_count left) >= 2 && $(sa_count right) >= 2 )); }
# spis HOST: the host's ESP SPIs, sorted, on one line.
spis() { ip -n "$1" xfrm state | awk '/proto esp spi/ {print $4}' | sort | tr '\n' ' '; }
flush_all() {
  local ns
  for ns in left right; do ip -n $ns xfrm state flush; ip -n $ns xfrm policy flush; done
}

# start_btnsd HOST CONFIG [LOG]: runs btnsd in HOST; pid in $work/HOST.pid,
# log in LOG (default $work/HOST-btnsd.log).
start_btnsd() {
  local host=$1 config=$2 log=${3:-$work/$1-btnsd.log}
  ip netns exec "$host" "$btnsd" --config "$config" --foreground > "$log" 2>&1 &
  echo $! > "$work/$host.pid"
  uml_wait_for grep -q 'event=started' "$log" ||
    { echo "btnsd in $host did not start"; tail -n 20 "$log"; return 1; }
}

# stop_btnsd HOST [SIGNAL]: signals btnsd (SIGTERM) and waits; returns its
# exit status.
stop_btnsd() {
  local pid status=0
  pid=$(cat "$work/$1.pid" 2>/dev/null) || return 0
  rm -f "$work/$1.pid"
  kill -"${2:-TERM}" "$pid" 2>/dev/null || return 0
  wait "$pid" || status=$?
  return $status
}

# ping_through HOST TARGET [COUNT]: pings and prints how many replies came.
ping_replies() {
  local host=$1 target=$2 count=${3:-3}
  ip netns exec "$host" ping -c "$count" -i 0.2 -W 2 "$target" 2>/dev/null |
    awk '/packets transmitted/ {print $4}'
}

# tcp_transfer BYTES [SERVER_ADDRESS [SERVER_HOST CLIENT_HOST]]: CLIENT_HOST
# (left) sends BYTES to SERVER_HOST (right) on TCP port 5001 and the
# receiver checks it got them all. Perl and bash's /dev/tcp start in a
# fraction of the time python needs inside UML.
tcp_transfer() {
  local bytes=$1 address=${2:-$UML_RIGHT_V4} server_host=${3:-right} client_host=${4:-left}
  ip netns exec "$server_host" perl -MIO::Socket::IP -e '
    alarm 30;
    my $s = IO::Socket::IP->new(LocalHost => $ARGV[0], LocalPort => 5001,
                                Listen => 1, ReuseAddr => 1) or die "listen: $!";
    my $c = $s->accept or die "accept: $!";
    my ($n, $r, $buf) = (0);
    $n += $r while ($r = sysread($c, $buf, 65536)) > 0;
    exit($n == $ARGV[1] ? 0 : 1);' "$address" "$bytes" &
  local server=$! tries=0
  until ip netns exec "$client_host" bash -c 'exec 3<>"/dev/tcp/$1/5001" && head -c "$2" /dev/zero >&3' \
      sh "$address" "$bytes" 2>/dev/null; do
    ((++tries < 50)) || { kill "$server" 2>/dev/null; wait "$server" || true; return 1; }
    sleep 0.2
  done
  wait "$server"
}

# swanctl_psk_conf FILE [KEY=VALUE...]: writes strongSwan's swanctl.conf for
# the PSK peer of configs/psk-btnsd-left*.yaml ("right.example.net" against
# "left.example.net", the secret of configs/interop.secrets) with one
# connection per "name=" key; the keys after a "name=" set that connection:
#   name=to-left  the connection's and its CHILD_SA's name
#   id=ID peer_id=ID  own and peer identity (default: right.example.net,
#                 left.example.net)
#   local=ADDR remote=ADDR  outer addresses (default: right's and left's IPv4)
#   ike=PROPOSALS esp=PROPOSALS  (default: aes256gcm16-prfsha256-x25519, aes256gcm16)
#   mode=transport|tunnel  local_ts=  remote_ts=  (default: the outer addresses)
# Without any "name=", one connection "to-left" with the defaults.
swanctl_psk_conf() {
  local file=$1 arg
  shift
  (($#)) && [[ $1 == name=* ]] || set -- name=to-left "$@"
  {
    echo "connections {"
    local -A c=()
    for arg in "$@" name=; do
      if [[ $arg == name=* && -n ${c[name]:-} ]]; then
        _swanctl_psk_connection
        c=()
      fi
      c[${arg%%=*}]=${arg#*=}
    done
    cat <<CONF
}
secrets {
  ike-left {
    id-1 = left.example.net
    id-2 = right.example.net
    secret = "interop test secret, not for production use"
  }
}
CONF
  } > "$file"
}

# One connection block of swanctl_psk_conf, from its array "c".
_swanctl_psk_connection() {
  local local_addr=${c[local]:-$UML_RIGHT_V4} remote_addr=${c[remote]:-$UML_LEFT_V4}
  local host_len=32
  [[ $local_addr == *:* ]] && host_len=128
  cat <<CONF
  ${c[name]} {
    version = 2
    local_addrs = $local_addr
    remote_addrs = $remote_addr
    proposals = ${c[ike]:-aes256gcm16-prfsha256-x25519}
    local {
      auth = psk
      id = ${c[id]:-right.example.net}
    }
    remote {
      auth = psk
      id = ${c[peer_id]:-left.example.net}
    }
    children {
      ${c[name]} {
        mode = ${c[mode]:-transport}
        esp_proposals = ${c[esp]:-aes256gcm16}
        local_ts = ${c[local_ts]:-$local_addr/$host_len}
        remote_ts = ${c[remote_ts]:-$remote_addr/$host_len}
      }
    }
  }
CONF
}

# btnsctl_at HOST ARGS...: btnsctl against the btnsd of HOST whose config
# sets daemon.api_socket to $work/HOST-api.sock (several daemons share the
# machine's /run). The caller sets $btnsctl.
btnsctl_at() {
  local host=$1
  shift
  ip netns exec "$host" "$btnsctl" --socket "$work/$host-api.sock" "$@"
}

# tunnel_networks: inner networks for tunnel mode between left and right:
# left 198.51.100.1/32, right 203.0.113.1 in 203.0.113.0/24, each routed
# through the other host with its inner address as the source.
tunnel_networks() {
  ip -n left addr add 198.51.100.1/32 dev lo
  ip -n right addr add 203.0.113.1/32 dev lo
  ip -n left route add 203.0.113.0/24 via "$UML_RIGHT_V4" src 198.51.100.1
  ip -n right route add 198.51.100.0/24 via "$UML_LEFT_V4" src 203.0.113.1
}

# tunnel_networks_v6: the same for IPv6: left 2001:db8:1::1/128, right
# 2001:db8:2::1 in 2001:db8:2::/64.
tunnel_networks_v6() {
  ip -n left addr add 2001:db8:1::1/128 dev lo
  ip -n right addr add 2001:db8:2::1/64 dev lo
  ip -n left route add 2001:db8:2::/64 via "$UML_RIGHT_V6" src 2001:db8:1::1
  ip -n right route add 2001:db8:1::/64 via "$UML_LEFT_V6" src 2001:db8:2::1
}
