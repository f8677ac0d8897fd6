#!/usr/bin/env python3
"""make bench: every scenario, then bench/results/<date>.json, the plots
bench/results/<date>-latency.png and <date>-memory.png (gnuplot), and the
generated section of BENCHMARKS.md for that date (between the
"<!-- bench DATE begin -->" and "<!-- bench DATE end -->" markers; the
rest of BENCHMARKS.md is hand-written and kept).
usage: run.py [--quick] [--only SCENARIO,...] [--report-only]
"""
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

import lib

SCENARIOS = ["callgrind", "hold", "handshake", "relay", "latency", "vmotion"]
LIMIT_S = {"callgrind": 120, "hold": 420, "handshake": 180, "relay": 180,
           "latency": 420, "vmotion": 180}
RESULTS = os.path.join(lib.ROOT, "bench", "results")
MD = os.path.join(lib.ROOT, "BENCHMARKS.md")


def machine():
    cpu = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            k, v = k.strip(), v.strip()
            if k in ("model name", "cpu MHz", "cache size") and k not in cpu:
                cpu[k] = v
    ncpu = os.cpu_count()
    mem = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("MemTotal", "MemAvailable"):
                mem[k] = v.strip()
    uname = subprocess.run(["uname", "-a"], capture_output=True,
                           text=True).stdout.strip()
    return {"cpu": cpu.get("model name"), "cpu_mhz": cpu.get("cpu MHz"),
            "cache": cpu.get("cache size"), "cpus": ncpu,
            "mem_total": mem.get("MemTotal"),
            "mem_available": mem.get("MemAvailable"), "uname": uname,
            "nofile_hard": __import__("resource").getrlimit(
                __import__("resource").RLIMIT_NOFILE)[1],
            "python": platform.python_version()}


def git_head():
    r = subprocess.run(["git", "-C", lib.ROOT, "rev-parse", "HEAD"],
                       capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", lib.ROOT, "status", "--porcelain",
                            "--", "src", "tools"], capture_output=True,
                           text=True).stdout.strip()
    return r.stdout.strip(), dirty


def run_scenarios(names, quick):
    status = {}
    for name in names:
        t0 = time.time()
        cmd = [sys.executable, os.path.join(lib.ROOT, "bench",
                                            name + ".py")]
        if quick and name != "callgrind":
            cmd.append("--quick")
        lib.log("=== %s" % name)
        try:
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL,
                               timeout=LIMIT_S[name])
            status[name] = {"rc": r.returncode, "s": time.time() - t0}
        except subprocess.TimeoutExpired:
            status[name] = {"rc": "timeout", "s": time.time() - t0}
        lib.log("=== %s: %s in %.0f s" % (name, status[name]["rc"],
                                         status[name]["s"]))
        time.sleep(2)
    return status


def load_work():
    out = {}
    for name in SCENARIOS:
        try:
            with open(os.path.join(lib.WORK, name + ".json")) as f:
                out[name] = json.load(f)
        except (OSError, ValueError):
            out[name] = None
    return out


def g(d, *path):
    for p in path:
        if d is None:
            return None
        d = d[p] if isinstance(d, list) else d.get(p)
    return d


def fmt(v, nd=0, unit=""):
    if v is None:
        return "not measured"
    return ("{:,.%df}" % nd).format(v) + unit


def verdict(ok):
    return "—" if ok is None else ("**met**" if ok else "**missed**")


