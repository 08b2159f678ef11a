#!/usr/bin/env python3
"""Task management that ends other sessions' commands (SAM-5 7.1, 7.4, 7.6, 7.10),
with two raw iSCSI sessions (tests/hostile/peer.py) against a running ringtgt.

For each of CLEAR TASK SET, LOGICAL UNIT RESET and TARGET WARM RESET:
  B (InitialR2T=Yes, ImmediateData=No) writes OLD to an LBA, then sends a WRITE
  of NEW to it without its data and holds it at the R2T. A sends the task
  management function. Once A has "function complete", B sends the Data-Out
  anyway: the WRITE must end with no status (TAS 0), the Data-Out must be
  dropped without a Reject, and A must read OLD back. B's session lives on.
And ABORT TASK SET, which is the sending nexus's business only: B's held WRITE
is untouched, completes GOOD when its data comes, and A reads NEW.

Usage: task_management.py HOST PORT TARGET_IQN
Prints one line per check; exits non-zero at the first that fails.
"""

import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hostile"))
from peer import Peer  # noqa: E402
from preempt_abort import CheckFailed, check, read10, run, send_data_outs, write10  # noqa: E402

INITIATOR_A = "iqn.2025-01.com.example:node-a"
INITIATOR_B = "iqn.2025-01.com.example:node-b"
GOOD = 0x00
ABORT_TASK_SET, CLEAR_TASK_SET, LOGICAL_UNIT_RESET, TARGET_WARM_RESET = 2, 4, 5, 6
NAMES = {
    ABORT_TASK_SET: "ABORT TASK SET",
    CLEAR_TASK_SET: "CLEAR TASK SET",
    LOGICAL_UNIT_RESET: "LOGICAL UNIT RESET",
    TARGET_WARM_RESET: "TARGET WARM RESET",
}


def tmf(p, function, lun=0):
    """Sends a task management request (immediate) and returns its response byte."""
    b = bytearray(48)
    b[0] = 0x02 | 0x40
    b[1] = 0x80 | function
    b[8:10] = (lun & 0xFF).to_bytes(2, "big")
    itt = p.itt
    b[16:20] = itt.to_bytes(4, "big")
    b[20:24] = (0xFFFFFFFF).to_bytes(4, "big")
    b[24:28] = p.cmd_sn.to_bytes(4, "big")
    b[28:32] = p.exp_stat_sn.to_bytes(4, "big")
    p.itt += 1
    p.send(b)
    while True:
        hdr, _ = p.recv_pdu()
        op = hdr[0] & 0x3F
        if op == 0x22 and int.from_bytes(hdr[16:20], "big") == itt:
            return hdr[2]
        if op != 0x20:  # NOP-In aside, nothing else is expected here
            raise CheckFailed(f"unexpected opcode {op:#x} while waiting for the TMF response")


def hold_write_at_r2t(p, lba, blocks=1):
    """Sends a WRITE without its data; returns (ITT, R2T header) once the target asks."""
    itt = p.itt
    cdb = bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0]) + blocks.to_bytes(2, "big") + bytes([0])
    p.send(p.scsi_bhs(cdb, 512 * blocks, write=True))
    p.itt += 1
    p.cmd_sn += 1
    while True:
        hdr, _ = p.recv_pdu()
        if hdr[0] & 0x3F == 0x31:
            check(int.from_bytes(hdr[16:20], "big") == itt, "B's WRITE waits at its R2T")
            return itt, hdr


def heard_until_ping(p, what):
    """Sends a ping; returns what came before its answer (must be nothing), and checks
    that nothing comes after it either."""
    ping = p.nop_out(data=what)
    ping_itt = int.from_bytes(ping[16:20], "big")
    p.send(ping, what)
    before = []
    while True:
        hdr, _ = p.recv_pdu()
        op, itt = hdr[0] & 0x3F, int.from_bytes(hdr[16:20], "big")
        if op == 0x20 and itt == ping_itt:
            break
        before.append(f"opcode {op:#x} ITT {itt:#x} status {hdr[3]:#x}")
    p.sock.settimeout(1.0)
    try:
        hdr, _ = p.recv_pdu()
        before.append(f"after the ping: opcode {hdr[0] & 0x3F:#x}")
    except socket.timeout:
        pass
    p.sock.settimeout(5.0)
    return before


def ends_other_sessions_write(a, b, function, lba):
    name = NAMES[function]
    old, new = bytes([0x10 + lba]) * 512, bytes([0x80 + lba]) * 512
    check(write10(b, lba, old) == GOOD, f"{name}: B writes OLD to LBA {lba}")
    itt, r2t = hold_write_at_r2t(b, lba)
    check(tmf(a, function) == 0, f"{name} from A: function complete")
    send_data_outs(b, itt, r2t, new)
    before = heard_until_ping(b, b"after-" + name.encode())
    check(not before, f"{name}: B hears nothing for its ended WRITE and its Data-Out (got: "
          + ("; ".join(before) or "nothing") + ")")
    a.clear_unit_attention()
    status, data = read10(a, lba, 1)
    check(status == GOOD and data == old, f"{name}: A reads OLD at LBA {lba}: B's write did not land")
    b.clear_unit_attention()
    check(write10(b, lba, new) == GOOD, f"{name}: B's session lives on and writes again")


def leaves_other_sessions_alone(a, b, lba):
    old, new = b"\x01" * 512, b"\x02" * 512
    check(write10(b, lba, old) == GOOD, f"ABORT TASK SET: B writes OLD to LBA {lba}")
    itt, r2t = hold_write_at_r2t(b, lba)
    check(tmf(a, ABORT_TASK_SET) == 0, "ABORT TASK SET from A: function complete")
    send_data_outs(b, itt, r2t, new)
    while True:
        hdr, _ = b.recv_pdu()
        if hdr[0] & 0x3F == 0x21 and int.from_bytes(hdr[16:20], "big") == itt:
            break
    check(hdr[3] == GOOD, "ABORT TASK SET of A: B's held WRITE completes GOOD")
    a.clear_unit_attention()
    status, data = read10(a, lba, 1)
    check(status == GOOD and data == new, "ABORT TASK SET: A reads B's NEW data")


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    b = Peer(host, port)
    b.login(target, initiator=INITIATOR_B, immediate_data=False)
    b.clear_unit_attention()
    a = Peer(host, port)
    a.login(target, initiator=INITIATOR_A)
    a.clear_unit_attention()
    leaves_other_sessions_alone(a, b, 8)
    for lba, function in enumerate((CLEAR_TASK_SET, LOGICAL_UNIT_RESET, TARGET_WARM_RESET)):
        ends_other_sessions_write(a, b, function, lba)
    # The daemon is fine after it all: a third session logs in and works.
    c = Peer(host, port)
    c.login(target, initiator="iqn.2025-01.com.example:node-c")
    c.clear_unit_attention()
    check(read10(c, 0, 1)[0] == GOOD, "a new session logs in and reads")
    for p in (a, b, c):
        p.close()
    print("task_management: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as e:
        print(f"FAIL {e}", flush=True)
        sys.exit(1)
