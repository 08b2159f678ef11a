#!/usr/bin/env python3
"""ABORT TASK for a command the target never received must fill its CmdSN hole
(RFC 7143 11.5.1 b): "the target MUST consider the CmdSN as received".
libiscsi (QEMU) does exactly this when it cancels a command still in its send
queue and aborts it. Usage: abort_cmdsn_hole.py HOST PORT TARGET_IQN

Found by the chaos soak (test_soak.sh): ringtgt answered "function complete"
but kept ExpCmdSN at the hole, so every later command on the connection was
ignored ("CmdSN N+1 is not ExpCmdSN N") until the initiator timed out and
reconnected. test_task_management.sh runs it: exit 0 = the hole is filled.
Run with RINGTGT_SRC set to the repository root."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.environ.get("RINGTGT_SRC", "."), "tests", "hostile"))
from peer import Peer  # noqa: E402

host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
p = Peer(host, port)
p.login(target, initiator="iqn.2025-01.com.example:hole")
p.clear_unit_attention()
lost = p.cmd_sn          # the command libiscsi cancelled before sending it
p.cmd_sn += 1
# ABORT TASK (immediate) of ITT 0x7777 with RefCmdSN = the lost CmdSN.
b = bytearray(48)
b[0] = 0x02 | 0x40
b[1] = 0x80 | 1
b[16:20] = (0x5555).to_bytes(4, "big")
b[20:24] = (0x7777).to_bytes(4, "big")
b[24:28] = p.cmd_sn.to_bytes(4, "big")
b[28:32] = p.exp_stat_sn.to_bytes(4, "big")
b[32:36] = lost.to_bytes(4, "big")
p.send(b)
hdr, _ = p.recv_pdu()
print(f"ABORT TASK of the never-received CmdSN {lost}: response {hdr[2]} (0 = function complete), ExpCmdSN {int.from_bytes(hdr[28:32], 'big')}")
p.sock.settimeout(5)
try:
    status, _ = p.read10(0, 1)
    print(f"READ(10) with CmdSN {lost + 1}: status {status:#x}: OK")
except socket.timeout:
    print(f"READ(10) with CmdSN {lost + 1}: no answer in 5 s: the target still waits for CmdSN {lost} (BUG)")
    sys.exit(1)
