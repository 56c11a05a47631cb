#!/usr/bin/env python3
"""Tests the ikedecode command line: pcap (IPv4, IPv6, UDP 4500), hex input,
text and JSON output, and error reporting."""
import json
import os
import subprocess
import sys
import tempfile

failures = []


def check(condition, what):
    print(("ok    " if condition else "FAIL  ") + what)
    if not condition:
        failures.append(what)


def run(*args):
    result = subprocess.run([IKEDECODE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


IKEDECODE, WRITE_CORPUS, STRONGSWAN_PCAP, STRONGSWAN_KEYS = sys.argv[1:5]
tmp = os.environ.get("TEST_TMPDIR") or tempfile.mkdtemp()
corpus, mixed, names = (os.path.join(tmp, n) for n in ("c.pcap", "m.pcap", "names"))
subprocess.run([WRITE_CORPUS, "--pcap", corpus, "--mixed-pcap", mixed, "--names", names], check=True)
entry_names = open(names).read().split()

# JSON over the IPv4 capture: one object per corpus entry, all decoded.
rc, out, err = run("--json", corpus)
messages = [json.loads(line) for line in out.splitlines()]
check(rc == 0, "pcap decode exits 0")
check(len(messages) == len(entry_names), "one JSON object per corpus message (%d)" % len(messages))
check(all(m["ok"] for m in messages), "every corpus message decodes")
first = messages[0]
check(first["src"] == "192.0.2.1" and first["dport"] == 500, "addresses and ports of frame 1")
check(first["header"]["exchange_name"] == "IKE_SA_INIT" and first["header"]["ispi"] == "0102030405060708",
      "header of frame 1")
sa = first["payloads"][0]
check(sa["name"] == "SA" and sa["proposals"][0]["transforms"][0]["key_length"] == 256,
      "key length attribute of the first transform")
by_name = dict(zip(entry_names, messages))
null_auth = by_name["ike_auth_null"]["payloads"]
check(null_auth[0]["id_type_name"] == "ID_NULL" and null_auth[1]["method_name"] == "NULL_AUTH",
      "ID_NULL and NULL authentication")
raw = by_name["ike_auth_raw_public_key"]["payloads"]
check(raw[1]["encoding_name"] == "RAW_PUBLIC_KEY", "raw public key CERT")
check([s["start"] for s in raw[7]["selectors"]] == ["192.0.2.1", "2001:db8::1"], "IPv4 and IPv6 TSi")
skf = by_name["ike_auth_fragment_1_of_2"]["payloads"][0]
check((skf["fragment_number"], skf["total_fragments"], skf["first_inner"]) == (1, 2, 35), "SKF fields")

# Mixed capture: IPv6 and NAT-T frames are found, keepalive and ESP skipped.
rc, out, err = run("--json", "--verbose", mixed)
mixed_messages = [json.loads(line) for line in out.splitlines()]
check(len(mixed_messages) == 2 * len(entry_names), "IPv6 and UDP 4500 copies all found")
check(sum(m["non_esp_marker"] for m in mixed_messages) == len(entry_names), "non-ESP marker stripped on 4500")
check(any(m["src"] == "2001:db8::1" for m in mixed_messages), "IPv6 source address printed")
check("NAT keepalive" in err and "ESP in UDP" in err, "skipped frames explained with --verbose")

# Text output for operators.
rc, out, err = run(corpus)
check("IKE_SA_INIT request" in out and "ENCR_AES_GCM_16/256" in out and "ID_NULL" in out,
      "text output names exchange, transforms and ID types")
check("%d IKE messages, 0 undecodable" % len(entry_names) in err, "summary on stderr")

# Hex input, with and without the non-ESP marker; an undecodable message.
header = "0102030405060708" + "0000000000000000" + "29202200" + "00000000"
notify = "00000008" + "00004000"  # Notify INITIAL_CONTACT
message = header + "%08x" % (28 + 8) + notify
rc, out, err = run("--json", "--hex", message)
obj = json.loads(out)
check(rc == 0 and obj["ok"] and obj["payloads"][0]["notify_name"] == "INITIAL_CONTACT", "--hex decodes")
rc, out, err = run("--json", "--hex", "00000000" + message)
check(json.loads(out)["ok"], "--hex accepts a leading non-ESP marker")
rc, out, err = run("--json", "--hex", header + "%08x" % (28 + 8) + "00000009" + "00004000")
obj = json.loads(out)
check(not obj["ok"] and obj["error"]["notify_name"] == "INVALID_SYNTAX" and obj["error"]["offset"] == 28,
      "bad payload length reported with notify and offset")
rc, out, err = run("--hex", header.replace("2022", "3022", 1) + "%08x" % (28 + 8) + notify)
check("INVALID_MAJOR_VERSION" in out, "major version 3 answered with INVALID_MAJOR_VERSION")
hex_file = os.path.join(tmp, "messages.hex")
with open(hex_file, "w") as f:
    f.write("# two messages\n%s\n\n%s\n" % (message, message.upper()))
rc, out, err = run("--json", "--hex-file", hex_file)
check(rc == 0 and len(out.splitlines()) == 2, "--hex-file decodes one message per line")
with open(hex_file, "w") as f:
    f.write("abc\n")
rc, out, err = run("--hex-file", hex_file)
check(rc == 1 and hex_file + ":1: odd number of hex digits" in err, "bad hex names file and line")
rc, out, err = run(os.path.join(tmp, "missing.pcap"))
check(rc == 1 and "missing.pcap: cannot open" in err, "missing capture named in the error")
with open(os.path.join(tmp, "bad.pcap"), "wb") as f:
    f.write(open(corpus, "rb").read()[:60])
rc, out, err = run(os.path.join(tmp, "bad.pcap"))
check(rc == 1 and "record 1" in err and "truncated" in err, "truncated capture reported")

extract_dir = os.path.join(tmp, "extracted")
os.makedirs(extract_dir, exist_ok=True)
rc, out, err = run("--extract", extract_dir, corpus)
extracted = sorted(os.listdir(extract_dir))
check(rc == 0 and len(extracted) == len(entry_names), "--extract writes one file per message")
check(open(os.path.join(extract_dir, "frame-1.ike"), "rb").read()[:8] == bytes.fromhex("0102030405060708"),
      "extracted message starts with the initiator SPI")

# --keys: decryption of a real capture, a wrong key, and a bad keys file.
rc, out, err = run("--json", "--keys", STRONGSWAN_KEYS, STRONGSWAN_PCAP)
auth = [json.loads(line) for line in out.splitlines()][2:]
check(all(m.get("decrypted", {}).get("ok") for m in auth), "--keys decrypts both IKE_AUTH messages")
wrong_keys = os.path.join(tmp, "wrong.keys")
with open(STRONGSWAN_KEYS) as f, open(wrong_keys, "w") as g:
    for line in f:
        fields = line.split()
        if fields and not line.startswith("#"):
            fields[3] = ("0" if fields[3][0] != "0" else "1") + fields[3][1:]
            fields[4] = ("0" if fields[4][0] != "0" else "1") + fields[4][1:]
            if len(fields) == 8:
                fields[6] = ("0" if fields[6][0] != "0" else "1") + fields[6][1:]
                fields[7] = ("0" if fields[7][0] != "0" else "1") + fields[7][1:]
        g.write(" ".join(fields) + "\n")
rc, out, err = run("--json", "--keys", wrong_keys, STRONGSWAN_PCAP)
auth = [json.loads(line) for line in out.splitlines()][2:]
check(all(m["decrypted"]["ok"] is False and "failed" in m["decrypted"]["error"] for m in auth),
      "a wrong key is reported as a failed integrity check, nothing decoded")
with open(wrong_keys, "w") as g:
    g.write("# comment\n0011 2233 aes-gcm-16 00 00\n")
rc, out, err = run("--keys", wrong_keys, STRONGSWAN_PCAP)
check(rc == 1 and wrong_keys + ":2: SPIs must be 16 hex digits" in err, "bad keys file names file and line")

print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
