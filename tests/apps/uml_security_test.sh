#!/usr/bin/env bash
# Configured identities per socket, the end of a socket's own IKE SA, and
# what one user cannot do to another user's connections through the BTNS
# API, between two btnsd hosts in user-mode-linux (a real kernel with ESP).
#
#   left  192.0.2.1  btnsd "a": identities hosta (its PAD entry's) and
#                    alice, both certificates of one test CA; the API socket
#                    is group nogroup (0660); api.grants: uid 1000 -> alice
#   right 192.0.2.2  btnsd "b": bob; PAD: any name below example.org with a
#                    certificate of the CA; its API socket is 0600
#
#   I1 uid 1000 asks for identity "alice" (get_new_iToken("alice")) before
#      connect(): a.example presents alice on an IKE SA of the socket's own,
#      bob's acceptor and bob's btnsd see fqdn:alice.example.org, the host's
#      SA (hosta) stays; the socket's ACQUIRE reaches only that request
#   I2 the application closes the socket: its IKE SA is deleted on both
#      hosts within seconds, the host's SA is not
#   I3 uid 65534 asks for "alice": refused (EACCES, PRIVILEGE_REQUIRED)
#   S1 root holds a latched connection to bob; uid 65534 cannot take its
#      socket (pidfd_getfd, /proc/PID/fd), and a socket of its own tells
#      nothing about it
#   S2 uid 65534 cannot release root's latch by its id
#   S3 uid 65534 cannot list SAs or latches, terminate root's IKE SA or
#      reload (btnsctl exits 4, "permission denied")
#   S4 uid 65534 cannot even reach b's API socket (mode 0600)
#   S5 afterwards root's connection is still latched and echoing, and a's
#      IKE SA with bob is the same one (id and SPIs) as before
#
# Output: one "CASE NAME PASS|FAIL" line per case, then
# "RESULT uml-security PASS|FAIL (N cases)".
set -euo pipefail
. "$(dirname "$0")/uml_apps_lib.sh"

if [[ ${1:-} != --inside ]]; then
  apps_locate
  apps_require "$btnsd" "$bin/tools/btnsctl/btnsctl"
  apps_require_commands botan setpriv
  keys=$(mktemp -d "${TEST_TMPDIR:-/tmp}/sec-keys.XXXXXX")
  apps_make_ca "$keys" "Security Test CA" hosta alice bob
  apps_boot_uml 240 SEC_WORK "$0" "$btnsd" "$bin/tests/apps" "$bin/tools/btnsctl/btnsctl" "$keys"
fi
apps_inside uml-security "${SEC_WORK:-$TMPDIR/sec}"
chmod 755 "$work"
# A copy of everything printed, for SEC_WORK readers when UML times out
# (no /dev/fd here for a process substitution).
if [[ -z ${SEC_TEED:-} ]]; then
  status=0
  SEC_TEED=1 "$0" "$@" 2>&1 | tee "$work/script.out" || status=${PIPESTATUS[0]}
  exit "$status"
