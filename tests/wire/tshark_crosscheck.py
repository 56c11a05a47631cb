#!/usr/bin/env python3
"""Cross-checks ikedecode against tshark (Wireshark's ISAKMP dissector).

Both tools read the same pcap. For every IKE frame the script compares the
header (SPIs, exchange type, flags, message ID, length, first payload), the
payload chain in order, and the key fields of each payload (proposal numbers,
protocols and SPIs, transform types, IDs and key lengths, KE group, ID types,
certificate encodings, AUTH methods, nonces, notify protocol/type/SPI, delete
SPIs, traffic selectors, SK first inner payload, SKF numbers, CP attributes)
plus the exchange, notify and ID type names where both use the IANA names.

Where tshark 4.0 is known to be wrong or incomplete, the difference is listed
in KNOWN_DIFFERENCES below and checked to be exactly that difference; any
other mismatch fails. With --expect-all-known, every listed difference must
also have been observed (the synthetic corpus is built to contain them all).
"""
import argparse
import copy
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

# Each entry: id -> explanation. The code below applies them by matching on
# values, so they apply to any capture, not only to the corpus.
KNOWN_DIFFERENCES = {
    "exchange-43-unnamed":
        "tshark 4.0 does not know IKE_INTERMEDIATE (43, RFC 9242) and names it "
        "'Unknown'; the number agrees.",
    "notify-16435-16438-reserved":
        "tshark 4.0 names notifies 16435-16438 (USE_PPK, PPK_IDENTITY, "
        "NO_PPK_AUTH, INTERMEDIATE_EXCHANGE_SUPPORTED) 'RESERVED TO IANA - "
        "STATUS TYPES'; the numbers agree.",
    "id-null-future-use-and-assertion":
        "tshark 4.0 names ID_NULL (13, RFC 7619) 'Future use' and then hits a "
        "dissector assertion on its empty data: it shows no payload after "
        "that ID payload. Payloads up to and including the ID are compared.",
    "id-12-key-list":
        "tshark 4.0 names ID type 12 'KEY_LIST'; in the IKEv2 registry 12 is "
        "ID_FC_NAME (RFC 4595). The number agrees.",
}

# ID types whose data both tools print as text, and tshark's field for it.
ID_TEXT_FIELDS = {1: "isakmp.id.data.ipv4_addr", 2: "isakmp.id.data.fqdn",
                  3: "isakmp.id.data.user_fqdn", 5: "isakmp.id.data.ipv6_addr"}

NAME_RE = re.compile(r": (.*) \((\d+)\)$")


def showname_label(field):
    match = NAME_RE.search(field.get("showname") or "")
    return match.group(1) if match else None


def children(field, name):
    return [f for f in field.findall("field") if f.get("name") == name]


def child(field, name):
    found = children(field, name)
    return found[0] if found else None


def show(field, name, default=None):
    found = child(field, name)
    return found.get("show") if found is not None else default


def hex_of(field, name):
    found = child(field, name)
    if found is None:
        return ""
    return (found.get("value") or "").lower()


def tshark_transform(tf):
    tf_id = None
    for f in tf.findall("field"):
        if (f.get("name") or "").startswith("isakmp.tf.id"):
            tf_id = int(f.get("show"))
    key_length = None
    for attr in children(tf, "isakmp.ike2.attr"):
        if show(attr, "isakmp.ike2.attr.type") == "14":
            key_length = int(show(attr, "isakmp.ike2.attr.key_length"))
    return [int(show(tf, "isakmp.tf.type")), tf_id, key_length]