def rows(res):
    """The issue's table: (figure, measured, target, met, reproduce)."""
    R = []
    hold = res.get("hold") or {}
    curve = hold.get("curve") or []
    by_n = {c["ports"]: c for c in curve}
    big = max(curve, key=lambda c: c["ports"]) if curve else None
    on = hold.get("listeners_on")
    ten = by_n.get(10000)
    held_off = g(big, "identified")
    held_on = g(on, "identified")
    R.append(("concurrent idle identified ports, per-port listeners off",
              fmt(held_off) + (" of %s asked, %s lost" % (
                  fmt(g(big, "ports")), fmt(g(big, "vm_lost")))
                  if big else ""),
              ">= 19,000",
              None if held_off is None else
              held_off >= 19000 and g(big, "vm_lost") == 0,
              "python3 bench/hold.py", g(big, "command")))
    R.append(("concurrent idle identified ports, per-port listeners on",
              fmt(held_on) + (" of %s asked" % fmt(g(on, "ports"))
                              if on else ""), ">= 9,500",
              None if held_on is None else held_on >= 9500,
              "python3 bench/hold.py", g(on, "command")))
    lin = linearity(curve)
    R.append(("RSS and CPU against ports linear or better",
              "RSS/port %s KiB at 1k .. %s KiB at %s (marginal); idle CPU "
              "%s %% .. %s %%" % (
                  fmt(g(by_n.get(1000), "rss_per_port_kib"), 2),
                  fmt(g(big, "rss_per_port_kib"), 2), fmt(g(big, "ports")),
                  fmt(g(by_n.get(1000), "daemon_cpu_pct"), 2),
                  fmt(g(big, "daemon_cpu_pct"), 2)) if curve else
              "not measured", "linear or better", lin,
              "python3 bench/hold.py", None))
    R.append(("RSS per idle identified port (listeners off, 10,000 ports)",
              fmt(g(ten, "rss_per_port_kib"), 2, " KiB") +
              " marginal; %s KiB total/ports; listeners on (%s ports): "
              "%s KiB" % (fmt(g(ten, "rss_total_per_port_kib"), 2),
                          fmt(g(on, "ports")),
                          fmt(g(on, "rss_per_port_kib"), 2)),
              "<= 4 KiB",
              None if g(ten, "rss_per_port_kib") is None else
              g(ten, "rss_per_port_kib") <= 4.0,
              "python3 bench/hold.py", g(ten, "command")))
    hs = res.get("handshake") or {}
    R.append(("VM connections accepted and identified per second",
              fmt(hs.get("handshakes_per_s"), 0, "/s") +
              (" (%s VMs, listeners off; listeners on: %s/s)" % (
                  fmt(g(hs, "best", "vms")),
                  fmt(g(hs, "runs", 2, "handshakes_per_s")))
               if hs else "") +
              (" (floor: a responder doing nothing: %s/s)" % fmt(
                  g(hs, "floor", "handshakes_per_s"))
               if g(hs, "floor") else "") +
              (" (over TLS: %s/s)" % fmt(g(hs, "tls", "handshakes_per_s"))
               if g(hs, "tls") else ""), "20,000/s",
              None if not hs else hs["handshakes_per_s"] >= 20000,
              "python3 bench/handshake.py", g(hs, "best", "command")))
    vm = res.get("vmotion") or {}
    st = vm.get("storm")
    R.append(("vMotions completed per second, clients attached",
              fmt(g(st, "vmotions_per_s"), 0, "/s") +
              (", %s mismatches (%s completed)" % (
                  fmt(g(st, "mismatches")), fmt(g(st, "vmotions_completed")))
               if st else ""), "10,000/s, zero mismatches",
              None if not st else st["vmotions_per_s"] >= 10000 and
              st["mismatches"] == 0,
              "python3 bench/vmotion.py", g(st, "command")))
    rl = res.get("relay") or {}
    R.append(("aggregate relay VM -> clients, 100 VMs x 1 client",
              fmt(g(rl, "many", "throughput_mb_s"), 1, " MB/s") +
              (" (errors %s)" % fmt(sum(g(rl, "many", k) or 0 for k in (
                  "lost", "duplicated", "corrupted", "misrouted"))))
              if rl else "", "1 GB/s",
              None if not rl else rl["many"]["throughput_mb_s"] >= 1000,
              "python3 bench/relay.py", g(rl, "many", "command")))
    R.append(("relay 1 VM -> 100 clients, per client",
              fmt(g(rl, "fan", "per_client_mb_s"), 2, " MB/s") +
              (" mean, %s MB/s min" % fmt(g(rl, "fan",
                                              "per_client_min_mb_s"), 2)
               if rl else ""), "50 MB/s each",
              None if not rl else rl["fan"]["per_client_mb_s"] >= 50,
              "python3 bench/relay.py", g(rl, "fan", "command")))
    lt = res.get("latency") or {}
    for key, label in (("ports", "latency, %s ports x 100 B/s, 1 client "
                        "each" % fmt(g(lt, "ports", "vms"))),
                       ("vms", "latency, 1,000 VMs x 5 records/s of 128 B")):
        x = lt.get(key)
        R.append((label, "p50 %s / p99 %s us" % (
            fmt(g(x, "latency_p50_us"), 0), fmt(g(x, "latency_p99_us"), 0))
            + (" (errors %s)" % fmt(g(x, "errors")) if x else ""),
            "p99 < 1 ms", None if not x or x["latency_p99_us"] is None else
            x["latency_p99_us"] < 1000 and x["errors"] == 0,
            "python3 bench/latency.py", g(x, "command")))
    ga = vm.get("goahead")
    R.append(("GOAHEAD reply time after BEGIN, 1,000 vMotions/s",
              "p50 %s / p99 %s us (at %s BEGIN/s)" % (
                  fmt(g(ga, "goahead_p50_us"), 0),
                  fmt(g(ga, "goahead_p99_us"), 0),
                  fmt(g(ga, "vmotions_per_s"), 0)), "p99 < 1 ms",
              None if not ga else ga["goahead_p99_us"] < 1000,
              "python3 bench/vmotion.py", g(ga, "command")))
    R.append(("CPU at 10,000 idle ports",
              fmt(g(ten, "daemon_cpu_pct"), 2, " % of a core") +
              (" over %s s" % hold.get("window_s") if ten else ""),
              "< 1 %", None if ten is None else ten["daemon_cpu_pct"] < 1,
              "python3 bench/hold.py", g(ten, "command")))
    return R


