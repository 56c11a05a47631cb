#!/usr/bin/env python3
"""config/btnsd.schema.json stays in step with the loader.

- every example and interop policy file loads and validates against the
  schema;
- at every mapping the loader checks (recorded by the loader itself through
  RecordAcceptedKeys while loading those files), the schema allows exactly
  the keys the loader accepts, and unknown keys are refused
  (additionalProperties: false);
- every mapping the schema describes was checked by the loader, and the
  files exercise every CheckMap call of config/loader.cc;
- the algorithm names of the schema are those the loader knows;
- invalid documents are refused by both the schema and the loader.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml

schema_path, dump, btnsctl, loader_source = sys.argv[1:5]
files = sorted({f for f in sys.argv[5:] if f.endswith(".yaml")})
failures = []


def check(ok, message):
    if not ok:
        failures.append(message)


schema = json.load(open(schema_path))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)


def deref(node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/$defs/"), ref
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = dict(schema["$defs"][ref[len("#/$defs/"):]], **extra)
    return node


def branches(node):
    node = deref(node)
    yield node
    for b in node.get("anyOf", []) + node.get("oneOf", []):
        yield from branches(b)


def step(node, component):
    """The subschema at one path component ('[]' for a list item)."""
    for b in branches(node):
        if component == "[]":
            if isinstance(b.get("items"), dict):
                return b["items"], "[]"
        else:
            if component in b.get("properties", {}):
                return b["properties"][component], component
            if isinstance(b.get("additionalProperties"), dict):
                return b["additionalProperties"], "*"
    return None, None


def components(path):
    out = []
    for part in path.split(".") if path else []:
        m = re.match(r"^([^\[]*)((\[\d+\])*)$", part)
        out.append(m.group(1))
        out += ["[]"] * m.group(2).count("[")
    return out


def object_at(path):
    node, pattern = schema, []
    for c in components(path):
        node, p = step(node, c)
        if node is None:
            return None, ".".join(pattern + [c])
        pattern.append(p)
    for b in branches(node):
        if "properties" in b:
            return b, ".".join(pattern)
    return None, ".".join(pattern)


# 1. Every file loads (the dump fails on any loader error) and validates.
# Files under include/ are parts of another file, loaded through it.
standalone = [f for f in files if "/include/" not in f]
dumped = subprocess.run([dump] + standalone, capture_output=True, text=True)
check(dumped.returncode == 0, f"the loader refused a file: {dumped.stderr}")
recorded = json.loads(dumped.stdout)
for f in files:
    doc = yaml.safe_load(open(f))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        failures.append(f"{f}: schema: {'/'.join(map(str, e.path))}: {e.message}")

# 2. Same keys at every mapping the loader checked.
visited = set()
for path, accepted in recorded["mappings"].items():
    obj, pattern = object_at(path)
    if obj is None:
        failures.append(f"loader checks mapping '{path}' but the schema has none at '{pattern}'")
        continue
    visited.add(pattern)
    in_schema = set(obj["properties"])
    check(set(accepted) == in_schema,
          f"'{pattern}': loader accepts {sorted(set(accepted) - in_schema)} not in the schema; "
          f"schema has {sorted(in_schema - set(accepted))} the loader refuses")
    check(obj.get("additionalProperties") is False,
          f"'{pattern}': the schema must refuse unknown keys like the loader")

# 3. Every schema mapping was checked by the loader.
described = set()


def walk(node, pattern, seen_refs=()):
    if isinstance(node, dict) and "$ref" in node:
        if node["$ref"] in seen_refs:
            return
        seen_refs = seen_refs + (node["$ref"],)
    node = deref(node)
    if "properties" in node:
        described.add(".".join(pattern))
        for k, v in node["properties"].items():
            walk(v, pattern + [k], seen_refs)
    if isinstance(node.get("additionalProperties"), dict):
        walk(node["additionalProperties"], pattern + ["*"], seen_refs)
    if isinstance(node.get("items"), dict):
        walk(node["items"], pattern + ["[]"], seen_refs)
    for b in node.get("anyOf", []) + node.get("oneOf", []):
        walk(b, pattern, seen_refs)


walk(schema, [])
check(described == visited,
      f"schema mappings the test files never exercise: {sorted(described - visited)}")

sites = [l for l in open(loader_source) if re.search(r"\bCheckMap\(", l)
         and not re.match(r"\s*bool\s+(Loader::)?CheckMap\(", l)]
distinct = {frozenset(v) for v in recorded["mappings"].values()}
check(len(distinct) == len(sites),
      f"config/loader.cc calls CheckMap at {len(sites)} places but the test files "
      f"exercise {len(distinct)} distinct mappings: add a file that uses the new one")

# 4. Algorithm names.
proposal = deref(schema["$defs"]["proposal"])
for kind, names in recorded["algorithms"].items():
    enum = set()
    for b in branches(proposal["properties"][kind]):
        enum |= set(b.get("enum", []))
        if isinstance(b.get("items"), dict):
            enum |= set(deref(b["items"]).get("enum", []))
    check(enum == set(names), f"proposal '{kind}': schema {sorted(enum ^ set(names))} differ from the loader")
check(set(recorded["algorithms"]) == set(proposal["properties"]),
      "proposal keys differ from the loader's transform types")

# 5. Invalid documents: refused by both.
# name: (document, the field the loader must name). Each is valid but for
# that one field, so both checkers must refuse it for the same reason.
ME = "identities:\n  me: {id: null}\n"
BTNS = ME + "pad:\n  - name: b\n    auth: btns\n"
INVALID = {
    "unknown-top": ("daemon: {log_level: info}\nspd_entries: []\n", "spd_entries"),
    "typo-in-pad": (ME + "pad:\n  - name: x\n    auth: btns\n    remote_tss: [192.0.2.1]\n",
                    "pad[0].remote_tss"),
    "bad-auth": (ME + "pad:\n  - name: x\n    peer: fqdn:a.example\n    auth: password\n",
                 "pad[0].auth"),
    "bad-action": ("spd:\n  - name: x\n    action: allow\n", "spd[0].action"),
    "port-range": ("daemon:\n  ike_port: 70000\n", "daemon.ike_port"),
    "bad-duration": (BTNS + "spd:\n  - name: x\n    action: protect\n    peer: b\n"
                     "    unauthenticated_ok: true\n    lifetime: {soft: 3h30m}\n",
                     "spd[0].lifetime.soft"),
    "bad-algorithm": ("proposals:\n  p:\n    proposals:\n      - encryption: [aes512gcm16]\n",
                      "proposals.p.proposals[0].encryption[0]"),
    "missing-name": ("spd:\n  - action: bypass\n", "spd[0].name"),
    "peer-on-bypass": ("spd:\n  - name: x\n    action: bypass\n    peer: y\n", "spd[0].peer"),
    "psk-with-btns": (BTNS + "    psk: k\n", "pad[0].psk"),
    "log-level": ("daemon:\n  log_level: verbose\n", "daemon.log_level"),
    "identity-without-id": ("identities:\n  me:\n    psk: k\n", "identities.me.id"),
}
with tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR")) as tmp:
    valid = os.path.join(tmp, "valid.yaml")
    with open(valid, "w") as out:
        out.write(BTNS + "spd:\n  - name: x\n    action: protect\n    peer: b\n"
                  "    unauthenticated_ok: true\n    lifetime: {soft: 30m}\n")
    r = subprocess.run([btnsctl, "check-config", valid], capture_output=True, text=True)
    check(r.returncode == 0, f"the base of the invalid documents is itself refused: {r.stderr}")
    for name, (text, field) in INVALID.items():
        path = os.path.join(tmp, name + ".yaml")
        with open(path, "w") as out:
            out.write(text)
        check(not validator.is_valid(yaml.safe_load(text)), f"schema accepts invalid '{name}'")
        r = subprocess.run([btnsctl, "check-config", path], capture_output=True, text=True)
        check(r.returncode == 1, f"loader: '{name}' exit {r.returncode}, want 1: {r.stderr}")
        check(f": {field}: " in r.stderr, f"loader: '{name}' does not name {field}: {r.stderr}")

for f in dict.fromkeys(failures):
    print("FAIL:", f)
print(f"{len(files)} files ({len(standalone)} loaded standalone), {len(recorded['mappings'])} mappings ({len(visited)} kinds, "
      f"{len(sites)} CheckMap calls), {len(INVALID)} invalid documents checked")
sys.exit(1 if failures else 0)
