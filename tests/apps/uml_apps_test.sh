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
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  bin=${BTNS_BIN:-$root}
  btnsd=$bin/daemon/btnsd
  for f in "$btnsd" "$bin/tools/btnsctl/btnsctl" "$bin/tests/apps/btns-echo-server"; do
    [[ -x $f ]] || { echo "$f not found (bazel build //daemon:btnsd //tools/btnsctl //tests/apps/...; set BTNS_BIN to bazel-bin)" >&2; exit 2; }
  done
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-200}" ${UML_FOLLOW:+--follow} "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$bin/tests/apps/btns-echo-server")" \
    "$(realpath "$bin/tests/apps/btns-echo-client")" \
    "$(realpath "$root/tools/uml/lib.sh")" "$(realpath "$root/config/examples/on-demand")" \
    "$(realpath "$bin/tools/btnsctl/btnsctl")"
fi
btnsd=$2 server=$3 client=$4
. "$5"
configs=$6 btnsctl=$7
work=$TMPDIR/apps
mkdir -p "$work"
step=0
say() { step=$((step + 1)); printf '\n[%d] %s\n' "$step" "$*"; }
indent() { sed 's/^/    /'; }
started=$SECONDS

fail() {
  echo "RESULT apps-btns-on-demand FAIL $*"
  for f in "$work"/*.log; do echo "== $f"; tail -n 30 "$f"; done
  exit 1
}

say "Two hosts on one link: left 192.0.2.1, right 192.0.2.2 (network namespaces in UML)"
uml_two_hosts

say "Starting btnsd on both hosts from config/examples/on-demand/{left,right}.yaml"
for host in left right; do
  # Each host gets its own API socket (the namespaces share one filesystem).
  sed "s|/run/btnsd/api.sock|$work/$host-api.sock|" "$configs/$host.yaml" > "$work/$host.yaml"
  ip netns exec "$host" "$btnsd" --config "$work/$host.yaml" > "$work/$host-btnsd.log" 2>&1 &
  echo $! > "$work/$host.pid"
  uml_wait_for grep -q 'event=api-listening' "$work/$host-btnsd.log" ||
    fail "btnsd in $host did not open its API"
  echo "    $host: btnsd $(sed -n 's/.*event=started //p' "$work/$host-btnsd.log" | head -1)"
done
ctl() { local host=$1; shift; ip netns exec "$host" "$btnsd_ctl" --socket "$work/$host-api.sock" "$@"; }
btnsd_ctl=$btnsctl

say "No SA exists yet, only trap policies (ip xfrm state / ip xfrm policy):"
why=""
for host in left right; do
  states=$(ip -n "$host" xfrm state | grep -c '^src' || true)
  echo "    $host: $states ESP SAs; policies: $(ip -n "$host" xfrm policy | grep -c '^src' || true) (traps for SPD entry to-peer)"
  ((states == 0)) || why="$why $host has $states SAs before any traffic;"
done
[[ -z $why ]] || fail "$why"

say "right: btns-echo-server listens on TCP 7777"
BTNS_API_SOCKET=$work/right-api.sock ip netns exec right "$server" 7777 > "$work/server.out" 2>&1 &
server_pid=$!
uml_wait_for grep -q '^listening:' "$work/server.out" || fail "echo server did not listen"

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
    grep -qx "$line" "$work/$side.out" || why="$why $side lacks '$line';"
  done
done
grep -qx 'echo: hello over BTNS' "$work/client.out" || why="$why no echo;"

for host in left right; do
  say "btnsctl list-sas on $host"
  ctl "$host" list-sas 2>&1 | indent || why="$why btnsctl list-sas failed on $host;"
  ctl "$host" list-sas --json > "$work/$host-sas.json" 2>&1 || why="$why list-sas --json failed on $host;"
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
[[ $check == ok ]] || why="$why list-sas: $check;"

esp=$((after - before))
say "ESP proof: the kernel on left counted $esp ESP packets for this conversation"
ip -n left -s xfrm state | grep -E '^src|proto esp|lifetime current|bytes' | head -12 | indent
# SYN, SYN-ACK, ACK, the line, its echo and the FINs: at least 6 ESP packets.
((esp >= 6)) || why="$why only $esp ESP packets;"

# A clean stop closes the API endpoint too: both daemons must exit 0.
for host in left right; do
  pid=$(cat "$work/$host.pid")
  kill -TERM "$pid"
  status=0
  wait "$pid" || status=$?
  ((status == 0)) || why="$why btnsd in $host exited $status;"
done
[[ -z $why ]] || fail "$why esp_packets=$esp"
echo
echo "RESULT apps-btns-on-demand PASS esp_packets=$esp inside_uml_seconds=$((SECONDS - started))"
