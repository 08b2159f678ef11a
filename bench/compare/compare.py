#!/usr/bin/env python3
"""Side-by-side comparison of ringtgt and Debian's tgt (tgtd) on one machine.

Started by bench/compare.sh (which installs tgt, fio and iperf3 and builds
ringtgt); it can also be run directly. Both targets serve a LUN on a backing
file of the same size on the same file system, on loopback ports of their own.
Every cell of the matrix runs ringtgt-bench against each target in alternation
(A B A B ...), sampling each target's CPU time (utime+stime of all its threads,
/proc/PID/stat) and the bench's own CPU time (rusage) around every run. The
summary gives medians with [min-max] and the ratio ringtgt/tgt; the raw runs go
to a JSON file. Benchmarks print figures; nothing here passes or fails on them.
"""

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")
IQN_R = "iqn.2025-01.com.jacobgade:cmp-ringtgt"
IQN_T = "iqn.2025-01.com.jacobgade:cmp-tgt"
LUN = 1  # tgt keeps LUN 0 for its controller; use LUN 1 on both

# name, rw, bs, qd (per session), sessions, rwmixread
FULL = [
    *[(f"randread-4k-qd{q}-s{s}", "randread", "4k", q, s, None) for s in (1, 4) for q in (1, 32, 128)],
    *[(f"randwrite-4k-qd{q}-s{s}", "randwrite", "4k", q, s, None) for s in (1, 4) for q in (1, 32, 128)],
    ("read-128k-qd32-s1", "read", "128k", 32, 1, None),
    ("write-128k-qd32-s1", "write", "128k", 32, 1, None),
    ("randrw70-4k-qd32-s1", "randrw", "4k", 32, 1, 70),
    ("randrw70-4k-qd32-s4", "randrw", "4k", 32, 4, 70),
]
QUICK_NAMES = ["randread-4k-qd1-s1", "randread-4k-qd32-s1", "randwrite-4k-qd32-s1",
               "read-128k-qd32-s1", "write-128k-qd32-s1", "randrw70-4k-qd32-s1"]