def tshark_payload(p):
    ptype = int(p.get("show"))
    out = {"type": ptype, "critical": show(p, "isakmp.criticalpayload") == "1"}
    if ptype == 33:
        proposals = []
        for prop in children(p, "isakmp.typepayload"):
            proposals.append([
                int(show(prop, "isakmp.prop.number")),
                int(show(prop, "isakmp.prop.protoid")),
                hex_of(prop, "isakmp.spi"),
                [tshark_transform(tf) for tf in children(prop, "isakmp.typepayload")],
            ])
        out["proposals"] = proposals
    elif ptype == 34:
        out["group"] = int(show(p, "isakmp.key_exchange.dh_group"))
    elif ptype in (35, 36):
        id_type = child(p, "isakmp.id.type")
        out["id_type"] = int(id_type.get("show"))
        out["id_type_name"] = showname_label(id_type)
        text_field = ID_TEXT_FIELDS.get(out["id_type"])
        if text_field:
            data = child(p, "isakmp.id.data")
            out["id_text"] = show(data, text_field) if data is not None else None
    elif ptype == 37:
        out["encoding"] = int(show(p, "isakmp.cert.encoding"))
    elif ptype == 38:
        out["encoding"] = int(show(p, "isakmp.certreq.type"))
    elif ptype == 39:
        out["method"] = int(show(p, "isakmp.auth.method"))
    elif ptype == 40:
        out["nonce"] = hex_of(p, "isakmp.nonce")
    elif ptype == 41:
        msgtype = child(p, "isakmp.notify.msgtype")
        out["protocol"] = int(show(p, "isakmp.notify.protoid"))
        out["notify_type"] = int(msgtype.get("show"))
        out["notify_name"] = showname_label(msgtype)
        out["spi"] = hex_of(p, "isakmp.spi")
    elif ptype == 42:
        out["protocol"] = int(show(p, "isakmp.delete.protoid"))
        out["spi_size"] = int(show(p, "isakmp.spisize"))
        out["spis"] = [(f.get("value") or "").lower() for f in children(p, "isakmp.delete.spi")]
    elif ptype in (44, 45):
        selectors = []
        for ts in children(p, "isakmp.ts.data"):
            family = "ipv4" if show(ts, "isakmp.ts.type") == "7" else "ipv6"
            selectors.append([
                int(show(ts, "isakmp.ts.type")),
                int(show(ts, "isakmp.ts.protoid")),
                int(show(ts, "isakmp.ts.start_port")),
                int(show(ts, "isakmp.ts.end_port")),
                show(ts, "isakmp.ts.start_" + family),
                show(ts, "isakmp.ts.end_" + family),
            ])
        out["selectors"] = selectors
    elif ptype == 46:
        out["first_inner"] = int(show(p, "isakmp.nextpayload"))
        decrypted = child(p, "isakmp.enc.decrypted")
        contained = child(decrypted, "isakmp.enc.contained") if decrypted is not None else None
        if contained is not None:
            out["inner"] = [tshark_payload(q) for q in children(contained, "isakmp.typepayload")]
    elif ptype == 53:
        out["first_inner"] = int(show(p, "isakmp.nextpayload"))
        out["fragment"] = [int(show(p, "isakmp.frag.number")), int(show(p, "isakmp.frag.total"))]
    elif ptype == 47:
        out["cfg_type"] = int(show(p, "isakmp.cfg.type"))
        out["attributes"] = [int(show(a, "isakmp.cfg.attr.type")) for a in children(p, "isakmp.cfg.attr")]
    return out


