#!/bin/bash
# Builds the IKEv2 codec fuzzer with clang-14 (libFuzzer + AddressSanitizer +
# UndefinedBehaviorSanitizer) outside Bazel, runs it for a bounded time over
# the seed corpus, and exits non-zero on any crash or property violation.
# Then runs the fuzzer of ikedecode's frame classifier for a tenth of that.
#   RUNS=200000 MAX_TIME=300 tests/fuzz/run-wire-fuzz.sh
# Needs: clang-14, libfuzzer-14-dev, libclang-rt-14-dev (Debian 12).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
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

# The fuzzer writes new inputs into the first directory only, so the seeds
# in the source tree stay untouched.
echo "running: -runs=$runs -max_total_time=$max_time over $(ls "$seeds" | wc -l) seeds"
set +e
"$work/wire_fuzz" -runs="$runs" -max_total_time="$max_time" -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$work/corpus" "$seeds" >"$work/fuzz.log" 2>&1
status=$?
set -e
tail -n 25 "$work/fuzz.log"
executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log")
echo "executions: ${executions:-unknown}, exit status $status"
if [ "$status" -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
  echo "FUZZING FOUND A PROBLEM: log $work/fuzz.log, reproducer(s) in $work/artifacts" >&2
  exit 1
fi
if [ -z "$executions" ] || [ "$executions" -eq 0 ]; then
  echo "fuzzer did not run" >&2
  exit 1
fi

echo "building $work/frame_fuzz"
clang++-14 -std=c++20 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$root" \
  "$root/ike/wire/codec.cc" "$root/ike/wire/names.cc" "$root/tools/ikedecode/pcap.cc" \
  "$root/tests/fuzz/frame_fuzz.cc" -o "$work/frame_fuzz"
mkdir -p "$work/frame_corpus"
set +e
"$work/frame_fuzz" -runs=$(( runs / 10 )) -max_total_time=$(( max_time / 10 + 1 )) -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$work/frame_corpus" >"$work/frame_fuzz.log" 2>&1
status=$?
set -e
frame_executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/frame_fuzz.log")
echo "frame classifier executions: ${frame_executions:-unknown}, exit status $status"
if [ "$status" -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ] || [ -z "$frame_executions" ]; then
  tail -n 25 "$work/frame_fuzz.log"
  echo "FUZZING FOUND A PROBLEM: log $work/frame_fuzz.log, reproducer(s) in $work/artifacts" >&2
  exit 1
fi
if [ -n "${remove_work_on_success:-}" ]; then rm -rf "$work"; fi