def log(msg):
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_ticks(pid):
    """utime+stime (clock ticks) of a process, all its threads included."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"target exited early (status {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def size_bytes(s):
    m = re.fullmatch(r"(\d+)([KMGT]?)", s.upper())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r}")
    return int(m.group(1)) * 1024 ** " KMGT".index(m.group(2) or " ")


class Ringtgt:
    """name "ringtgt": the build under test; "baseline": --baseline's binary."""

    def __init__(self, a, tmp, image, name="ringtgt"):
        self.name = name
        binary = a.ringtgt if name == "ringtgt" else a.baseline
        iqn = IQN_R if name == "ringtgt" else f"{IQN_R}-{name}"
        self.iqn = iqn
        self.port = (a.ringtgt_port if name == "ringtgt" else None) or free_port()
        self.url = f"iscsi://127.0.0.1:{self.port}/{iqn.replace(':', '%3A')}/{LUN}"
        self.iscsi_url = f"iscsi://127.0.0.1:{self.port}/{iqn}/{LUN}"
        conf = os.path.join(tmp, f"{name}.toml")
        with open(conf, "w") as f:
            f.write(f"""workers = {a.workers}
log_level = "warn"
state_dir = "{tmp}/{name}-state"

[[portal]]
listen = "127.0.0.1:{self.port}"

[[target]]
name = "{iqn}"

  [[target.lun]]
  number = {LUN}
  path = "{image}"
  block_size = 512
  direct_io = {"true" if a.direct else "false"}
  write_ack = "{a.write_ack}"
""")
        self.log = open(os.path.join(tmp, f"{name}.log"), "w")
        self.proc = subprocess.Popen([binary, "--config", conf], stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        wait_port(self.port, self.proc)
        self.setup = (f"workers={a.workers}, write_ack={a.write_ack} "
                      f"({'durable before GOOD' if a.write_ack == 'writethrough' else 'page cache, flush on SYNCHRONIZE CACHE/FUA'}), "
                      f"direct_io={'true' if a.direct else 'false'}, iSCSI limits: its defaults")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Tgt:
    name = "tgt"
    # Caching mode page (0x08) with WCE=0, as tgt-admin writes it for "write-cache off".
    WCE_OFF = "mode_page=8:0:18:0x10:0:0xff:0xff:0:0:0xff:0xff:0xff:0xff:0x80:0x14:0:0:0:0:0:0"

    def __init__(self, a, tmp, image):
        self.port = a.tgt_port or free_port()
        # control port: picks the management socket /var/run/tgtd/socket.N, so a
        # system tgtd (socket.0, port 3260) is left alone
        self.ctl = str(a.tgt_control_port or (10000 + os.getpid() % 20000))  # tgtd takes 0..32767
        self.url = f"iscsi://127.0.0.1:{self.port}/{IQN_T.replace(':', '%3A')}/{LUN}"
        self.iscsi_url = f"iscsi://127.0.0.1:{self.port}/{IQN_T}/{LUN}"
        self.log = open(os.path.join(tmp, "tgtd.log"), "w")
        cmd = ["tgtd", "-f", "-C", self.ctl, "--iscsi", f"portal=127.0.0.1:{self.port}"]
        if a.tgt_iothreads:
            cmd[1:1] = ["-t", str(a.tgt_iothreads)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        wait_port(self.port, self.proc)
        adm = ["tgtadm", "-C", self.ctl, "--lld", "iscsi"]
        run(adm + ["--op", "new", "--mode", "target", "--tid", "1", "-T", IQN_T])
        lu = adm + ["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", str(LUN),
                    "--backing-store", image, "--bstype", "rdwr"]
        if a.direct:
            lu += ["--bsoflags", "direct"]
        run(lu)
        if a.write_ack == "writethrough":
            # WCE=0: tgt's rdwr store then fdatasync()s after every WRITE
            run(adm + ["--op", "update", "--mode", "logicalunit", "--tid", "1", "--lun", str(LUN),
                       "--params", self.WCE_OFF])
        run(adm + ["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"])
        tuned = []
        if not a.tgt_stock_params:
            # offer the same login limits ringtgt offers by default
            for k, v in (("MaxRecvDataSegmentLength", "262144"), ("MaxXmitDataSegmentLength", "262144"),
                         ("MaxBurstLength", "1048576"), ("FirstBurstLength", "65536"),
                         ("InitialR2T", "No"), ("ImmediateData", "Yes")):
                try:
                    run(adm + ["--op", "update", "--mode", "target", "--tid", "1", "--name", k, "--value", v])
                    tuned.append(f"{k}={v}")
                except subprocess.CalledProcessError as e:
                    log(f"tgtadm could not set {k}={v}: {e.stderr.strip()}")
        self.setup = (f"bstype=rdwr, {'write-cache off (WCE=0: fdatasync after every WRITE)' if a.write_ack == 'writethrough' else 'write-cache on (its default: page cache)'}, "
                      f"bsoflags={'direct' if a.direct else 'none'}, iothreads={a.tgt_iothreads or 'default'}, "
                      f"iSCSI limits: {', '.join(tuned) if tuned else 'tgt defaults'}")

    def stop(self):
        if self.proc.poll() is None:
            try:
                run(["tgtadm", "-C", self.ctl, "--op", "delete", "--mode", "system"], timeout=10)
            except Exception:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # tgtd leaves its management socket and lock file behind
        for suffix in ("", ".lock"):
            try:
                os.unlink(f"/var/run/tgtd/socket.{self.ctl}{suffix}")
            except OSError:
                pass


def bench_once(a, target, cell):
    name, rw, bs, qd, sessions, mix = cell
    cmd = [a.bench, "--url", target.url, "--json", "--quiet", "--rw", rw, "--bs", bs, "--qd", str(qd),
           "--sessions", str(sessions), "--runtime", str(a.runtime), "--seed", "1"]
    if mix is not None:
        cmd += ["--rwmixread", str(mix)]
    if target.proc.poll() is not None:
        raise RuntimeError(f"{target.name} is no longer running")
    t0 = cpu_ticks(target.pid)
    c0 = children_cpu_s()
    w0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - w0
    c1 = children_cpu_s()
    t1 = cpu_ticks(target.pid)
    rec = {"target": target.name, "cell": name, "exit": p.returncode, "wall_s": round(wall, 3),
           "target_cpu_s": (t1 - t0) / CLK_TCK, "client_cpu_s": round(c1 - c0, 4)}
    try:
        j = json.loads(p.stdout)
    except json.JSONDecodeError:
        rec["error"] = (p.stderr or p.stdout).strip()[-500:]
        return rec
    ios = j["total"]["ios"]
    rec.update(iops=j["iops"], mib_s=j["mib_s"], ios=ios, errors=j["errors"], elapsed_s=j["elapsed_s"],
               p50_us=j["total"]["lat_us"]["p50"], p99_us=j["total"]["lat_us"]["p99"],
               target_us_per_io=(rec["target_cpu_s"] * 1e6 / ios) if ios else None,
               client_us_per_io=(rec["client_cpu_s"] * 1e6 / ios) if ios else None)
    if p.returncode != 0:
        rec["stderr_tail"] = p.stderr.strip()[-500:]
    return rec


def fio_ceiling(a, image, cell, threads=False):
    """fio with io_uring straight on a backing file, same pattern and depth.

    threads=True: instead qd*sessions (at most 16) synchronous pwrite threads,
    the way tgt's rdwr store works; io_uring hands buffered writes to one file
    to a single io-wq worker, so with O_DSYNC these differ a lot."""
    name, rw, bs, qd, sessions, mix = cell
    engine = ["--ioengine=psync", f"--numjobs={min(qd * sessions, 16)}"] if threads else \
        ["--ioengine=io_uring", f"--iodepth={qd}", f"--numjobs={sessions}"]
    cmd = ["fio", "--name=ceiling", f"--filename={image}", *engine, f"--rw={rw}", f"--bs={bs}",
           "--group_reporting", "--time_based",
           f"--runtime={a.ceiling_runtime}", f"--direct={1 if a.direct else 0}", "--randrepeat=0",
           "--invalidate=0",  # the targets read a warm page cache; so does the ceiling
           "--output-format=json"]
    if mix is not None:
        cmd.append(f"--rwmixread={mix}")
    if a.write_ack == "writethrough" and rw != "randread" and rw != "read":
        cmd.append("--sync=dsync")  # O_DSYNC: what a writethrough target must pay per write
    c0 = children_cpu_s()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu = children_cpu_s() - c0
    try:
        jj = json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0]
    except (ValueError, KeyError, IndexError):
        return {"error": (p.stderr or p.stdout).strip()[-300:]}
    iops = jj["read"]["iops"] + jj["write"]["iops"]
    mib = (jj["read"]["bw_bytes"] + jj["write"]["bw_bytes"]) / 1048576
    ios = jj["read"]["total_ios"] + jj["write"]["total_ios"]
    return {"iops": iops, "mib_s": mib, "cpu_us_per_io": cpu * 1e6 / ios if ios else None,
            "sync": "dsync" if "--sync=dsync" in cmd else "none"}


def iperf3_loopback(a):
    port = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        p = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(a.ceiling_runtime), "-J"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=a.ceiling_runtime + 30)
        j = json.loads(p.stdout)
        return {"mib_s": j["end"]["sum_received"]["bits_per_second"] / 8 / 1048576, "streams": 1}
    except Exception as e:  # noqa: BLE001 - a ceiling is best effort
        return {"error": str(e)}
    finally:
        if srv.poll() is None:
            srv.terminate()
        srv.wait()