def tshark_key_options(keys_path):
    """Turns an ikedecode keys file into tshark's IKEv2 decryption table."""
    options = []
    if not keys_path:
        return options
    integ_names = {"hmac-sha1-96": "HMAC_SHA1_96 [RFC2404]",
                   "hmac-sha2-256-128": "HMAC_SHA2_256_128 [RFC4868]",
                   "hmac-sha2-384-192": "HMAC_SHA2_384_192 [RFC4868]",
                   "hmac-sha2-512-256": "HMAC_SHA2_512_256 [RFC4868]"}
    for line in open(keys_path):
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        if f[2] == "aes-gcm-16":
            encr = "AES-GCM-%d with 16 octet ICV [RFC5282]" % ((len(f[3]) // 2 - 4) * 8)
            integ, sk_ai, sk_ar = "NONE [RFC4306]", "", ""
        elif f[2] == "aes-cbc":
            encr = "AES-CBC-%d [RFC3602]" % (len(f[3]) // 2 * 8)
            integ, sk_ai, sk_ar = integ_names[f[5]], f[6], f[7]
        else:
            continue  # tshark 4.0 cannot decrypt ChaCha20-Poly1305
        options += ["-o", 'uat:ikev2_decryption_table:%s,%s,%s,%s,"%s",%s,%s,"%s"' %
                    (f[0], f[1], f[3], f[4], encr, sk_ai, sk_ar, integ)]
    return options


def read_tshark(tshark, pcap, keys_path=None):
    result = subprocess.run([tshark, "-n", "-r", pcap, "-T", "pdml", "-d", "udp.port==500,isakmp"] +
                            tshark_key_options(keys_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
        sys.exit("tshark failed (%d): %s" % (result.returncode, result.stderr.decode(errors="replace")))
    messages = {}
    for packet in ET.fromstring(result.stdout).findall("packet"):
        frame = None
        for proto in packet.findall("proto"):
            if proto.get("name") == "geninfo":
                frame = int(show(proto, "num"))
        protos = [p for p in packet.findall("proto") if p.get("name") == "isakmp"]
        if not protos:
            continue
        isakmp = protos[0]
        exchange = child(isakmp, "isakmp.exchangetype")
        header = {
            "ispi": hex_of(isakmp, "isakmp.ispi"),
            "rspi": hex_of(isakmp, "isakmp.rspi"),
            "first_payload": int(show(isakmp, "isakmp.nextpayload")),
            "exchange": int(exchange.get("show")),
            "flags": int(show(isakmp, "isakmp.flags"), 16),
            "message_id": int(show(isakmp, "isakmp.messageid"), 16),
            "length": int(show(isakmp, "isakmp.length")),
        }
        payloads = [tshark_payload(p) for p in children(isakmp, "isakmp.typepayload")]
        messages[frame] = {"header": header, "exchange_name": showname_label(exchange),
                           "payloads": payloads}
    return messages


def ours_payload(p):
    ptype = p["type"]
    out = {"type": ptype, "critical": p["critical"]}
    if ptype == 33:
        out["proposals"] = [[q["number"], q["protocol"], q["spi"],
                             [[t["type"], t["id"], t.get("key_length")] for t in q["transforms"]]]
                            for q in p["proposals"]]
    elif ptype == 34:
        out["group"] = p["group"]
    elif ptype in (35, 36):
        out["id_type"] = p["id_type"]
        out["id_type_name"] = p["id_type_name"]
        if p["id_type"] in ID_TEXT_FIELDS:
            out["id_text"] = p["text"]
    elif ptype in (37, 38):
        out["encoding"] = p["encoding"]
    elif ptype == 39:
        out["method"] = p["method"]
    elif ptype == 40:
        out["nonce"] = p["data"]
    elif ptype == 41:
        out["protocol"] = p["protocol"]
        out["notify_type"] = p["notify_type"]
        out["notify_name"] = p["notify_name"]
        out["spi"] = p["spi"]
    elif ptype == 42:
        out["protocol"] = p["protocol"]
        out["spi_size"] = p["spi_size"]
        out["spis"] = p["spis"]
    elif ptype in (44, 45):
        out["selectors"] = [[s["ts_type"], s["ip_protocol"], s["start_port"], s["end_port"],
                             s["start"], s["end"]] for s in p["selectors"]]
    elif ptype == 46:
        out["first_inner"] = p["first_inner"]
    elif ptype == 53:
        out["first_inner"] = p["first_inner"]
        out["fragment"] = [p["fragment_number"], p["total_fragments"]]
    elif ptype == 47:
        out["cfg_type"] = p["cfg_type"]
        out["attributes"] = [a["type"] for a in p["attributes"]]
    return out


def read_ours(ikedecode, pcap, keys_path=None):
    keys = ["--keys", keys_path] if keys_path else []
    result = subprocess.run([ikedecode, "--json"] + keys + [pcap], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
        sys.exit("ikedecode failed (%d): %s" % (result.returncode, result.stderr.decode(errors="replace")))
    messages = {}
    for line in result.stdout.decode().splitlines():
        obj = json.loads(line)
        if not obj["ok"]:
            messages[obj["index"]] = {"error": obj["error"]["message"]}
            continue
        h = obj["header"]
        header = {k: h[k] for k in ("ispi", "rspi", "first_payload", "exchange", "flags",
                                    "message_id", "length")}
        payloads = [ours_payload(p) for p in obj["payloads"]]
        decrypted = obj.get("decrypted")
        if decrypted is not None:
            if not decrypted["ok"]:
                messages[obj["index"]] = {"error": "decryption: " + decrypted["error"]}
                continue
            for p in payloads:
                if p["type"] == 46:
                    p["inner"] = [ours_payload(q) for q in decrypted["payloads"]]
        messages[obj["index"]] = {"header": header, "exchange_name": h["exchange_name"],
                                  "payloads": payloads}
    return messages


def compare_names(frame, mine, theirs, observed, problems):
    """Compares IANA names, applying the known differences."""
    if mine["exchange_name"] != theirs["exchange_name"]:
        if mine["header"]["exchange"] == 43 and theirs["exchange_name"] == "Unknown":
            observed.add("exchange-43-unnamed")
        else:
            problems.append("frame %d: exchange name ours %r, tshark %r" %
                            (frame, mine["exchange_name"], theirs["exchange_name"]))
    for index, (a, b) in enumerate(zip(flatten(mine["payloads"]), flatten(theirs["payloads"]))):
        if a.get("notify_name") is not None and a["notify_name"] != b.get("notify_name"):
            if 16435 <= a["notify_type"] <= 16438 and b.get("notify_name", "").startswith("RESERVED"):
                observed.add("notify-16435-16438-reserved")
            else:
                problems.append("frame %d payload %d: notify name ours %r, tshark %r" %
                                (frame, index + 1, a["notify_name"], b.get("notify_name")))
        if a.get("id_type_name") is not None:
            # tshark writes most ID type names without the "ID_" prefix.
            short = a["id_type_name"][3:] if a["id_type_name"].startswith("ID_") else a["id_type_name"]
            if b.get("id_type_name") not in (a["id_type_name"], short):
                if a["id_type"] == 13 and b.get("id_type_name") == "Future use":
                    observed.add("id-null-future-use-and-assertion")
                elif a["id_type"] == 12 and b.get("id_type_name") == "KEY_LIST":
                    observed.add("id-12-key-list")
                else:
                    problems.append("frame %d payload %d: ID type name ours %r, tshark %r" %
                                    (frame, index + 1, a["id_type_name"], b.get("id_type_name")))


def flatten(payloads):
    """Payloads in order, each SK payload followed by its decrypted content."""
    for p in payloads:
        yield p
        yield from flatten(p.get("inner", []))


def strip_names(payloads):
    return [{k: (strip_names(v) if k == "inner" else v) for k, v in p.items()
             if not k.endswith("_name")} for p in payloads]


def count_inner(messages):
    return sum(1 for m in messages.values() for p in m.get("payloads", []) if "inner" in p)


def compare(mine, theirs, names, verbose=False):
    """Returns (problems, observed known differences)."""
    problems, observed = [], set()

    if sorted(theirs) != sorted(mine):
        problems.append("IKE frames differ: ours %s, tshark %s" % (sorted(mine), sorted(theirs)))
    for frame in sorted(set(theirs) & set(mine)):
        label = names[frame - 1] if frame - 1 < len(names) else "frame %d" % frame
        m, t = mine[frame], theirs[frame]
        if "error" in m:
            problems.append("%s: ikedecode rejected it: %s" % (label, m["error"]))
            continue
        if m["header"] != t["header"]:
            problems.append("%s: header ours %s, tshark %s" % (label, m["header"], t["header"]))
        compare_names(frame, m, t, observed, problems)
        ours_chain, their_chain = strip_names(m["payloads"]), strip_names(t["payloads"])
        truncated = (their_chain and their_chain[-1].get("id_type") == 13 and
                     len(their_chain) < len(ours_chain))
        if truncated:
            # Known: tshark stops after an ID_NULL payload.
            observed.add("id-null-future-use-and-assertion")
            ours_chain = ours_chain[:len(their_chain)]
        if ours_chain != their_chain:
            for i in range(max(len(ours_chain), len(their_chain))):
                a = ours_chain[i] if i < len(ours_chain) else None
                b = their_chain[i] if i < len(their_chain) else None
                if a != b:
                    problems.append("%s payload %d: ours %s, tshark %s" % (label, i + 1, a, b))
                    break
        status = "agrees" + (" (tshark stops after ID_NULL)" if truncated else "")
        if verbose:
            print("%-40s %-16s %2d payloads: %s" % (label, m["exchange_name"], len(m["payloads"]), status))

    return problems, observed


def self_test(mine, theirs, names):
    """Proves the comparison can fail: corrupts one field at a time."""
    mutations = [
        ("message id", lambda m: m["header"].update(message_id=m["header"]["message_id"] + 1)),
        ("payload order", lambda m: m["payloads"].reverse() if len(m["payloads"]) > 1 else m["payloads"].append({"type": 0})),
        ("first payload type", lambda m: m["payloads"][0].update(type=m["payloads"][0]["type"] ^ 1)),
        ("notify name", lambda m: [p.update(notify_name="X") for p in m["payloads"] if "notify_name" in p] or m["payloads"].pop()),
    ]
    with_inner = [f for f in mine if any("inner" in p for p in mine[f].get("payloads", []))]
    if with_inner:
        def corrupt_inner(m):
            inner = [p for p in m["payloads"] if "inner" in p][0]["inner"]
            inner[-1] = dict(inner[-1], type=inner[-1]["type"] ^ 1)
        mutations.append(("last decrypted payload type", corrupt_inner))
    for what, mutate in mutations:
        corrupted = copy.deepcopy(mine)
        frame = min(f for f in corrupted if "payloads" in corrupted[f])
        if what.startswith("last decrypted"):
            frame = with_inner[0]
        mutate(corrupted[frame])
        problems, _ = compare(corrupted, theirs, names)
        if not problems:
            return "self-test: corrupting the %s of frame %d went unnoticed" % (what, frame)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tshark", default="tshark")
    parser.add_argument("--ikedecode", required=True)
    parser.add_argument("--pcap", required=True)
    parser.add_argument("--names", help="file naming each frame, one per line")
    parser.add_argument("--expect-all-known", action="store_true")
    parser.add_argument("--self-test", action="store_true",
                        help="also check that corrupted output is reported")
    parser.add_argument("--min-messages", type=int, default=1)
    parser.add_argument("--keys", help="ikedecode keys file: compare decrypted SK contents too")
    parser.add_argument("--min-decrypted", type=int, default=0,
                        help="SK payloads both tools must have decrypted")
    args = parser.parse_args()

    names = []
    if args.names:
        with open(args.names) as f:
            names = [line.strip() for line in f if line.strip()]
    theirs = read_tshark(args.tshark, args.pcap, args.keys)
    mine = read_ours(args.ikedecode, args.pcap, args.keys)
    problems, observed = compare(mine, theirs, names, verbose=True)
    if args.self_test:
        failure = self_test(mine, theirs, names)
        if failure:
            problems.append(failure)
        else:
            print("self-test: every corruption of our output was detected")
    for key in sorted(observed):
        print("known difference observed: %s: %s" % (key, KNOWN_DIFFERENCES[key]))
    if args.expect_all_known:
        for key in sorted(set(KNOWN_DIFFERENCES) - observed):
            problems.append("known difference %r was not observed; is tshark newer? %s" %
                            (key, KNOWN_DIFFERENCES[key]))
    decrypted = min(count_inner(mine), count_inner(theirs))
    if args.keys:
        print("SK payloads decrypted: ours %d, tshark %d" % (count_inner(mine), count_inner(theirs)))
    if decrypted < args.min_decrypted:
        problems.append("only %d SK payloads decrypted by both, expected %d" % (decrypted, args.min_decrypted))
    if len(mine) < args.min_messages:
        problems.append("only %d IKE messages found, expected at least %d" % (len(mine), args.min_messages))
    for problem in problems:
        print("MISMATCH: " + problem)
    print("%d IKE messages compared, %d mismatches" % (len(set(theirs) & set(mine)), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
