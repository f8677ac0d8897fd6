#!/usr/bin/env python3
"""Replay the proxy side of capture stream 0 against vspc-sim.

A fake proxy on 127.0.0.1:0 sends the P>V segments of stream 0 from
tests/data/capture-transcript.tsv, each one only after every V>P byte that
precedes it in the capture has arrived, and compares the sim's V>P byte
stream with the capture's, byte for byte, up to and including
IAC WILL COM-PORT. Then it checks that console output follows (--mode
bytes: 00 01 02 ..., 0xFF doubled on the wire), that console input is
counted and echoed, that unknown subcommands get UNKNOWN-SUBOPTION-RCVD-1
and the BIOS/location UUID answers, and the status line.

The comparison is exact: the sim is started with --uuid-base set to the
capture's UUID (VM 0 = 01 23 .. 00 00), the default name prefix and URI
(vm-00000, vSPC.py) and --comport-delay 44, so WILL COM-PORT goes out after
VM-VC-UUID and VM-NAME as in the capture. With --comport-delay 0 the only
difference would be that `ff fb 2c` moves up to right after DO-PROXY (same
write), i.e. before VM-VC-UUID and VM-NAME; the check accepts that order
too if VSPC_SIM_COMPORT_DELAY=0 is set. TCP segment boundaries are not
compared (the sim may coalesce replies differently); only the byte stream.

Usage: sim_negotiation_check.py [path/to/vspc-sim]  (or $VSPC_SIM)
"""

import os
import queue
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("VSPC_SRC", os.path.join(HERE, "..", ".."))
TSV = os.path.join(SRC, "tests", "data", "capture-transcript.tsv")
TIMEOUT = 5.0

WILL_COMPORT = bytes.fromhex("fffb2c")
DONT_COMPORT = bytes.fromhex("fffe2c")


def load_stream0():
    """Return [(dir, bytes)] of stream 0 up to the proxy's DONT COM-PORT."""
    segs = []
    with open(TSV) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 5 or cols[1] != "0" or cols[3] != "data":
                continue
            segs.append((cols[2], bytes.fromhex(cols[4])))
            if cols[2] == "P>V" and segs[-1][1] == DONT_COMPORT:
                return segs
    raise SystemExit("capture: no DONT COM-PORT in stream 0")