def qemu_img_bench(a, target, write):
    """qemu-img bench over iscsi:// as an independent client (128 KiB, depth 32)."""
    count = a.qemu_count
    cmd = ["qemu-img", "bench", "-f", "raw", "-c", str(count), "-d", "32", "-s", "131072", "-S", "131072"]
    if write:
        cmd += ["-w", "--pattern=0"]
    cmd.append(target.iscsi_url)
    t0 = cpu_ticks(target.pid)
    w0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - w0
    t1 = cpu_ticks(target.pid)
    m = re.search(r"Run completed in ([\d.]+) seconds", p.stdout)
    if p.returncode != 0 or not m:
        return {"error": (p.stderr or p.stdout).strip()[-300:]}
    secs = float(m.group(1))
    return {"mib_s": count * 131072 / 1048576 / secs, "seconds": secs, "wall_s": wall,
            "target_us_per_io": (t1 - t0) / CLK_TCK * 1e6 / count}


# ---------------------------------------------------------------- summary

def med(xs):
    xs = [x for x in xs if x is not None]
    return (statistics.median(xs), min(xs), max(xs)) if xs else None


def fmt_rng(t, prec=0):
    if t is None:
        return "-"
    m, lo, hi = t
    f = f"{{:.{prec}f}}"
    return f"{f.format(m)} [{f.format(lo)}–{f.format(hi)}]"


