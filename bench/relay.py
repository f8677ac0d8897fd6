#!/usr/bin/env python3
"""relay: aggregate VM-to-clients throughput, IAC handling included.

A fresh vspcd (per-port listeners on, --log-dir off); vspc-bench sends
unlimited output (--rate 0, 1 KiB records with 0xFF bytes, so the daemon
un-doubles and re-doubles IACs) and every client verifies every record.
  many: 100 VMs x 1 client (target 1 GB/s aggregate)
  fan:  1 VM x 100 clients (target 50 MB/s per client)
usage: relay.py [--quick]
"""
import sys

import lib

QUICK = "--quick" in sys.argv
DUR = 5 if QUICK else 10


def run(name, vms, cpv):
    args = ["--scenario", "relay", "--vms", vms, "--clients-per-vm", cpv,
            "--rate", 0, "--duration", DUR, "--source", lib.sources(30, 4)]
    with lib.Daemon(port_range="0") as d:
        rs = lib.run_bench(d, [args], timeout=DUR + 120)
        cmd = d.cmdline() + " ; " + lib.bench_cmd(args)
    r = rs[0]["results"]
    keys = ["throughput_mb_s", "per_client_mb_s", "per_client_min_mb_s",
            "offered_mb_s", "latency_p50_us", "latency_p99_us", "lost",
            "lost_tail", "duplicated", "corrupted", "misrouted",
            "skip_notices", "daemon_cpu_pct", "bench_cpu_pct",
            "daemon_rss_kib", "clients", "records_received"]
    out = {k: r.get(k) for k in keys}
    out.update({"vms": vms, "clients_per_vm": cpv, "exit": rs[0]["exit"],
                "command": cmd})
    lib.log("relay %s: %s MB/s total, %s MB/s per client (min %s)" % (
        name, out["throughput_mb_s"], out["per_client_mb_s"],
        out["per_client_min_mb_s"]))
    return out


def main():
    lib.save("relay", {"duration_s": DUR, "many": run("many", 100, 1),
                       "fan": run("fan", 1, 100)})


if __name__ == "__main__":
    main()