def linearity(curve):
    """True if RSS/port does not grow with ports (within 10 %) and CPU
    stays under 1 %: linear or better."""
    pts = [c for c in curve if c.get("rss_per_port_kib")]
    if len(pts) < 2:
        return None
    pts.sort(key=lambda c: c["ports"])
    return (pts[-1]["rss_per_port_kib"] <= pts[0]["rss_per_port_kib"] * 1.1
            and all(c["daemon_cpu_pct"] < 1 for c in pts))


def plots(res, date):
    if shutil.which("gnuplot") is None:
        lib.log("gnuplot missing: apt-get install -y gnuplot-nox")
        subprocess.run(["apt-get", "install", "-y", "gnuplot-nox"],
                       stdout=subprocess.DEVNULL)
    if shutil.which("gnuplot") is None:
        return []
    made = []
    curve = g(res, "latency", "curve") or []
    if curve:
        dat = os.path.join(lib.WORK, "latency.dat")
        with open(dat, "w") as f:
            for c in curve:
                if c.get("latency_p99_us") is None:
                    continue
                f.write("%g %g %g %g\n" % (
                    c["records_per_s_total"], c["latency_p50_us"] / 1000,
                    c["latency_p99_us"] / 1000,
                    (c.get("throughput_mb_s") or 0)))
        png = os.path.join(RESULTS, date + "-latency.png")
        script = """set terminal png size 900,560
set output '%s'
set title 'vspcd VM-to-client latency vs load (1,000 VMs x 1 client, 128 B records, %s)'
set xlabel 'records/s in total (log)'
set ylabel 'latency (ms, log)'
set logscale xy
set grid
set key top left
plot '%s' using 1:2 with linespoints title 'p50', \\
     '%s' using 1:3 with linespoints title 'p99', \\
     1 with lines dashtype 2 title 'target p99 1 ms'
""" % (png, date, dat, dat)
        subprocess.run(["gnuplot"], input=script, text=True, check=False)
        made.append(png)
    hc = g(res, "hold", "curve") or []
    if hc:
        dat = os.path.join(lib.WORK, "memory.dat")
        with open(dat, "w") as f:
            for c in hc:
                if c.get("daemon_rss_kib"):
                    f.write("%d %g %g %g\n" % (
                        c["ports"], c["daemon_rss_kib"] / 1024.0,
                        c["daemon_cpu_pct"], c["rss_per_port_kib"]))
        png = os.path.join(RESULTS, date + "-memory.png")
        script = """set terminal png size 900,560
set output '%s'
set title 'vspcd RSS and idle CPU vs identified idle ports (listeners off, %s)'
set xlabel 'ports'
set ylabel 'RSS (MiB)'
set y2label 'daemon CPU (%% of a core)'
set ytics nomirror
set y2tics
set grid
set key top left
plot '%s' using 1:2 with linespoints axes x1y1 title 'RSS', \\
     '%s' using 1:3 with linespoints axes x1y2 title 'idle CPU %%', \\
     4.0*x/1024 + %g with lines dashtype 2 axes x1y1 title '4 KiB/port + base'
""" % (png, date, dat, dat, (hc[0].get("daemon_rss_base_kib") or 0) / 1024.0)
        subprocess.run(["gnuplot"], input=script, text=True, check=False)
        made.append(png)
    return [os.path.relpath(p, lib.ROOT) for p in made if os.path.exists(p)]


