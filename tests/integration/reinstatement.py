#!/usr/bin/env python3
"""Session reinstatement (RFC 7143 §6.3.5) with raw iSCSI sessions
(tests/hostile/peer.py) against a running ringtgt whose LUN 0 of TARGET1
delays the completion of writes to LBAs DELAY_LBA.. by DELAY_MS (a fault armed
by the caller):

  1. Sessions are per target: one initiator logs in to TARGET1 and to TARGET2
     with the same ISID; the first session lives on (no reinstatement).
  2. A sends a WRITE to the delayed LBAs and does not wait for it; B logs in
     with A's initiator name and ISID. A's connection is closed, and B's final
     login response comes only once A's WRITE is out of the backend: not
     before the delay has run. B then reads what A wrote.

Usage: reinstatement.py HOST PORT TARGET1 TARGET2 DELAY_LBA DELAY_MS
Prints one line per check; exits non-zero at the first that fails.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hostile"))
from peer import Peer  # noqa: E402
from preempt_abort import CheckFailed, check, read10, write10  # noqa: E402

INITIATOR = "iqn.2025-01.com.example:reinstated"
GOOD = 0x00


def sessions_are_per_target(host, port, target1, target2):
    first = Peer(host, port)
    first.login(target1, initiator=INITIATOR)
    second = Peer(host, port)
    second.isid = first.isid
    second.login(target2, initiator=INITIATOR)
    check(write10(first, 0, b"\x5a" * 512) == GOOD,
          "the session to target 1 lives on after a login with its ISID to target 2")
    check(read10(second, 0, 1)[0] == GOOD, "the session to target 2 works beside it")
    first.close()
    second.close()


def reinstatement_waits(host, port, target, lba, delay_ms):
    a = Peer(host, port)
    a.login(target, initiator=INITIATOR)
    payload = b"\xa5" * 4096
    cdb = bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0, 0, 8, 0])
    # Immediate data: the whole WRITE goes now, and its completion is delayed.
    a.send(a.scsi_bhs(cdb, len(payload), write=True, dsl=len(payload)), payload)
    sent = time.monotonic()
    b = Peer(host, port, timeout=delay_ms / 1000 + 10)
    b.isid = a.isid
    b.login(target, initiator=INITIATOR)
    waited = time.monotonic() - sent
    print(f"     the reinstating login took {waited:.2f}s", flush=True)
    check(a.is_closed(wait=5.0), "the reinstated session's connection is closed")
    # The delay is a timer started when the WRITE reached the backend, after
    # `sent`: a login answered sooner did not wait for it.
    check(waited >= delay_ms / 1000,
          f"the final login response waited for the old session's WRITE ({delay_ms} ms)")
    status, data = read10(b, lba, 8)
    check(status == GOOD and data == payload, "the new session reads what the old one wrote")
    b.close()


def main():
    host, port, target1, target2 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    lba, delay_ms = int(sys.argv[5]), int(sys.argv[6])
    try:
        sessions_are_per_target(host, port, target1, target2)
        reinstatement_waits(host, port, target1, lba, delay_ms)
    except CheckFailed as e:
        print(f"FAIL {e}", flush=True)
        return 1
    print("reinstatement: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
