#!/bin/sh
# Encodes the corpus into captures and checks that tshark and ikedecode agree
# on every message (see tshark_crosscheck.py for what is compared).
set -eu
write_corpus=$1
ikedecode=$2
script=$3
if ! command -v tshark >/dev/null 2>&1; then
  echo "tshark is not installed (Debian: apt-get install tshark)" >&2
  exit 1
fi
dir=${TEST_TMPDIR:-$(mktemp -d)}
"$write_corpus" --pcap "$dir/corpus.pcap" --mixed-pcap "$dir/mixed.pcap" --names "$dir/names"
echo "== UDP/IPv4 port 500, 192.0.2.1 -> 192.0.2.2"
python3 "$script" --ikedecode "$ikedecode" --pcap "$dir/corpus.pcap" --names "$dir/names" \
  --expect-all-known --self-test --min-messages "$(wc -l < "$dir/names")"
echo "== the same messages over IPv6 and over UDP 4500 with the non-ESP marker"
python3 "$script" --ikedecode "$ikedecode" --pcap "$dir/mixed.pcap" \
  --min-messages "$(( 2 * $(wc -l < "$dir/names") ))"