def section(doc, date):
    m = doc["machine"]
    out = ["<!-- bench %s begin -->" % date,
           "## Run of %s" % date, "",
           "- machine: %s, %s CPUs, %s RAM; `%s`" % (
               m["cpu"], m["cpus"], m["mem_total"], m["uname"]),
           "- fd hard limit: %s; commit `%s`%s" % (
               m["nofile_hard"], doc["commit"],
               " (uncommitted changes under src/ or tools/)"
               if doc["dirty"] else ""),
           "- figures: `bench/results/%s.json`; total time %.0f s%s" % (
               date, doc["elapsed_s"], " (--quick)" if doc["quick"] else ""),
           "- every scenario starts its own Release `vspcd` (`build-bench`)"
           " with a temporary state dir, ephemeral listeners, "
           "`--log-dir off` and raised caps (%s)" % " ".join(lib.CAPS),
           "", "| figure | measured | target | result | reproduce |",
           "| --- | --- | --- | --- | --- |"]
    for name, meas, target, ok, repro, _ in doc["rows"]:
        out.append("| %s | %s | %s | %s | `%s` |" % (
            name, meas, target, verdict(ok), repro))
    out += ["", "Exact commands of each row (the script runs them):", ""]
    for name, _, _, _, _, cmd in doc["rows"]:
        if cmd:
            out.append("- %s: `%s`" % (name, cmd))
    fl = g(doc["results"], "handshake", "floor")
    if fl:
        out.append("- handshake floor (bench/null-vspc, responder CPU %s %%,"
                   " generator CPU %s %% over the ramp): `%s`" % (
                       fmt(fl.get("responder_cpu_ramp_pct"), 1),
                       fmt(fl.get("bench_cpu_ramp_pct"), 1), fl["command"]))
    lt = g(doc["results"], "latency", "curve") or []
    if lt:
        out += ["", "Latency against load (1,000 VMs x 1 client, 128 B "
                "records):", "",
                "| records/s | MB/s delivered | p50 us | p99 us | max us |"
                " daemon CPU % | errors |", "| --- | --- | --- | --- | --- |"
                " --- | --- |"]
        for c in lt:
            out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                fmt(c["records_per_s_total"]), fmt(c["throughput_mb_s"], 1),
                fmt(c["latency_p50_us"]), fmt(c["latency_p99_us"]),
                fmt(c["latency_max_us"]), fmt(c["daemon_cpu_pct"], 1),
                fmt(c["errors"])))
    hc = g(doc["results"], "hold", "curve") or []
    if hc:
        out += ["", "Memory and idle CPU against ports (listeners off):", "",
                "| ports | held | RSS KiB | RSS/port KiB (marginal) | "
                "RSS/port KiB (total) | idle CPU % | ramp handshakes/s |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for c in hc:
            out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                fmt(c["ports"]), fmt(c["identified"]),
                fmt(c["daemon_rss_kib"]), fmt(c.get("rss_per_port_kib"), 2),
                fmt(c.get("rss_total_per_port_kib"), 2),
                fmt(c["daemon_cpu_pct"], 2), fmt(c["handshakes_per_s"])))
    cg = doc["results"].get("callgrind")
    if cg:
        out += ["", "callgrind (Ir per MiB, `python3 bench/callgrind.py`, "
                "also in `bench/callgrind.txt`):", "",
                "| path | Ir/MiB | Ir/byte |", "| --- | --- | --- |"]
        for k, v in cg.items():
            if isinstance(v, dict):
                out.append("| %s: %s | %s | %.2f |" % (
                    k, v["what"], fmt(v["ir_per_mib"]),
                    v["ir_per_mib"] / 1048576.0))
    for p in doc["plots"]:
        out += ["", "![%s](%s)" % (os.path.basename(p), p)]
    out += ["", "<!-- bench %s end -->" % date]
    return "\n".join(out) + "\n"


def write_md(doc, date):
    text = open(MD).read() if os.path.exists(MD) else (
        "# vspcd benchmarks\n\n<!-- runs -->\n")
    new = section(doc, date)
    pat = re.compile(r"<!-- bench %s begin -->.*?<!-- bench %s end -->\n" % (
        re.escape(date), re.escape(date)), re.S)
    if pat.search(text):
        text = pat.sub(lambda m: new, text)
    elif "<!-- runs -->\n" in text:
        text = text.replace("<!-- runs -->\n", "<!-- runs -->\n\n" + new, 1)
    else:
        text += "\n" + new
    with open(MD, "w") as f:
        f.write(text)


def main():
    quick = "--quick" in sys.argv
    names = SCENARIOS
    if "--only" in sys.argv:
        names = sys.argv[sys.argv.index("--only") + 1].split(",")
    t0 = time.time()
    status = {}
    if "--report-only" not in sys.argv:
        status = run_scenarios(names, quick)
    date = datetime.date.today().isoformat()
    res = load_work()
    commit, dirty = git_head()
    doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "commit": commit, "dirty": bool(dirty),
        "quick": quick, "machine": machine(), "status": status,
        "elapsed_s": time.time() - t0, "results": res}
    doc["rows"] = rows(res)
    doc["plots"] = plots(res, date)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, date + ".json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    write_md(doc, date)
    lib.log("wrote %s, %s, %s" % (path, MD, ", ".join(doc["plots"])))
    for name, meas, target, ok, _, _ in doc["rows"]:
        print("%-62s %-45s %-22s %s" % (name, meas, target, verdict(ok)))


if __name__ == "__main__":
    main()
