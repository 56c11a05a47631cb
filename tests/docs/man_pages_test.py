#!/usr/bin/env python3
"""The manual pages render without warnings and say what the code does.

- groff -man -ww reports nothing and `man -l` renders each page;
- btnsd(8) lists exactly the options `btnsd --help` prints;
- btnsctl(8) describes exactly the commands `btnsctl --help` lists;
- btns(3) shows every function the header declares, and no other;
- btnsd.yaml(5) names every key of config/btnsd.schema.json (which
  tests/config:schema_test keeps equal to what the loader accepts).
"""
import json
import os
import re
import subprocess
import sys

failures = []


def check(ok, message):
    if not ok:
        failures.append(message)


def run(*argv, env=None):
    return subprocess.run(argv, capture_output=True, text=True, env=env)


pages = {os.path.basename(p): p for p in sys.argv[1].split()}
btnsd, btnsctl, header, schema_path = sys.argv[2:6]

for name in ("btnsd.8", "btnsctl.8", "btnsd.yaml.5", "btns.3"):
    check(name in pages, f"missing page {name}")
for name, path in pages.items():
    r = run("groff", "-man", "-ww", "-z", path)
    check(r.returncode == 0 and r.stderr == "", f"{name}: groff warnings: {r.stderr}")
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0")
    r = run("man", "--warnings=w", "-l", path, env=env)
    text = re.sub(r".\x08", "", r.stdout)  # overstrike bold/underline
    check(r.returncode == 0 and "NAME" in text and "SEE ALSO" in text,
          f"{name}: man -l failed (status {r.returncode}): {r.stderr} {r.stdout[:200]!r}")
    check(r.stderr.strip() == "", f"{name}: man -l warnings: {r.stderr}")


def rendered(name):
    env = dict(os.environ, MANWIDTH="250")
    out = run("man", "--nh", "--nj", "-l", pages[name], env=env).stdout
    return re.sub(r".\x08", "", out)  # drop overstrike bold/underline


# btnsd(8): the options.
help_text = run(btnsd, "--help").stdout
options = set(re.findall(r"--[a-z][a-z-]+", help_text))
page = rendered("btnsd.8")
synopsis = page.split("DESCRIPTION")[0]
documented = set(re.findall(r"--[a-z][a-z-]+", page.split("OPTIONS")[1].split("START-UP")[0]))
check(run(btnsd, "--help").returncode == 0, "btnsd --help fails")
options.add("--help")
check(options == documented, f"btnsd.8 OPTIONS {sorted(documented)} != --help {sorted(options)}")
check(options <= set(re.findall(r"--[a-z][a-z-]+", synopsis)), "btnsd.8 SYNOPSIS misses an option")

# btnsctl(8): the commands.
r = run(btnsctl, "--help")
commands = set(re.findall(r"^  ([a-z][a-z-]+)\s", r.stdout, re.M))
check(len(commands) >= 1, f"no commands in btnsctl --help: {r.stdout}")
page = rendered("btnsctl.8")
section = re.split(r"^[A-Z][A-Z ]+$", page.split("\nCOMMANDS\n")[1], maxsplit=1, flags=re.M)[0]
documented = set(re.findall(r"^       ([a-z][a-z-]+)\b", section, re.M))
check(commands == documented,
      f"btnsctl.8 COMMANDS {sorted(documented)} != btnsctl --help {sorted(commands)}")

# btns(3): the functions of the header.
text = open(header).read()
text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
declared = set(re.findall(r"\b([a-z_][a-zA-Z0-9_]*)\s*\([^()]*\)\s*;", text))
declared.add("get_new_pToken")  # a macro over ipsec_new_pToken1/2
declared -= {"ipsec_new_pToken1", "ipsec_new_pToken2"}
page = rendered("btns.3")
synopsis = page.split("DESCRIPTION")[0]
shown = set(re.findall(r"\b([a-z_][a-zA-Z0-9_]*)\(", synopsis))
check(declared == shown, f"btns.3 SYNOPSIS {sorted(shown - declared)} extra, {sorted(declared - shown)} missing")

# btnsd.yaml(5): every schema key.
schema = json.load(open(schema_path))
keys = set()


def collect(node):
    if isinstance(node, dict):
        for k, v in node.get("properties", {}).items():
            keys.add(k)
        for v in node.values():
            collect(v)
    elif isinstance(node, list):
        for v in node:
            collect(v)


collect(schema)
page = rendered("btnsd.yaml.5")
missing = sorted(k for k in keys if not re.search(r"\b" + re.escape(k) + r"\b", page))
check(not missing, f"btnsd.yaml.5 does not describe: {missing}")

for f in failures:
    print("FAIL:", f)
print(f"{len(pages)} pages, {len(options)} btnsd options, {len(commands)} btnsctl commands, "
      f"{len(declared)} C functions, {len(keys)} config keys checked")
sys.exit(1 if failures else 0)
