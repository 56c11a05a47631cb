#!/usr/bin/env bash
# btnsd <-> btnsd in a real kernel (user-mode-linux, one boot): traffic an
# SPD PROTECT entry selects never leaves in the clear (RFC 4301 section 5.1),
# whatever the entry's start action, while no CHILD_SA covers it. Host
# "left" 192.0.2.1 / 2001:db8::1, host "right" 192.0.2.2 / 2001:db8::2,
# PSK, transport mode. Each host counts what arrives (iptables-legacy INPUT:
# ICMP that came without IPsec, ESP, IKE on UDP 500; for IPv6 the kernel's
# Icmp6InEchos, as no IPsec exists there in that case).
#
#   start-failed-held    left has start: start but the wrong PSK: the
#                        negotiation fails, left's pings to right get no
#                        answer, right sees 0 clear ICMP and 0 ESP; left's
#                        ACQUIRE made it try again (a start entry
#                        initiates on ACQUIRE), and failed again
#   none-silent-held     only right runs btnsd, start: none, IPv4 and IPv6
#                        entries; right's pings are held: left sees no
#                        clear ICMP (v4 and v6) and no IKE (start: none
#                        never initiates, right logs the held ACQUIRE);
#                        left (no IPsec at all) pings right in the clear,
#                        IPv4 and IPv6: right answers none, its inbound
#                        holding policies drop them (RFC 4301 section 5.2;
#                        XfrmInTmplMismatch grows by the echo requests)
#   up-esp               left (start: start, right PSK) brings the
#                        CHILD_SA up: pings answered through ESP only
#   deleted-held         right deletes the IKE SA (btnsctl terminate):
#                        both kernels are back to their holding policies
#                        only (out and in per entry); right's pings get no answer and left sees
#                        no clear ICMP
#   start-reinitiates    left pings right: the ACQUIRE makes left (start)
#                        negotiate again; pings are answered through ESP;
#                        SIGTERM leaves no SA and no policy on either host
#                        (the kernel's larval ACQUIRE states expire alone)
#
# Every case prints "RESULT <name> PASS|FAIL ..."; the logs of failing
# cases are shown.
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  btnsd=${BTNSD:-$root/daemon/btnsd}
  [[ -x $btnsd ]] || btnsd=$root/bazel-bin/daemon/btnsd
  [[ -x $btnsd ]] || { echo "btnsd not found (bazel build //daemon:btnsd)" >&2; exit 2; }
  btnsctl=${BTNSCTL:-$root/tools/btnsctl/btnsctl}
  [[ -x $btnsctl ]] || btnsctl=$root/bazel-bin/tools/btnsctl/btnsctl
  [[ -x $btnsctl ]] || { echo "btnsctl not found (bazel build //tools/btnsctl)" >&2; exit 2; }
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-300}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$root/tools/uml/lib.sh")" \
    "$(realpath "$root/tests/interop/interop_lib.sh")" "$(realpath "$btnsctl")"
fi
btnsd=$2
. "$3"
. "$4"
btnsctl=$5

trap 'echo "line $LINENO: $BASH_COMMAND failed" >&2' ERR
work=$TMPDIR/spd-hold
mkdir -p "$work"
uml_two_hosts
ip netns exec left ping -c1 -W2 "$UML_RIGHT_V4" > /dev/null
ip netns exec left ping -6 -c1 -W2 "$UML_RIGHT_V6" > /dev/null

