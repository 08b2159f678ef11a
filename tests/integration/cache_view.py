#!/usr/bin/env python3
"""What an initiator believes about a LUN's write cache: logs in (tests/hostile/peer.py),
reads the caching mode page (MODE SENSE(6), page 08h) and prints its WCE bit, as Linux
does when it attaches a disk.

  cache_view.py HOST PORT TARGET                 print "WCE=0|1" and log out
  cache_view.py HOST PORT TARGET --hold FILE     print "WCE=0|1", then "logged-in", and stay
                                                 logged in until FILE exists (at most 300 s)

Exits 1 when the page cannot be read.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hostile"))
from peer import Peer  # noqa: E402


def mode_sense_caching(p):
    """Returns the WCE bit, retrying past unit attentions (a replaced LUN raises them)."""
    cdb = bytes([0x1A, 0x08, 0x08, 0x00, 0xFF, 0x00])  # DBD=1, page 08h, 255 bytes
    for _ in range(5):
        p.send(p.scsi_bhs(cdb, 255, read=True))
        p.itt += 1
        p.cmd_sn += 1
        data, status = bytearray(), None
        while status is None:
            hdr, seg = p.recv_pdu()
            op = hdr[0] & 0x3F
            if op == 0x25:  # Data-In, maybe with status
                data += seg
                if hdr[1] & 0x01:
                    status = hdr[3]
            elif op == 0x21:  # SCSI Response
                status = hdr[3]
            elif op != 0x20:  # not a NOP-In either
                raise RuntimeError(f"unexpected opcode {op:#x} during MODE SENSE")
        if status == 0:
            page = data[4 + data[3]:]
            if len(page) < 3 or page[0] & 0x3F != 0x08:
                raise RuntimeError(f"no caching page in {bytes(data).hex()}")
            return (page[2] >> 2) & 1
    raise RuntimeError("MODE SENSE kept failing")


def main():
    host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    hold = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--hold" else None
    p = Peer(host, port)
    p.login(target)
    print(f"WCE={mode_sense_caching(p)}", flush=True)
    if hold:
        print("logged-in", flush=True)
        deadline = time.monotonic() + 300
        while not os.path.exists(hold) and time.monotonic() < deadline:
            time.sleep(0.1)
    p.close()


if __name__ == "__main__":
    main()
