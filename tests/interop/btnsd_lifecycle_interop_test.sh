#!/usr/bin/env bash
# SA life cycle against real peers in a real kernel (user-mode-linux, one
# boot): liveness checks and rekeys while traffic flows. btnsd runs in host
# "left" (192.0.2.1); the peer in host "right" (192.0.2.2).
#
#   dpd-strongswan-killed    btnsd <-> strongSwan (PSK); charon is killed
#                            with SIGKILL; btnsd's liveness check (2 s, two
#                            retries) must give up and delete its SAs from
#                            the kernel (the SPD entry's holding policy
#                            stays); the time is measured
#   dpd-btnsd-killed         the same with btnsd as the killed peer (NULL auth)
#   rekey-by-btnsd           btnsd with a 10 s CHILD_SA and a 17 s IKE SA
#                            lifetime against strongSwan: at least two CHILD
#                            rekeys and one IKE rekey started by btnsd while
#                            a ping runs every 0.2 s (at most one loss), then
#                            exactly one SA pair per direction in each kernel
#   ike-rekey-by-strongswan  strongSwan rekeys the IKE SA (swanctl --rekey
#                            --ike) during a ping: no loss beyond one packet,
#                            the CHILD_SA keeps its SPIs, and a delete sent
#                            on the new IKE SA then empties btnsd's kernel
#
# usage: btnsd_lifecycle_interop_test.sh [dpd|rekey|all] (default all)
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  group=${1:-all}
  root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
  root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
  btnsd=${BTNSD:-$root/daemon/btnsd}
  [[ -x $btnsd ]] || btnsd=$root/bazel-bin/daemon/btnsd
  [[ -x $btnsd ]] || { echo "btnsd not found (bazel build //daemon:btnsd)" >&2; exit 2; }
  exec "$root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-840}" "$(realpath "$0")" --inside \
    "$(realpath "$btnsd")" "$(realpath "$root/tools/uml/lib.sh")" \
    "$(realpath "$root/tests/interop")" "$group"
fi
btnsd=$2
group=$5
. "$3"
interop=$4
configs=$interop/configs
work=$TMPDIR/lifecycle
mkdir -p "$work"
. "$interop/interop_lib.sh"

uml_two_hosts
ip netns exec left ping -c1 -W2 "$UML_RIGHT_V4" >/dev/null

# charon_psk DIR: strongSwan's side of psk-btnsd-left*.yaml (responder).
charon_psk() {
  local dir=$1
  uml_strongswan_conf "$dir"
  swanctl_psk_conf "$dir/swanctl/swanctl.conf"
  uml_start_charon right "$dir"
}

# btnsd_config DIR FILE: FILE from configs/ as DIR/btnsd.yaml, with the secrets.
btnsd_config() {
  cp "$configs/$2" "$1/btnsd.yaml"
  cp "$configs/interop.secrets" "$1/"
  chmod 600 "$1/interop.secrets"
}

