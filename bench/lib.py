"""Shared helpers of the bench/ scenario scripts (python3 stdlib only).

Each scenario script starts its own vspcd (the Release tree, build-bench by
default, or $VSPC_BUILD) with a temporary state dir and ephemeral listeners,
runs one or more vspc-bench processes against it and writes its figures to
bench/results/work/<scenario>.json (or $BENCH_WORK/<scenario>.json), which
bench/run.py merges into bench/results/<date>.json.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("VSPC_BUILD", os.path.join(ROOT, "build-bench"))
VSPCD = os.path.join(BUILD, "vspcd")
BENCH = os.path.join(BUILD, "vspc-bench")
NULL_VSPC = os.path.join(BUILD, "null-vspc")
WORK = os.environ.get("BENCH_WORK", os.path.join(ROOT, "bench", "results",
                                                   "work"))
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Caps raised for load (the defaults protect a real deployment).
CAPS = ["--max-unidentified", "50000", "--max-vm-connections", "100000",
        "--max-clients", "30000", "--max-clients-per-source", "30000"]


def log(msg):
    print("[bench] " + msg, file=sys.stderr, flush=True)


def sources(group, n):
    """n loopback source addresses 127.<group>.0.1.. for one process."""
    return ",".join("127.%d.0.%d" % (group, i + 1) for i in range(n))


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def terminate(proc):
    """SIGTERM, then SIGKILL if it has not exited within 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Daemon:
    """One vspcd in the foreground with a temporary state dir."""

    def __init__(self, port_range="off", log_dir="off", extra=()):
        self.state = tempfile.mkdtemp(prefix="vspc-bench-")
        args = [VSPCD, "-d", "--state-dir", self.state,
                "--vm-listen", "127.0.0.1:0",
                "--client-listen", "127.0.0.1:0",
                "--admin-listen", "127.0.0.1:0",
                "--port-range", port_range,
                "--log-dir", log_dir if log_dir != "state" else
                os.path.join(self.state, "logs")] + CAPS + list(extra)
        self.args = args
        self.errlog = open(os.path.join(self.state, "vspcd.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.errlog,
                                     stderr=subprocess.STDOUT)
        self.listeners = os.path.join(self.state, "listeners.json")
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("vspcd exited: see %s" % self.state)
            try:
                with open(self.listeners) as f:
                    self.info = json.load(f)
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        else:
            raise RuntimeError("vspcd: no listeners.json")
        self.pid = self.proc.pid
        time.sleep(0.3)
        self.rss0 = proc_rss_kib(self.pid)

    def cmdline(self):
        return " ".join(a if a != self.state else "$STATE"
                        for a in self.args[0:1] + self.args[1:]).replace(
                            ROOT + "/", "")

    def bench_args(self):
        return ["--listeners", self.listeners]

    def nfds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def stop(self):
        terminate(self.proc)
        self.errlog.close()
        if os.environ.get("BENCH_KEEP") is None:
            shutil.rmtree(self.state, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def tls_cert():
    """A throw-away P-256 certificate for a TLS run: (cert, key,
    SHA-256 thumbprint as vspc-bench --tls-thumbprint takes it)."""
    d = tempfile.mkdtemp(prefix="vspc-bench-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=vspcd-bench"],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    tp = subprocess.run([os.path.join(BUILD, "vspc-sim"), "--thumbprint",
                         cert], check=True, stdout=subprocess.PIPE,
                        text=True).stdout.strip()
    return cert, key, tp


class NullVspc:
    """bench/null-vspc (the handshake floor: vspcd's bytes, no work) on an
    ephemeral loopback port; vspc-bench gets --target and --daemon-pid."""

    def __init__(self):
        if not os.path.exists(NULL_VSPC):
            raise RuntimeError("%s missing: configure with -DVSPC_BENCH=ON"
                               % NULL_VSPC)
        self.tmp = tempfile.mkdtemp(prefix="null-vspc-")
        self.errlog = open(os.path.join(self.tmp, "null-vspc.log"), "w+")
        self.proc = subprocess.Popen([NULL_VSPC, "-l", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE,
                                     stderr=self.errlog)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("null-vspc did not start: %s" % self.tail)
        self.port = int(line)
        self.pid = self.proc.pid
        self.tail = ""

    def bench_args(self):
        return ["--target", "127.0.0.1:%d" % self.port,
                "--daemon-pid", self.pid]

    def cmdline(self):
        return os.path.relpath(NULL_VSPC, ROOT) + " -l 127.0.0.1:0"

    def stop(self):
        """Stop it; self.tail is its last stderr line (the counters)."""
        terminate(self.proc)
        self.proc.stdout.close()
        self.errlog.seek(0)
        lines = self.errlog.read().strip().splitlines()
        self.tail = lines[-1] if lines else ""
        self.errlog.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_bench(daemon, procs, timeout=300):
    """Run vspc-bench processes in parallel against a Daemon or NullVspc;
    procs is a list of argument lists (each without --listeners/--target/
    --json). Returns their JSON results."""
    tmp = tempfile.mkdtemp(prefix="vspc-bench-out-")
    running = []
    for i, args in enumerate(procs):
        out = os.path.join(tmp, "%d.json" % i)
        cmd = [BENCH] + [str(a) for a in daemon.bench_args()] + [
            "--json", out, "--quiet"] + [str(a) for a in args]
        err = open(os.path.join(tmp, "%d.err" % i), "w")
        running.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                         stderr=err), out, err, cmd))
    results = []
    deadline = time.time() + timeout
    for p, out, err, cmd in running:
        try:
            p.wait(max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        err.close()
        try:
            with open(out) as f:
                r = json.load(f)
        except (OSError, ValueError):
            r = {"results": {}, "exit": p.returncode}
            with open(err.name) as f:
                r["stderr_tail"] = f.read()[-2000:]
        r["exit"] = p.returncode
        results.append(r)
    shutil.rmtree(tmp, ignore_errors=True)
    return results


def bench_cmd(args, target="--listeners $STATE/listeners.json"):
    return "vspc-bench " + target + " " + " ".join(str(a) for a in args)


def total(results, key):
    return sum(r["results"].get(key) or 0 for r in results)


def fig(results, key, i=0):
    v = results[i]["results"].get(key)
    return v


def hist_max(results, key):
    vals = [r["results"].get(key) for r in results
            if r["results"].get(key) is not None]
    return max(vals) if vals else None


def save(scenario, data):
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, scenario + ".json")
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    log("%s: wrote %s" % (scenario, path))
    print(json.dumps(data, indent=1, sort_keys=True))
