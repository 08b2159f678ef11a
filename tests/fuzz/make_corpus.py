#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets: corpus/<target>/<name>.

Seeds are small, meaningful inputs in each target's input format (see the
comment at the top of each fuzz_*.cpp): a real login, SCSI command PDUs with
and without immediate data, Data-Out, text, NOP-Out, task management,
logout; login key sets (plain, CHAP, operational); common CDBs. Run it again
after changing an input format:  tests/fuzz/make_corpus.py
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = "iqn.2025-01.com.example:fuzz"
INITIATOR = "iqn.2025-01.com.example:init"


def keys(*pairs):
    return b"".join(k.encode() + b"=" + v.encode() + b"\0" for k, v in pairs)


def pad(b):
    return b + b"\0" * (-len(b) % 4)


def bhs(opcode, flags, *, immediate=False, itt=1, lun=0, f20=0, cmd_sn=1, exp_stat_sn=1,
        f32=b"\0" * 16, dsl=0, b2=0, b3=0):
    h = bytearray(48)
    h[0] = opcode | (0x40 if immediate else 0)
    h[1] = flags
    h[2], h[3] = b2, b3
    h[5:8] = dsl.to_bytes(3, "big")
    h[8:16] = struct.pack(">Q", lun)
    h[16:20] = struct.pack(">I", itt)
    h[20:24] = struct.pack(">I", f20)
    h[24:28] = struct.pack(">I", cmd_sn)
    h[28:32] = struct.pack(">I", exp_stat_sn)
    h[32:48] = f32
    return bytes(h)


def pdu(header, data=b""):
    h = bytearray(header)
    h[5:8] = len(data).to_bytes(3, "big")
    return bytes(h) + pad(data)


def login(csg, nsg, data, transit=True, cont=False, exp_stat_sn=0):
    flags = (0x80 if transit else 0) | (0x40 if cont else 0) | csg << 2 | (nsg if transit else 0)
    h = bytearray(bhs(0x03, flags, immediate=True, itt=1, cmd_sn=1, exp_stat_sn=exp_stat_sn))
    h[8:14] = bytes([0x40, 0x00, 0x01, 0x37, 0x00, 0x00])  # ISID
    return pdu(h, data)


SEC = keys(("InitiatorName", INITIATOR), ("TargetName", TARGET), ("SessionType", "Normal"),
           ("AuthMethod", "None"))
OP = keys(("HeaderDigest", "None"), ("DataDigest", "None"), ("MaxRecvDataSegmentLength", "8192"),
          ("InitialR2T", "No"), ("ImmediateData", "Yes"), ("FirstBurstLength", "16384"),
          ("MaxBurstLength", "65536"), ("MaxOutstandingR2T", "2"), ("ErrorRecoveryLevel", "0"))


def cdb(*b):
    return bytes(b) + b"\0" * (16 - len(b))


def rw10(op, lba, blocks, flags=0):
    return cdb(op, flags, *struct.pack(">I", lba), 0, *struct.pack(">H", blocks), 0)


def rw16(op, lba, blocks, flags=0):
    return cdb(op, flags, *struct.pack(">Q", lba), *struct.pack(">I", blocks), 0, 0)


CDBS = {
    "tur": cdb(0x00),
    "inquiry": cdb(0x12, 0, 0, 0, 96, 0),
    "inquiry_vpd83": cdb(0x12, 1, 0x83, 0, 255, 0),
    "inquiry_vpd00": cdb(0x12, 1, 0x00, 0, 255, 0),
    "read_capacity10": cdb(0x25),
    "read_capacity16": cdb(0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0),
    "report_luns": cdb(0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0),
    "mode_sense6": cdb(0x1a, 0, 0x3f, 0, 255, 0),
    "mode_sense10": cdb(0x5a, 0, 0x08, 0, 0, 0, 0, 0, 255, 0),
    "request_sense": cdb(0x03, 0, 0, 0, 18, 0),
    "read10": rw10(0x28, 0, 8),
    "write10": rw10(0x2a, 0, 8),
    "write10_fua": rw10(0x2a, 8, 8, 0x08),
    "read16": rw16(0x88, 16, 8),
    "write16": rw16(0x8a, 16, 8),
    "sync_cache10": rw10(0x35, 0, 0),
    "verify10": rw10(0x2f, 0, 8),
    "write_same10": rw10(0x41, 0, 8),
    "compare_and_write": cdb(0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0),
    "reserve6": cdb(0x16),
    "release6": cdb(0x17),
    "start_stop": cdb(0x1b, 0, 0, 0, 1, 0),
    "prefetch10": rw10(0x34, 0, 8),
}


