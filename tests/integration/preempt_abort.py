#!/usr/bin/env python3
"""PREEMPT AND ABORT fences a write in flight (SPC-4 5.13.11.2.6), with two raw
iSCSI sessions (tests/hostile/peer.py) against a running ringtgt:

  B (InitialR2T=Yes, ImmediateData=No) registers, reserves Write Exclusive,
  writes 0x11 to LBA 0, then sends a WRITE of 0x22 to LBA 0 without its data
  and holds it at the R2T. A registers and sends PREEMPT AND ABORT of B's key.
  Once A has GOOD, B sends the Data-Out anyway: the WRITE must end with no
  status at all (TAS 0), the Data-Out must be dropped without a Reject, and
  A must read 0x11 back. B's session lives on: its next command hears
  REGISTRATIONS PREEMPTED, then its writes conflict.

Usage: preempt_abort.py HOST PORT TARGET_IQN
Prints one line per check; exits non-zero at the first that fails.
"""

import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hostile"))
from peer import Peer  # noqa: E402

INITIATOR_A = "iqn.2025-01.com.example:node-a"
INITIATOR_B = "iqn.2025-01.com.example:node-b"
KEY_A, KEY_B = 0xAAAA, 0xBBBB
WRITE_EXCLUSIVE = 1
GOOD, CHECK_CONDITION, RESERVATION_CONFLICT = 0x00, 0x02, 0x18


class CheckFailed(Exception):
    pass


def check(ok, what):
    if not ok:
        raise CheckFailed(what)
    print(f"ok   {what}", flush=True)


def send_data_outs(p, itt, hdr, payload):
    """Answers one R2T with the Data-Out PDUs it asks for."""
    ttt = int.from_bytes(hdr[20:24], "big")
    off = int.from_bytes(hdr[40:44], "big")
    want = int.from_bytes(hdr[44:48], "big")
    sent, sn = 0, 0
    while sent < want:
        n = min(want - sent, p.target_mrdsl)
        p.send(p.data_out_bhs(itt, ttt, off + sent, n, sent + n == want, sn),
               payload[off + sent : off + sent + n])
        sent += n
        sn += 1


def run(p, cdb, data_out=b"", read_len=0):
    """One command, its Data-Out sent only when asked (R2T): (status, data-in, sense)."""
    itt = p.itt
    edtl = len(data_out) if data_out else read_len
    p.send(p.scsi_bhs(cdb, edtl, read=read_len > 0, write=bool(data_out)))
    p.itt += 1
    p.cmd_sn += 1
    data_in = bytearray()
    while True:
        hdr, data = p.recv_pdu()
        op = hdr[0] & 0x3F
        if op == 0x31:  # R2T
            send_data_outs(p, itt, hdr, data_out)
        elif op == 0x25:  # Data-In
            data_in += data
            if hdr[1] & 0x01:
                return hdr[3], bytes(data_in), b""
        elif op == 0x21:  # SCSI Response
            return hdr[3], bytes(data_in), data[2:]
        elif op == 0x20:  # NOP-In
            continue
        else:
            raise CheckFailed(f"unexpected opcode {op:#x} for ITT {itt:#x}")


def prout(p, sa, key, sark, pr_type=0):
    cdb = bytes([0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0])
    params = key.to_bytes(8, "big") + sark.to_bytes(8, "big") + bytes(8)
    return run(p, cdb, data_out=params)[0]


def write10(p, lba, payload):
    cdb = bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0]) + (len(payload) // 512).to_bytes(2, "big") + bytes([0])
    return run(p, cdb, data_out=payload)[0]


def read10(p, lba, blocks):
    cdb = bytes([0x28, 0]) + lba.to_bytes(4, "big") + bytes([0]) + blocks.to_bytes(2, "big") + bytes([0])
    status, data, _ = run(p, cdb, read_len=blocks * 512)
    return status, data


def read_keys(p):
    status, data, _ = run(p, bytes([0x5E, 0, 0, 0, 0, 0, 0, 2, 0, 0]), read_len=512)
    n = int.from_bytes(data[4:8], "big") // 8
    return status, [int.from_bytes(data[8 + 8 * i : 16 + 8 * i], "big") for i in range(n)]


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    old, new = b"\x11" * 512, b"\x22" * 512

    b = Peer(host, port)
    b.login(target, initiator=INITIATOR_B, immediate_data=False)
    check(prout(b, 0, 0, KEY_B) == GOOD, "B registers its key")
    check(prout(b, 1, KEY_B, 0, WRITE_EXCLUSIVE) == GOOD, "B reserves Write Exclusive")
    check(write10(b, 0, old) == GOOD, "B, the holder, writes 0x11 to LBA 0")

    # B's next WRITE stops at the R2T: the target holds it, waiting for data.
    write_itt = b.itt
    cdb = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0])
    b.send(b.scsi_bhs(cdb, 512, write=True))
    b.itt += 1
    b.cmd_sn += 1
    while True:
        r2t, _ = b.recv_pdu()
        if r2t[0] & 0x3F == 0x31:
            break
    check(int.from_bytes(r2t[16:20], "big") == write_itt, "B's WRITE waits at its R2T")

    a = Peer(host, port)
    a.login(target, initiator=INITIATOR_A)
    check(prout(a, 0, 0, KEY_A) == GOOD, "A registers its key")
    check(prout(a, 5, KEY_A, KEY_B, WRITE_EXCLUSIVE) == GOOD, "A's PREEMPT AND ABORT of B's key is GOOD")

    # B sends the data A fenced it from, then a ping: the ping's answer must
    # come with no SCSI Response (nor Reject) before it, and nothing after.
    send_data_outs(b, write_itt, r2t, new)
    ping = b.nop_out(data=b"after-the-fence")
    ping_itt = int.from_bytes(ping[16:20], "big")
    b.send(ping, b"after-the-fence")
    before = []
    while True:
        hdr, _ = b.recv_pdu()
        op, itt = hdr[0] & 0x3F, int.from_bytes(hdr[16:20], "big")
        if op == 0x20 and itt == ping_itt:
            break
        before.append(f"opcode {op:#x} ITT {itt:#x} status {hdr[3]:#x}")
    check(not before, "B hears nothing for its aborted WRITE and its Data-Out (got: "
          + ("; ".join(before) or "nothing") + ")")
    b.sock.settimeout(1.0)
    try:
        hdr, _ = b.recv_pdu()
        check(False, f"nothing more for B after its ping (got opcode {hdr[0] & 0x3F:#x})")
    except socket.timeout:
        check(True, "nothing more for B after its ping")
    b.sock.settimeout(5.0)

    status, data = read10(a, 0, 1)
    check(status == GOOD and data == old, "A reads 0x11 at LBA 0: B's fenced write did not land")

    status, _, sense = run(b, bytes(6))
    check(status == CHECK_CONDITION and len(sense) >= 14 and sense[2] & 0x0F == 0x06
          and sense[12] == 0x2A and sense[13] == 0x05,
          "B's session lives on and hears REGISTRATIONS PREEMPTED (2Ah/05h)")
    check(write10(b, 0, new) == RESERVATION_CONFLICT, "B's next WRITE conflicts")
    status, keys = read_keys(a)
    check(status == GOOD and keys == [KEY_A], "only A's key is left")
    check(write10(a, 0, b"\x33" * 512) == GOOD, "A, the holder now, writes")
    status, data = read10(b, 0, 1)
    check(status == GOOD and data == b"\x33" * 512, "B may still read under Write Exclusive")
    a.close()
    b.close()
    print("preempt_abort: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as e:
        print(f"FAIL {e}", flush=True)
        sys.exit(1)
