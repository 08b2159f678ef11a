#!/usr/bin/env python3
"""Header and data digests (CRC32C) end to end, with a Python initiator:
libiscsi only offers DataDigest=None, so this is what proves data digests.

Logs in with HeaderDigest=CRC32C and DataDigest=CRC32C, checks the digest of
every PDU the target sends, writes and reads back data (immediate data, R2T
and Data-Out, multi-PDU Data-In), then corrupts digests the way a bad NIC
would and checks the RFC 7143 7.8 answer:
  data digest error on a NOP-Out   -> Reject (reason 0x02), connection stays
  data digest error on immediate    -> Reject (reason 0x02), connection closed,
  data of a WRITE                     nothing written (ErrorRecoveryLevel 0: the
                                      command itself is lost)
  data digest error on a Data-Out  -> Reject (reason 0x02); after the rest of the
                                      sequence the WRITE ends with CHECK CONDITION,
                                      ABORTED COMMAND 47h/05h; nothing written, the
                                      connection stays
  header digest error              -> connection closed
After each, another session works.

Usage: digests.py HOST PORT TARGET_IQN
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import BHS, Closed, Peer, pad4, text  # noqa: E402


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def digest_bytes(value):
    return value.to_bytes(4, "little")  # least significant byte first (RFC 3720 B.4)


class DigestError(Exception):
    pass


class DigestPeer(Peer):
    """Peer with HeaderDigest=CRC32C and DataDigest=CRC32C once logged in."""

    def __init__(self, host, port):
        super().__init__(host, port)
        self.digests = False
        self.corrupt_header = False
        self.corrupt_data = False
        self.pdus_checked = 0

    def send(self, bhs, data=b""):
        if not self.digests:
            return super().send(bhs, data)
        hdr = bytes(bhs)
        hd = crc32c(hdr)
        if self.corrupt_header:
            hd ^= 0x1
            self.corrupt_header = False
        out = hdr + digest_bytes(hd)
        if data:
            padded = pad4(data)
            dd = crc32c(padded)
            if self.corrupt_data:
                dd ^= 0x80000000
                self.corrupt_data = False
            out += padded + digest_bytes(dd)
        self.sock.sendall(out)

    def recv_pdu(self):
        if not self.digests:
            return super().recv_pdu()
        hdr = self.recv_exact(BHS)
        ahs = hdr[4] * 4
        ahs_bytes = self.recv_exact(ahs)
        hd = self.recv_exact(4)
        if digest_bytes(crc32c(hdr + ahs_bytes)) != hd:
            raise DigestError(f"bad header digest from the target (opcode {hdr[0] & 0x3f:#x})")
        dsl = int.from_bytes(hdr[5:8], "big")
        data = b""
        if dsl:
            padded = self.recv_exact(dsl + (-dsl % 4))
            dd = self.recv_exact(4)
            if digest_bytes(crc32c(padded)) != dd:
                raise DigestError(f"bad data digest from the target (opcode {hdr[0] & 0x3f:#x})")
            data = padded[:dsl]
        self.pdus_checked += 1
        op = hdr[0] & 0x3F
        if op in (0x21, 0x23, 0x24, 0x26, 0x22, 0x3F) or (op == 0x25 and hdr[1] & 1):
            self.exp_stat_sn = int.from_bytes(hdr[24:28], "big") + 1
        return hdr, data

    def login_digests(self, target):
        k = [("InitiatorName", "iqn.2025-01.com.example:digests"), ("SessionType", "Normal"),
             ("TargetName", target), ("AuthMethod", "None")]
        data = text(k)
        self.send(self.login_bhs(0, 1, True, len(data)), data)
        hdr, _ = self.recv_pdu()
        if hdr[36:38] != b"\0\0":
            raise RuntimeError(f"login refused: {hdr[36]:#x}/{hdr[37]:#x}")
        ops = [("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C"),
               ("MaxRecvDataSegmentLength", "8192"), ("InitialR2T", "No"),
               ("ImmediateData", "Yes"), ("MaxBurstLength", "65536"),
               ("FirstBurstLength", "16384"), ("MaxOutstandingR2T", "1")]
        data = text(ops)
        self.send(self.login_bhs(1, 3, True, len(data)), data)
        hdr, data = self.recv_pdu()
        if hdr[36:38] != b"\0\0" or not hdr[1] & 0x80:
            raise RuntimeError(f"operational login failed: {hdr[36]:#x}/{hdr[37]:#x}")
        got = dict(kv.split(b"=", 1) for kv in data.split(b"\0") if b"=" in kv)
        for key in (b"HeaderDigest", b"DataDigest"):
            if got.get(key) != b"CRC32C":
                raise RuntimeError(f"target answered {key.decode()}={got.get(key)}")
        if b"MaxRecvDataSegmentLength" in got:
            self.target_mrdsl = int(got[b"MaxRecvDataSegmentLength"])
        self.digests = True  # from the first PDU after the final login response
        self.clear_unit_attention()  # a new nexus first hears 29h/00h (power on)

    def nop(self, payload):
        self.send(self.nop_out(payload), payload)


def closed_or_reset(p, wait=3.0):
    try:
        return p.is_closed(wait)
    except OSError:
        return True


def scenario_write_read(host, port, target):
    p = DigestPeer(host, port)
    try:
        p.login_digests(target)
        p.nop(b"ping with a data digest")
        hdr, data = p.recv_pdu()
        if hdr[0] & 0x3F != 0x20 or data != b"ping with a data digest":
            return f"NOP-In echo wrong (opcode {hdr[0] & 0x3f:#x}, data {data!r})"
        for lba, size in ((0, 4096), (64, 65536), (512, 300 * 1024)):
            payload = os.urandom(size)
            st = p.write10(lba, payload)  # immediate data, then R2Ts and Data-Out
            if st != 0:
                return f"WRITE of {size} bytes: status {st:#x}"
            st, back = p.read10(lba, size // 512)  # Data-In, 8 KiB per PDU
            if st != 0 or back != payload:
                return f"READ of {size} bytes returned other data (status {st:#x})"
        print(f"     {p.pdus_checked} PDUs from the target, every digest checked", flush=True)
        return None
    except DigestError as e:
        return str(e)
    finally:
        p.close()


def scenario_bad_data_digest_nop(host, port, target):
    p = DigestPeer(host, port)
    try:
        p.login_digests(target)
        p.corrupt_data = True
        p.nop(b"corrupted")
        hdr, data = p.recv_pdu()
        if hdr[0] & 0x3F != 0x3F or hdr[2] != 0x02:
            return f"expected Reject 0x02, got opcode {hdr[0] & 0x3f:#x} reason {hdr[2]:#x}"
        if data[:1] != b"\x00" and data[0] & 0x3F != 0x00:
            return "the Reject does not carry the NOP-Out header"
        # The connection stays: a good ping and a READ still work.
        p.nop(b"again")
        hdr, data = p.recv_pdu()
        if hdr[0] & 0x3F != 0x20 or data != b"again":
            return "no NOP-In after the rejected NOP-Out"
        st, _ = p.read10(0, 8)
        return None if st == 0 else f"READ after the Reject: status {st:#x}"
    except (Closed, DigestError, OSError) as e:
        return f"{type(e).__name__}: {e}"
    finally:
        p.close()


def scenario_bad_data_digest_write(host, port, target):
    lba = 2048
    before = os.urandom(4096)
    q = DigestPeer(host, port)
    try:
        q.login_digests(target)
        if q.write10(lba, before) != 0:
            return "setup WRITE failed"
    finally:
        q.close()
    p = DigestPeer(host, port)
    try:
        p.login_digests(target)
        p.corrupt_data = True
        cdb = bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0, 0, 8, 0])
        bad = os.urandom(4096)
        p.send(p.scsi_bhs(cdb, 4096, write=True, dsl=4096), bad)
        hdr, _ = p.recv_pdu()
        if hdr[0] & 0x3F != 0x3F or hdr[2] != 0x02:
            return f"expected Reject 0x02, got opcode {hdr[0] & 0x3f:#x} reason {hdr[2]:#x}"
        if not closed_or_reset(p):
            return "connection left open after a data digest error on WRITE data (ERL 0)"
    except DigestError as e:
        return str(e)
    finally:
        p.close()
    q = DigestPeer(host, port)
    try:
        q.login_digests(target)
        st, back = q.read10(lba, 8)
        if st != 0 or back != before:
            return "data with a bad digest reached the disk"
        return None
    finally:
        q.close()


def scenario_bad_data_digest_data_out(host, port, target):
    lba = 3072
    before = os.urandom(16384)
    p = DigestPeer(host, port)
    try:
        p.login_digests(target)
        if p.write10(lba, before) != 0:
            return "setup WRITE failed"
        # A WRITE with no immediate data: the target sends an R2T for it all
        # (FirstBurstLength 16384 < 32 KiB, so a solicited sequence).
        bad = os.urandom(32768)
        cdb = bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0, 0, 64, 0])
        itt = p.itt
        p.send(p.scsi_bhs(cdb, len(bad), write=True, dsl=0))
        p.itt += 1
        p.cmd_sn += 1
        hdr, _ = p.recv_pdu()
        if hdr[0] & 0x3F != 0x31:
            return f"expected an R2T, got opcode {hdr[0] & 0x3f:#x}"
        ttt = int.from_bytes(hdr[20:24], "big")
        want = int.from_bytes(hdr[44:48], "big")
        chunk = min(p.target_mrdsl, 8192)
        rejects, sent, sn = 0, 0, 0
        while sent < want:
            n = min(chunk, want - sent)
            p.corrupt_data = sn == 1  # the second Data-Out of the sequence
            p.send(p.data_out_bhs(itt, ttt, sent, n, sent + n == want, sn), bad[sent:sent + n])
            sent += n
            sn += 1
        while True:
            hdr, data = p.recv_pdu()
            op = hdr[0] & 0x3F
            if op == 0x3F:
                if hdr[2] != 0x02:
                    return f"Reject with reason {hdr[2]:#x}, wanted 0x02"
                rejects += 1
                continue
            if op != 0x21:
                return f"unexpected opcode {op:#x} after the Data-Out"
            break
        if rejects != 1:
            return f"{rejects} Rejects for one bad data digest"
        if hdr[3] != 0x02:
            return f"WRITE with a lost Data-Out ended with status {hdr[3]:#x}, wanted CHECK CONDITION"
        sense = data[2:]
        if len(sense) < 14 or sense[2] & 0x0F != 0x0B or sense[12] != 0x47 or sense[13] != 0x05:
            return f"sense {sense[:14].hex()}, wanted ABORTED COMMAND 47h/05h"
        # The same connection goes on, and the blocks hold what they held.
        st, back = p.read10(lba, 32)
        if st != 0:
            return f"READ after it: status {st:#x}"
        if back != before:
            return "data of a WRITE with a bad data digest reached the disk"
        return None
    except DigestError as e:
        return str(e)
    finally:
        p.close()


def scenario_bad_header_digest(host, port, target):
    p = DigestPeer(host, port)
    try:
        p.login_digests(target)
        p.corrupt_header = True
        p.nop(b"x")
        p.sock.settimeout(3.0)
        try:
            hdr, _ = p.recv_pdu()
            return f"answered a PDU with a bad header digest (opcode {hdr[0] & 0x3f:#x})"
        except (Closed, ConnectionResetError):
            return None
        except socket.timeout:
            return "connection left open after a header digest error"
    finally:
        p.close()


def healthy(host, port, target):
    p = DigestPeer(host, port)
    try:
        p.login_digests(target)
        payload = os.urandom(8192)
        if p.write10(4096, payload) != 0:
            return "WRITE failed"
        st, back = p.read10(4096, 16)
        return None if st == 0 and back == payload else "READ returned other data"
    except (DigestError, Closed, OSError, RuntimeError) as e:
        return f"{type(e).__name__}: {e}"
    finally:
        p.close()


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    failed = 0
    for name, fn in (("write_read_with_digests", scenario_write_read),
                     ("bad_data_digest_nop_out", scenario_bad_data_digest_nop),
                     ("bad_data_digest_write", scenario_bad_data_digest_write),
                     ("bad_data_digest_data_out", scenario_bad_data_digest_data_out),
                     ("bad_header_digest", scenario_bad_header_digest)):
        try:
            problem = fn(host, port, target)
        except Exception as e:
            problem = f"{type(e).__name__}: {e}"
        if problem is None:
            problem = healthy(host, port, target)
            if problem:
                problem = "a session after it failed: " + problem
        failed += problem is not None
        print(("PASS " if problem is None else "FAIL ") + name + (f": {problem}" if problem else ""),
              flush=True)
    print(f"{5 - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
