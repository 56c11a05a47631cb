# The host set-up of the user-mode-linux tests of tests/apps, sourced by
# each of them both outside UML (finding the binaries, making keys, booting
# UML) and inside (btnsd per host, applications, readiness, ESP counts,
# the RESULT line). The hosts themselves come from tools/uml/lib.sh
# (uml_two_hosts, esp_packets, uml_wait_for), sourced here.
#
# Inside UML every process start costs much (a fork is slow there, slower
# still on a loaded machine), so the waits here poll files with bash
# builtins only, and daemons that do not depend on each other start
# together.
#
# Names: each btnsd NAME runs from $work/NAME.yaml, logs to
# $work/NAME-btnsd.log, keeps its pid in $work/NAME.pid and its API socket
# at $work/NAME-api.sock (the configs say so; the namespaces share one
# filesystem).

apps_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$apps_lib_dir/../../tools/uml/lib.sh"

# ------------------------------------------------------------- outside UML

# apps_locate: sets apps_root (the source or runfiles tree), bin (BTNS_BIN,
# bazel-bin when run by hand) and btnsd.
apps_locate() {
  apps_root=$(cd "$apps_lib_dir/../.." && pwd)
  bin=${BTNS_BIN:-$apps_root}
  btnsd=$bin/daemon/btnsd
}

# apps_require FILE...: each built program is there, or exit 2 saying how
# to build it.
apps_require() {
  local file
  for file; do
    [[ -x $file ]] || {
      echo "$file not found (bazel build //daemon:btnsd //tools/btnsctl //tests/apps/...; set BTNS_BIN to bazel-bin)" >&2
      exit 2
    }
  done
}

# apps_require_commands COMMAND...: each is installed, or exit 2.
apps_require_commands() {
  local command
  for command; do
    command -v "$command" > /dev/null || { echo "$command is needed (tools/install-deps)" >&2; exit 2; }
  done
}

