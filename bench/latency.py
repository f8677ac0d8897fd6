#!/usr/bin/env python3
"""latency: VM-to-client latency (send time in the record to receive time
at the client, both CLOCK_MONOTONIC on this machine).

  ports:  9,900 ports x 100 B/s (128 B records), one client each, through
          the front door (--port-range off). 10,000 cannot be held: vspcd's
          fd limit is 20,000 and each port costs 2 fds (VM + client) plus
          the daemon's own; split over two vspc-bench processes.
  vms:    1,000 VMs x 5 records/s of 128 B, one client each (per-port
          listeners).
  curve:  1,000 VMs x 1 client at 5, 50, 200, 500 and 1000 records/s
          per VM (5k..1M records/s in total): latency against load.
p99 over several processes is the largest of their p99s (an upper bound).
usage: latency.py [--quick]
"""
import sys
import time

import lib

QUICK = "--quick" in sys.argv
DUR = 5 if QUICK else 15
CURVE = [5, 50, 200, 500, 1000]


def run(name, vms, rate, nproc=1, port_range="0", dur=DUR):
    per = vms // nproc
    procs = [["--scenario", "latency", "--vms", per, "--vm-offset", i * per,
              "--clients-per-vm", 1, "--rate", rate, "--record-size", 128,
              "--duration", dur, "--source", lib.sources(40 + i, 8),
              "--ramp-timeout", 120] +
             (["--wait-connections", vms, "--wait-clients", vms]
              if nproc > 1 else [])
             for i in range(nproc)]
    with lib.Daemon(port_range=port_range) as d:
        rs = lib.run_bench(d, procs, timeout=dur + 240)
        cmd = d.cmdline() + " ; " + " & ".join(lib.bench_cmd(p)
                                              for p in procs)
    out = {"vms": vms, "rate_b_s": rate, "records_per_s_total":
           vms * rate / 128.0, "processes": nproc,
           "clients": lib.total(rs, "clients"),
           "records_received": lib.total(rs, "records_received"),
           "latency_p50_us": lib.hist_max(rs, "latency_p50_us"),
           "latency_p90_us": lib.hist_max(rs, "latency_p90_us"),
           "latency_p99_us": lib.hist_max(rs, "latency_p99_us"),
           "latency_max_us": lib.hist_max(rs, "latency_max_us"),
           "throughput_mb_s": lib.total(rs, "throughput_mb_s"),
           "daemon_cpu_pct": lib.hist_max(rs, "daemon_cpu_pct"),
           "bench_cpu_pct": lib.total(rs, "bench_cpu_pct"),
           "errors": sum(lib.total(rs, k) for k in (
               "lost", "lost_tail", "duplicated", "corrupted", "misrouted",
               "clients_failed")),
           "exit": [r["exit"] for r in rs], "command": cmd}
    lib.log("latency %s: %d VMs x %d B/s: p50 %s us p99 %s us, %d clients,"
            " errors %d" % (name, vms, rate, out["latency_p50_us"],
                            out["latency_p99_us"], out["clients"],
                            out["errors"]))
    return out


def main():
    res = {"duration_s": DUR}
    res["ports"] = run("ports", 2000 if QUICK else 9900, 100, nproc=2,
                       port_range="off")
    time.sleep(2)
    res["vms"] = run("vms", 1000, 640)
    res["curve"] = []
    for rps in CURVE:
        time.sleep(1)
        res["curve"].append(run("curve", 1000, rps * 128,
                                dur=5 if QUICK else 8))
    lib.save("latency", res)


if __name__ == "__main__":
    main()
