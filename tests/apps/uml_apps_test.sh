#!/usr/bin/env bash
# Two btnsd hosts in user-mode-linux negotiate a NULL-authenticated (BTNS)
# CHILD_SA; a TCP echo client on "left" and server on "right" ask their own
# btnsd, through the C library, who is at the other end, and print it. The
# kernel's ESP counters show that the conversation really went through ESP.
#
# Output: each application's lines prefixed "[left client]" / "[right server]",
# then "RESULT apps-btns-null PASS|FAIL ..." with the ESP packet count.
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  bin=${BTNS_BIN:-$root}
  btnsd=$bin/daemon/btnsd
  [[ -x $btnsd ]] || { echo "btnsd not found at $btnsd (bazel build //daemon:btnsd //tests/apps/...; set BTNS_BIN to bazel-bin)" >&2; exit 2; }
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-200}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$bin/tests/apps/btns-echo-server")" \
    "$(realpath "$bin/tests/apps/btns-echo-client")" \
    "$(realpath "$root/tools/uml/lib.sh")" "$(realpath "$root/tests/interop/configs")"
fi
btnsd=$2 server=$3 client=$4
. "$5"
configs=$6
work=$TMPDIR/apps
mkdir -p "$work"

uml_two_hosts

# The interop NULL-auth configs, each host with its own API endpoint.
for host in left right; do
  sed "s|^  log_level: debug|  log_level: info\n  api_socket: $work/$host-api.sock|" \
    "$configs/btns-null-$host.yaml" > "$work/$host.yaml"
  ip netns exec "$host" "$btnsd" --config "$work/$host.yaml" > "$work/$host-btnsd.log" 2>&1 &
  echo $! > "$work/$host.pid"
  uml_wait_for grep -q 'event=api-listening' "$work/$host-btnsd.log" ||
    { echo "btnsd in $host did not open its API"; cat "$work/$host-btnsd.log"; exit 1; }
done

fail() {
  echo "RESULT apps-btns-null FAIL $*"
  for f in "$work"/*.log; do echo "== $f"; tail -n 30 "$f"; done
  exit 1
}

echo "waiting for the NULL-auth CHILD_SA (left starts it)..."
UML_WAIT_SECONDS=30 uml_wait_for sh -c \
  "[ \$(ip -n left xfrm state | grep -c '^src') -ge 2 ] && [ \$(ip -n right xfrm state | grep -c '^src') -ge 2 ]" ||
  fail "no CHILD_SA in the kernel"
echo "CHILD_SA up: $(grep -m1 'event=child-sa-up' "$work/left-btnsd.log" | sed 's/.*event=//')"

before=$(esp_packets left)
BTNS_API_SOCKET=$work/right-api.sock ip netns exec right "$server" 7777 > "$work/server.out" 2>&1 &
server_pid=$!
uml_wait_for grep -q '^listening:' "$work/server.out" || fail "echo server did not listen"
BTNS_API_SOCKET=$work/left-api.sock ip netns exec left "$client" 192.0.2.2 7777 "hello over BTNS" \
  > "$work/client.out" 2>&1 || true
wait "$server_pid" || true
after=$(esp_packets left)

sed 's/^/[left client]  /' "$work/client.out"
sed 's/^/[right server] /' "$work/server.out"

why=""
for side in client server; do
  for line in 'latch: established' 'privacy: yes' 'integrity: yes' 'peer-auth: null' 'peer-id: null'; do
    grep -qx "$line" "$work/$side.out" || why="$why $side lacks '$line';"
  done
done
grep -qx 'echo: hello over BTNS' "$work/client.out" || why="$why no echo;"
esp=$((after - before))
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
echo "RESULT apps-btns-null PASS esp_packets=$esp"
