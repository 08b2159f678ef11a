#!/usr/bin/env python3
"""A hostile iSCSI initiator: malformed and adversarial PDUs against a running
ringtgt on loopback. After every attack a well-behaved session on a fresh
connection must still write and read back data, and the daemon's resident
memory must stay bounded.

Usage: peer.py HOST PORT TARGET_IQN DAEMON_PID [SCENARIO ...]
Prints one line per scenario and '<N> passed, <M> failed' at the end; exits
non-zero when any scenario failed.
"""

import os
import random
import socket
import struct
import sys
import time

BHS = 48
INITIATOR = "iqn.2025-01.com.example:hostile"


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def keys(**kv):
    return b"".join(f"{k.replace('_', '')}={v}".encode() + b"\0" for k, v in kv.items())


def text(pairs):
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


class Closed(Exception):
    pass


class Peer:
    """Just enough of an initiator to log in and move blocks, plus ways to break the rules."""

    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.cmd_sn = 1
        self.exp_stat_sn = 0
        self.itt = 1
        self.isid = random.getrandbits(40) | (0x80 << 40)
        self.max_burst = 262144
        self.target_mrdsl = 8192

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        # An abrupt RST instead of a FIN.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def send(self, bhs, data=b""):
        self.sock.sendall(bytes(bhs) + pad4(data))

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise Closed()
            buf += chunk
        return buf

    def recv_pdu(self):
        hdr = self.recv_exact(BHS)
        ahs = hdr[4] * 4
        dsl = int.from_bytes(hdr[5:8], "big")
        rest = self.recv_exact(ahs + dsl + (-dsl % 4))
        data = rest[ahs : ahs + dsl]
        op = hdr[0] & 0x3F
        if op in (0x21, 0x23, 0x24, 0x26, 0x22, 0x3F) or (op == 0x25 and hdr[1] & 1):
            self.exp_stat_sn = int.from_bytes(hdr[24:28], "big") + 1
        return hdr, data

    def is_closed(self, wait=3.0):
        """True when the target closes the connection within wait seconds
        (PDUs it sends before closing are read and dropped)."""
        self.sock.settimeout(wait)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    # -- PDU builders ------------------------------------------------------
    def login_bhs(self, csg, nsg, transit, dsl, tsih=0, cont=False):
        b = bytearray(BHS)
        b[0] = 0x43
        b[1] = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | (nsg if transit else 0)
        b[4] = 0
        b[5:8] = dsl.to_bytes(3, "big")
        b[8:14] = self.isid.to_bytes(6, "big")
        b[14:16] = tsih.to_bytes(2, "big")
        b[16:20] = (0x1000).to_bytes(4, "big")
        b[24:28] = self.cmd_sn.to_bytes(4, "big")
        b[28:32] = self.exp_stat_sn.to_bytes(4, "big")
        return b

    def login(self, target, initiator=INITIATOR, discovery=False, immediate_data=True):
        k = [("InitiatorName", initiator), ("SessionType", "Discovery" if discovery else "Normal")]
        if not discovery:
            k.append(("TargetName", target))
        k.append(("AuthMethod", "None"))
        data = text(k)
        self.send(self.login_bhs(0, 1, True, len(data)), data)
        hdr, _ = self.recv_pdu()
        if hdr[36:38] != b"\0\0":
            raise RuntimeError(f"login refused: status {hdr[36]:#x}/{hdr[37]:#x}")
        ops = [
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("MaxRecvDataSegmentLength", "262144"),
            ("InitialR2T", "Yes"),
            ("ImmediateData", "Yes" if immediate_data else "No"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("MaxOutstandingR2T", "1"),
        ]
        data = text(ops if not discovery else ops[:3])
        self.send(self.login_bhs(1, 3, True, len(data)), data)
        hdr, data = self.recv_pdu()
        if hdr[36:38] != b"\0\0" or not (hdr[1] & 0x80):
            raise RuntimeError(f"operational login failed: {hdr[36]:#x}/{hdr[37]:#x}")
        for kv in data.split(b"\0"):
            if kv.startswith(b"MaxRecvDataSegmentLength="):
                self.target_mrdsl = int(kv.split(b"=")[1])
        if not discovery:
            self.clear_unit_attention()
        return hdr

    def clear_unit_attention(self):
        """TEST UNIT READY until GOOD, as initiators do after login: a new
        I_T nexus first hears POWER ON, RESET OR BUS DEVICE RESET (29h/00h)."""
        for _ in range(10):
            self.send(self.scsi_bhs(bytes(6), 0))
            self.itt += 1
            self.cmd_sn += 1
            while True:
                hdr, _ = self.recv_pdu()
                if hdr[0] & 0x3F == 0x21:
                    break
            if hdr[3] == 0:
                return
        raise RuntimeError("TEST UNIT READY did not clear the unit attentions")

    def scsi_bhs(self, cdb, edtl, read=False, write=False, final=True, dsl=0, lun=0, cmd_sn=None):
        b = bytearray(BHS)
        b[0] = 0x01
        b[1] = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | 1
        b[5:8] = dsl.to_bytes(3, "big")
        b[8:10] = (lun & 0xFF).to_bytes(2, "big")
        b[16:20] = self.itt.to_bytes(4, "big")
        b[20:24] = edtl.to_bytes(4, "big")
        b[24:28] = (self.cmd_sn if cmd_sn is None else cmd_sn).to_bytes(4, "big")
        b[28:32] = self.exp_stat_sn.to_bytes(4, "big")
        b[32 : 32 + len(cdb)] = cdb
        return b

    def data_out_bhs(self, itt, ttt, offset, dsl, final=True, data_sn=0):
        b = bytearray(BHS)
        b[0] = 0x05
        b[1] = 0x80 if final else 0
        b[5:8] = dsl.to_bytes(3, "big")
        b[16:20] = itt.to_bytes(4, "big")
        b[20:24] = ttt.to_bytes(4, "big")
        b[28:32] = self.exp_stat_sn.to_bytes(4, "big")
        b[36:40] = data_sn.to_bytes(4, "big")
        b[40:44] = offset.to_bytes(4, "big")
        return b

    def nop_out(self, data=b"", cmd_sn=None, immediate=True):
        b = bytearray(BHS)
        b[0] = 0x00 | (0x40 if immediate else 0)
        b[1] = 0x80
        b[5:8] = len(data).to_bytes(3, "big")
        b[16:20] = self.itt.to_bytes(4, "big")
        b[20:24] = (0xFFFFFFFF).to_bytes(4, "big")
        b[24:28] = (self.cmd_sn if cmd_sn is None else cmd_sn).to_bytes(4, "big")
        b[28:32] = self.exp_stat_sn.to_bytes(4, "big")
        self.itt += 1
        if not immediate:
            self.cmd_sn += 1
        return b

    # -- SCSI --------------------------------------------------------------
    def write10(self, lba, payload):
        blocks = len(payload) // 512
        cdb = bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0]) + blocks.to_bytes(2, "big") + bytes([0])
        imm = payload[: min(len(payload), 65536, self.target_mrdsl)]
        itt = self.itt
        self.send(self.scsi_bhs(cdb, len(payload), write=True, dsl=len(imm)), imm)
        self.itt += 1
        self.cmd_sn += 1
        while True:
            hdr, data = self.recv_pdu()
            op = hdr[0] & 0x3F
            if op == 0x31:  # R2T
                ttt = hdr[20:24]
                off = int.from_bytes(hdr[40:44], "big")
                want = int.from_bytes(hdr[44:48], "big")
                sent, sn = 0, 0
                while sent < want:
                    n = min(want - sent, self.target_mrdsl)
                    chunk = payload[off + sent : off + sent + n]
                    self.send(self.data_out_bhs(itt, int.from_bytes(ttt, "big"), off + sent, n, sent + n == want, sn), chunk)
                    sent += n
                    sn += 1
            elif op == 0x21:
                return hdr[3]
            elif op == 0x20:
                continue
            else:
                raise RuntimeError(f"unexpected opcode {op:#x} during WRITE")

    def read10(self, lba, blocks):
        cdb = bytes([0x28, 0]) + lba.to_bytes(4, "big") + bytes([0]) + blocks.to_bytes(2, "big") + bytes([0])
        self.send(self.scsi_bhs(cdb, blocks * 512, read=True))
        self.itt += 1
        self.cmd_sn += 1
        out = bytearray()
        while True:
            hdr, data = self.recv_pdu()
            op = hdr[0] & 0x3F
            if op == 0x25:
                out += data
                if hdr[1] & 1:
                    return hdr[3], bytes(out)
            elif op == 0x21:
                return hdr[3], bytes(out)
            elif op == 0x20:
                continue
            else:
                raise RuntimeError(f"unexpected opcode {op:#x} during READ")