def ratio(r, t):
    if r is None or t is None or t[0] == 0:
        return "-"
    return f"{r[0] / t[0]:.2f}"


def summarize(res, out=sys.stdout):
    cells = res["cells"]
    runs = res["runs"]
    P = lambda *x: print(*x, file=out)  # noqa: E731
    P(f"ringtgt vs tgt — {res['date']}, {res['host']['nproc']} cores, load before start {res['host']['loadavg_start']}, "
      f"after {res['host'].get('loadavg_end', '?')}")
    if res["options"].get("loop"):
        P(f"backing: loop block devices over the files (losetup, {res['options']['loop']})")
    P(f"write acknowledgement: {res['options']['write_ack']}; backing files {res['options']['size']} each, "
      f"filled with data before the run; runtime {res['options']['runtime']} s x {res['options']['reps']} reps, alternating")
    P(f"command: {res.get('command', '?')}")
    P(f"ringtgt: {res['setup']['ringtgt']}")
    P(f"tgt:     {res['setup']['tgt']}")
    P("QD is per session (ringtgt-bench --qd); medians with [min–max]; ratio = ringtgt / tgt.")
    P("")
    P("| cell | ringtgt IOPS | tgt IOPS | ratio | fio io_uring on file (IOPS) | fio psync threads on file (IOPS) |")
    P("|---|---|---|---|---|---|")
    by = {}
    for r in runs:
        by.setdefault((r["cell"], r["target"]), []).append(r)
    for c in cells:
        n = c[0]
        ri = med([x.get("iops") for x in by.get((n, "ringtgt"), [])])
        ti = med([x.get("iops") for x in by.get((n, "tgt"), [])])
        ce = res["ceilings"].get(n, {})
        th = ce.get("threads", {})
        P(f"| {n} | {fmt_rng(ri)} | {fmt_rng(ti)} | {ratio(ri, ti)} | "
          + (f"{ce['iops']:.0f}{' (O_DSYNC)' if ce.get('sync') == 'dsync' else ''}" if "iops" in ce else "-")
          + " | " + (f"{th['iops']:.0f} (O_DSYNC)" if "iops" in th else "-") + " |")
    P("")
    ncpu = res["host"]["nproc"]
    P(f"| cell | ringtgt target CPU µs/IO | tgt target CPU µs/IO | ratio | client CPU µs/IO (vs ringtgt / vs tgt) | target+client CPU % of {ncpu} cores (ringtgt / tgt) |")
    P("|---|---|---|---|---|---|")
    for c in cells:
        n = c[0]
        rr = by.get((n, "ringtgt"), [])
        tt = by.get((n, "tgt"), [])
        rc = med([x.get("target_us_per_io") for x in rr])
        tc = med([x.get("target_us_per_io") for x in tt])
        rcl = med([x.get("client_us_per_io") for x in rr])
        tcl = med([x.get("client_us_per_io") for x in tt])

        def util(xs):
            u = med([(x["target_cpu_s"] + x["client_cpu_s"]) / x["wall_s"] * 100 / ncpu for x in xs if "wall_s" in x])
            return f"{u[0]:.0f}" if u else "-"
        P(f"| {n} | {fmt_rng(rc, 1)} | {fmt_rng(tc, 1)} | {ratio(rc, tc)} | "
          f"{rcl[0] if rcl else float('nan'):.1f} / {tcl[0] if tcl else float('nan'):.1f} | {util(rr)} / {util(tt)} |")
    if any(r["target"] == "baseline" for r in runs):
        P("")
        P(f"Before/after: baseline = {res['options'].get('baseline')}; ratio = ringtgt / baseline.")
        P("")
        P("| cell | ringtgt IOPS | baseline IOPS | ratio | ringtgt MiB/s | baseline MiB/s | p50 µs (ringtgt / baseline / tgt) "
          "| target CPU µs/IO (ringtgt / baseline) |")
        P("|---|---|---|---|---|---|---|---|")
        for c in cells:
            n = c[0]
            rr, bb, tt = (by.get((n, t), []) for t in ("ringtgt", "baseline", "tgt"))
            ri, bi = med([x.get("iops") for x in rr]), med([x.get("iops") for x in bb])
            rm, bm = med([x.get("mib_s") for x in rr]), med([x.get("mib_s") for x in bb])
            lat = " / ".join(fmt_rng(med([x.get("p50_us") for x in xs])) for xs in (rr, bb, tt))
            cpu = " / ".join(fmt_rng(med([x.get("target_us_per_io") for x in xs]), 1) for xs in (rr, bb))
            P(f"| {n} | {fmt_rng(ri)} | {fmt_rng(bi)} | {ratio(ri, bi)} | {fmt_rng(rm)} | {fmt_rng(bm)} | {lat} | {cpu} |")
    seq = [c for c in cells if c[1] in ("read", "write")]
    if seq:
        P("")
        net = res["ceilings"].get("iperf3", {})
        nets = f"{net['mib_s']:.0f}" if "mib_s" in net else "-"
        P("| cell | ringtgt MiB/s | tgt MiB/s | ratio | fio on file MiB/s | iperf3 loopback MiB/s | qemu-img bench MiB/s (ringtgt / tgt) |")
        P("|---|---|---|---|---|---|---|")
        for c in seq:
            n = c[0]
            rm = med([x.get("mib_s") for x in by.get((n, "ringtgt"), [])])
            tm = med([x.get("mib_s") for x in by.get((n, "tgt"), [])])
            ce = res["ceilings"].get(n, {})
            q = res.get("qemu", {}).get(n, {})
            qs = " / ".join(f"{q[t]['mib_s']:.0f}" if "mib_s" in q.get(t, {}) else "-" for t in ("ringtgt", "tgt")) if q else "-"
            P(f"| {n} | {fmt_rng(rm)} | {fmt_rng(tm)} | {ratio(rm, tm)} | "
              f"{ce['mib_s']:.0f} | {nets} | {qs} |" if "mib_s" in ce else
              f"| {n} | {fmt_rng(rm)} | {fmt_rng(tm)} | {ratio(rm, tm)} | - | {nets} | {qs} |")
    bad = [r for r in runs if r.get("exit") or r.get("error") or r.get("errors")]
    if bad:
        P("")
        P(f"runs with errors ({len(bad)}):")
        for r in bad:
            P(f"  {r['target']} {r['cell']}: exit {r.get('exit')} errors {r.get('errors')} "
              f"{r.get('error') or r.get('stderr_tail') or ''}")


