#!/usr/bin/env python3
"""callgrind: instruction counts (Ir) of the relay hot paths per MiB.

valgrind --tool=callgrind --toggle-collect=FUNC counts only FUNC (and what
it calls; a second toggle on a function inside it, such as bench-fanout's
sock_read, leaves that one out) on bench-telnet / bench-fanout from the
Release tree (built with
-DVSPC_BENCH=ON): deterministic input, so the figures repeat exactly for a
given binary, compiler and libevent. Writes bench/callgrind.txt and
results/work/callgrind.json.
usage: callgrind.py
"""
import os
import re
import subprocess

import lib

RUNS = [
    ("telnet_decode", "bench-telnet", [], "decode_mb",
     "telnet_input_inplace() of 1 MiB console data (1 % 0xFF, doubled on"
     " the wire), 16 KiB reads, as vm.c"),
    ("telnet_decode_const", "bench-telnet", [], "decode_const_mb",
     "telnet_input() of the same (buffer untouched: a run ends at each"
     " doubled IAC), as client.c"),
    ("telnet_escape", "bench-telnet", [], "escape_mb",
     "memchr + telnet_escape() of 1 MiB for clients"),
    ("telnet_data", "bench-telnet", [], "data_mb",
     "telnet_input_data() of the same wire bytes into another buffer, 16 KiB"
     " reads, as vm.c for a read that is console data (no escape after)"),
    ("fanout_1", "bench-fanout", ["1"], "fanout_mb",
     "port_output path, 1 MiB to 1 client (replay + escape once + reference per client)"),
    ("fanout_100", "bench-fanout", ["100"], "fanout_mb",
     "port_output path, 1 MiB to 100 clients"),
    ("events_1", "bench-fanout", ["1", "1", "events"], "fanout_events_mb",
     "as vm.c: telnet_input_inplace + port_output per DATA event, 1 client"),
    ("events_100", "bench-fanout", ["100", "1", "events"],
     "fanout_events_mb",
     "as vm.c: telnet_input_inplace + port_output per DATA event, 100 clients"),
    ("read_1", "bench-fanout", ["1", "1", "read"],
     "fanout_read_mb,sock_read",
     "as vm.c now: read chunk, telnet_input_data into the replay ring,"
     " clients reference the wire bytes, 1 client"),
    ("read_100", "bench-fanout", ["100", "1", "read"],
     "fanout_read_mb,sock_read",
     "as vm.c now: read chunk, telnet_input_data into the replay ring,"
     " clients reference the wire bytes, 100 clients"),
]


def main():
    res, lines = {}, []
    for key, prog, args, func, what in RUNS:
        toggles = ["--toggle-collect=" + f for f in func.split(",")]
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
            + toggles + [os.path.join(lib.BUILD, prog)] +
            args, capture_output=True, text=True, check=True)
        m = re.search(r"Collected : (\d+)", out.stderr)
        ir = int(m.group(1))
        res[key] = {"ir_per_mib": ir, "what": what,
                    "command": "valgrind --tool=callgrind %s"
                    " build-bench/%s %s" % (" ".join(toggles), prog,
                                            " ".join(args))}
        lines.append("%-19s %12d Ir/MiB  %6.2f Ir/B  %s" % (
            key, ir, ir / 1048576.0, what))
    res["fanout_per_client_ir_per_mib"] = (
        res["fanout_100"]["ir_per_mib"] - res["fanout_1"]["ir_per_mib"]) / 99
    lines.append("%-19s %12d Ir/MiB  %6.2f Ir/B  %s" % (
        "fanout/client", res["fanout_per_client_ir_per_mib"],
        res["fanout_per_client_ir_per_mib"] / 1048576.0,
        "(fanout_100 - fanout_1) / 99: each extra client"))
    res["events_per_client_ir_per_mib"] = (
        res["events_100"]["ir_per_mib"] - res["events_1"]["ir_per_mib"]) / 99
    lines.append("%-19s %12d Ir/MiB  %6.2f Ir/B  %s" % (
        "events/client", res["events_per_client_ir_per_mib"],
        res["events_per_client_ir_per_mib"] / 1048576.0,
        "(events_100 - events_1) / 99: each extra client, as vm.c"))
    res["read_per_client_ir_per_mib"] = (
        res["read_100"]["ir_per_mib"] - res["read_1"]["ir_per_mib"]) / 99
    lines.append("%-19s %12d Ir/MiB  %6.2f Ir/B  %s" % (
        "read/client", res["read_per_client_ir_per_mib"],
        res["read_per_client_ir_per_mib"] / 1048576.0,
        "(read_100 - read_1) / 99: each extra client, as vm.c now"))
    ver = subprocess.run(["valgrind", "--version"], capture_output=True,
                         text=True).stdout.strip()
    cc = subprocess.run(["cc", "--version"], capture_output=True,
                        text=True).stdout.splitlines()[0]
    with open(os.path.join(lib.ROOT, "bench", "callgrind.txt"), "w") as f:
        f.write("# callgrind instruction counts, Release build (-O3), %s, "
                "%s\n# regenerate: python3 bench/callgrind.py "
                "(after cmake -DVSPC_BENCH=ON -DCMAKE_BUILD_TYPE=Release)\n"
                % (ver, cc))
        f.write("\n".join(lines) + "\n")
    lib.save("callgrind", res)


if __name__ == "__main__":
    main()
