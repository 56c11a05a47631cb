#!/bin/bash
# Builds the IKEv2 codec fuzzer with clang-14 (libFuzzer + AddressSanitizer +
# UndefinedBehaviorSanitizer) outside Bazel, runs it for a bounded time over
# the seed corpus, and exits non-zero on any crash or property violation.
# Then runs the fuzzer of ikedecode's frame classifier for a tenth of that.
#   RUNS=200000 MAX_TIME=300 tests/fuzz/run-wire-fuzz.sh
# Needs: clang-14, libfuzzer-14-dev, libclang-rt-14-dev (Debian 12).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/fuzz/fuzz_lib.sh"
runs=${RUNS:-200000}
max_time=${MAX_TIME:-300}
work=${FUZZ_WORK_DIR:-}
if [ -z "$work" ]; then
  work=$(mktemp -d)
  remove_work_on_success=1
fi
seeds="$root/tests/fuzz/corpus/wire"
mkdir -p "$work/corpus" "$work/artifacts"

echo "building $work/wire_fuzz"
clang++-14 -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$root" \
  "$root/ike/wire/codec.cc" "$root/ike/wire/names.cc" "$root/tests/fuzz/wire_fuzz.cc" \
  -o "$work/wire_fuzz"

echo "running: -runs=$runs -max_total_time=$max_time over $(ls "$seeds" | wc -l) seeds"
run_fuzzer "$work/fuzz.log" 4096 "$runs" "$max_time" "$work/wire_fuzz" \
  "$work/corpus" "$seeds"

echo "building $work/frame_fuzz"
clang++-14 -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$root" \
  "$root/ike/wire/codec.cc" "$root/ike/wire/names.cc" "$root/tools/ikedecode/pcap.cc" \
  "$root/tests/fuzz/frame_fuzz.cc" -o "$work/frame_fuzz"
mkdir -p "$work/frame_corpus"
echo "frame classifier:"
run_fuzzer "$work/frame_fuzz.log" 4096 $(( runs / 10 )) $(( max_time / 10 + 1 )) \
  "$work/frame_fuzz" "$work/frame_corpus"
if [ -n "${remove_work_on_success:-}" ]; then rm -rf "$work"; fi