def scsi_cmd(itt, cmd_sn, c, edtl, read=False, write=False, final=True, data=b"", lun=0):
    flags = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | 0x01
    return pdu(bhs(0x01, flags, itt=itt, lun=lun << 48, f20=edtl, cmd_sn=cmd_sn, exp_stat_sn=2,
                   f32=c), data)


def data_out(itt, ttt, data_sn, offset, data, final=True):
    h = bytearray(bhs(0x05, 0x80 if final else 0, itt=itt, f20=ttt, cmd_sn=0, exp_stat_sn=2))
    h[36:40] = struct.pack(">I", data_sn)
    h[40:44] = struct.pack(">I", offset)
    return pdu(h, data)


def nop_out(itt, cmd_sn, data=b"", ttt=0xffffffff):
    return pdu(bhs(0x00, 0x80, immediate=True, itt=itt, f20=ttt, cmd_sn=cmd_sn, exp_stat_sn=2),
               data)


def text(itt, cmd_sn, data, ttt=0xffffffff):
    return pdu(bhs(0x04, 0x80, itt=itt, f20=ttt, cmd_sn=cmd_sn, exp_stat_sn=2), data)


def tmf(fn, itt, cmd_sn, ref_itt=0xffffffff):
    return pdu(bhs(0x02, 0x80 | fn, immediate=True, itt=itt, f20=ref_itt, cmd_sn=cmd_sn,
                   exp_stat_sn=2))


def logout(itt, cmd_sn, reason=0):
    return pdu(bhs(0x06, 0x80 | reason, itt=itt, cmd_sn=cmd_sn, exp_stat_sn=2))


def connection_seeds():
    block = bytes((i * 7) & 0xff for i in range(4096))
    s = {}
    # Mode 0x00: the stream is the login.
    s["login_two_stages"] = b"\x00" + login(0, 1, SEC) + login(1, 3, OP, exp_stat_sn=1)
    s["login_one_stage"] = b"\x00" + login(1, 3, SEC + OP)
    s["login_continued"] = (b"\x00" + login(0, 1, SEC[:20], transit=False, cont=True)
                            + login(0, 1, SEC[20:]) + login(1, 3, OP, exp_stat_sn=1))
    s["login_discovery"] = b"\x00" + login(0, 3, keys(("InitiatorName", INITIATOR),
                                                      ("SessionType", "Discovery"),
                                                      ("AuthMethod", "None")))
    s["login_chap_offer"] = b"\x00" + login(0, 1, SEC.replace(b"AuthMethod=None",
                                                              b"AuthMethod=CHAP,None"))
    # Mode 0x01: logged in, normal session; 0x07 also with digests fixed up.
    ffp = []
    sn = 1
    for i, name in enumerate(["tur", "inquiry", "report_luns", "read_capacity10", "read10",
                              "mode_sense6", "inquiry_vpd83"]):
        ffp.append(scsi_cmd(0x100 + i, sn, CDBS[name], 4096, read=True))
        sn += 1
    s["ffp_reads"] = b"".join(ffp)
    s["ffp_write_immediate"] = scsi_cmd(0x200, 1, CDBS["write10"], 4096, write=True, data=block)
    s["ffp_write_r2t"] = (scsi_cmd(0x201, 1, rw10(0x2a, 0, 64), 32768, write=True,
                                   final=False, data=block)
                          + data_out(0x201, 0xffffffff, 0, 4096, block)
                          + data_out(0x201, 1, 0, 16384, block * 2, final=False)
                          + data_out(0x201, 1, 1, 24576, block * 2))
    s["ffp_nop_text_logout"] = (nop_out(0x300, 1, b"ping")
                                + text(0x301, 1, keys(("SendTargets", "All")))
                                + logout(0x302, 2))
    s["ffp_tmf"] = (scsi_cmd(0x400, 1, rw10(0x2a, 0, 64), 32768, write=True, final=False)
                    + tmf(1, 0x401, 2, 0x400) + tmf(5, 0x402, 2) + tmf(6, 0x403, 2))
    s["ffp_lun1_masked"] = scsi_cmd(0x500, 1, CDBS["inquiry"], 96, read=True, lun=1)
    s["ffp_out_of_window"] = scsi_cmd(0x600, 50, CDBS["tur"], 0)
    s["ffp_snack_unknown"] = pdu(bhs(0x10, 0x80)) + pdu(bhs(0x1c, 0x80))
    out = {}
    for name, body in s.items():
        if name.startswith("login"):
            out[name] = body
        else:
            out[name] = b"\x01" + body
            out[name + "_digests"] = b"\x07" + body
            out[name + "_ticks"] = b"\x11" + body
    out["discovery_text"] = b"\x09" + text(1, 1, keys(("SendTargets", "All"))) + logout(2, 2)
    return out


