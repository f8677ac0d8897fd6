#!/usr/bin/env python3
"""8-bit cleanliness through vspcd: all 256 byte values both ways.

VM -> client: vspc-sim 'send' (0xFF doubled on the wire by the sim), vspc-sim
--mode bytes, and a raw VM connection; telnet clients (binary, and raw=True
to see the 0xFF doubling on the client link) must get exactly those bytes.
Client -> VM: a binary telnet client sends 0..255 (0xFF doubled by telnetc);
the VM side (vspc-sim --print-recv, or a raw VM connection decoded here)
gets exactly 0..255, NUL, XON/XOFF, CR and 0xFF included. A client that did
not agree to send BINARY gets NVT newline handling (CR LF, CR NUL -> CR).
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import telnetc  # noqa: E402
import vspctest  # noqa: E402

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
ALL = bytes(range(256))
REPEAT = 3


def decode_vm_stream(buf):
    """Console data in bytes the daemon sent to a VM (telnet decoded:
    negotiations and subnegotiations dropped, IAC IAC -> 0xFF)."""
    out = bytearray()
    i, n = 0, len(buf)
    while i < n:
        c = buf[i]
        if c != IAC:
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError('truncated IAC at end')
        c2 = buf[i + 1]
        if c2 == IAC:
            out.append(IAC)
            i += 2
        elif c2 in (WILL, WONT, DO, DONT):
            i += 3
        elif c2 == SB:
            j = i + 2
            while True:
                j = buf.index(IAC, j)
                if buf[j + 1] == IAC:
                    j += 2
                    continue
                break
            i = j + 2
        else:
            i += 2
    return bytes(out)


def split_negotiation(raw):
    """(negotiation prefix, rest) of what a raw client read: the leading
    run of IAC WILL/WONT/DO/DONT x commands."""
    i = 0
    while i + 2 < len(raw) and raw[i] == IAC and \
            raw[i + 1] in (WILL, WONT, DO, DONT):
        i += 3
    return raw[:i], raw[i:]


class BinaryTest(vspctest.VspcTestCase):

    def setUp(self):
        self.d = self.daemon()

    def sim_port(self, args=()):
        sim = self.sim(self.d, ['--mode', 'none', '--print-recv'] +
                       list(args))
        sim.wait_ready(1)
        ps = self.d.wait_ports(lambda ps: len(ps) == 1 and
                               ps[0]['connected'])
        return sim, ps[0]

    def attach(self, port, n=1, **kw):
        tn = self.telnet(port['client_port'], **kw)
        self.d.wait_ports(lambda ps: ps[0]['clients'] == n)
        return tn

    def recv_from_sim(self, sim, nbytes, timeout=10.0):
        got = bytearray()
        deadline = time.monotonic() + timeout
        while len(got) < nbytes:
            ln = sim.wait_event('recv ', max(deadline - time.monotonic(),
                                             0.01))
            f = ln.split()
            self.assertEqual((f[1], f[2]), ('0', '0'), ln)
            got += bytes.fromhex(f[3])
        return bytes(got)

    # -- VM -> client --

    def test_vm_to_client_sim_send(self):
        sim, port = self.sim_port()
        tn = self.attach(port)
        raw = self.attach(port, 2, raw=True)
        payload = ALL * REPEAT
        sim.send(0, 0, payload)
        self.assertEqual(tn.read_exactly(len(payload), 10), payload)
        self.assertEqual(tn.read_available(0.2), b'')
        # The raw client sees the server's offer, then the data with every
        # 0xFF doubled and nothing else.
        esc = payload.replace(b'\xff', b'\xff\xff')
        buf = bytearray()
        deadline = time.monotonic() + 10
        while not buf.endswith(esc[-20:]) or len(buf) < len(esc):
            buf += raw.read_available(max(deadline - time.monotonic(), 0))
            if time.monotonic() > deadline:
                break
        neg, data = split_negotiation(bytes(buf))
        self.assertTrue(neg, 'no negotiation offer before data')
        self.assertEqual(data, esc)
        self.assertIn(b'\xfd\xfe\xff\xff\x00\x01', data)
        self.assertEqual(raw.read_available(0.2), b'')
        self.d.wait_ports(
            lambda ps: ps[0]['bytes_from_vm'] == len(payload))

    def test_vm_to_client_mode_bytes(self):
        """--mode bytes: 00..ff cyclic at a rate; the client attaches
        mid-stream and must see an unbroken cycle."""
        rate = 4096 if vspctest.scale() == 'full' else 2048
        sim = self.sim(self.d, ['--mode', 'bytes', '--rate', str(rate)])
        sim.wait_ready(1)
        ps = self.d.wait_ports(lambda ps: len(ps) == 1 and
                               ps[0]['connected'])
        tn = self.attach(ps[0])
        got = tn.read_exactly(3 * 256 + 17, 10)
        bad = [i for i in range(1, len(got))
               if got[i] != (got[i - 1] + 1) & 0xff]
        self.assertEqual(bad[:5], [], 'cycle broken at %r' % bad[:5])
        self.assertGreaterEqual(got.count(b'\xff'), 3)
        self.assertGreaterEqual(got.count(b'\x00'), 3)

    def test_vm_to_client_raw_vm(self):
        vm = self.raw_vm(self.d)
        vm.identify(name='vm-bin', uuid=vspctest.esxi_uuid(0xb1, 1))
        ps = self.d.wait_ports(lambda ps: len(ps) == 1)
        tn = self.attach(ps[0])
        payload = ALL * REPEAT
        vm.send(payload.replace(b'\xff', b'\xff\xff'))
        self.assertEqual(tn.read_exactly(len(payload), 10), payload)
        self.assertEqual(tn.read_available(0.2), b'')
        self.d.wait_ports(
            lambda ps: ps[0]['bytes_from_vm'] == len(payload))

    def test_vm_to_client_pure_read_then_split_iac(self):
        """A read that is console data only (every 0xFF doubled) goes to
        clients as the VM sent it (`wire_bytes` counts it) and is
        un-doubled for log and replay in one pass. Here such reads end
        between the two IACs of a pair or between IAC and its command, and
        the next read starts with the other half; other reads have commands
        inside. A binary client, a raw client (the bytes on its link), a
        client attached afterwards (the replay) and the console log must
        all see the same bytes as the VM's console wrote."""
        self.d.stop()
        self.d = self.daemon(['--replay-telnet'])
        vm = self.raw_vm(self.d)
        vm.identify(name='vm-split', uuid=vspctest.esxi_uuid(0xb4, 4))
        ps = self.d.wait_ports(lambda ps: len(ps) == 1)
        pid = ps[0]['id']
        tn = self.attach(ps[0])
        raw = self.attach(ps[0], 2, raw=True)
        raw.read_available(0.3)       # the negotiation offer

        def console(n, seed):
            x = seed
            out = bytearray()
            for i in range(n):
                x = (x * 1103515245 + 12345) & 0xffffffff
                out.append(0xff if (x >> 16) % 40 == 0 else
                           (x >> 8) & 0xff)
            return bytes(out)

        def esc(b):
            return b.replace(b'\xff', b'\xff\xff')

        want = bytearray()

        def step(wire, data):
            """Send wire, which adds data to the console; wait for it."""
            want.extend(data)
            vm.send(wire)
            self.d.wait_ports(
                lambda ps: ps[0]['bytes_from_vm'] == len(want))

        # A pure read ending in the first IAC of a pair, then the second
        # one with more pure data, ending in a lone IAC again.
        a = console(3000, 1) + b'\xff'
        step(esc(a)[:-1], a[:-1])
        wire1 = self.d.wait_ports(lambda ps: ps[0]['wire_bytes'] > 0)
        self.assertEqual(wire1[0]['wire_bytes'], len(a) - 1)
        b = console(2000, 2) + b'\xff'
        step(b'\xff' + esc(b)[:-1], b'\xff' + b[:-1])
        # The pair's second half, a command inside, more data.
        c = console(1000, 3)
        step(b'\xff' + esc(c) + bytes([IAC, 241]) + esc(c),
             b'\xff' + c + c)
        # A pure read ending in an IAC whose command comes next: NOP, and
        # IAC WILL split before its option (refused: DONT back).
        d = console(1500, 4)
        step(esc(d) + b'\xff', d)
        step(bytes([241]) + esc(d) + bytes([IAC, WILL]), d)
        step(bytes([1]) + esc(d) + b'\xff\xff', d + b'\xff')
        # Small reads (under 512 bytes: escaped as before).
        e = console(100, 5)
        step(esc(e), e)
        step(esc(e) + b'\xff', e)
        step(b'\xff' + esc(e), b'\xff' + e)
        want = bytes(want)
        self.assertEqual(tn.read_exactly(len(want), 10), want)
        self.assertEqual(tn.read_available(0.2), b'')
        self.assertEqual(raw.read_exactly(len(esc(want)), 10), esc(want))
        self.assertEqual(raw.read_available(0.2), b'')
        ps = self.d.wait_ports(lambda ps: True)
        self.assertGreater(ps[0]['wire_bytes'], len(a) + len(b) + len(d))
        self.assertLess(ps[0]['wire_bytes'], len(want))
        late = self.attach(ps[0], 3)
        self.assertEqual(late.read_exactly(len(want), 10), want)
        self.assertEqual(late.read_available(0.2), b'')
        vm.close()
        self.d.stop()
        path = os.path.join(self.d.state_dir, 'logs', pid + '.log')
        with open(path, 'rb') as f:
            self.assertEqual(f.read(), want)

    # -- client -> VM --

    def test_client_to_vm_sim(self):
        sim, port = self.sim_port()
        tn = self.attach(port)
        # Let the client's negotiation settle so BINARY is on both ways.
        tn.read_available(0.3)
        self.assertIn(telnetc.BINARY, tn.us)
        # Binary mode: CR LF and CR NUL must pass unchanged too.
        payload = ALL * REPEAT + b'\r\n\r\x00\r'
        tn.send(payload)
        got = self.recv_from_sim(sim, len(payload))
        self.assertEqual(got, payload)
        for b in (b'\x00', b'\x11', b'\x13', b'\x0d', b'\xff',
                  b'\x0d\x0a', b'\x0d\x00'):
            self.assertIn(b, got)
        time.sleep(0.2)
        self.assertEqual(sim.events('recv '), [])
        st = sim.status()
        self.assertEqual(st['ports'][0]['received'], len(payload))
        self.d.wait_ports(lambda ps: ps[0]['bytes_to_vm'] == len(payload))

    def test_client_to_vm_raw_vm(self):
        vm = self.raw_vm(self.d)
        first = vm.identify(name='vm-bin2', uuid=vspctest.esxi_uuid(0xb2, 2))
        ps = self.d.wait_ports(lambda ps: len(ps) == 1)
        tn = self.attach(ps[0])
        tn.read_available(0.3)
        payload = ALL * REPEAT
        tn.send(payload)
        buf = bytearray(first)
        deadline = time.monotonic() + 10
        while True:
            buf += vm.read_available(0.2)
            try:
                got = decode_vm_stream(bytes(buf))
            except (ValueError, IndexError):
                got = b''
            if len(got) >= len(payload) or time.monotonic() > deadline:
                break
        self.assertEqual(got, payload)
        # On the wire each 0xFF was doubled.
        self.assertIn(b'\xfe\xff\xff\x00\x01\x02', bytes(buf))

    def test_nvt_client_newlines(self):
        """binary=False: CR LF -> CR and CR NUL -> CR; other bytes kept."""
        sim, port = self.sim_port()
        tn = self.attach(port, binary=False)
        tn.read_available(0.3)
        self.assertNotIn(telnetc.BINARY, tn.us)
        self.assertIn((WONT, telnetc.BINARY), [
            (tn.sent[i + 1], tn.sent[i + 2])
            for i in range(0, len(tn.sent), 3)])
        tn.send(b'ab\r\ncd\r\x00ef\rg\n\x00h\r')
        tn.send(b'\nz')              # CR LF split across two writes
        want = b'ab\rcd\ref\rg\n\x00h\rz'
        got = self.recv_from_sim(sim, len(want))
        self.assertEqual(got, want)
        time.sleep(0.2)
        self.assertEqual(sim.events('recv '), [])


if __name__ == '__main__':
    vspctest.main()