show_logs() {
  local dir=$1 f
  for f in "$dir"/*.log; do echo "   == $f"; tail -n 25 "$f" | sed 's/^/     /'; done
}

# background_ping DIR: pings right every 0.2 s until stop_ping; output in DIR/ping.txt.
background_ping() {
  ip netns exec left ping -i 0.2 -W 1 "$UML_RIGHT_V4" > "$1/ping.txt" 2>&1 &
  echo $! > "$1/ping.pid"
}
# stop_ping DIR: stops the ping and prints "SENT LOST".
stop_ping() {
  local pid
  pid=$(cat "$1/ping.pid")
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  awk '/packets transmitted/ {print $1, $1 - $4}' "$1/ping.txt"
}

# elapsed_since START: seconds (one decimal) since START (date +%s.%N).
elapsed_since() { awk -v a="$(date +%s.%N)" -v b="$1" 'BEGIN {printf "%.1f", a - b}'; }

case_dpd_strongswan_killed() {
  local name=dpd-strongswan-killed dir=$work/dpd-strongswan-killed
  mkdir -p "$dir"
  btnsd_config "$dir" psk-btnsd-left-dpd.yaml
  local ok=1 why="" detect=""
  if ! charon_psk "$dir"; then ok=0; why="charon did not start"
  elif ! start_btnsd left "$dir/btnsd.yaml" "$dir/btnsd.log"; then ok=0; why="btnsd did not start"
  elif ! UML_WAIT_SECONDS=30 uml_wait_for both_have_sas; then ok=0; why="no CHILD_SA"
  elif [[ $(ping_replies left "$UML_RIGHT_V4" 3) != 3 ]]; then ok=0; why="ping failed before the kill"
  else
    local killed_at
    killed_at=$(date +%s.%N)
    uml_stop_charon "$dir" KILL
    if UML_WAIT_SECONDS=30 uml_wait_for no_sas left; then
      detect=$(elapsed_since "$killed_at")
      grep -q 'event=ike-sa-down.*reason=dead-peer' "$dir/btnsd.log" ||
        { ok=0; why="no ike-sa-down with reason=dead-peer logged"; }
      (( $(child_policy_count left) == 0 )) || { ok=0; why="$why $(child_policy_count left) CHILD_SA policies left"; }
      # btnsd still runs: the entry's holding policies (out, in) are back in their place.
      (( $(holding_policy_count left) == 2 )) || { ok=0; why="$why $(holding_policy_count left) holding policies (2 expected)"; }
    else
      ok=0; why="btnsd still holds $(sa_count left) SAs 30 s after the kill"
    fi
  fi
  if ((ok)); then
    result $name PASS "sas_deleted_after_s=$detect (dpd_interval=2s, retries 1s+2s+2s) left_sas=0"
  else
    result $name FAIL "$why"; show_logs "$dir"
  fi
  stop_btnsd left || true
  uml_stop_charon "$dir"
  flush_all
}

case_dpd_btnsd_killed() {
  local name=dpd-btnsd-killed dir=$work/dpd-btnsd-killed
  mkdir -p "$dir"
  sed '/^  log_level:/a\  dpd_interval: 2s\n  retransmit: {initial: 1s, max: 2s, tries: 2}' \
    "$configs/btns-null-left.yaml" > "$dir/left.yaml"
  cp "$configs/btns-null-right.yaml" "$dir/right.yaml"
  local ok=1 why="" detect=""
  if ! start_btnsd right "$dir/right.yaml" "$dir/right-btnsd.log" ||
     ! start_btnsd left "$dir/left.yaml" "$dir/btnsd.log"; then ok=0; why="btnsd did not start"
  elif ! UML_WAIT_SECONDS=30 uml_wait_for both_have_sas; then ok=0; why="no CHILD_SA"
  elif [[ $(ping_replies left "$UML_RIGHT_V4" 3) != 3 ]]; then ok=0; why="ping failed before the kill"
  else
    local killed_at
    killed_at=$(date +%s.%N)
    stop_btnsd right KILL || true
    if UML_WAIT_SECONDS=30 uml_wait_for no_sas left; then
      detect=$(elapsed_since "$killed_at")
      grep -q 'event=ike-sa-down.*reason=dead-peer' "$dir/btnsd.log" ||
        { ok=0; why="no ike-sa-down with reason=dead-peer logged"; }
    else
      ok=0; why="left btnsd still holds $(sa_count left) SAs 30 s after the kill"
    fi
  fi
  if ((ok)); then
    result $name PASS "sas_deleted_after_s=$detect left_sas=0"
  else
    result $name FAIL "$why"; show_logs "$dir"
  fi
  stop_btnsd left || true
  stop_btnsd right KILL || true
  flush_all
}

child_rekeys() { grep -c 'event=child-sa-up.*replaces=[1-9]' "$1" || true; }
ike_rekeys() { grep -c 'IKE SA rekeyed' "$1" || true; }

case_rekey_by_btnsd() {
  local name=rekey-by-btnsd dir=$work/rekey-by-btnsd
  mkdir -p "$dir"
  btnsd_config "$dir" psk-btnsd-left-rekey.yaml
  local ok=1 why="" sent=0 lost=0 spis_before="" spis_after=""
  if ! charon_psk "$dir"; then ok=0; why="charon did not start"
  elif ! start_btnsd left "$dir/btnsd.yaml" "$dir/btnsd.log"; then ok=0; why="btnsd did not start"
  elif ! UML_WAIT_SECONDS=30 uml_wait_for both_have_sas; then ok=0; why="no CHILD_SA"
  else
    spis_before=$(spis left)
    background_ping "$dir"
    # Two CHILD rekeys (~10 s apart) and one IKE rekey (~17 s).
    UML_WAIT_SECONDS=45 uml_wait_for sh -c "
      [ \$(grep -c 'event=child-sa-up.*replaces=[1-9]' '$dir/btnsd.log') -ge 2 ] &&
      [ \$(grep -c 'IKE SA rekeyed' '$dir/btnsd.log') -ge 1 ]" ||
      { ok=0; why="rekeys missing (child $(child_rekeys "$dir/btnsd.log"), ike $(ike_rekeys "$dir/btnsd.log"))"; }
    sleep 2
    local tally
    tally=$(stop_ping "$dir")
    sent=${tally% *} lost=${tally#* }
    ((sent >= 20 && lost <= 1)) || { ok=0; why="$why ping lost $lost of $sent"; }
    # The old SAs are deleted: exactly one pair per direction remains.
    UML_WAIT_SECONDS=10 uml_wait_for sh -c "[ \$(ip -n left xfrm state | grep -c '^src') -eq 2 ] && [ \$(ip -n right xfrm state | grep -c '^src') -eq 2 ]" ||
      { ok=0; why="$why SAs after the rekeys: left $(sa_count left), right $(sa_count right)"; }
    spis_after=$(spis left)
    [[ $spis_after != "$spis_before" ]] || { ok=0; why="$why SPIs unchanged"; }
    [[ $(ping_replies left "$UML_RIGHT_V4" 3) == 3 ]] || { ok=0; why="$why ping after the rekeys failed"; }
    grep -q 'IKE_SA to-left\[[0-9]*\] rekeyed\|rekeyed IKE_SA\|IKE_SA .* rekey' "$dir/charon.log" ||
      { ok=0; why="$why strongSwan logged no IKE rekey"; }
  fi
  if ((ok)); then
    result $name PASS "child_rekeys=$(child_rekeys "$dir/btnsd.log") ike_rekeys=$(ike_rekeys "$dir/btnsd.log") ping_lost=$lost/$sent sas_left=$(sa_count left) sas_right=$(sa_count right)"
  else
    result $name FAIL "$why"; show_logs "$dir"
  fi
  stop_btnsd left || true
  uml_stop_charon "$dir"
  flush_all
}

case_ike_rekey_by_strongswan() {
  local name=ike-rekey-by-strongswan dir=$work/ike-rekey-by-strongswan
  mkdir -p "$dir"
  btnsd_config "$dir" psk-btnsd-left.yaml
  local ok=1 why="" sent=0 lost=0 spis_before=""
  if ! charon_psk "$dir"; then ok=0; why="charon did not start"
  elif ! start_btnsd left "$dir/btnsd.yaml" "$dir/btnsd.log"; then ok=0; why="btnsd did not start"
  elif ! UML_WAIT_SECONDS=30 uml_wait_for both_have_sas; then ok=0; why="no CHILD_SA"
  else
    spis_before=$(spis left)
    background_ping "$dir"
    sleep 1
    uml_swanctl right "$dir" --rekey --ike to-left || true
    UML_WAIT_SECONDS=15 uml_wait_for grep -q 'IKE SA rekeyed' "$dir/btnsd.log" ||
      { ok=0; why="btnsd logged no IKE rekey"; }
    sleep 2
    local tally
    tally=$(stop_ping "$dir")
    sent=${tally% *} lost=${tally#* }
    ((sent >= 5 && lost <= 1)) || { ok=0; why="$why ping lost $lost of $sent"; }
    [[ $(spis left) == "$spis_before" ]] || { ok=0; why="$why CHILD_SA SPIs changed: $spis_before -> $(spis left)"; }
    # The new IKE SA works: strongSwan's delete on it reaches btnsd.
    uml_swanctl right "$dir" --terminate --ike to-left --timeout 10 || true
    UML_WAIT_SECONDS=10 uml_wait_for no_sas left ||
      { ok=0; why="$why delete on the rekeyed IKE SA left $(sa_count left) SAs"; }
  fi
  if ((ok)); then
    result $name PASS "ping_lost=$lost/$sent child_spis_kept=[$spis_before] left_sas_after_delete=0"
  else
    result $name FAIL "$why"; show_logs "$dir"
  fi
  stop_btnsd left || true
  uml_stop_charon "$dir"
  flush_all
}

if [[ $group == dpd || $group == all ]]; then
  case_dpd_strongswan_killed
  case_dpd_btnsd_killed
fi
if [[ $group == rekey || $group == all ]]; then
  case_rekey_by_btnsd
  case_ike_rekey_by_strongswan
fi
print_matrix "SA life cycle ($group): liveness and rekey"
