#!/usr/bin/env bash
# Records real strongSwan <-> strongSwan IKEv2 exchanges in user-mode-linux,
# for the decoder and key-derivation fixtures: a pcap of the IKE traffic and
# each charon's log at level 4 (which prints nonces, the DH secret and the
# derived keys). The SA is then used for a ping, proving it is real.
#
# usage: tools/interop/strongswan-capture.sh OUTDIR
#   OUTDIR receives, per scenario NAME: NAME.pcap, NAME-left.log, NAME-right.log
set -euo pipefail
here=$(dirname "$(realpath "$0")")
uml_dir=$(realpath "$here/../uml")
if [[ ${1:-} != --inside ]]; then
  out=$(realpath -m "${1:?usage: strongswan-capture.sh OUTDIR}")
  mkdir -p "$out"
  exec "$uml_dir/run-in-uml" --timeout 300 --rw "$out" "$0" --inside "$out"
fi
out=$2
. "$uml_dir/lib.sh"
uml_two_hosts

work=$TMPDIR/strongswan
mkdir -p "$work"
show_daemon_output() {
  local f
  for f in "$work"/*/charon.out "$work"/*/charon.stdout "$work"/*/charon.log; do echo "== $f"; tail -n 30 "$f"; done >&2
}
trap 'show_daemon_output' ERR

# write_conf HOST SCENARIO IKE_PROPOSAL ESP_PROPOSAL: the host's charon
# folder $work/HOST; "ike = 4" makes charon log nonces, the DH secret and
# the derived keys.
write_conf() {
  local host=$1 name=$2 ike=$3 esp=$4 me peer
  if [[ $host == left ]]; then me=$UML_LEFT_V4; peer=$UML_RIGHT_V4; else me=$UML_RIGHT_V4; peer=$UML_LEFT_V4; fi
  uml_strongswan_conf "$work/$host" "default = 1
      ike = 4
      enc = 2
      net = 2
      cfg = 2
      chd = 2
      lib = 1"
  cat > "$work/$host/swanctl/swanctl.conf" <<CONF
connections {
  $name {
    version = 2
    local_addrs = $me
    remote_addrs = $peer
    proposals = $ike
    local {
      auth = psk
      id = $host.example.net
    }
    remote {
      auth = psk
      id = $([[ $host == left ]] && echo right || echo left).example.net
    }
    children {
      $name {
        mode = transport
        esp_proposals = $esp
        local_ts = $me/32
        remote_ts = $peer/32
      }
    }
  }
}
secrets {
  ike-$name {
    id-1 = left.example.net
    id-2 = right.example.net
    secret = "interop fixture secret, not for production"
  }
}
CONF
}

run_scenario() {
  write_conf left "$1" "$2" "$3"
  write_conf right "$1" "$2" "$3"
  rm -f "$out/$1.pcap"
  ip netns exec left dumpcap -q -P -i eth0 -f "udp port 500 or udp port 4500" -w "$out/$1.pcap" 2>/dev/null &
  local capture=$!
  sleep 1
  uml_start_charon right "$work/right"
  uml_start_charon left "$work/left"
  uml_swanctl left "$work/left" --initiate --child "$1" --timeout 20
  if ! UML_WAIT_SECONDS=60 uml_wait_for sh -c "[ \$(ip -n left xfrm state | grep -c '^src') -ge 2 ]"; then
    echo "FAIL: $1: no CHILD_SA was installed" >&2
    show_daemon_output
    return 1
  fi
  ip netns exec left ping -c3 -i0.2 -W2 "$UML_RIGHT_V4" >/dev/null
  local packets
  packets=$(esp_packets left)
  echo "$1: ESP packets on left: $packets"
  ((packets >= 6)) || { echo "FAIL: $1 did not carry traffic" >&2; show_daemon_output; return 1; }
  sleep 0.5
  kill "$capture"; wait "$capture" 2>/dev/null || true
  uml_stop_charon "$work/left"
  uml_stop_charon "$work/right"
  cp "$work/left/charon.log" "$out/$1-left.log"
  cp "$work/right/charon.log" "$out/$1-right.log"
  ip -n left xfrm state flush; ip -n right xfrm state flush
  ip -n left xfrm policy flush; ip -n right xfrm policy flush
}

run_scenario psk-x25519-aesgcm256 aes256gcm16-prfsha256-x25519 aes256gcm16
run_scenario psk-ecp256-aescbc128 aes128-sha256-prfsha256-ecp256 aes128-sha256
chmod -R a+rX "$out"
echo "captures written to $out"