def login_key_seeds():
    sep = b"\xff"
    return {
        "plain": b"\x00" + SEC + sep + OP,
        "discovery": b"\x00" + keys(("InitiatorName", INITIATOR), ("SessionType", "Discovery"),
                                    ("AuthMethod", "None")),
        "operational_only": b"\x08" + OP,
        "digests": b"\x04" + SEC + sep + OP.replace(b"HeaderDigest=None", b"HeaderDigest=CRC32C,None"),
        "chap": b"\x01" + SEC.replace(b"AuthMethod=None", b"AuthMethod=CHAP") + sep
                + keys(("CHAP_A", "7,5")) + sep
                + keys(("CHAP_N", "initiator-user"), ("CHAP_R", "0x" + "ab" * 32)),
        "chap_mutual": b"\x03" + SEC.replace(b"AuthMethod=None", b"AuthMethod=CHAP") + sep
                       + keys(("CHAP_A", "5")) + sep
                       + keys(("CHAP_N", "initiator-user"), ("CHAP_R", "0x" + "cd" * 16),
                              ("CHAP_I", "17"), ("CHAP_C", "0b" + "QUJDRA==" * 4)),
        "odd_values": b"\x00" + keys(("MaxRecvDataSegmentLength", "0x1000"),
                                     ("MaxBurstLength", "99999999999"),
                                     ("X#com.example.ext", "1"), ("TargetAlias", "x"),
                                     ("OFMarker", "No"), ("IFMarkInt", "2048~8192")),
    }


def cdb_seeds():
    out = {}
    for name, c in CDBS.items():
        write = name.startswith(("write", "compare"))
        # byte 0: LUN 0, direction (to_device 2 / from_device 1), nexus a
        sel = (2 if write else 1) << 2
        edtl = 4096 if write or name.startswith("read1") else 512
        data = bytes((i * 5) & 0xff for i in range(edtl)) if write else b""
        out[name] = bytes([sel]) + c + edtl.to_bytes(3, "big") + data
    # Mode select with a caching page, persistent-looking parameter data.
    ms = cdb(0x15, 0x10, 0, 0, 24, 0)
    page = bytes([0, 0, 0, 0]) + bytes([0x08, 0x12, 0x04]) + b"\0" * 17
    out["mode_select6"] = bytes([2 << 2]) + ms + (24).to_bytes(3, "big") + page
    unmap = bytes.fromhex("0016001000000000") + struct.pack(">QI", 0, 8) + b"\0" * 4
    out["unmap"] = bytes([2 << 2]) + cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0) + (24).to_bytes(3, "big") + unmap
    return out


def main():
    sets = {"fuzz_connection": connection_seeds(), "fuzz_login_keys": login_key_seeds(),
            "fuzz_cdb": cdb_seeds()}
    for target, seeds in sets.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for old in os.listdir(d):
            os.unlink(os.path.join(d, old))
        for name, body in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(body)
        print(f"{target}: {len(seeds)} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
