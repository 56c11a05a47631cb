#!/bin/sh
exec python3 "$(dirname "$0")/strongswan_capture_test.py" "$@"
