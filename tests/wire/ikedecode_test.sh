#!/bin/sh
exec python3 "$(dirname "$0")/ikedecode_test.py" "$@"