# ---------------------------------------------------------------- main

def user_args():
    """sys.argv without the --ringtgt/--bench paths compare.sh adds."""
    out, skip = [], False
    for x in sys.argv[1:]:
        if skip:
            skip = False
        elif x in ("--ringtgt", "--bench") and os.environ.get("COMPARE_ARGV0"):
            skip = True
        else:
            out.append(x)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short matrix, 2 s runs, 2 reps (smoke check)")
    ap.add_argument("--runtime", type=int, help="seconds per run (default 5, --quick 2)")
    ap.add_argument("--reps", type=int, help="repetitions per target and cell (default 3, --quick 2)")
    ap.add_argument("--cells", help="regular expression on cell names, e.g. 'randread|128k'")
    ap.add_argument("--list", action="store_true", help="list the cells and exit")
    ap.add_argument("--write-ack", choices=("writethrough", "writeback"), default="writethrough",
                    help="both targets writethrough (default) or both writeback")
    ap.add_argument("--direct", action="store_true", help="O_DIRECT on both targets (default: page cache)")
    ap.add_argument("--size", default="1G", help="backing file size each (default 1G)")
    ap.add_argument("--dir", help="where the backing files go (default: a temp dir under /var/tmp)")
    ap.add_argument("--workers", type=int, default=0, help="ringtgt workers (default 0 = one per core)")
    ap.add_argument("--tgt-iothreads", type=int, default=0, help="tgtd -t (default: tgtd's own)")
    ap.add_argument("--tgt-stock-params", action="store_true",
                    help="leave tgt's iSCSI login limits at its defaults (default: match ringtgt's)")
    ap.add_argument("--no-ceilings", action="store_true", help="skip fio and iperf3")
    ap.add_argument("--no-qemu", action="store_true", help="skip the qemu-img bench cross-check")
    ap.add_argument("--qemu-count", type=int, default=20000, help="128 KiB requests per qemu-img bench run")
    ap.add_argument("--ceiling-runtime", type=int, help="seconds per fio/iperf3 run (default: --runtime)")
    ap.add_argument("--ringtgt", default=os.path.join(REPO, "build-cmp", "ringtgt"))
    ap.add_argument("--bench", default=os.path.join(REPO, "build-cmp", "bench", "ringtgt-bench"))
    ap.add_argument("--baseline", help="another ringtgt binary (e.g. main's build) run as a third target in "
                    "the same alternation, on a backing file of its own: before and after in one run")
    ap.add_argument("--loop", choices=["buffered", "direct"],
                    help="serve loop block devices over the backing files (losetup; 'direct': --direct-io=on) "
                         "instead of the files themselves; detached at the end")
    ap.add_argument("--ringtgt-port", type=int, default=0)
    ap.add_argument("--tgt-port", type=int, default=0)
    ap.add_argument("--tgt-control-port", type=int, default=0)
    ap.add_argument("--out", help="raw results JSON (default bench-compare-DATE.json in the current dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, config, images)")
    a = ap.parse_args()
    a.runtime = a.runtime or (2 if a.quick else 5)
    a.reps = a.reps or (2 if a.quick else 3)
    a.ceiling_runtime = a.ceiling_runtime or a.runtime

    cells = [c for c in FULL if (not a.quick or c[0] in QUICK_NAMES)]
    if a.cells:
        cells = [c for c in cells if re.search(a.cells, c[0])]
    if a.list or not cells:
        for c in cells:
            print(c[0])
        return 0 if cells else 2
    for exe in (a.ringtgt, a.bench) + ((a.baseline,) if a.baseline else ()):
        if not os.access(exe, os.X_OK):
            sys.exit(f"compare: {exe} not found (build with BUILD_DIR=build-cmp ./scripts/build.sh)")
    for tool in ("tgtd", "tgtadm", "fio", "iperf3"):
        if not shutil.which(tool):
            sys.exit(f"compare: {tool} missing (apt-get install tgt fio iperf3)")

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = a.out or f"bench-compare-{stamp}.json"
    tmp = tempfile.mkdtemp(prefix="ringtgt-compare.", dir=a.dir or "/var/tmp")
    size = size_bytes(a.size)
    imgs = {"ringtgt": os.path.join(tmp, "ringtgt.img"), "tgt": os.path.join(tmp, "tgt.img")}
    if a.baseline:
        imgs["baseline"] = os.path.join(tmp, "baseline.img")
    log(f"temp dir {tmp}; filling {len(imgs)} {a.size} backing files with data (no sparse or unwritten extents)")
    for img in imgs.values():
        # fallocate then overwrite: every block allocated and written, so neither
        # target reads holes or converts unwritten extents during the runs
        run(["fallocate", "-l", str(size), img])
        run(["dd", "if=/dev/zero", f"of={img}", "bs=1M", f"count={size // 1048576}", "conv=notrunc,fsync",
             "status=none"])

    loops = []
    if a.loop:
        # the block-device path: each target (and fio) gets a loop device over its file
        for k, img in list(imgs.items()):
            dev = run(["losetup", "-f", "--show", f"--direct-io={'on' if a.loop == 'direct' else 'off'}",
                       img]).stdout.strip()
            loops.append(dev)
            imgs[k] = dev
        log(f"loop devices ({a.loop}): {imgs}")

    def detach_loops():
        for dev in loops:
            subprocess.run(["losetup", "-d", dev])

    res = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
           "command": " ".join([os.environ.get("COMPARE_ARGV0", "bench/compare/compare.py")] + user_args()),
           "host": {"nproc": os.cpu_count(), "uname": " ".join(os.uname()),
                    "loadavg_start": open("/proc/loadavg").read().split()[:3]},
           "options": {"write_ack": a.write_ack, "direct": a.direct, "size": a.size, "runtime": a.runtime,
                       "reps": a.reps, "workers": a.workers, "baseline": a.baseline,
                       "loop": a.loop},
           "cells": cells, "runs": [], "ceilings": {}, "qemu": {}, "setup": {}}
    targets = []
    try:
        rt = Ringtgt(a, tmp, imgs["ringtgt"])
        targets.append(rt)
        tg = Tgt(a, tmp, imgs["tgt"])
        targets.append(tg)
        tg.iqn = IQN_T
        res["setup"] = {"ringtgt": rt.setup, "tgt": tg.setup}
        if a.baseline:
            base = Ringtgt(a, tmp, imgs["baseline"], name="baseline")
            targets.append(base)
            res["setup"]["baseline"] = f"{a.baseline}: {base.setup}"
            log(f"baseline pid {base.pid} on {base.port}")
        log(f"ringtgt pid {rt.pid} on {rt.port}; tgtd pid {tg.pid} on {tg.port} (control port {tg.ctl})")
        n = len(targets)
        log(f"{len(cells)} cells x {a.reps} reps x {n} targets x {a.runtime} s ≈ "
            f"{len(cells) * a.reps * n * (a.runtime + 1) // 60 + 1} min plus ceilings")
        for c in cells:
            for rep in range(a.reps):
                # A B, B A, ... (A B C, B C A, ... with a baseline): none always goes first
                order = (rt, tg) if rep % 2 == 0 else (tg, rt)
                if a.baseline:
                    order = targets[rep % n:] + targets[:rep % n]
                for t in order:
                    r = bench_once(a, t, c)
                    r["rep"] = rep
                    res["runs"].append(r)
                    log(f"{c[0]:24} {t.name:8} rep {rep}: "
                        + (f"{r['iops']:9.0f} IOPS {r['mib_s']:8.1f} MiB/s  target {r['target_us_per_io'] or 0:6.1f} "
                           f"µs/IO  client {r['client_us_per_io'] or 0:6.1f} µs/IO  errors {r['errors']}"
                           if "iops" in r else f"FAILED {r.get('error')}"))
        if not a.no_qemu and shutil.which("qemu-img"):
            for c in cells:
                if c[1] in ("read", "write") and c[2] == "128k":
                    res["qemu"][c[0]] = {}
                    for t in (rt, tg):
                        q = qemu_img_bench(a, t, c[1] == "write")
                        res["qemu"][c[0]][t.name] = q
                        log(f"qemu-img bench {c[0]} {t.name}: {q}")
    except BaseException:
        for t in targets:
            t.stop()
        for t in targets:
            t.log.flush()
            log(f"{t.name} log tail: " + open(t.log.name).read()[-400:])
        detach_loops()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    for t in targets:
        t.stop()
    if not a.no_ceilings:
        # the targets are stopped, so the ceilings run on an otherwise idle file
        for c in cells:
            res["ceilings"][c[0]] = fio_ceiling(a, imgs["ringtgt"], c)
            log(f"fio ceiling {c[0]}: {res['ceilings'][c[0]]}")
            if c[1] != "randread" and c[1] != "read" and a.write_ack == "writethrough":
                res["ceilings"][c[0]]["threads"] = fio_ceiling(a, imgs["ringtgt"], c, threads=True)
                log(f"fio psync-threads ceiling {c[0]}: {res['ceilings'][c[0]]['threads']}")
        if any(c[1] in ("read", "write") for c in cells):
            res["ceilings"]["iperf3"] = iperf3_loopback(a)
            log(f"iperf3 loopback: {res['ceilings']['iperf3']}")
    detach_loops()
    res["host"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    log(f"raw results: {out}")
    if a.keep:
        log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    summarize(res)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--summarize":
        # re-print the tables of a saved run: compare.py --summarize FILE.json
        with open(sys.argv[2]) as f:
            summarize(json.load(f))
        sys.exit(0)
    sys.exit(main())
