#!/usr/bin/env python3
"""Digest negotiation seen from an initiator: for one target setting, offers each
of CRC32C / None / CRC32C,None / None,CRC32C for HeaderDigest and DataDigest
(the same offer for both, as iscsid.conf does) and checks the target's answer:

  setting    CRC32C      None        CRC32C,None   None,CRC32C
  allowed    CRC32C      None        CRC32C        None
  never      refused     None        None          None
  required   CRC32C      refused     CRC32C        CRC32C

"refused" is a login response with status 0x0200 (initiator error) followed by
the connection being closed; an answer is the operational stage's final
response (status 0, T bit set) with that value for both keys.

Usage: digest_negotiation.py HOST PORT TARGET_IQN SETTING
Prints one line per case and 'N passed, M failed'; exits 1 on any failure.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import Peer, text  # noqa: E402

OFFERS = ["CRC32C", "None", "CRC32C,None", "None,CRC32C"]
EXPECTED = {
    "allowed": ["CRC32C", "None", "CRC32C", "None"],
    "never": ["refused", "None", "None", "None"],
    "required": ["CRC32C", "refused", "CRC32C", "CRC32C"],
}


def answers_of(data):
    out = {}
    for kv in data.split(b"\0"):
        if b"=" in kv:
            k, v = kv.split(b"=", 1)
            out[k.decode()] = v.decode()
    return out


def try_offer(host, port, target, offer, isid):
    """Returns the value both digest keys were answered with, or 'refused'."""
    p = Peer(host, port)
    p.isid = isid
    try:
        sec = text([("InitiatorName", "iqn.2025-01.com.example:digest-table"),
                    ("SessionType", "Normal"), ("TargetName", target), ("AuthMethod", "None")])
        p.send(p.login_bhs(0, 1, True, len(sec)), sec)
        hdr, _ = p.recv_pdu()
        if hdr[36:38] != b"\0\0":
            return f"security stage refused {hdr[36]:#x}/{hdr[37]:#x}"
        ops = text([("HeaderDigest", offer), ("DataDigest", offer),
                    ("MaxRecvDataSegmentLength", "65536")])
        p.send(p.login_bhs(1, 3, True, len(ops)), ops)
        hdr, data = p.recv_pdu()
        if hdr[36:38] == b"\x02\x00":
            return "refused" if p.is_closed() else "refused but the connection stayed open"
        if hdr[36:38] != b"\0\0" or not hdr[1] & 0x80:
            return f"unexpected status {hdr[36]:#x}/{hdr[37]:#x} flags {hdr[1]:#x}"
        a = answers_of(data)
        hd, dd = a.get("HeaderDigest"), a.get("DataDigest")
        return hd if hd == dd else f"HeaderDigest={hd} DataDigest={dd}"
    finally:
        p.close()


def main():
    host, port, target, setting = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    passed = failed = 0
    for i, (offer, want) in enumerate(zip(OFFERS, EXPECTED[setting])):
        got = try_offer(host, port, target, offer, 0x400000000000 + i)
        ok = got == want
        passed += ok
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {setting}: offer {offer}: want {want}, got {got}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
