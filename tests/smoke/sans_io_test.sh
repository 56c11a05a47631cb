#!/usr/bin/env bash
# ike/ is the sans-I/O protocol core: no file or socket I/O, no event loop,
# no netlink, no YAML. This fails on any source file under ike/ (or common/,
# which ike/ builds on) that includes one of the headers that would bring
# those in.
set -euo pipefail
forbidden='^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](fstream|cstdio|stdio\.h|asio([./][^>"]*)?|boost/asio([./][^>"]*)?|netlink/[^>"]*|linux/netlink\.h|linux/xfrm\.h|yaml-cpp/[^>"]*|sys/socket\.h|netinet/[^>"]*|unistd\.h|fcntl\.h)[>"]'

checked=0
bad=0
for file in "$@"; do
  checked=$((checked + 1))
  if hits=$(grep -nE "$forbidden" "$file"); then
    echo "$file: I/O include in the sans-I/O core:" >&2
    echo "$hits" >&2
    bad=$((bad + 1))
  fi
done
# Every package under ike/ must hand its files to this test.
for pkg in wire crypto policy sa; do
  n=$(printf '%s\n' "$@" | grep -c "^ike/$pkg/" || true)
  if ((n == 0)); then echo "no files of ike/$pkg were checked" >&2; bad=$((bad + 1)); fi
done
# A new package under ike/ must be added to this test's data.
wire_file=$(printf '%s\n' "$@" | grep -m1 '^ike/wire/[^/]*$')
source_tree=$(dirname "$(dirname "$(readlink -f "$wire_file")")")
for dir in "$source_tree"/*/; do
  pkg=$(basename "$dir")
  case $pkg in wire | crypto | policy | sa) ;; *)
    echo "ike/$pkg is not covered by tests/smoke:sans_io_test" >&2; bad=$((bad + 1)) ;;
  esac
done
echo "checked $checked files under ike/ and common/"
((bad == 0))