fi
# Copies every user can run (the build tree is under root's home).
mkdir -p "$work/bin"
cp "$2" "$3/uc1" "$3/uc_identity" "$3/security_probe" "$4" "$work/bin/"
chmod 755 "$work/bin" "$work/bin"/*
btnsd=$work/bin/btnsd apps=$work/bin
cp "$5"/*.key "$5"/*.crt "$work"/
chmod 600 "$work"/*.key

cat > "$work/a.yaml" <<EOF
daemon:
  listen: [192.0.2.1]
  log_level: info
  api_socket: $work/a-api.sock
  api_group: nogroup
identities:
  hosta:
    id: fqdn:hosta.example.org
    private_key: hosta.key
    certificate: hosta.crt
  alice:
    id: fqdn:alice.example.org
    private_key: alice.key
    certificate: alice.crt
pad:
  - name: lab
    peer: fqdn:*.example.org
    auth: ca
    ca: [ca.crt]
    local_identity: hosta
    remote_ts: [192.0.2.0/24]
spd:
  - name: lab-hosts
    local: 192.0.2.1
    remote: 192.0.2.2
    action: protect
    peer: lab
    mode: transport
    ike_proposals: gcm-x25519
    esp_proposals: gcm-esp
    start: trap
$(apps_proposals)
api:
  grants:
    - name: alice-app
      users: [1000]
      identities: [alice]
EOF
sed -e 's/192\.0\.2\.1\]/192.0.2.2]/' -e "s#a-api.sock#b-api.sock#" -e '/api_group/d' \
  -e 's/local: 192\.0\.2\.1/local: 192.0.2.2/' -e 's/remote: 192\.0\.2\.2/remote: 192.0.2.1/' \
  -e '/^  hosta:/,/certificate: hosta.crt/d' -e 's/alice/bob/g' -e 's/local_identity: hosta/local_identity: bob/' \
  -e '/^api:/,$d' "$work/a.yaml" > "$work/b.yaml"

uml_two_hosts

# as USER NS PROGRAM ARGS...: runs PROGRAM from $work/bin in NS as USER
# (root, 1000 with group nogroup to reach a's socket, or 65534), for up to
# LIMIT (40) seconds.
as() {
  local user=$1 ns=$2
  shift 2
  local apps_as=()
  case $user in
    1000) apps_as=(setpriv --reuid 1000 --regid 1000 --groups 65534 --) ;;
    65534) apps_as=(setpriv --reuid 65534 --regid 65534 --clear-groups --) ;;
  esac
  local host=a
  [[ $ns == right ]] && host=b
  APPS_LIMIT=${LIMIT:-40} apps_run "$ns" "$host" "$@"
}
ctl() { local user=$1 host=$2; shift 2; as "$user" left btnsctl --socket "$work/$host-api.sock" "$@"; }
# ike_sas HOST: "id peer initiator_spi responder_spi" per established IKE
# SA (sed, not python: starting python under UML takes seconds). The JSON
# printer keeps IkeSaStatus's field order: id, state, initiator, SPIs,
# local, remote, peer_id.
ike_sas() {
  local json
  json=$(ctl root "$1" list-sas --json)
  grep -oE '\{"id":"[0-9]+","state":"established","initiator":(true|false),"initiator_spi":"[0-9]+","responder_spi":"[0-9]+","local":"[^"]*","remote":"[^"]*","peer_id":"[^"]*"' <<< "$json" |
    sed -E 's/.*"id":"([0-9]+)".*"initiator_spi":"([0-9]+)","responder_spi":"([0-9]+)".*"peer_id":"([^"]*)"/\1 \4 \2 \3/' || true
}

cases=0
verdict() {  # verdict NAME WHY...: PASS when no WHY
  cases=$((cases + 1))
  if (($# > 1)); then
    local name=$1
    shift
    echo "CASE $name FAIL: $*"
    apps_failures="$apps_failures $name"
  else
    echo "CASE $1 PASS"
  fi
}

apps_start_btnsd left:a right:b

echo "== root's connection: latched, echoing once a second"
LIMIT=200 as root right uc1 accept 7100 fqdn:hosta.example.org > hold-accept.out 2>&1 &
hold_acceptor=$!
apps_wait_line hold-accept.out '^listening' || echo "the hold acceptor did not listen"
LIMIT=200 as root left security_probe hold 192.0.2.2 7100 bob.example.org 150 "$work/hold.state" > hold.out 2>&1 &
holder=$!
apps_wait_line hold.out '^holding' 20 || { apps_show hold hold.out; echo "root's connection did not come up"; }
read -r hold_pid hold_fd hold_latch < "$work/hold.state" || true
ctl root a list-sas --json > "$work/a-sas-before.json" || true
before=$(ike_sas a)
echo "a's IKE SAs before: $before"
host_sa=$(awk '$2 == "fqdn:bob.example.org" { print $1; exit }' <<< "$before")

echo "== I1: uid 1000 presents configured identity alice"
as root right uc1 accept 7101 fqdn:alice.example.org > i1-accept.out 2>&1 &
acceptor=$!
apps_wait_line i1-accept.out '^listening' || echo "the I1 acceptor did not listen"
as 1000 left uc_identity 192.0.2.2 7101 alice bob.example.org 12 > i1.out 2>&1 &
identity_app=$!
apps_wait_line i1.out '^UCI ' 25 || true
apps_show "uid 1000 uc_identity" i1.out
a_during=$(ike_sas a)
b_during=$(ike_sas b)
echo "b's IKE SAs while open: $b_during"
echo "a's IKE SAs while open: $a_during"
why=()
grep -q '^UCI PASS reached fqdn:bob.example.org presenting fqdn:alice.example.org' i1.out || why+=("the application did not reach bob presenting alice")
grep -q ' fqdn:alice.example.org ' <<< "$b_during" || why+=("b's btnsd has no IKE SA with alice")
grep -q ' fqdn:hosta.example.org ' <<< "$b_during" || why+=("b lost the host's IKE SA (hosta)")
(($(wc -l <<< "$a_during") == 2)) || why+=("a holds $(wc -l <<< "$a_during") IKE SAs, not 2")
grep -q 'event=api-configured-identity.*identity=alice' a-btnsd.log || why+=("a's log does not name the configured identity")
grep -q 'event=kernel-acquire-api' a-btnsd.log || why+=("the socket's ACQUIRE was not kept from the engine")
engine_acquires=$(grep 'event=kernel-acquire ' a-btnsd.log | grep -c '/32:7101' || true)
((engine_acquires == 0)) || why+=("the engine saw $engine_acquires ACQUIREs of the alice socket")
wait $identity_app || true
closed_at=$(date +%s%N)
wait $acceptor || true
apps_show "bob uc1 accept" i1-accept.out
grep -q '^UC1 PASS acceptor sees fqdn:alice.example.org' i1-accept.out || why+=("bob's acceptor did not see alice")
verdict I1-configured-identity "${why[@]}"

echo "== I2: the socket closes, its IKE SA goes"
gone=no
for _ in $(seq 1 30); do
  if ! grep -q ' fqdn:alice.example.org ' <<< "$(ike_sas b)"; then gone=yes; break; fi
  apps_pause 0.5
done
took=$((($(date +%s%N) - closed_at) / 1000000))
echo "alice's IKE SA gone from b ${took} ms after the application exited: $gone"
why=()
[[ $gone == yes ]] || why+=("b still has alice's IKE SA 15 s after the socket closed")
grep -q 'event=api-dedicated-sa-closed' a-btnsd.log || why+=("a's log has no api-dedicated-sa-closed")
a_after=$(ike_sas a)
[[ -n $host_sa ]] && grep -q "^$host_sa fqdn:bob.example.org " <<< "$a_after" || why+=("the host's IKE SA went too")
(($(wc -l <<< "$a_after") == 1)) || why+=("a still holds: $a_after")
verdict I2-dedicated-sa-ends "${why[@]}"

echo "== I3: uid 65534 asks for alice"
status=0
as 65534 left uc_identity 192.0.2.2 7102 alice bob.example.org > i3.out 2>&1 || status=$?
apps_show "uid 65534 uc_identity" i3.out
why=()
((status == 3)) || why+=("exit $status, not 3 (refused)")
grep -q "^UCI REFUSED ipsec_set_socket_pToken: Permission denied; why=.* uid 65534 may not present identity 'alice'" i3.out ||
  why+=("no EACCES naming the missing grant")
verdict I3-ungranted-identity "${why[@]}"

echo "== S1: uid 65534 tries to take root's socket (pid $hold_pid, fd $hold_fd)"
status=0
as 65534 left security_probe steal "$hold_pid" "$hold_fd" > s1.out 2>&1 || status=$?
apps_show "uid 65534 steal" s1.out
why=()
((status == 3)) || why+=("exit $status, not 3")
grep -q '^REFUSED pidfd_getfd: errno=1 \|^REFUSED pidfd_open: errno=' s1.out || why+=("pidfd_getfd was not refused with EPERM")
grep -q '^REFUSED open /proc/PID/fd: errno=13 ' s1.out || why+=("/proc/PID/fd was not refused with EACCES")
grep -q '^own unconnected socket: no peer\|^REFUSED ipsec_get_socket_pToken(own' s1.out || why+=("its own socket told something")
verdict S1-socket-not-reachable "${why[@]}"

echo "== S2: uid 65534 releases root's latch $hold_latch"
status=0
as 65534 left security_probe latch "${hold_latch:-1}" > s2.out 2>&1 || status=$?
apps_show "uid 65534 latch" s2.out
why=()
((status == 3)) || why+=("exit $status, not 3")
grep -q '^REFUSED ipsec_release_latch: errno=3 ' s2.out || why+=("not refused with ESRCH (unknown latch)")
verdict S2-latch-of-another "${why[@]}"

echo "== S3: uid 65534 administers a"
why=()
for command in list-sas list-latches "terminate ${host_sa:-1}" reload stats; do
  status=0
  # shellcheck disable=SC2086
  out=$(ctl 65534 a $command 2>&1) || status=$?
  echo "[uid 65534 btnsctl $command] exit $status: $out"
  ((status == 4)) || why+=("$command exited $status, not 4")
  grep -q 'permission denied' <<< "$out" || why+=("$command: no 'permission denied'")
  grep -q 'bob.example.org\|hosta' <<< "$out" && why+=("$command leaked SA details")
done
# Root's view is whole.
root_latches=$(ctl root a list-latches 2>&1) || why+=("root could not list latches")
echo "[root btnsctl list-latches] $root_latches"
verdict S3-no-administration "${why[@]}"

echo "== S4: uid 65534 reaches b's API socket (0600)"
status=0
out=$(ctl 65534 b list-sas 2>&1) || status=$?
echo "[uid 65534 btnsctl b list-sas] exit $status: $out"
why=()
((status != 0)) || why+=("it listed b's SAs")
grep -qi 'permission denied' <<< "$out" || why+=("no 'permission denied'")
verdict S4-socket-mode "${why[@]}"

echo "== S5: root's connection and SA after all that"
touch "$work/hold.state.stop"
status=0
wait $holder || status=$?
kill $hold_acceptor 2> /dev/null || true
wait $hold_acceptor 2> /dev/null || true
apps_show "root hold" hold.out
after=$(ike_sas a)
echo "a's IKE SAs after: $after"
why=()
((status == 0)) && grep -q '^HOLD PASS .* with fqdn:bob.example.org, latch .* still established, no event' hold.out ||
  why+=("root's connection was disturbed (exit $status)")
host_before=$(grep "^$host_sa " <<< "$before" || true)
[[ -n $host_before ]] && grep -qx "$host_before" <<< "$after" || why+=("a's IKE SA with bob changed: '$host_before' -> '$after'")
verdict S5-root-intact "${why[@]}"

apps_stop_btnsd a b
apps_finish "($cases cases)"
