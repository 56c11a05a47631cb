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
. "$root/tests/fuzz/fuzz_lib.sh"
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
run_fuzzer "$work/fuzz.log" 8192 "$runs" "$max_time" "$work/api_fuzz" \
  "$work/corpus" "$seeds"
