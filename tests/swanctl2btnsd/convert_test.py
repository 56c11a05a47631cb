#!/usr/bin/env python3
"""swanctl2btnsd converts strongSwan configurations into btnsd policies.

- the strongSwan side of each interop case (psk-left*, cert-left) converts
  without warnings (but for options btnsd has no use for), the result passes
  `btnsctl check-config`, and its identities, PAD and SPD (proposals
  expanded) equal those of the hand-written interop config of the case;
- a hand-made gateway config converts (tunnel, two proposals, base64 key,
  lifetimes) and passes check-config with the expected values;
- a config full of what btnsd cannot express converts what it can and
  names each left-out option with FILE:LINE;
- a malformed file and a missing file fail with a clear message.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

converter, btnsctl, fixtures, interop = sys.argv[1:5]
failures = []
tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))


def check(ok, message):
    if not ok:
        failures.append(message)


def convert(name, *extra):
    out = os.path.join(tmp, name)
    os.makedirs(out, exist_ok=True)
    r = subprocess.run([converter, "-o", os.path.join(out, "btnsd.yaml"), *extra,
                        os.path.join(fixtures, name, "swanctl.conf")], capture_output=True, text=True)
    return r, os.path.join(out, "btnsd.yaml")


def policy(path):
    r = subprocess.run([btnsctl, "check-config", "--json", path], capture_output=True, text=True)
    if r.returncode != 0:
        failures.append(f"{path}: check-config failed: {r.stderr}")
        return None
    return json.loads(r.stdout)


def normalise(p):
    """What the daemon does with a policy, without the names people chose."""
    sets = p["proposals"]
    pad = [{k: v for k, v in e.items() if k not in ("name", "psk", "local_identity", "ca")}
           for e in p["pad"]]
    spd = []
    for e in p["spd"]:
        if e["action"] != "protect":
            continue
        e = {k: v for k, v in e.items() if k not in ("name", "peer")}
        for key in ("esp_proposals", "ike_proposals"):
            names = e[key] if isinstance(e[key], list) else [e[key]]
            e[key] = [sets[n] for n in names]
        spd.append(e)
    return {"identities": sorted(i["id"] for i in p["identities"]), "pad": pad, "spd": spd}


def reference(path):
    """A copy of an interop config with its folder (keys), secrets chmod 600."""
    src = os.path.dirname(path)
    dst = os.path.join(tmp, "ref-" + os.path.basename(src))
    if not os.path.exists(dst):
        shutil.copytree(src, dst, symlinks=False)
        for root, _, files in os.walk(dst):
            for f in files:
                os.chmod(os.path.join(root, f), 0o600 if f.endswith(".secrets") else 0o644)
    return os.path.join(dst, os.path.basename(path))


CASES = {
    "psk-left": ("psk-btnsd-left.yaml", []),
    "psk-left-chacha20": ("psk-btnsd-left-chacha20.yaml", []),
    "psk-left-aescbc": ("psk-btnsd-left-aescbc.yaml", []),
    "psk-left-tunnel": ("psk-btnsd-left-tunnel.yaml", []),
    "cert-left": ("pubkey/cert-ecdsa-left.yaml", ["'send_cert'"]),
}
for name, (ref, expected_warnings) in CASES.items():
    r, out = convert(name)
    check(r.returncode == 0, f"{name}: exit {r.returncode}: {r.stderr}")
    warnings = [l for l in r.stderr.splitlines() if l.strip()]
    check(len(warnings) == len(expected_warnings) and
          all(any(w in l for l in warnings) for w in expected_warnings),
          f"{name}: warnings {warnings}, want {expected_warnings}")
    if "psk" in name:
        secrets = os.path.join(os.path.dirname(out), "btnsd.secrets")
        check(os.path.exists(secrets) and (os.stat(secrets).st_mode & 0o777) == 0o600,
              f"{name}: secrets file missing or not 0600")
        check("interop test secret, not for production use" in open(secrets).read(),
              f"{name}: the shared key was not carried over")
    got, want = policy(out), policy(reference(os.path.join(interop, ref)))
    if got and want:
        g, w = normalise(got), normalise(want)
        for part in g:
            check(g[part] == w[part], f"{name}: {part} differs from {ref}:\n  converted {g[part]}\n  interop   {w[part]}")

# The hand-made gateway.
r, out = convert("gateway")
check(r.returncode == 0 and r.stderr == "", f"gateway: {r.returncode} {r.stderr}")
p = policy(out)
if p:
    spd = [e for e in p["spd"] if e["action"] == "protect"]
    check(len(spd) == 1 and spd[0]["mode"] == "tunnel" and spd[0]["start"] == "trap",
          f"gateway: SPD {spd}")
    check(spd and spd[0]["lifetime"]["soft_seconds"] == 3000 and spd[0]["lifetime"]["hard_seconds"] == 3600,
          "gateway: CHILD lifetime not 50m/1h")
    check(spd and spd[0]["ike_lifetime"]["soft_seconds"] == 10800 and spd[0]["ike_lifetime"]["hard_seconds"] == 11880,
          "gateway: IKE lifetime not 3h + 10 %")
    check(p["proposals"].get("gw-ike") == ["chacha20poly1305-prfsha256-x25519",
                                           "aes256cbc-sha256-prfsha256-ecp256"],
          f"gateway: IKE proposals {p['proposals'].get('gw-ike')}")
    secrets = open(os.path.join(os.path.dirname(out), "btnsd.secrets")).read()
    check("0x" + b"secret key for the gateway test".hex() in secrets, "gateway: base64 key not converted to hex")

# What btnsd cannot express: each left-out option named with its line.
r, out = convert("unsupported")
check(r.returncode == 0, f"unsupported: exit {r.returncode}: {r.stderr}")
conf = os.path.join(fixtures, "unsupported", "swanctl.conf")
lines = open(conf).read().splitlines()
for needle, what in (("version = 1", "IKEv1"), ("auth = eap-mschapv2", "eap-mschapv2"),
                     ("dpd_delay", "dpd_delay"), ("updown", "updown"), ("ah_proposals", "AH"),
                     ("pools {", "pools"), ("eap-user {", "eap")):
    line = next(i + 1 for i, l in enumerate(lines) if needle in l)
    check(any(re.match(rf".*swanctl.conf:{line}: warning: .*{re.escape(what)}", w) for w in r.stderr.splitlines()),
          f"unsupported: no warning naming line {line} ({what}): {r.stderr}")
p = policy(out)
if p:
    check([e["name"] for e in p["pad"]] == ["site"], f"unsupported: PAD {[e['name'] for e in p['pad']]}, want only site")
    check([i["name"] for i in p["identities"]] == ["site"], f"unsupported: identities {p['identities']}")

# Bad input.
bad = os.path.join(tmp, "bad.conf")
with open(bad, "w") as f:
    f.write("connections {\n  a {\n    version = 2\n")
r = subprocess.run([converter, bad], capture_output=True, text=True)
check(r.returncode == 1 and "not closed" in r.stderr, f"unclosed section: {r.returncode} {r.stderr}")
with open(bad, "w") as f:
    f.write("connections {\n  a = = {\n}\n}\n")
r = subprocess.run([converter, bad], capture_output=True, text=True)
check(r.returncode == 1 and "bad.conf:" in r.stderr and "Traceback" not in r.stderr,
      f"malformed: {r.returncode} {r.stderr}")
r = subprocess.run([converter, os.path.join(tmp, "missing.conf")], capture_output=True, text=True)
check(r.returncode == 1 and "cannot read" in r.stderr, f"missing file: {r.returncode} {r.stderr}")
r = subprocess.run([converter, "--bogus"], capture_output=True, text=True)
check(r.returncode == 2, f"bad option: exit {r.returncode}")

for f in failures:
    print("FAIL:", f)
print(f"{len(CASES)} interop configs compared, gateway, unsupported and 4 bad inputs checked")
sys.exit(1 if failures else 0)
