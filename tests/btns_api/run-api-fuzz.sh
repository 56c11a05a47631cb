#!/bin/bash
# Builds the BTNS API server fuzzer (frame decoder, request decoder and
# handlers, latch updates) with clang-14 (libFuzzer + AddressSanitizer +
# UndefinedBehaviorSanitizer) outside Bazel, runs it for a bounded time over
# the seed corpus, and exits non-zero on any crash or property violation.
#   RUNS=200000 MAX_TIME=300 tests/btns_api/run-api-fuzz.sh
# Needs: clang-14, libfuzzer-14-dev, libclang-rt-14-dev, protobuf-compiler,
# libprotobuf-dev, libbotan-2-dev (Debian 12).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${RUNS:-200000}
max_time=${MAX_TIME:-300}
work=${FUZZ_WORK_DIR:-$(mktemp -d)}
seeds="$root/tests/btns_api/corpus"
mkdir -p "$work/corpus" "$work/artifacts" "$work/gen/btns_api"

# The generated code goes into the work directory, never the source tree.
(cd "$root" && protoc --proto_path=. --cpp_out="$work/gen" btns_api/btns_api.proto)

echo "building $work/api_fuzz"
clang++-14 -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$root" -I"$root/btns_api/include" -I"$work/gen" -isystem /usr/include/botan-2 \
  "$work/gen/btns_api/btns_api.pb.cc" \
  "$root/btns_api/frame.cc" "$root/btns_api/latch.cc" "$root/btns_api/server.cc" \
  "$root/btns_api/admin.cc" \
  "$root/btns_api/sa_directory.cc" "$root/btns_api/fake_sa_directory.cc" \
  "$root/ike/policy/address.cc" "$root/tests/btns_api/api_fuzz.cc" \
  -lprotobuf -lbotan-2 -lpthread \
  -o "$work/api_fuzz"

echo "running: -runs=$runs -max_total_time=$max_time over $(ls "$seeds" | wc -l) seeds"
set +e
"$work/api_fuzz" -runs="$runs" -max_total_time="$max_time" -max_len=8192 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$work/corpus" "$seeds" >"$work/fuzz.log" 2>&1
status=$?
set -e
tail -n 25 "$work/fuzz.log"
executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log")
echo "executions: ${executions:-unknown}, exit status $status, log $work/fuzz.log"
if [ "$status" -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
  echo "FUZZING FOUND A PROBLEM: reproducer(s) in $work/artifacts" >&2
  exit 1
fi
if [ -z "$executions" ] || [ "$executions" -eq 0 ]; then
  echo "fuzzer did not run" >&2
  exit 1
fi
