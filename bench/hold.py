#!/usr/bin/env python3
"""hold: concurrent idle identified ports; RSS and CPU against ports.

Runs, each on a fresh vspcd (--log-dir off):
  - listeners off, N in CURVE (default 1000 2000 5000 10000 19000): the
    memory-vs-ports and CPU-vs-ports curve; 10,000 is the RSS/port and
    idle CPU row, 19,000 the "ports held" row;
  - listeners on (--port-range 10000-19999), 9,500 ports.
Ports are split over two vspc-bench processes (20,000 fds each) with their
own 127.x source addresses; --wait-connections makes both hold the whole
fleet during the measured window (WINDOW s, default 10).
usage: hold.py [--quick]
"""
import sys
import time

import lib

QUICK = "--quick" in sys.argv
CURVE = [1000, 2000, 5000, 10000] if QUICK else [1000, 2000, 5000, 10000,
                                                  19000]
WINDOW = 5 if QUICK else 10


def hold(n, port_range):
    nproc = 1 if n <= 2000 else 2
    per = [n // nproc + (1 if i < n % nproc else 0) for i in range(nproc)]
    procs, off = [], 0
    for i, k in enumerate(per):
        procs.append(["--scenario", "hold", "--vms", k, "--vm-offset", off,
                      "--source", lib.sources(10 + i, 8),
                      "--duration", WINDOW, "--wait-connections", n,
                      "--ramp-timeout", 120])
        off += k
    with lib.Daemon(port_range=port_range) as d:
        rs = lib.run_bench(d, procs, timeout=240)
        fds = d.nfds()
        rss = lib.proc_rss_kib(d.pid)
        # Our own idle CPU window, after the bench processes are done
        # (their sockets closed, so it is measured below, not here).
        base = d.rss0
        cmd_d = d.cmdline()
    r0 = rs[0]["results"]
    held = lib.total(rs, "identified")
    lost = lib.total(rs, "vm_lost")
    out = {
        "ports": n, "port_range": port_range, "identified": held,
        "vm_lost": lost, "failed": lib.total(rs, "vm_failed") +
        lib.total(rs, "refused") + lib.total(rs, "vms_not_opened"),
        "daemon_fds_after": fds,
        "daemon_rss_base_kib": base,
        "daemon_rss_kib": r0.get("daemon_rss_kib"),
        "daemon_cpu_pct": max(r["results"].get("daemon_cpu_pct") or 0
                              for r in rs),
        "daemon_cpu_ramp_pct": r0.get("daemon_cpu_ramp_pct"),
        "fleet_connections": r0.get("fleet_connections"),
        "handshakes_per_s": held / max(r["results"].get("ramp_s") or 1e-9
                                       for r in rs),
        "exit": [r["exit"] for r in rs],
        "command": cmd_d + " ; " + " & ".join(lib.bench_cmd(p)
                                              for p in procs),
    }
    if out["daemon_rss_kib"]:
        out["rss_per_port_kib"] = (out["daemon_rss_kib"] - base) / n
        out["rss_total_per_port_kib"] = out["daemon_rss_kib"] / n
    lib.log("hold %d (%s): held %d, RSS %s KiB, CPU %.2f %%" % (
        n, port_range, held, out["daemon_rss_kib"], out["daemon_cpu_pct"]))
    return out


def main():
    res = {"window_s": WINDOW, "curve": [], "listeners_on": None}
    for n in CURVE:
        res["curve"].append(hold(n, "off"))
        time.sleep(2)
    res["listeners_on"] = hold(5000 if QUICK else 9500, "10000-19999")
    lib.save("hold", res)


if __name__ == "__main__":
    main()
