#!/usr/bin/env bash
# dist/: the installer stages everything under a DESTDIR; the sample
# /etc/btnsd it creates passes `btnsd --check-config` and `btnsctl
# check-config` with the modes the loader demands; the systemd unit passes
# `systemd-analyze verify` (when systemd-analyze exists) and says what the
# daemon relies on.
set -euo pipefail
btnsd=$(readlink -f "$1")
btnsctl=$(readlink -f "$2")
root=$TEST_TMPDIR/root
bins=$TEST_TMPDIR/bin
rm -rf "$root" "$bins"
mkdir -p "$bins"
ln -s "$btnsd" "$bins/btnsd"
ln -s "$btnsctl" "$bins/btnsctl"
fail() { echo "FAIL: $*" >&2; exit 1; }

dist/install --destdir "$root" --bin-dir "$bins" > "$TEST_TMPDIR/install.log"
cat "$TEST_TMPDIR/install.log"
etc=$root/etc/btnsd
for f in usr/local/sbin/btnsd usr/local/sbin/btnsctl usr/local/bin/swanctl2btnsd \
         usr/local/share/btnsd/btnsd.schema.json etc/systemd/system/btnsd.service \
         usr/local/share/man/man8/btnsd.8 usr/local/share/man/man8/btnsctl.8 \
         usr/local/share/man/man5/btnsd.yaml.5 usr/local/share/man/man3/btns.3 \
         etc/btnsd/btnsd.yaml etc/btnsd/btnsd.secrets etc/btnsd/keys/host.key \
         etc/btnsd/certs/host.crt; do
  [[ -f $root/$f ]] || fail "installer did not create /$f"
done
mode() { stat -c %a "$1"; }
[[ $(mode "$etc/btnsd.secrets") == 600 ]] || fail "secrets mode is $(mode "$etc/btnsd.secrets"), want 600"
[[ $(mode "$etc/keys/host.key") == 600 ]] || fail "host.key mode is $(mode "$etc/keys/host.key"), want 600"
[[ $(mode "$etc/keys") == 700 ]] || fail "keys/ mode is $(mode "$etc/keys"), want 700"
grep -q REPLACED "$etc/btnsd.secrets" && fail "the sample PSK was not replaced"

"$root/usr/local/sbin/btnsd" --check-config --config "$etc/btnsd.yaml" | tee "$TEST_TMPDIR/check.out"
grep -q ': ok (2 PAD entries, 3 SPD entries)' "$TEST_TMPDIR/check.out" || fail "unexpected check-config output"
"$root/usr/local/sbin/btnsctl" check-config "$etc/btnsd.yaml" > "$TEST_TMPDIR/table.out"
grep -q 'partner' "$TEST_TMPDIR/table.out" || fail "btnsctl check-config did not print the PAD"

# The loader's mode check is real: a group-readable secrets file is refused.
chmod 640 "$etc/btnsd.secrets"
if "$root/usr/local/sbin/btnsd" --check-config --config "$etc/btnsd.yaml" 2> "$TEST_TMPDIR/mode.err"; then
  fail "btnsd accepted a group-readable secrets file"
fi
grep -qi 'secrets\|600\|group' "$TEST_TMPDIR/mode.err" || fail "no clear error for the secrets mode: $(cat "$TEST_TMPDIR/mode.err")"
chmod 600 "$etc/btnsd.secrets"

# A second run leaves an existing configuration alone.
before=$(sha256sum "$etc/btnsd.secrets" "$etc/keys/host.key")
second=$(dist/install --destdir "$root" --bin-dir "$bins")
[[ $second == *'left as it is'* ]] || fail "second install did not keep the configuration: $second"
[[ $(sha256sum "$etc/btnsd.secrets" "$etc/keys/host.key") == "$before" ]] || fail "second install changed the keys"

# The unit: what the daemon relies on.
unit=$root/etc/systemd/system/btnsd.service
value() { sed -n "s/^$1=//p" "$unit"; }
[[ $(value Type) == notify ]] || fail "Type is not notify"
[[ $(value ExecReload) == *'kill -HUP $MAINPID'* ]] || fail "ExecReload does not send SIGHUP"
[[ $(value ExecStart) == "/usr/local/sbin/btnsd --foreground --config /etc/btnsd/btnsd.yaml" ]] || fail "ExecStart: $(value ExecStart)"
[[ $(value ExecStartPre) == *'--check-config'* ]] || fail "no --check-config before start"
[[ $(value RuntimeDirectory) == btnsd ]] || fail "RuntimeDirectory is not btnsd"
api_dir=$(sed -n 's/^ *api_socket: *\([^ ]*\).*/\1/p' "$etc/btnsd.yaml")
[[ $(dirname "$api_dir") == /run/btnsd ]] || fail "sample api_socket $api_dir is not in the RuntimeDirectory"
for cap in CAP_NET_ADMIN CAP_NET_BIND_SERVICE; do
  [[ $(value CapabilityBoundingSet) == *$cap* ]] || fail "CapabilityBoundingSet lacks $cap"
done
[[ $(value CapabilityBoundingSet) != *CAP_SYS_ADMIN* ]] || fail "CAP_SYS_ADMIN must not be kept"
[[ $(value ProtectSystem) == strict ]] || fail "ProtectSystem is not strict"
[[ $(value RestrictAddressFamilies) == *AF_NETLINK* ]] || fail "netlink must stay allowed"

if command -v systemd-analyze > /dev/null; then
  # Point the unit at the staged binary so verify can check it exists.
  sed "s#/usr/local/sbin/#$root/usr/local/sbin/#g" "$unit" > "$TEST_TMPDIR/btnsd.service"
  systemd-analyze verify --man=no "$TEST_TMPDIR/btnsd.service" > "$TEST_TMPDIR/verify.out" 2>&1 || {
    cat "$TEST_TMPDIR/verify.out"; fail "systemd-analyze verify failed"; }
  # Unknown or misspelt directives are only warnings: any output is a failure.
  if [[ -s $TEST_TMPDIR/verify.out ]]; then cat "$TEST_TMPDIR/verify.out"; fail "systemd-analyze verify warned"; fi
  echo "systemd-analyze verify: clean"
else
  echo "systemd-analyze not installed: checked the unit's directives only"
fi
echo PASS
