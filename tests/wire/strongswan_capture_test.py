#!/usr/bin/env python3
"""Decodes the real strongSwan 5.9.8 captures (tests/fixtures/strongswan,
copied from tests/fixtures/strongswan) with ikedecode, decrypts their
IKE_AUTH messages with the keys from charon's log, and checks the result
against tshark (payload chain, SPIs, proposals, decrypted contents; via
tshark_crosscheck.py), against what the fixture README says each scenario
negotiated, and that our encoder reproduces every message byte for byte."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tshark_crosscheck  # noqa: E402

IKEDECODE = sys.argv[1]
KEYS = sys.argv[2]
CAPTURES = sys.argv[3:]

# From tests/fixtures/strongswan/README.md: the IKE proposal of each scenario
# as (transform type, transform id, key length).
EXPECTED_IKE_TRANSFORMS = {
    "psk-x25519-aesgcm256": [[1, 20, 256], [2, 5, None], [4, 31, None]],
    "psk-ecp256-aescbc128": [[1, 12, 128], [3, 12, None], [2, 5, None], [4, 19, None]],
}
EXPECTED_ESP_TRANSFORMS = {
    "psk-x25519-aesgcm256": [[1, 20, 256], [5, 0, None]],
    "psk-ecp256-aescbc128": [[1, 12, 128], [3, 12, None], [5, 0, None]],
}
KE_SIZE = {31: 32, 19: 64}

failures = []


def check(condition, what):
    print(("ok    " if condition else "FAIL  ") + what)
    if not condition:
        failures.append(what)


if not CAPTURES:
    sys.exit("no capture given")
for capture in CAPTURES:
    scenario = os.path.basename(capture)[:-len(".pcap")]
    print("== " + scenario)
    result = subprocess.run([IKEDECODE, "--json", "--keys", KEYS, capture], stdout=subprocess.PIPE, check=True)
    messages = [json.loads(line) for line in result.stdout.decode().splitlines()]
    check(len(messages) == 4 and all(m["ok"] for m in messages),
          "%s: 4 IKE messages, all decoded" % scenario)
    if len(messages) != 4:
        continue
    init_req, init_resp, auth_req, auth_resp = messages
    check([m["header"]["exchange_name"] for m in messages] ==
          ["IKE_SA_INIT", "IKE_SA_INIT", "IKE_AUTH", "IKE_AUTH"], "exchange sequence")
    check([(m["header"]["initiator"], m["header"]["response"]) for m in messages] ==
          [(True, False), (False, True), (True, False), (False, True)], "I and R flags")
    check([m["header"]["message_id"] for m in messages] == [0, 0, 1, 1], "message IDs")
    ispi = init_req["header"]["ispi"]
    rspi = init_resp["header"]["rspi"]
    check(init_req["header"]["rspi"] == "0" * 16 and rspi != "0" * 16, "responder SPI assigned in the response")
    check(all(m["header"]["ispi"] == ispi for m in messages) and
          all(m["header"]["rspi"] == rspi for m in messages[1:]), "SPIs stay the same")
    check((init_req["src"], init_req["dst"]) == ("192.0.2.1", "192.0.2.2"), "initiator is left (192.0.2.1)")
    check(all(m["dport"] == 4500 and m["non_esp_marker"] for m in (auth_req, auth_resp)),
          "IKE_AUTH moved to port 4500 with the non-ESP marker")
    expected = EXPECTED_IKE_TRANSFORMS.get(scenario)
    for m, who in ((init_req, "request"), (init_resp, "response")):
        sa = [p for p in m["payloads"] if p["name"] == "SA"][0]
        got = [[t["type"], t["id"], t.get("key_length")] for t in sa["proposals"][0]["transforms"]]
        check(expected is None or got == expected, "IKE proposal in the %s: %s" % (who, got))
        ke = [p for p in m["payloads"] if p["name"] == "KE"][0]
        check(ke["data_length"] == KE_SIZE.get(ke["group"]), "KE size for group %d" % ke["group"])
        names = [p.get("notify_name") for p in m["payloads"] if p["name"] == "Notify"]
        check("NAT_DETECTION_SOURCE_IP" in names and "IKEV2_FRAGMENTATION_SUPPORTED" in names,
              "NAT detection and fragmentation notifies in the %s" % who)
    check([p["name"] for p in auth_req["payloads"]] == ["SK"] and auth_req["payloads"][0]["first_inner_name"] == "IDi",
          "IKE_AUTH request is one SK payload starting with IDi")
    check([p["name"] for p in auth_resp["payloads"]] == ["SK"] and auth_resp["payloads"][0]["first_inner_name"] == "IDr",
          "IKE_AUTH response is one SK payload starting with IDr")

    check(all(m["reencodes_identically"] for m in messages),
          "our encoder reproduces all 4 messages byte for byte")

    # The IKE_AUTH contents, decrypted with the keys from charon's log.
    for m, own_id, peer_id in ((auth_req, "IDi", "left.example.net"), (auth_resp, "IDr", "right.example.net")):
        d = m.get("decrypted", {})
        check(d.get("ok") is True, "%s decrypted and its inner payloads decode" % own_id)
        if not d.get("ok"):
            continue
        check(d["reencodes_identically"], "decrypted chain re-encodes byte for byte")
        inner = d["payloads"]
        names = [p["name"] for p in inner]
        check(names[0] == own_id and inner[0]["id_type_name"] == "ID_FQDN" and inner[0]["text"] == peer_id,
              "%s is ID_FQDN %s" % (own_id, peer_id))
        auth = [p for p in inner if p["name"] == "AUTH"]
        check(len(auth) == 1 and auth[0]["method_name"] == "SHARED_KEY_MIC", "AUTH is SHARED_KEY_MIC")
        esp = [p for p in inner if p["name"] == "SA"][0]["proposals"][0]
        got = [[t["type"], t["id"], t.get("key_length")] for t in esp["transforms"]]
        check(esp["protocol_name"] == "ESP" and len(esp["spi"]) == 8 and
              got == EXPECTED_ESP_TRANSFORMS.get(scenario, got), "ESP proposal %s" % got)
        tsi = [p for p in inner if p["name"] == "TSi"][0]["selectors"]
        tsr = [p for p in inner if p["name"] == "TSr"][0]["selectors"]
        check([(s["start"], s["end"]) for s in tsi] == [("192.0.2.1", "192.0.2.1")] and
              [(s["start"], s["end"]) for s in tsr] == [("192.0.2.2", "192.0.2.2")],
              "traffic selectors are the two /32s")
        check(any(p.get("notify_name") == "USE_TRANSPORT_MODE" for p in inner), "transport mode requested")

    mine = tshark_crosscheck.read_ours(IKEDECODE, capture, KEYS)
    theirs = tshark_crosscheck.read_tshark("tshark", capture, KEYS)
    problems, observed = tshark_crosscheck.compare(mine, theirs, [], verbose=True)
    for problem in problems:
        print("MISMATCH: " + problem)
    check(not problems and len(theirs) == 4, "tshark agrees on all 4 messages")
    check(tshark_crosscheck.count_inner(mine) == 2 and tshark_crosscheck.count_inner(theirs) == 2,
          "tshark and ikedecode both decrypted both IKE_AUTH messages (contents compared above)")
    check(not observed, "no known tshark difference needed")

print("%d failures" % len(failures))
sys.exit(1 if failures else 0)
