#!/usr/bin/env bash
# btnsctl against two real btnsd hosts in user-mode-linux (config/examples/
# on-demand, NULL auth, trap SPD entries): initiate, list-sas on both sides
# (same SPIs, kernel byte counters after traffic), rekey (new SPIs, ping
# keeps working), terminate (the SAs leave the kernel), reload over RPC (a
# changed config applies; an invalid one is refused with FILE:LINE), events,
# and the admin gate (uid 65534 gets exit 4 until the admin group is granted).
#
# Output ends with "RESULT btnsctl-uml PASS|FAIL ...".
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  bin=${BTNS_BIN:-$root}
  for f in "$bin/daemon/btnsd" "$bin/tools/btnsctl/btnsctl"; do
    [[ -x $f ]] || { echo "$f not found (bazel build //daemon:btnsd //tools/btnsctl; set BTNS_BIN)" >&2; exit 2; }
  done
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-300}" "$(realpath "$0")" --inside \
    "$(realpath "$bin/daemon/btnsd")" "$(realpath "$bin/tools/btnsctl/btnsctl")" \
    "$(realpath "$root/tools/uml/lib.sh")" "$(realpath "$root/config/examples/on-demand")"
fi
btnsd=$2 btnsctl=$3
. "$4"
configs=$5
work=$TMPDIR/btnsctl
mkdir -p "$work"
chmod 755 "$work"  # uid 65534 must reach the API socket
# ... and run btnsctl, which bazel-bin (under /root) would hide from it.
cp "$btnsctl" "$work/btnsctl-copy"
chmod 755 "$work/btnsctl-copy"
why=""
say() { echo "== [$SECONDS s] $*"; }
bad() { why="$why $*;"; echo "FAILED: $*"; }
fail() {
  echo "RESULT btnsctl-uml FAIL $why $*"
  for f in "$work"/*.log; do say "$f"; tail -n 40 "$f"; done
  exit 1
}
ctl() { local host=$1; shift; ip netns exec "$host" "$btnsctl" --socket "$work/$host-api.sock" "$@"; }
# field FILE KEY: the first value of KEY in btnsctl's one-line JSON (a
# python start-up costs seconds in a loaded UML; grep does not).
field() {
  grep -o "\"$2\":\"\?[^,\"}]*" "$1" | head -1 | sed 's/.*:"\?//'
}
sa_count() { ip -n "$1" xfrm state | grep -c '^src' || true; }

uml_two_hosts
for host in left right; do
  # The socket's group is nogroup, so uid 65534 can connect and meet the
  # admin gate itself (SO_PEERCRED), not the socket's mode.
  sed -e "s|/run/btnsd/api.sock|$work/$host-api.sock\n  api_group: nogroup|" \
    "$configs/$host.yaml" > "$work/$host.yaml"
  ip netns exec "$host" "$btnsd" --config "$work/$host.yaml" > "$work/$host-btnsd.log" 2>&1 &
  echo $! > "$work/$host.pid"
  uml_wait_for grep -q 'event=api-listening' "$work/$host-btnsd.log" ||
    fail "btnsd in $host did not open its API"
done

say "version, list-conns, stats"
ctl left version || bad "version failed"
ctl left list-conns | tee "$work/conns.txt"
grep -q 'to-peer .*trap .*down' "$work/conns.txt" || bad "list-conns does not show to-peer as a trap, down"
[[ $(sa_count left) -eq 0 ]] || bad "SAs before initiate"

say "events follower on right, then initiate on left"
ctl right events --count 2 --json --timeout 30 > "$work/events.json" 2> "$work/events.err" &
events_pid=$!
uml_wait_for sh -c "[ -n \"\$(ip netns exec right $btnsctl --socket $work/right-api.sock stats --json | grep -o '\"api_event_followers\",\"value\":\"1\"')\" ]" ||
  bad "the events follower never registered"
ctl left initiate to-peer || bad "initiate failed"
UML_WAIT_SECONDS=30 uml_wait_for sh -c "[ \$(ip -n left xfrm state | grep -c '^src') -ge 2 ] && [ \$(ip -n right xfrm state | grep -c '^src') -ge 2 ]" ||
  fail "no CHILD_SA after initiate"
wait "$events_pid" || bad "events --count 2 failed: $(cat "$work/events.err")"
grep -q '"kind":"ike-sa-up"' "$work/events.json" || bad "no ike-sa-up event: $(cat "$work/events.json")"
grep -q '"kind":"child-sa-up"' "$work/events.json" || bad "no child-sa-up event"

say "traffic, then list-sas on both sides"
ip netns exec left ping -c 3 -i 0.2 -W 2 192.0.2.2 > /dev/null || bad "ping over the SA failed"
ctl left list-sas
ctl right list-sas
ctl left list-sas --json > "$work/left.json"
ctl right list-sas --json > "$work/right.json"
l_in=$(field "$work/left.json" inbound_spi)
l_out=$(field "$work/left.json" outbound_spi)
r_in=$(field "$work/right.json" inbound_spi)
r_out=$(field "$work/right.json" outbound_spi)
[[ $l_in == "$r_out" && $l_out == "$r_in" ]] || bad "SPIs do not match: left $l_in/$l_out right $r_in/$r_out"
grep -q "spi 0x$(printf %08x "$l_in")" <<<"$(ip -n left xfrm state)" || bad "left inbound SPI not in the kernel"
for host in left right; do
  [[ $(field "$work/$host.json" bytes_in) -gt 0 && $(field "$work/$host.json" bytes_out) -gt 0 ]] ||
    bad "$host byte counters are zero"
  [[ $(field "$work/$host.json" peer_id) == null ]] || bad "$host peer is not null"
  [[ $(field "$work/$host.json" auth_method) == null ]] || bad "$host auth is not null"
done
ike_id=$(grep -o '"ike_sas":\[{"id":"[0-9]*' "$work/left.json" | tr -dc 0-9)
child_id=$(grep -o '"children":\[{"id":"[0-9]*' "$work/left.json" | tr -dc 0-9)

say "rekey CHILD SA $child_id while pinging"
ip netns exec left ping -c 25 -i 0.2 -W 1 192.0.2.2 > "$work/ping.txt" 2>&1 &
ping_pid=$!
sleep 1
ctl left rekey --child "$child_id" || bad "rekey failed"
# Done when left lists exactly one CHILD SA and it is not the old one.
rekeyed() {
  local listing
  listing=$(ctl left list-sas --json) || return 1
  [[ $(grep -o '"inbound_spi":[0-9]*' <<<"$listing" | wc -l) -eq 1 ]] &&
    ! grep -q "\"inbound_spi\":$l_in," <<<"$listing"
}
UML_WAIT_SECONDS=15 uml_wait_for rekeyed ||
  bad "no single new CHILD SA after rekey"
wait "$ping_pid" || true
received=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$work/ping.txt")
echo "ping across the rekey: ${received:-0}/25 received"
((${received:-0} >= 23)) || bad "ping lost packets across the rekey: ${received:-0}/25"
ctl left list-sas --json > "$work/left2.json"
n_in=$(field "$work/left2.json" inbound_spi)
grep -q "spi 0x$(printf %08x "$n_in")" <<<"$(ip -n left xfrm state)" || bad "new SPI not in the kernel"
UML_WAIT_SECONDS=10 uml_wait_for sh -c "! ip -n left xfrm state | grep -q 'spi 0x$(printf %08x "$l_in")'" ||
  bad "old SPI still in the kernel after rekey"

say "terminate IKE SA $ike_id"
ctl left terminate 99999 && bad "terminate of an unknown SA succeeded"
ctl left terminate "$ike_id" || bad "terminate failed"
UML_WAIT_SECONDS=10 uml_wait_for sh -c "[ \$(ip -n left xfrm state | grep -c '^src') -eq 0 ] && [ \$(ip -n right xfrm state | grep -c '^src') -eq 0 ]" ||
  bad "SAs still in the kernel after terminate: $(ip -n left xfrm state | grep -c '^src') left"
[[ $(ctl left list-sas) == "no IKE SAs" ]] || bad "list-sas not empty after terminate"

say "admin gate: uid 65534 (nogroup) is not an admin"
rc=0
ip netns exec left setpriv --reuid=65534 --regid=65534 --clear-groups \
  "$work/btnsctl-copy" --socket "$work/left-api.sock" list-sas 2> "$work/nobody.err" || rc=$?
cat "$work/nobody.err"
((rc == 4)) || bad "non-admin uid got exit $rc, not 4"
grep -q 'run as root' "$work/nobody.err" || bad "no advice for the non-admin"

say "reload: an invalid config is refused with FILE:LINE"
cp "$work/left.yaml" "$work/left.good"
sed -i 's/peer: anyone/peer: nobody-here/' "$work/left.yaml"
rc=0
ctl left reload 2> "$work/reload.err" || rc=$?
cat "$work/reload.err"
((rc == 1)) || bad "invalid reload exit $rc, not 1"
grep -qE "$work/left.yaml:[0-9]+:[0-9]+: .*nobody-here" "$work/reload.err" || bad "no FILE:LINE:COL error"

say "reload: a changed config applies (admin group nogroup, one more SPD entry)"
cp "$work/left.good" "$work/left.yaml"
cat >> "$work/left.yaml" <<'YAML'
api:
  admin_group: nogroup
YAML
sed -i 's|^spd:|spd:\n  - name: ike-bypass\n    protocol: udp\n    local_ports: 500\n    action: bypass|' "$work/left.yaml"
ctl left reload || bad "valid reload failed"
ctl left list-spd | tee "$work/spd.txt"
grep -q '^ike-bypass ' "$work/spd.txt" || bad "reloaded SPD entry not listed"
rc=0
ip netns exec left setpriv --reuid=65534 --regid=65534 --clear-groups \
  "$work/btnsctl-copy" --socket "$work/left-api.sock" stats > /dev/null 2> "$work/nobody2.err" || rc=$?
((rc == 0)) || bad "admin-group member got exit $rc: $(cat "$work/nobody2.err")"
ctl left stats | grep -E '^(reloads|reloads_rejected|ike_sa_up|child_sa_rekeyed) ' || true
ctl left stats --json > "$work/stats.json"
grep -q '"name":"reloads_rejected","value":"1"' "$work/stats.json" ||
  bad "reloads_rejected is not 1"

for host in left right; do
  pid=$(cat "$work/$host.pid")
  kill -TERM "$pid"
  status=0
  wait "$pid" || status=$?
  ((status == 0)) || bad "btnsd in $host exited $status"
done
[[ -z $why ]] || fail
echo "RESULT btnsctl-uml PASS rekey_ping=$received/25"
