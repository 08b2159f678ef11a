#!/usr/bin/env python3
"""[limits] against a running ringtgt started with
    max_sessions = 3, max_sessions_per_initiator = 2, max_connections = 8,
    max_buffer_memory = "64M" (the smallest allowed: twice the 32 MiB
    largest command)
Scenarios:
  sessions        a 3rd session of one initiator, then a 4th in all: login
                  status 0x0302 (out of resources); room again once one ends
  connections     the 9th TCP connection is closed at once; a login works
                  again once the others are gone
  buffer_budget   one session queues 200 WRITEs of 1 MiB and sends almost all
                  of each one's data: the commands past the budget get TASK
                  SET FULL, the daemon's VmRSS grows by far less than the
                  200 MiB asked for; meanwhile another session's WRITE gets
                  BUSY (never CHECK CONDITION), and once the hog is gone the
                  retried WRITE succeeds and reads back
  unread_responses  (max_session_output = "1M") one session sends 64 READs of
                  1 MiB and reads nothing: the daemon stops taking its PDUs
                  (ringtgt_receive_pauses_total) and its VmRSS grows by a few
                  MiB, not 64; another session reads meanwhile; once the
                  reader reads, all 64 complete with the data, none refused
Usage: limits.py HOST PORT TARGET_IQN DAEMON_PID METRICS_PORT
"""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import BHS, Closed, Peer, text  # noqa: E402

INIT_A = "iqn.2025-01.com.example:limits-a"
INIT_B = "iqn.2025-01.com.example:limits-b"
INIT_C = "iqn.2025-01.com.example:limits-c"
MiB = 1 << 20
BUDGET_MIB = 64  # max_buffer_memory in test_limits.sh


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("daemon is gone")


def login_status(host, port, target, initiator):
    """(peer, None) when logged in, (None, 'cc/dd') when refused."""
    p = Peer(host, port)
    try:
        p.login(target, initiator=initiator)
        return p, None
    except RuntimeError as e:
        p.close()
        m = re.search(r"0x[0-9a-f]+/0x[0-9a-f]+", str(e))
        return None, m.group(0) if m else str(e)
    except (Closed, OSError) as e:
        p.close()
        return None, f"connection closed ({type(e).__name__})"


def wait_for_login(host, port, target, initiator, seconds=5):
    deadline = time.monotonic() + seconds
    while True:
        p, err = login_status(host, port, target, initiator)
        if p or time.monotonic() > deadline:
            return p, err
        time.sleep(0.2)


def scenario_sessions(host, port, target, pid):
    open_ = []
    try:
        for who in (INIT_A, INIT_A):
            p, err = login_status(host, port, target, who)
            if err:
                return f"session {len(open_) + 1} refused: {err}"
            open_.append(p)
        p, err = login_status(host, port, target, INIT_A)
        if p or err != "0x3/0x2":
            return f"3rd session of one initiator: expected refusal 0x3/0x2, got {err or 'login'}"
        p, err = login_status(host, port, target, INIT_B)
        if err:
            return f"another initiator's session refused: {err}"
        open_.append(p)
        p, err = login_status(host, port, target, INIT_C)
        if p or err != "0x3/0x2":
            return f"4th session in all: expected refusal 0x3/0x2, got {err or 'login'}"
        open_.pop(0).close()
        deadline = time.monotonic() + 5
        while True:
            p, err = login_status(host, port, target, INIT_C)
            if p:
                open_.append(p)
                break
            if time.monotonic() > deadline:
                return f"no room after a session ended: {err}"
            time.sleep(0.2)
        return None
    finally:
        for p in open_:
            p.close()


def scenario_connections(host, port, target, pid):
    time.sleep(1.0)  # the sessions above are gone
    socks = []
    try:
        for _ in range(8):
            socks.append(socket.create_connection((host, port), timeout=5))
        time.sleep(0.5)
        extra = socket.create_connection((host, port), timeout=5)
        extra.settimeout(3)
        try:
            if extra.recv(1) != b"":
                return "the 9th connection got data"
        except ConnectionResetError:
            pass
        except socket.timeout:
            return "the 9th connection was left open"
        finally:
            extra.close()
    finally:
        for s in socks:
            s.close()
    p, err = wait_for_login(host, port, target, INIT_A)
    if not p:
        return f"no login after the connections closed: {err}"
    p.close()
    return None


