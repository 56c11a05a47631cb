#!/usr/bin/env bash
# btnsd's command line: --check-config accepts the interop example configs,
# refuses a broken file with FILE:LINE:COL errors (exit 1), and a wrong
# argument exits 2 with the usage text.
set -euo pipefail
root=${TEST_SRCDIR:+$TEST_SRCDIR/${TEST_WORKSPACE:-__main__}}
root=${root:-$(cd "$(dirname "$0")/../.." && pwd)}
btnsd=$root/daemon/btnsd
tmp=${TEST_TMPDIR:-$(mktemp -d)}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

for config in "$root"/tests/interop/configs/*.yaml; do
  dir=$tmp/ok; mkdir -p "$dir"
  cp "$config" "$root/tests/interop/configs/interop.secrets" "$dir/"
  chmod 600 "$dir/interop.secrets"
  out=$("$btnsd" --check-config --config "$dir/$(basename "$config")" 2>&1) ||
    fail "$(basename "$config") refused: $out"
  [[ $out == *": ok ("* ]] || fail "$(basename "$config"): unexpected output: $out"
done

printf 'daemon:\n  listen: [192.0.2.300]\n' > "$tmp/bad.yaml"
status=0
out=$("$btnsd" --check-config --config "$tmp/bad.yaml" 2>&1) || status=$?
((status == 1)) || fail "broken config: exit $status, expected 1"
[[ $out == *"bad.yaml:2:12: daemon.listen[0]:"* ]] || fail "no FILE:LINE:COL error in: $out"

# Without --check-config a broken file still never starts the daemon.
status=0
out=$("$btnsd" --config "$tmp/bad.yaml" 2>&1) || status=$?
((status == 1)) || fail "daemon started on a broken config (exit $status)"
[[ $out == *"not starting"* ]] || fail "no refusal message: $out"

status=0
out=$("$btnsd" --no-such-flag 2>&1) || status=$?
((status == 2)) || fail "bad argument: exit $status, expected 2"
[[ $out == *"usage: btnsd"* ]] || fail "no usage text: $out"

if ((failures)); then exit 1; fi
echo "PASS: btnsd command line"
