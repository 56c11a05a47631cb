#!/usr/bin/env bash
# Installs and deletes N SA pairs with their two policies each through
# kernel_glue in user-mode-linux (a kernel with ESP), printing the rates.
# usage: xfrm_bench.sh [N...]   (default: 1000 10000)
set -euo pipefail

if [[ ${1:-} != --inside ]]; then
  root=${BUILD_WORKSPACE_DIRECTORY:-}
  if [[ -z $root ]]; then
    root=$(cd "$(dirname "$(realpath "$0")")/../../.." && pwd)
  fi
  tool=${XFRM_TOOL:-}
  for candidate in "$0".runfiles/*/tests/kernel/xfrm_tool "$root/bazel-bin/tests/kernel/xfrm_tool"; do
    [[ -z $tool && -x $candidate ]] && tool=$candidate
  done
  [[ -n $tool ]] || { echo "xfrm_tool not found (bazel build //tests/kernel:xfrm_tool)" >&2; exit 2; }
  counts=("$@")
  ((${#counts[@]})) || counts=(1000 10000)
  cd "${TMPDIR:-/tmp}"
  exec "$root/tools/uml/run-in-uml" --timeout 900 --mem 1G "$(realpath "$0")" --inside \
    "$(realpath "$tool")" "${counts[@]}"
fi
tool=$2
shift 2
for count in "$@"; do
  for batch in none pair all; do
    ip netns add bench
    ip netns exec bench "$tool" bench --count "$count" --batch $batch
    ip netns del bench
  done
done