show_logs() {
  local f
  for f in "$work"/*.log; do echo "== $f"; tail -n 30 "$f"; done
  for f in left right; do echo "== $f policies"; ip -n $f xfrm policy; done
}

# Counters of what reaches each host: 1 ICMP without IPsec, 2 ESP, 3 IKE.
for ns in left right; do
  ipt="ip netns exec $ns iptables-legacy -w"
  $ipt -A INPUT -p icmp -m policy --dir in --pol none
  $ipt -A INPUT -p esp
  $ipt -A INPUT -p udp --dport 500
done
# counter HOST RULE: packets counted by rule RULE (1 clear ICMP, 2 ESP, 3 IKE).
counter() {
  ip netns exec "$1" iptables-legacy -w -nvx -L INPUT | awk -v n=$(($2 + 2)) 'NR == n {print $1}'
}
zero_counters() { local ns; for ns in left right; do ip netns exec $ns iptables-legacy -w -Z INPUT; done; }
# keyed_sa_count HOST: ESP SAs other than the kernel's larval ACQUIRE states
# (SPI 0, no keys). Those stay after btnsd stops until the kernel expires
# them (net.core.xfrm_acq_expires, 30 s): XFRM_MSG_DELSA finds ESP SAs by
# SPI only, so no owner can delete one.
keyed_sa_count() { ip -n "$1" xfrm state | awk '/proto esp spi/ && $4 != "0x00000000"' | wc -l; }
# (0 without CONFIG_XFRM_STATISTICS, which fails the check that reads it)
xfrm_in_tmpl_mismatch() { ip netns exec "$1" awk '$1 == "XfrmInTmplMismatch" {print $2}' /proc/net/xfrm_stat 2>/dev/null || echo 0; }
icmp6_in_echos() { ip netns exec "$1" awk '$1 == "Icmp6InEchos" {print $2}' /proc/net/snmp6; }

cat > "$work/good.secrets" <<'EOF'
left-right: "spd hold test secret"
EOF
cat > "$work/wrong.secrets" <<'EOF'
left-right: "not the secret right knows"
EOF
chmod 600 "$work"/*.secrets

# config HOST SECRETS START: btnsd.yaml for HOST with one IPv4 PROTECT
# entry to the other host (and an IPv6 one with start: none on right).
config() {
  local host=$1 secrets=$2 start=$3 me peer me6 peer6
  if [[ $host == left ]]; then
    me=$UML_LEFT_V4 peer=$UML_RIGHT_V4 me6=$UML_LEFT_V6 peer6=$UML_RIGHT_V6
  else
    me=$UML_RIGHT_V4 peer=$UML_LEFT_V4 me6=$UML_RIGHT_V6 peer6=$UML_LEFT_V6
  fi
  local other=$([[ $host == left ]] && echo right || echo left)
  cat <<EOF
daemon:
  listen: [$me]
  log_level: debug
  api_socket: $work/$host-api.sock
secrets: $work/$secrets
identities:
  me:
    id: fqdn:$host.example.net
    psk: left-right
pad:
  - name: peer
    peer: fqdn:$other.example.net
    auth: psk
    psk: left-right
    remote_ts: [$peer, $peer6]
spd:
  - name: v4
    local: $me
    remote: $peer
    action: protect
    peer: peer
    mode: transport
    start: $start
EOF
  [[ $host == right ]] && cat <<EOF
  - name: v6
    local: $me6
    remote: $peer6
    action: protect
    peer: peer
    mode: transport
    start: none
EOF
  return 0
}
ctl() { local host=$1; shift; ip netns exec "$host" "$btnsctl" --socket "$work/$host-api.sock" "$@"; }
ike_downs() { grep -c 'event=ike-sa-down' "$1" || true; }

# ---------------------------------------------------------------- case 1
name=start-failed-held
config left wrong.secrets start > "$work/left-wrong.yaml"
config right good.secrets none > "$work/right.yaml"
ok=1 why=""
start_btnsd right "$work/right.yaml" "$work/right-1.log" || { ok=0; why="right did not start"; }
start_btnsd left "$work/left-wrong.yaml" "$work/left-1.log" || { ok=0; why="$why left did not start"; }
UML_WAIT_SECONDS=20 uml_wait_for grep -q 'event=ike-sa-down' "$work/left-1.log" ||
  { ok=0; why="$why left's negotiation did not end"; }
no_sas left && no_sas right || { ok=0; why="$why an SA exists (left $(sa_count left), right $(sa_count right))"; }
zero_counters
replies=$(ping_replies left "$UML_RIGHT_V4" 3 || true)
[[ $replies == 0 ]] || { ok=0; why="$why $replies ping replies"; }
clear_icmp=$(counter right 1) esp=$(counter right 2)
((clear_icmp == 0)) || { ok=0; why="$why right saw $clear_icmp clear ICMP packets"; }
((esp == 0)) || { ok=0; why="$why right saw $esp ESP packets"; }
grep -q 'event=kernel-acquire' "$work/left-1.log" || { ok=0; why="$why left logged no ACQUIRE"; }
UML_WAIT_SECONDS=10 uml_wait_for sh -c "[ \$(grep -c 'event=ike-sa-down' '$work/left-1.log') -ge 2 ]" ||
  { ok=0; why="$why left did not try again on ACQUIRE"; }
if ((ok)); then
  result $name PASS "ping_replies=0 right_clear_icmp=0 right_esp=0 left_attempts=$(ike_downs "$work/left-1.log") reason=$(grep -o 'event=ike-sa-down.*reason=[a-z-]*' "$work/left-1.log" | head -1 | sed 's/.*reason=//')"
else
  result $name FAIL "$why"; show_logs
fi
stop_btnsd left || true
stop_btnsd right || true

# ---------------------------------------------------------------- case 2
name=none-silent-held
ok=1 why=""
start_btnsd right "$work/right.yaml" "$work/right-2.log" || { ok=0; why="right did not start"; }
zero_counters
echos6_before=$(icmp6_in_echos left)
replies=$(ping_replies right "$UML_LEFT_V4" 3 || true)
[[ $replies == 0 ]] || { ok=0; why="$why $replies IPv4 ping replies"; }
replies6=$(ip netns exec right ping -6 -c3 -i0.2 -W2 "$UML_LEFT_V6" 2>/dev/null | awk '/packets transmitted/ {print $4}' || true)
[[ $replies6 == 0 ]] || { ok=0; why="$why $replies6 IPv6 ping replies"; }
clear_icmp=$(counter left 1) ike=$(counter left 3)
echos6=$(( $(icmp6_in_echos left) - echos6_before ))
((clear_icmp == 0)) || { ok=0; why="$why left saw $clear_icmp clear ICMP packets"; }
((echos6 == 0)) || { ok=0; why="$why left saw $echos6 IPv6 echo requests"; }
((ike == 0)) || { ok=0; why="$why right sent $ike IKE packets (start: none must not initiate)"; }
held=$(grep -c "held: SPD entry .* start: none" "$work/right-2.log" || true)
((held >= 2)) || { ok=0; why="$why right logged $held held ACQUIREs (v4 and v6 expected)"; }
# Inbound: left has no policy and sends its echo requests in the clear.
mismatch_before=$(xfrm_in_tmpl_mismatch right)
echos6_before=$(icmp6_in_echos right)
in_replies=$(ping_replies left "$UML_RIGHT_V4" 3 || true)
[[ $in_replies == 0 ]] || { ok=0; why="$why right answered $in_replies clear IPv4 pings"; }
in_replies6=$(ip netns exec left ping -6 -c3 -i0.2 -W2 "$UML_RIGHT_V6" 2>/dev/null | awk '/packets transmitted/ {print $4}' || true)
[[ $in_replies6 == 0 ]] || { ok=0; why="$why right answered $in_replies6 clear IPv6 pings"; }
dropped=$(( $(xfrm_in_tmpl_mismatch right) - mismatch_before ))
((dropped >= 6)) || { ok=0; why="$why right's XfrmInTmplMismatch grew by $dropped (6 clear echo requests sent)"; }
echos6=$(( $(icmp6_in_echos right) - echos6_before ))
((echos6 == 0)) || { ok=0; why="$why right's ICMPv6 took $echos6 clear echo requests"; }
if ((ok)); then
  result $name PASS "ping_replies_v4=0 ping_replies_v6=0 left_clear_icmp=0 left_icmp6_echos=0 left_ike_in=0 held_acquires=$held clear_in_replies_v4=0 clear_in_replies_v6=0 right_in_tmpl_mismatch=+$dropped"
else
  result $name FAIL "$why"; show_logs
fi

# ---------------------------------------------------------------- case 3
name=up-esp
config left good.secrets start > "$work/left.yaml"
ok=1 why=""
# right's held ACQUIREs left larval states behind: start afresh.
stop_btnsd right || true
start_btnsd right "$work/right.yaml" "$work/right-3.log" || { ok=0; why="right did not start"; }
start_btnsd left "$work/left.yaml" "$work/left-3.log" || { ok=0; why="$why left did not start"; }
UML_WAIT_SECONDS=20 uml_wait_for both_have_sas || { ok=0; why="$why no CHILD_SA"; }
zero_counters
replies=$(ping_replies left "$UML_RIGHT_V4" 3 || true)
[[ $replies == 3 ]] || { ok=0; why="$why $replies of 3 ping replies"; }
esp=$(counter right 2) clear_icmp=$(counter right 1)
((esp >= 3)) || { ok=0; why="$why right saw $esp ESP packets"; }
((clear_icmp == 0)) || { ok=0; why="$why right saw $clear_icmp clear ICMP packets"; }
if ((ok)); then
  result $name PASS "ping_replies=3 right_esp=$esp right_clear_icmp=0 left_child_policies=$(child_policy_count left)"
else
  result $name FAIL "$why"; show_logs
fi

# ---------------------------------------------------------------- case 4
name=deleted-held
ok=1 why=""
ike_id=$(ctl right list-sas | awk '/^IKE SA #/ {sub("#", "", $3); print $3; exit}' || true)
if [[ -z $ike_id ]]; then
  ok=0; why="right lists no IKE SA"
else
  ctl right terminate "$ike_id" > /dev/null || { ok=0; why="terminate $ike_id refused"; }
fi
# Larval states of earlier held ACQUIREs may still be waiting to expire.
no_keyed_sas() { (( $(keyed_sa_count left) == 0 && $(keyed_sa_count right) == 0 )); }
UML_WAIT_SECONDS=10 uml_wait_for no_keyed_sas ||
  { ok=0; why="$why SAs left after the delete (left $(keyed_sa_count left), right $(keyed_sa_count right))"; }
for ns in left right; do
  (( $(child_policy_count $ns) == 0 )) || { ok=0; why="$why $ns kept $(child_policy_count $ns) CHILD_SA policies"; }
done
(( $(holding_policy_count left) == 2 )) || { ok=0; why="$why left has $(holding_policy_count left) holding policies (2 expected: out, in)"; }
(( $(holding_policy_count right) == 4 )) || { ok=0; why="$why right has $(holding_policy_count right) holding policies (4 expected: v4 and v6, out and in)"; }
zero_counters
replies=$(ping_replies right "$UML_LEFT_V4" 3 || true)
[[ $replies == 0 ]] || { ok=0; why="$why $replies ping replies"; }
clear_icmp=$(counter left 1) esp=$(counter left 2)
((clear_icmp == 0)) || { ok=0; why="$why left saw $clear_icmp clear ICMP packets"; }
((esp == 0)) || { ok=0; why="$why left saw $esp ESP packets"; }
if ((ok)); then
  result $name PASS "ping_replies=0 left_clear_icmp=0 left_esp=0 holding_policies=left:2,right:4"
else
  result $name FAIL "$why"; show_logs
fi

# ---------------------------------------------------------------- case 5
name=start-reinitiates
ok=1 why=""
# While a larval state of an earlier held ACQUIRE for the same flow lives
# (case 1's), the kernel sends no new ACQUIRE: wait for it to expire.
no_larval_left() { (( $(sa_count left) == $(keyed_sa_count left) )); }
UML_WAIT_SECONDS=35 uml_wait_for no_larval_left || { ok=0; why="left's larval states did not expire"; }
both_have_keyed_sas() { (( $(keyed_sa_count left) >= 2 && $(keyed_sa_count right) >= 2 )); }
zero_counters
# The first echo requests wait (and are dropped) while left negotiates.
ip netns exec left ping -c1 -W1 "$UML_RIGHT_V4" > /dev/null 2>&1 || true
UML_WAIT_SECONDS=20 uml_wait_for both_have_keyed_sas || { ok=0; why="$why no CHILD_SA after the ACQUIRE"; }
replies=$(ping_replies left "$UML_RIGHT_V4" 3 || true)
[[ $replies == 3 ]] || { ok=0; why="$why $replies of 3 ping replies"; }
esp=$(counter right 2) clear_icmp=$(counter right 1)
((esp >= 3)) || { ok=0; why="$why right saw $esp ESP packets"; }
((clear_icmp == 0)) || { ok=0; why="$why right saw $clear_icmp clear ICMP packets"; }
exit_left=0 exit_right=0
stop_btnsd left || exit_left=$?
stop_btnsd right || exit_right=$?
((exit_left == 0 && exit_right == 0)) || { ok=0; why="$why exit status $exit_left/$exit_right"; }
for ns in left right; do
  (( $(keyed_sa_count $ns) == 0 && $(sa_policy_count $ns) == 0 )) ||
    { ok=0; why="$why $ns kept $(keyed_sa_count $ns) SAs and $(sa_policy_count $ns) policies after SIGTERM: $(ip -n $ns xfrm state)"; }
done
larval="left:$(( $(sa_count left) - $(keyed_sa_count left) )),right:$(( $(sa_count right) - $(keyed_sa_count right) ))"
if ((ok)); then
  result $name PASS "ping_replies=3 right_esp=$esp right_clear_icmp=0 after_sigterm=no SA, no policy (larval ACQUIRE states $larval)"
else
  result $name FAIL "$why"; show_logs
fi

print_matrix "SPD PROTECT traffic is held back without a CHILD_SA (btnsd <-> btnsd)"
