#!/bin/bash
# Builds the fuzzer of the application credential file parser
# (daemon/credential_files.h ParseApplicationCredential: PEM key and
# certificates a client hands over) with clang-14 (libFuzzer +
# AddressSanitizer + UndefinedBehaviorSanitizer) outside Bazel, runs it for a
# bounded time over the seed corpus, and exits non-zero on any crash or
# property violation.
#   RUNS=20000 MAX_TIME=25 tests/fuzz/run-credential-fuzz.sh
# Needs: clang-14, libfuzzer-14-dev, libclang-rt-14-dev, libbotan-2-dev
# (Debian 12).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/fuzz/fuzz_lib.sh"
runs=${RUNS:-20000}
max_time=${MAX_TIME:-25}
work=${FUZZ_WORK_DIR:-}
if [ -z "$work" ]; then
  work=$(mktemp -d)
  remove_work_on_success=1
fi
seeds="$root/tests/fuzz/corpus/credential"
mkdir -p "$work/corpus" "$work/artifacts"

echo "building $work/credential_fuzz"
clang++-14 -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$root" -isystem /usr/include/botan-2 \
  "$root/daemon/credential_files.cc" "$root/ike/crypto/credentials.cc" \
  "$root/tests/fuzz/credential_fuzz.cc" \
  -lbotan-2 -lpthread \
  -o "$work/credential_fuzz"

echo "running: -runs=$runs -max_total_time=$max_time over $(ls "$seeds" | wc -l) seeds"
run_fuzzer "$work/fuzz.log" 8192 "$runs" "$max_time" "$work/credential_fuzz" \
  "$work/corpus" "$seeds"
if [ -n "${remove_work_on_success:-}" ]; then rm -rf "$work"; fi