# apps_make_ca DIR "CA NAME" NAME...: a throwaway CA (DIR/ca.key, ca.crt)
# and per NAME DIR/NAME.key and NAME.crt for NAME.example.org (SAN dNSName).
# Made outside UML: a freshly booted UML kernel may block on getrandom().
apps_make_ca() {
  local dir=$1 ca_name=$2 name
  shift 2
  (
    cd "$dir"
    botan keygen --algo=ECDSA --params=secp256r1 > ca.key
    botan gen_self_signed --ca --days=30 ca.key "$ca_name" --organization=Example > ca.crt
    for name; do
      botan keygen --algo=ECDSA --params=secp256r1 > "$name.key"
      botan gen_pkcs10 "$name.key" "$name.example.org" --dns="$name.example.org" --organization=Example > "$name.csr"
      botan sign_cert --duration=30 ca.crt ca.key "$name.csr" > "$name.crt"
    done
    chmod 644 ./*
  )
}

# apps_boot_uml TIMEOUT WORK_VARIABLE SCRIPT PATH...: runs SCRIPT --inside
# PATH... (each made absolute) in UML, for UML_TIMEOUT or TIMEOUT seconds.
# When the variable named WORK_VARIABLE (e.g. UC_WORK) names a folder, it
# is writable inside, for the logs; UML_FOLLOW=1 prints the output as it
# comes.
apps_boot_uml() {
  local timeout=$1 work_dir=${!2:-} script=$3 path
  shift 3
  local rw=() paths=()
  if [[ -n $work_dir ]]; then
    mkdir -p "$work_dir"
    rw=(--rw "$work_dir")
  fi
  for path; do paths+=("$(realpath "$path")"); done
  exec "$apps_root/tools/uml/run-in-uml" --timeout "${UML_TIMEOUT:-$timeout}" ${UML_FOLLOW:+--follow} \
    "${rw[@]}" "$(realpath "$script")" --inside "${paths[@]}"
}

# -------------------------------------------------------------- inside UML

# apps_inside NAME WORK: the RESULT line will name NAME; work=WORK is made
# and entered; the clock for apps_elapsed starts.
apps_inside() {
  apps_result_name=$1
  work=$2
  apps_failures=""
  apps_started=$SECONDS
  mkdir -p "$work"
  cd "$work"
  # A FIFO nobody writes to (on the tmpfs, not on a host folder): read -t
  # on it is a sleep without a process.
  local fifo=${TMPDIR:-/tmp}/apps-pause.$$
  apps_pause_fd=""
  if mkfifo "$fifo" 2> /dev/null; then exec {apps_pause_fd}<> "$fifo"; fi
}

apps_elapsed() { echo $((SECONDS - apps_started)); }

# apps_pause SECONDS (fractions allowed)
apps_pause() {
  if [[ -n $apps_pause_fd ]]; then read -r -t "$1" -u "$apps_pause_fd" _ || true; else sleep "$1"; fi
}

# apps_wait_line FILE REGEX [SECONDS]: waits until a line of FILE matches
# REGEX, for up to SECONDS (UML_WAIT_SECONDS, 20); 1 if none did.
apps_wait_line() {
  local file=$1 pattern=$2 line
  local deadline=$((SECONDS + ${3:-${UML_WAIT_SECONDS:-20}}))
  while :; do
    if [[ -r $file ]]; then
      while IFS= read -r line || [[ -n $line ]]; do
        [[ $line =~ $pattern ]] && return 0
      done < "$file"
    fi
    ((SECONDS < deadline)) || return 1
    apps_pause 0.2
  done
}

# apps_note WHY: a failed check; the RESULT line will say FAIL and WHY.
apps_note() {
  apps_failures="$apps_failures $*;"
  echo "CHECK FAILED: $*"
}

# apps_show LABEL FILE: FILE's lines, each prefixed "[LABEL] ".
apps_show() { sed "s/^/[$1] /" "$2"; }

# apps_dump_logs: the tail of each btnsd's log (without debug lines).
apps_dump_logs() {
  local log
  for log in "$work"/*-btnsd.log; do
    echo "== $log"
    grep -v 'level=debug' "$log" | tail -n 40
  done
}

# apps_finish [DETAIL]: "RESULT NAME PASS DETAIL", or, after failed
# checks, the logs and "RESULT NAME FAIL DETAIL: WHY..." and exit 1.
apps_finish() {
  if [[ -n $apps_failures ]]; then
    apps_dump_logs
    echo "RESULT $apps_result_name FAIL${1:+ $1:}$apps_failures"
    exit 1
  fi
  echo "RESULT $apps_result_name PASS${1:+ $1}"
}

# apps_abort WHY: a set-up step failed; nothing after it can be checked.
apps_abort() {
  apps_note "$*"
  apps_finish
}

# apps_start_btnsd NS:NAME...: starts each btnsd NAME in namespace NS, all
# at once, and waits until each has opened its API.
apps_start_btnsd() {
  local spec name
  for spec; do
    name=${spec#*:}
    ip netns exec "${spec%%:*}" "$btnsd" --config "$work/$name.yaml" > "$work/$name-btnsd.log" 2>&1 &
    echo $! > "$work/$name.pid"
  done
  for spec; do
    name=${spec#*:}
    apps_wait_line "$work/$name-btnsd.log" 'event=api-listening' 30 ||
      apps_abort "btnsd $name did not open its API"
  done
}

# apps_stop_btnsd NAME...: SIGTERM to each btnsd NAME, all at once; a clean
# stop exits 0, anything else is a failed check.
apps_stop_btnsd() {
  local name pid status
  local -A pids=()
  for name; do
    read -r pid < "$work/$name.pid"
    pids[$name]=$pid
    kill -TERM "$pid"
  done
  for name; do
    status=0
    wait "${pids[$name]}" || status=$?
    ((status == 0)) || apps_note "btnsd $name exited $status"
  done
}

# apps_command NS NAME PROGRAM ARGS...: sets apps_cmd to PROGRAM (from
# $apps) in NS against btnsd NAME's API, under timeout(1) (APPS_LIMIT
# seconds, 30) and as the user apps_as (a command prefix, e.g. setpriv ...;
# none: root). Run as a simple command, its $! is timeout(1), which passes
# a kill on to PROGRAM.
apps_command() {
  local ns=$1 name=$2 program=$3
  shift 3
  apps_cmd=(ip netns exec "$ns" env "BTNS_API_SOCKET=$work/$name-api.sock"
    timeout "${APPS_LIMIT:-30}" ${apps_as[@]+"${apps_as[@]}"} "$apps/$program" "$@")
}

# apps_run NS NAME PROGRAM ARGS...: runs it (see apps_command).
apps_run() {
  apps_command "$@"
  "${apps_cmd[@]}"
}

# apps_listener OUT NS NAME PROGRAM ARGS...: starts a listening program in
# the background, its output in OUT, and waits for its "listening" line;
# apps_listener_pid is its pid (timeout(1)'s). 1 if it did not listen.
apps_listener() {
  local out=$1
  shift
  apps_command "$@"
  "${apps_cmd[@]}" > "$out" 2>&1 &
  apps_listener_pid=$!
  apps_wait_line "$out" '^listening'
}

# apps_esp_received NS ADDRESS: packets counted by the ESP SAs whose
# destination is ADDRESS in NS (what that host received under IPsec while
# those SAs lived).
apps_esp_received() {
  ip -n "$1" -s xfrm state | awk -v dst="$2" '
    /^src / { mine = ($4 == dst) }
    /lifetime current:/ { getline; if (mine) sum += $2 }
    END { print sum + 0 }'
}

# apps_esp_counter NS ADDRESS, then apps_esp_counted NS ADDRESS: ESP
# packets NS received for ADDRESS, counted by a netfilter rule: unlike the
# SAs' own counters, the count does not fall when an SA is deleted.
apps_esp_counter() {
  ip netns exec "$1" iptables-legacy -w -I INPUT -p esp -d "$2"
}
apps_esp_counted() {
  local rules
  rules=$(ip netns exec "$1" iptables-legacy -w -nvxL INPUT)
  awk -v dst="$2" '$0 ~ / (esp|50) / && index($0, dst) { print $1; found = 1; exit }
    END { if (!found) { print "no ESP counter rule for " dst > "/dev/stderr"; exit 1 } }' <<< "$rules"
}

# apps_capture_start NS FILTER FILE: dumpcap on NS's eth0 (capture filter
# FILTER) into FILE, ready once it returns; 1 when dumpcap is not
# installed or did not start. apps_capture_stop (not in a subshell: it
# waits for dumpcap) sets apps_captured to how many packets it captured.
apps_capture_start() {
  command -v dumpcap > /dev/null || return 1
  ip netns exec "$1" dumpcap -i eth0 -f "$2" -w "$3" > /dev/null 2> "$3.log" &
  apps_capture_pid=$!
  apps_capture_log=$3.log
  # "File: ..." comes once the interface and the output file are open.
  apps_wait_line "$apps_capture_log" '^File: ' 15
}
apps_capture_stop() {
  local line
  apps_captured=unknown
  kill -INT "$apps_capture_pid"
  wait "$apps_capture_pid" 2> /dev/null || true
  while IFS= read -r line; do
    # dumpcap starts this line with a carriage return.
    if [[ $line =~ Packets\ captured:\ ([0-9]+) ]]; then apps_captured=${BASH_REMATCH[1]}; fi
  done < "$apps_capture_log"
}

# apps_proposals: the proposals section the test configs share (AES-GCM
# and X25519 for IKE, AES-GCM for ESP).
apps_proposals() {
  cat <<'EOF'
proposals:
  gcm-x25519:
    proposals:
      - encryption: [aes256gcm16]
        prf: [sha256]
        ke: [x25519]
  gcm-esp:
    proposals:
      - encryption: [aes256gcm16]
        esn: [noesn]
EOF
}
