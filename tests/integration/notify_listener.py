#!/usr/bin/env python3
"""A stand-in for systemd's notification socket: binds a datagram socket at
PATH and appends every message it receives to LOG, one datagram per line
(newlines inside a datagram become '|'), until killed or DURATION seconds pass."""
import os
import socket
import sys
import time

path, log, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o777)
open(log + '.ready', 'w').close()
end = time.monotonic() + duration
with open(log, 'a', buffering=1) as out:
    while time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        out.write(f'{time.monotonic():.3f} ' + data.decode(errors='replace').strip().replace('\n', '|') + '\n')
