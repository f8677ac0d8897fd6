#!/usr/bin/env python3
"""vmotion: vMotion storms with clients attached, and GOAHEAD reply time.

  storm:   1,000 VMs x 1 client (per-port listeners), each VM printing
           1280 B/s of verified records, vMotions as fast as vspc-bench
           can drive them (--vmotion-rate 0) for DUR s: full BEGIN,
           GOAHEAD, destination connection with PEER, PEER-OK, source FIN,
           COMPLETE. Mismatches = failed vMotions + anomalies + records
           lost, duplicated, corrupted or misrouted.
  goahead: 1,000 VMs, BEGIN at 1,000/s, time to GOAHEAD (empty queue);
           then ABORT (the reply time is what is measured).
usage: vmotion.py [--quick]
"""
import sys
import time

import lib

QUICK = "--quick" in sys.argv
DUR = 5 if QUICK else 10


def run(scenario, vms, cpv, rate):
    args = ["--scenario", scenario, "--vms", vms, "--clients-per-vm", cpv,
            "--vmotion-rate", rate, "--duration", DUR,
            "--source", lib.sources(50, 8)]
    with lib.Daemon(port_range="0") as d:
        rs = lib.run_bench(d, [args], timeout=DUR + 180)
        cmd = d.cmdline() + " ; " + lib.bench_cmd(args)
    r = rs[0]["results"]
    keys = ["vmotions_started", "vmotions_completed", "vmotions_aborted",
            "vmotions_per_s", "vmotions_notnow", "vmotions_failed",
            "vmotion_anomalies", "goahead_p50_us", "goahead_p99_us",
            "goahead_max_us", "vmotion_p50_us", "vmotion_p99_us", "lost",
            "lost_tail", "duplicated", "corrupted", "misrouted", "clients",
            "latency_p99_us", "daemon_cpu_pct", "bench_cpu_pct"]
    out = {k: r.get(k) for k in keys}
    out["mismatches"] = sum(r.get(k) or 0 for k in (
        "vmotions_failed", "vmotion_anomalies", "lost", "lost_tail",
        "duplicated", "corrupted", "misrouted"))
    out.update({"vms": vms, "clients_per_vm": cpv, "vmotion_rate": rate,
                "exit": rs[0]["exit"], "command": cmd})
    if rs[0].get("stderr_tail"):
        out["stderr_tail"] = rs[0]["stderr_tail"]
    lib.log("%s: %s vMotions/s, GOAHEAD p99 %s us, mismatches %d" % (
        scenario, out["vmotions_per_s"], out["goahead_p99_us"],
        out["mismatches"]))
    return out


def main():
    res = {"duration_s": DUR, "storm": run("vmotion", 1000, 1, 0)}
    time.sleep(1)
    res["goahead"] = run("goahead", 1000, 0, 1000)
    lib.save("vmotion", res)


if __name__ == "__main__":
    main()
