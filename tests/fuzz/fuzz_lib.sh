# Sourced by the run-*-fuzz.sh scripts: runs one libFuzzer binary for a
# bounded time and judges the outcome.
#
# run_fuzzer LOG MAX_LEN RUNS MAX_TIME BINARY CORPUS_DIR...
# Runs BINARY over the corpus directories (it writes new inputs into the
# first only, so seeds in the source tree stay untouched), reproducers into
# $work/artifacts. Prints the end of the log and the number of executions;
# fails on any crash, sanitizer report or property violation, or when the
# fuzzer executed nothing.
run_fuzzer() {
  local log=$1 max_len=$2 runs=$3 max_time=$4 binary=$5
  shift 5
  local status executions
  set +e
  "$binary" -runs="$runs" -max_total_time="$max_time" -max_len="$max_len" \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
    "$@" >"$log" 2>&1
  status=$?
  set -e
  tail -n 25 "$log"
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "executions: ${executions:-unknown}, exit status $status, log $log"
  if [ "$status" -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
    echo "FUZZING FOUND A PROBLEM: log $log, reproducer(s) in $work/artifacts" >&2
    return 1
  fi
  if [ -z "$executions" ] || [ "$executions" -eq 0 ]; then
    echo "fuzzer did not run" >&2
    return 1
  fi
}
