#!/usr/bin/env python3
"""Extracts the ELF vmlinux from a bzImage: qemu boots the ELF through its PVH
entry point, which skips the in-guest decompression that costs seconds under
TCG. The bzImage carries the kernel as one compressed stream; we look for each
format's magic bytes and keep the first candidate that decompresses to an ELF.

usage: extract_vmlinux.py BZIMAGE OUT
"""
import lzma
import subprocess
import sys
import zlib


def try_xz(blob):
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)


def try_gzip(blob):
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)


def try_zstd(blob):
    # No zstd in Python's standard library on Debian 12; the zstd tool is.
    run = subprocess.run(["zstd", "-dc"], input=blob, capture_output=True)
    return run.stdout


FORMATS = [
    (b"\xfd7zXZ\x00", try_xz),
    (b"\x1f\x8b\x08", try_gzip),
    (b"\x28\xb5\x2f\xfd", try_zstd),
]


def candidates(image):
    for magic, decompress in FORMATS:
        start = image.find(magic)
        while start >= 0:
            yield start, decompress
            start = image.find(magic, start + 1)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        image = f.read()
    for start, decompress in candidates(image):
        try:
            out = decompress(image[start:])
        except (lzma.LZMAError, zlib.error, OSError):
            continue
        if out[:4] == b"\x7fELF":
            with open(dst, "wb") as f:
                f.write(out)
            return 0
    print(f"extract_vmlinux: no compressed ELF found in {src}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