class Proxy:
    """Server end of one sim connection with a byte-exact receive log."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(0.2)
        self.rx = bytearray()

    def want(self, n, what):
        """Read until at least n bytes arrived in total."""
        end = time.monotonic() + TIMEOUT
        while len(self.rx) < n:
            if time.monotonic() > end:
                raise AssertionError("timeout waiting for %s: have %s"
                                     % (what, self.rx.hex(" ")))
            try:
                b = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not b:
                raise AssertionError("sim closed while waiting for %s"
                                     % what)
            self.rx += b

    def send(self, b):
        self.sock.sendall(b)


class Sim:
    """vspc-sim child with its stdout lines on a queue."""

    def __init__(self, path, args):
        self.p = subprocess.Popen([path] + args, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True,
                                  bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix):
        end = time.monotonic() + TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.01,
                                                  end - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no line starting with %r" % prefix)
            if line is None:
                raise AssertionError("sim exited before %r" % prefix)
            if line.startswith(prefix):
                return line

    def command(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()

    def finish(self):
        self.command("quit")
        rc = self.p.wait(timeout=TIMEOUT)
        assert rc == 0, "sim exit status %d" % rc


def unescape(b):
    """Undo IAC doubling in a plain data stream (no other commands)."""
    out = bytearray()
    i = 0
    while i < len(b):
        if b[i] == 0xFF:
            assert i + 1 < len(b) and b[i + 1] == 0xFF, \
                "undoubled IAC in console data at %d: %s" % (i, b.hex(" "))
            i += 1
        out.append(b[i])
        i += 1
    return bytes(out)


def main():
    sim_path = (sys.argv[1] if len(sys.argv) > 1 else
                os.environ.get("VSPC_SIM",
                               os.path.join(SRC, "build-sim", "vspc-sim")))
    delay = os.environ.get("VSPC_SIM_COMPORT_DELAY", "44")
    segs = load_stream0()
    expected_vp = b"".join(b for d, b in segs if d == "V>P")
    assert expected_vp.endswith(WILL_COMPORT)

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    sim = Sim(sim_path, [
        "--target", "127.0.0.1:%d" % port, "--vms", "1",
        "--uuid-base", "0123456789abcdeffedcba9800000000",
        "--mode", "bytes", "--rate", "4000", "--comport-delay", delay,
        "--echo", "--print-recv", "--control"])
    try:
        lsock.settimeout(TIMEOUT)
        conn, _ = lsock.accept()
        px = Proxy(conn)

        # Replay: P>V segments go out once all earlier V>P bytes are in.
        need = 0
        for d, b in segs:
            if d == "V>P":
                need += len(b)
                if b == WILL_COMPORT and delay == "0":
                    # WILL COM-PORT was already sent after DO-PROXY.
                    continue
                px.want(need, b.hex(" "))
            else:
                px.send(b)
        got = bytes(px.rx[:len(expected_vp)])
        if delay == "0":
            # Move our early ff fb 2c to where the capture has it.
            i = got.find(WILL_COMPORT)
            got = got[:i] + got[i + 3:len(expected_vp)] + WILL_COMPORT
        assert got == expected_vp, ("V>P mismatch:\n got %s\nwant %s"
                                    % (got.hex(" "), expected_vp.hex(" ")))
        print("ok: %d V>P bytes match capture stream 0 through WILL COM-PORT"
              % len(expected_vp))
        sim.expect("ready 0 0")
        print("ok: ready 0 0")

        # Console output: 00 01 02 ... with 0xFF doubled on the wire.
        base = len(expected_vp)
        px.want(base + 300, "console bytes")
        data = unescape(bytes(px.rx[base:base + 300])[:-1])
        assert data == bytes(i & 0xFF for i in range(len(data))), \
            "console output not 00 01 02 ...: %s" % data[:32].hex(" ")
        assert len(data) >= 257 and b"\xff\xff" in px.rx[base:], \
            "no doubled 0xFF seen"
        print("ok: console bytes 00..ff follow, 0xFF doubled")

        # Identity extras and unknown subcommands.
        px.send(bytes.fromhex("fffae855fff0 fffae857fff0 fffae863fff0"))
        bios = b"\xff\xfa\xe8\x54" + \
            b"42 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00" + b"\xff\xf0"
        loc = b"\xff\xfa\xe8\x56" + \
            b"56 4d 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00" + b"\xff\xf0"
        unk = bytes.fromhex("fffae80263fff0")
        end = time.monotonic() + TIMEOUT
        while not (bios in px.rx and loc in px.rx and unk in px.rx):
            assert time.monotonic() < end, "no BIOS/location/unknown reply"
            px.want(len(px.rx) + 1, "identity replies")
        print("ok: VM-BIOS-UUID, VM-LOCATION-UUID, UNKNOWN-SUBOPTION-RCVD-1")

        # Console input: counted, printed, echoed (0xFF un/doubled).
        sim.command("rate 0")
        time.sleep(0.1)
        px.send(bytes.fromhex("41 ff ff 42 0d"))
        line = sim.expect("recv 0 0 ")
        assert line == "recv 0 0 41ff420d", line
        echo = bytes.fromhex("41 ff ff 42 0d")
        end = time.monotonic() + TIMEOUT
        while echo not in px.rx:
            assert time.monotonic() < end, "no echo"
            px.want(len(px.rx) + 1, "echo")
        print("ok: recv line and echo")

        sim.command("status")
        st = sim.expect("status ")
        h = 2166136261
        for c in b"A\xffB\r":
            h = ((h ^ c) * 16777619) & 0xFFFFFFFF
        assert '"connected":true,"ready":true' in st, st
        assert '"received":4,"recv_fnv":"%08x"' % h in st, st
        print("ok: %s" % st)

        sim.command("close 0 0")
        sim.expect("closed 0 0")
        px.sock.settimeout(TIMEOUT)
        while px.sock.recv(65536):
            pass
        print("ok: close 0 0")
        sim.finish()
    finally:
        if sim.p.poll() is None:
            sim.p.kill()
            sim.p.wait()
    print("PASS")


if __name__ == "__main__":
    main()
