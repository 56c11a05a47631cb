#!/usr/bin/env bash
# The BTNS demo (tools/demo runs it), also a test: two hosts in
# user-mode-linux run btnsd from config/examples/on-demand/ (NULL
# authentication, a trap SPD entry, no SA at start). A TCP echo client on
# "left" connects to a server on "right": the kernel asks btnsd for an SA
# (ACQUIRE), btnsd negotiates it, and both applications ask their own btnsd,
# through the C library, who is at the other end. btnsctl list-sas shows the
# SA on both sides; the kernel's ESP counters prove the traffic used ESP.
#
# Output: numbered steps, each application's lines prefixed "[left client]" /
# "[right server]", then "RESULT apps-btns-on-demand PASS|FAIL ...".
# The host set-up is uml_apps_lib.sh's; APPS_WORK=DIR keeps the logs.
set -euo pipefail
. "$(dirname "$0")/uml_apps_lib.sh"

if [[ ${1:-} != --inside ]]; then
  apps_locate
  apps_require "$btnsd" "$bin/tools/btnsctl/btnsctl" "$bin/tests/apps/btns-echo-server" \
    "$bin/tests/apps/btns-echo-client"
  apps_boot_uml 200 APPS_WORK "$0" "$btnsd" "$bin/tests/apps/btns-echo-server" \
    "$bin/tests/apps/btns-echo-client" "$apps_root/config/examples/on-demand" \
    "$bin/tools/btnsctl/btnsctl"
fi
btnsd=$2 server=$3 client=$4 configs=$5 btnsctl=$6
apps_inside apps-btns-on-demand "${APPS_WORK:-$TMPDIR/apps}"
step=0
say() { step=$((step + 1)); printf '\n[%d] %s\n' "$step" "$*"; }
indent() { sed 's/^/    /'; }

say "Two hosts on one link: left 192.0.2.1, right 192.0.2.2 (network namespaces in UML)"
uml_two_hosts

say "Starting btnsd on both hosts from config/examples/on-demand/{left,right}.yaml"
for host in left right; do
  # Each host gets its own API socket (the namespaces share one filesystem).
  sed "s|/run/btnsd/api.sock|$work/$host-api.sock|" "$configs/$host.yaml" > "$work/$host.yaml"
done
apps_start_btnsd left:left right:right
for host in left right; do
  echo "    $host: btnsd $(sed -n 's/.*event=started //p' "$work/$host-btnsd.log" | head -1)"
done
ctl() { local host=$1; shift; ip netns exec "$host" "$btnsctl" --socket "$work/$host-api.sock" "$@"; }

say "No SA exists yet, only trap policies (ip xfrm state / ip xfrm policy):"
for host in left right; do
  states=$(ip -n "$host" xfrm state | grep -c '^src' || true)
  echo "    $host: $states ESP SAs; policies: $(ip -n "$host" xfrm policy | grep -c '^src' || true) (traps for SPD entry to-peer)"
  ((states == 0)) || apps_note "$host has $states SAs before any traffic"
done
[[ -z $apps_failures ]] || apps_finish

say "right: btns-echo-server listens on TCP 7777"
BTNS_API_SOCKET=$work/right-api.sock ip netns exec right "$server" 7777 > "$work/server.out" 2>&1 &
server_pid=$!
apps_wait_line "$work/server.out" '^listening:' || apps_abort "echo server did not listen"

say "left: btns-echo-client connects to 192.0.2.2:7777 -> the kernel's ACQUIRE -> IKE on demand"
before=$(esp_packets left)
t0=$(date +%s%N)
BTNS_API_SOCKET=$work/left-api.sock ip netns exec left "$client" 192.0.2.2 7777 "hello over BTNS" \
  > "$work/client.out" 2>&1 || true
t1=$(date +%s%N)
wait "$server_pid" || true
after=$(esp_packets left)
grep -m1 'event=kernel-acquire' "$work/left-btnsd.log" | sed 's/.*event=/    left btnsd: /' || true
grep -m1 'event=child-sa-up' "$work/left-btnsd.log" | sed 's/.*event=/    left btnsd: /' || true
echo "    connect + SA + echo took $(((t1 - t0) / 1000000)) ms"

say "What each application learnt from its btnsd about the peer (pToken / iToken):"
sed 's/^/    [left client]  /' "$work/client.out"
sed 's/^/    [right server] /' "$work/server.out"

for side in client server; do
  for line in 'latch: established' 'privacy: yes' 'integrity: yes' 'peer-auth: null' 'peer-id: null'; do
    grep -qx "$line" "$work/$side.out" || apps_note "$side lacks '$line'"
  done
done
grep -qx 'echo: hello over BTNS' "$work/client.out" || apps_note "no echo"

for host in left right; do
  say "btnsctl list-sas on $host"
  ctl "$host" list-sas 2>&1 | indent || apps_note "btnsctl list-sas failed on $host"
  ctl "$host" list-sas --json > "$work/$host-sas.json" 2>&1 || apps_note "list-sas --json failed on $host"
done

# Both sides name the same SA: left's inbound SPI is right's outbound, and
# the kernel counted bytes in both directions on both hosts.
field() {  # field FILE NAME: the first value of NAME in btnsctl's JSON
  grep -o "\"$2\":\"\?[0-9]*" "$1" | head -1 | tr -dc 0-9
}
check=ok
if [[ $(field "$work/left-sas.json" inbound_spi) != "$(field "$work/right-sas.json" outbound_spi)" ||
      $(field "$work/left-sas.json" outbound_spi) != "$(field "$work/right-sas.json" inbound_spi)" ]]; then
  check="SPIs differ between left and right"
fi
for host in left right; do
  [[ $(field "$work/$host-sas.json" bytes_in) -gt 0 && $(field "$work/$host-sas.json" bytes_out) -gt 0 ]] ||
    check="$check; $host byte counters are zero"
done
[[ $check == ok ]] || apps_note "list-sas: $check"

esp=$((after - before))
say "ESP proof: the kernel on left counted $esp ESP packets for this conversation"
ip -n left -s xfrm state | grep -E '^src|proto esp|lifetime current|bytes' | head -12 | indent
# SYN, SYN-ACK, ACK, the line, its echo and the FINs: at least 6 ESP packets.
((esp >= 6)) || apps_note "only $esp ESP packets"

# A clean stop closes the API endpoint too: both daemons must exit 0.
apps_stop_btnsd left right
echo
apps_finish "esp_packets=$esp inside_uml_seconds=$(apps_elapsed)"