class BigPeer(Peer):
    def login_big(self, target, initiator):
        k = [("InitiatorName", initiator), ("SessionType", "Normal"), ("TargetName", target),
             ("AuthMethod", "None")]
        data = text(k)
        self.send(self.login_bhs(0, 1, True, len(data)), data)
        hdr, _ = self.recv_pdu()
        if hdr[36:38] != b"\0\0":
            raise RuntimeError(f"login refused: status {hdr[36]:#x}/{hdr[37]:#x}")
        ops = [("HeaderDigest", "None"), ("DataDigest", "None"),
               ("MaxRecvDataSegmentLength", "262144"), ("InitialR2T", "Yes"),
               ("ImmediateData", "No"), ("MaxBurstLength", str(MiB)),
               ("FirstBurstLength", "65536"), ("MaxOutstandingR2T", "1")]
        data = text(ops)
        self.send(self.login_bhs(1, 3, True, len(data)), data)
        hdr, data = self.recv_pdu()
        if hdr[36:38] != b"\0\0":
            raise RuntimeError("operational login failed")
        for kv in data.split(b"\0"):
            if kv.startswith(b"MaxRecvDataSegmentLength="):
                self.target_mrdsl = int(kv.split(b"=")[1])
        return hdr


def scenario_buffer_budget(host, port, target, pid):
    p, err = wait_for_login(host, port, target, INIT_A)  # the connections above are gone
    if not p:
        return f"no login: {err}"
    p.close()
    time.sleep(1.0)
    before = rss_kib(pid)
    hog = BigPeer(host, port)
    normal = None
    try:
        hog.login_big(target, INIT_A)
        n = 200
        first_itt = hog.itt
        for i in range(n):
            lba = (i * MiB // 512) % (60 * MiB // 512)
            cdb = bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0]) + (MiB // 512).to_bytes(2, "big") + bytes([0])
            hog.send(hog.scsi_bhs(cdb, MiB, write=True))
            hog.itt += 1
            hog.cmd_sn += 1
        r2ts, full, other = 0, 0, []
        hog.sock.settimeout(2.0)
        try:
            while r2ts + full + len(other) < n:
                hdr, _ = hog.recv_pdu()
                op = hdr[0] & 0x3F
                itt = int.from_bytes(hdr[16:20], "big")
                if op == 0x31:
                    r2ts += 1
                    # Almost all of the burst: the command keeps its buffer, the pages are touched.
                    ttt = int.from_bytes(hdr[20:24], "big")
                    off, want = int.from_bytes(hdr[40:44], "big"), int.from_bytes(hdr[44:48], "big")
                    sent, sn = 0, 0
                    chunk = hog.target_mrdsl
                    while sent < want - 4096:
                        m = min(chunk, want - 4096 - sent)
                        hog.send(hog.data_out_bhs(itt, ttt, off + sent, m, final=False, data_sn=sn), b"h" * m)
                        sent += m
                        sn += 1
                elif op == 0x21 and hdr[3] == 0x28:
                    full += 1
                elif op == 0x20:
                    pass  # a NOP-In that reopens the CmdSN window
                else:
                    other.append((op, hdr[3]))
        except socket.timeout:
            pass
        time.sleep(0.5)
        during = rss_kib(pid)
        grown = during - before
        print(f"     {r2ts} WRITEs got a buffer, {full} TASK SET FULL; VmRSS {before} -> {during} KiB",
              flush=True)
        if other:
            return f"unexpected answers (opcode, status): {other[:5]}"
        if full == 0:
            return "no TASK SET FULL: the budget was not enforced"
        if r2ts > BUDGET_MIB:
            return f"{r2ts} commands of 1 MiB got buffers under a {BUDGET_MIB} MiB budget"
        if grown > (BUDGET_MIB + 24) * 1024:
            return f"VmRSS grew by {grown} KiB under a {BUDGET_MIB} MiB buffer budget"
        # Another session meanwhile: BUSY (retry later), never a failed command.
        normal = Peer(host, port)
        normal.login(target, initiator=INIT_B)
        payload = os.urandom(64 * 1024)
        st = normal.write10(200 * MiB // 512 // 4, payload)
        if st not in (0x08, 0x28):
            return f"WRITE while the budget is used up: status {st:#x}, expected BUSY"
        hog.close()
        hog = None
        deadline = time.monotonic() + 10
        while st != 0:
            if time.monotonic() > deadline:
                return f"the retried WRITE still gets status {st:#x} after the hog left"
            time.sleep(0.2)
            st = normal.write10(200 * MiB // 512 // 4, payload)
            if st not in (0, 0x08, 0x28):
                return f"retried WRITE: status {st:#x}"
        st, back = normal.read10(200 * MiB // 512 // 4, len(payload) // 512)
        return None if st == 0 and back == payload else "READ after the retried WRITE differs"
    finally:
        if hog:
            hog.close()
        if normal:
            normal.close()


def scrape(metrics_port, series):
    with socket.create_connection(("127.0.0.1", metrics_port), timeout=5) as c:
        c.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        body = b""
        while chunk := c.recv(65536):
            body += chunk
    for line in body.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return None


def scenario_unread_responses(host, port, target, pid, metrics_port):
    p, err = wait_for_login(host, port, target, INIT_B)
    if not p:
        return f"no login: {err}"
    p.clear_unit_attention()
    payload = bytes(range(256)) * (MiB // 256)
    for off in range(0, MiB, 64 * 1024):
        if p.write10(off // 512, payload[off : off + 64 * 1024]) != 0:
            return "could not write the data to read back"
    pauses_before = scrape(metrics_port, "ringtgt_receive_pauses_total") or 0
    time.sleep(1.0)
    before = rss_kib(pid)
    reader = BigPeer(host, port)
    try:
        reader.login_big(target, INIT_A)
        reader.clear_unit_attention()
        n = 64
        itts = []
        for _ in range(n):
            cdb = bytes([0x28, 0, 0, 0, 0, 0, 0]) + (MiB // 512).to_bytes(2, "big") + bytes([0])
            itts.append(reader.itt)
            reader.send(reader.scsi_bhs(cdb, MiB, read=True))
            reader.itt += 1
            reader.cmd_sn += 1
        # The event: the daemon stopped taking this session's commands.
        deadline = time.monotonic() + 20
        while (scrape(metrics_port, "ringtgt_receive_pauses_total") or 0) <= pauses_before:
            if time.monotonic() > deadline:
                return "receive never paused for a session that reads none of its responses"
            time.sleep(0.1)
        during = rss_kib(pid)
        grown = during - before
        print(f"     {n} READs of 1 MiB unread: VmRSS {before} -> {during} KiB", flush=True)
        if grown > 24 * 1024:
            return f"VmRSS grew by {grown} KiB with max_session_output = 1M"
        # Another session is not held up meanwhile.
        st, back = p.read10(0, 128)
        if st != 0 or back != payload[: 128 * 512]:
            return f"another session's READ meanwhile: status {st:#x}"
        # The reader reads at last: every READ completes with the data, none refused.
        data = {itt: bytearray() for itt in itts}
        status = {}
        reader.sock.settimeout(10.0)
        while len(status) < n:
            hdr, seg = reader.recv_pdu()
            op, itt = hdr[0] & 0x3F, int.from_bytes(hdr[16:20], "big")
            if op == 0x25:
                data[itt] += seg
                if hdr[1] & 0x01:
                    status[itt] = hdr[3]
            elif op == 0x21:
                status[itt] = hdr[3]
            elif op != 0x20:
                return f"unexpected opcode {op:#x}"
        bad = [i for i in itts if status[i] != 0 or bytes(data[i]) != payload]
        if bad:
            return f"{len(bad)} READs failed or read wrong data (first status {status[bad[0]]:#x})"
        return None
    finally:
        reader.close()
        p.close()


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, target, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    metrics_port = int(sys.argv[5])
    failed = 0
    table = (("sessions", scenario_sessions), ("connections", scenario_connections),
             ("buffer_budget", scenario_buffer_budget),
             ("unread_responses",
              lambda h, po, t, pi: scenario_unread_responses(h, po, t, pi, metrics_port)))
    for name, fn in table:
        try:
            problem = fn(host, port, target, pid)
        except Exception as e:
            problem = f"{type(e).__name__}: {e}"
        failed += problem is not None
        print(("PASS " if problem is None else "FAIL ") + name + (f": {problem}" if problem else ""),
              flush=True)
    print(f"{len(table) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