# ---------------------------------------------------------------------------

class Harness:
    def __init__(self, host, port, target, pid):
        self.host, self.port, self.target, self.pid = host, port, target, pid
        self.results = []

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("daemon is gone")

    def peer(self):
        return Peer(self.host, self.port)

    def healthy(self):
        """A normal session writes and reads back a random block range."""
        p = self.peer()
        try:
            p.login(self.target)
            lba = random.randrange(0, 1000) * 8
            payload = os.urandom(4096 * random.choice((1, 2, 16, 64)))
            st = p.write10(lba, payload)
            if st != 0:
                return f"WRITE status {st:#x}"
            st, data = p.read10(lba, len(payload) // 512)
            if st != 0 or data != payload:
                return "READ returned other data"
            return None
        finally:
            p.close()

    def run(self, name, fn):
        try:
            os.kill(self.pid, 0)
        except OSError:
            self.results.append((name, "daemon not running"))
            print(f"FAIL {name}: daemon not running", flush=True)
            return
        try:
            problem = fn()
        except Exception as e:  # a broken attack script is a failure too
            problem = f"{type(e).__name__}: {e}"
        if problem is None:
            try:
                problem = self.healthy()
                if problem:
                    problem = "healthy session after the attack failed: " + problem
            except Exception as e:
                problem = f"healthy session after the attack failed: {type(e).__name__}: {e}"
        self.results.append((name, problem))
        print(("PASS " if problem is None else "FAIL ") + name + ("" if problem is None else f": {problem}"), flush=True)


def scenarios(h):
    s = {}

    def truncated_header():
        p = h.peer()
        p.sock.sendall(b"\x43\x87\x00" + b"\0" * 20)  # 23 bytes of a login header, then FIN
        p.sock.shutdown(socket.SHUT_WR)
        return None if p.is_closed() else "connection left open after a truncated header"
    s["truncated_header"] = truncated_header

    def command_before_login():
        p = h.peer()
        p.send(p.scsi_bhs(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), 512, read=True))
        return None if p.is_closed() else "SCSI command before login was not refused"
    s["command_before_login"] = command_before_login

    def huge_login_segment():
        p = h.peer()
        b = p.login_bhs(0, 1, True, 0xFFFFFF)
        p.sock.sendall(bytes(b) + b"A" * 9000)
        return None if p.is_closed() else "16 MiB login data segment not refused"
    s["huge_login_segment"] = huge_login_segment

    def endless_login_continuation():
        p = h.peer()
        chunk = text([("X-junk", "y" * 8000)])
        for _ in range(12):  # ~96 KiB of continued keys
            try:
                p.send(p.login_bhs(0, 0, False, len(chunk), cont=True), chunk)
                p.sock.settimeout(2)
                p.recv_pdu()
            except (Closed, ConnectionResetError, BrokenPipeError, socket.timeout):
                return None
        return "96 KiB of continued login text accepted"
    s["endless_login_continuation"] = endless_login_continuation

    def garbage_keys():
        p = h.peer()
        data = b"=\0==\0noequals\0" + bytes(range(1, 256)) + b"\0"
        p.send(p.login_bhs(0, 1, True, len(data)), data)
        hdr, _ = p.recv_pdu()
        if hdr[36] == 0:
            return "malformed login keys accepted"
        return None if p.is_closed() else "connection left open after a failed login"
    s["garbage_keys"] = garbage_keys

    def wrong_target():
        p = h.peer()
        try:
            p.login("iqn.2025-01.com.example:nonexistent")
        except RuntimeError as e:
            return None if "0x2/0x3" in str(e) else f"unexpected refusal {e}"
        return "login to a non-existent target succeeded"
    s["wrong_target"] = wrong_target

    def login_pdu_in_full_feature():
        p = h.peer()
        p.login(h.target)
        p.send(p.login_bhs(0, 1, True, 0))
        return None if p.is_closed() else "login PDU in full feature phase not refused"
    s["login_pdu_in_full_feature"] = login_pdu_in_full_feature

    def unknown_opcode():
        p = h.peer()
        p.login(h.target)
        b = bytearray(BHS)
        b[0] = 0x1C
        p.send(b)
        hdr, _ = p.recv_pdu()
        if hdr[0] & 0x3F != 0x3F:
            return f"no Reject for an unknown opcode (got {hdr[0]:#x})"
        return None
    s["unknown_opcode"] = unknown_opcode

    def data_out_unknown_task():
        p = h.peer()
        p.login(h.target)
        p.send(p.data_out_bhs(0xBEEF, 0x1234, 0, 512), b"x" * 512)
        hdr, _ = p.recv_pdu()
        if hdr[0] & 0x3F != 0x3F:
            return f"no Reject for Data-Out of an unknown task (got {hdr[0]:#x})"
        # The connection stays usable.
        st, _ = p.read10(0, 1)
        return None if st == 0 else "connection unusable after the Reject"
    s["data_out_unknown_task"] = data_out_unknown_task

    def oversized_data_segment():
        p = h.peer()
        p.login(h.target)
        n = p.target_mrdsl + 4096
        cdb = bytes([0x2A, 0, 0, 0, 0, 0, 0]) + (n // 512).to_bytes(2, "big") + bytes([0])
        p.send(p.scsi_bhs(cdb, n, write=True, dsl=n), b"z" * n)
        return None if p.is_closed() else "data segment above MaxRecvDataSegmentLength accepted"
    s["oversized_data_segment"] = oversized_data_segment

    def data_out_beyond_edtl():
        p = h.peer()
        p.login(h.target)
        itt = p.itt
        p.send(p.scsi_bhs(bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0]), 4096, write=True, final=True))
        p.itt += 1
        p.cmd_sn += 1
        hdr, _ = p.recv_pdu()  # R2T
        if hdr[0] & 0x3F != 0x31:
            return f"expected an R2T, got {hdr[0]:#x}"
        p.send(p.data_out_bhs(itt, int.from_bytes(hdr[20:24], "big"), 4096, 4096), b"q" * 4096)
        return None if p.is_closed() else "Data-Out beyond the transfer length accepted"
    s["data_out_beyond_edtl"] = data_out_beyond_edtl

    def cmd_sn_outside_window():
        p = h.peer()
        hdr = p.login(h.target)
        max_cmd_sn = int.from_bytes(hdr[32:36], "big")
        cdb = bytes([0x00] + [0] * 5)  # TEST UNIT READY
        p.send(p.scsi_bhs(cdb, 0, cmd_sn=(max_cmd_sn + 10) & 0xFFFFFFFF))
        p.itt += 1
        p.send(p.scsi_bhs(cdb, 0, cmd_sn=(p.cmd_sn - 5) & 0xFFFFFFFF))
        p.itt += 1
        p.sock.settimeout(1.0)
        try:
            hdr, _ = p.recv_pdu()
            return f"a command outside the CmdSN window was answered (opcode {hdr[0]:#x})"
        except socket.timeout:
            pass
        p.sock.settimeout(5.0)
        st, _ = p.read10(0, 1)  # the right CmdSN still works
        return None if st == 0 else "session unusable after out-of-window commands"
    s["cmd_sn_outside_window"] = cmd_sn_outside_window

    def huge_text_request():
        p = h.peer()
        p.login(h.target)
        chunk = text([("X-big", "v" * 8000)])
        for _ in range(12):
            b = bytearray(BHS)
            b[0] = 0x44
            b[1] = 0x40  # continue
            b[5:8] = len(chunk).to_bytes(3, "big")
            b[16:20] = p.itt.to_bytes(4, "big")
            b[20:24] = (0xFFFFFFFF).to_bytes(4, "big")
            b[24:28] = p.cmd_sn.to_bytes(4, "big")
            try:
                p.send(b, chunk)
                p.sock.settimeout(2)
                p.recv_pdu()
            except (Closed, ConnectionResetError, BrokenPipeError, socket.timeout):
                return None
        return "96 KiB of continued text accepted"
    s["huge_text_request"] = huge_text_request

    def ahs_longer_than_sent():
        p = h.peer()
        p.login(h.target)
        b = p.scsi_bhs(bytes([0x00] + [0] * 5), 0)
        b[4] = 255  # 1020 bytes of AHS announced, 8 sent, then the peer goes away
        p.sock.sendall(bytes(b) + b"\0" * 8)
        p.sock.shutdown(socket.SHUT_WR)
        return None if p.is_closed() else "connection left open"
    s["ahs_longer_than_sent"] = ahs_longer_than_sent

    def reset_mid_data_out():
        for _ in range(20):
            p = h.peer()
            p.login(h.target)
            p.send(p.scsi_bhs(bytes([0x2A, 0, 0, 0, 0, 0x10, 0, 0x08, 0, 0]), 1 << 20, write=True, final=True))
            hdr, _ = p.recv_pdu()
            if hdr[0] & 0x3F != 0x31:
                return f"expected an R2T, got {hdr[0]:#x}"
            ttt = int.from_bytes(hdr[20:24], "big")
            p.send(p.data_out_bhs(p.itt, ttt, 0, 8192, final=False), b"r" * 8192)
            p.reset()
        return None
    s["reset_mid_data_out"] = reset_mid_data_out

    def random_bytes_after_login():
        rnd = random.Random(7)
        for _ in range(30):
            p = h.peer()
            p.login(h.target)
            try:
                p.sock.sendall(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 4000))))
                p.sock.shutdown(socket.SHUT_WR)
                p.is_closed(1.0)
            except OSError:
                pass
            p.close()
        return None
    s["random_bytes_after_login"] = random_bytes_after_login

    def slow_loris_login():
        p = h.peer()
        b = bytes(p.login_bhs(0, 1, True, 64))
        start = time.monotonic()
        try:
            for byte in b[:40]:
                p.sock.sendall(bytes([byte]))
                time.sleep(0.25)
                if time.monotonic() - start > 8:
                    break
        except (BrokenPipeError, ConnectionResetError):
            return None
        return None if p.is_closed(6.0) else "a login trickling in byte by byte was never timed out"
    s["slow_loris_login"] = slow_loris_login

    def many_idle_connections():
        before = h.rss_kib()
        socks = []
        try:
            for _ in range(2000):
                socks.append(socket.create_connection((h.host, h.port), timeout=5))
            time.sleep(0.5)
            during = h.rss_kib()
            problem = h.healthy()
            if problem:
                return "with 2000 idle connections open: " + problem
        finally:
            for s_ in socks:
                s_.close()
        time.sleep(1.0)
        grown = during - before
        print(f"     rss before {before} KiB, with 2000 idle connections {during} KiB", flush=True)
        if grown > 2000 * 64:  # 64 KiB per idle connection is already generous
            return f"memory grew by {grown} KiB for 2000 idle connections"
        return None
    s["many_idle_connections"] = many_idle_connections

    def session_reinstatement():
        a = h.peer()
        a.login(h.target)
        b = h.peer()
        b.isid = a.isid
        b.login(h.target)
        if not a.is_closed(3.0):
            return "the old session was not closed when the same ISID logged in again"
        st, _ = b.read10(0, 1)
        return None if st == 0 else "the new session does not work"
    s["session_reinstatement"] = session_reinstatement

    def memory_bounded_after_all():
        rss = h.rss_kib()
        print(f"     rss after the attacks {rss} KiB", flush=True)
        return None if rss < 512 * 1024 else f"resident memory {rss} KiB after the attacks"
    s["memory_bounded_after_all"] = memory_bounded_after_all
    return s


def main():
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, target, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    random.seed(1)
    h = Harness(host, port, target, pid)
    table = scenarios(h)
    names = sys.argv[5:] or list(table)
    for n in names:
        h.run(n, table[n])
    failed = sum(1 for _, p in h.results if p)
    print(f"{len(h.results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
