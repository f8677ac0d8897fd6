#!/usr/bin/env python3
"""Abuse limits on the VM listener and the client front door (issue 5).

- 1,000 half-open VM connections (idle, a partial telnet command, an
  unterminated SB, a one-byte-per-second trickle) do not stop a real VM
  (vspc-sim) from being identified within 2 s, and --ident-timeout closes
  every one of them, the trickling ones too, while the real VM stays.
- The same on the front door: 1,000 idle or trickling clients from ten
  127.0.1.x sources do not stop a real client from attaching within 2 s,
  and --frontdoor-timeout closes them.
- --max-unidentified, --max-vm-per-source and --max-clients-per-source with
  small values refuse the excess (closed without a byte, counted in
  /api/v1/limits) while a VM or client from another 127.x source gets in.

Under VSPC_TEST_SCALE=small (sanitizer build) the floods are 250 strong.
"""

import os
import resource
import selectors
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import telnetc  # noqa: E402
import vspctest  # noqa: E402
from vspctest import HOST, wait_for  # noqa: E402

N = 250 if vspctest.scale() == 'small' else 1000
IDENT_LIMIT = 2.0               # a real VM must be identified within this
IAC, SB, WILL, DO = 255, 250, 251, 253
VMW = 232


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect_from(src, port, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect((HOST, port))
    return s


class Junk:
    """A set of misbehaving connections: (socket, kind, connect time)."""

    def __init__(self):
        self.conns = []
        self._trickle = []
        self._stop = threading.Event()
        self._thread = None

    def open(self, port, n, sources, kinds):
        for i in range(n):
            kind, first, drip = kinds[i % len(kinds)]
            s = connect_from(sources[i % len(sources)], port)
            t = time.monotonic()
            if first:
                s.sendall(first)
            if drip is not None:
                self._trickle.append((s, drip))
            self.conns.append((s, kind, t))
        return self

    def start_trickle(self):
        """One byte per second on every trickling connection."""
        def run():
            while not self._stop.wait(1.0):
                for s, drip in self._trickle:
                    try:
                        s.send(drip)
                    except OSError:
                        pass
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def wait_all_closed(self, timeout):
        """Read every connection until EOF; {index: time closed}."""
        sel = selectors.DefaultSelector()
        for i, (s, _, _) in enumerate(self.conns):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        closed = {}
        deadline = time.monotonic() + timeout
        while len(closed) < len(self.conns):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(min(left, 0.5)):
                i = key.data
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b''
                if not data:
                    closed[i] = time.monotonic()
                    sel.unregister(key.fileobj)
        sel.close()
        return closed

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        for s, _, _ in self.conns:
            s.close()


def probe(s, wait=1.0):
    """('refused', b'') if closed without a byte, else ('open', bytes)."""
    s.settimeout(wait)
    got = b''
    try:
        while True:
            b = s.recv(4096)
            if not b:
                return ('refused' if not got else 'closed', got)
            got += b
    except socket.timeout:
        return ('open', got)
    except ConnectionResetError:
        return ('refused' if not got else 'closed', got)


VM_KINDS = [
    ('idle', b'', None),
    ('partial-iac', bytes([IAC]), None),
    ('partial-cmd', bytes([IAC, WILL]), None),
    ('open-sb', bytes([IAC, WILL, VMW, IAC, SB, VMW, 0]) + b'\x01\x02', None),
    ('trickle-sb', bytes([IAC, SB, VMW, 80]), b'5'),
]

CLIENT_KINDS = [
    ('idle', b'', None),
    ('partial-iac', bytes([IAC, DO]), None),
    ('partial-line', b'vm-000', None),
    ('trickle', b'', b'v'),
]


class TestHalfOpen(vspctest.VspcTestCase):

    def setUp(self):
        raise_nofile()

    def test_vm_half_open(self):
        ident = 5
        d = self.daemon(['--ident-timeout', str(ident)])
        junk = Junk()
        self.addCleanup(junk.close)
        t0 = time.monotonic()
        junk.open(d.vm_port, N, ['127.0.2.%d' % i for i in range(1, 5)],
                  VM_KINDS)
        junk.start_trickle()
        t_open = time.monotonic() - t0
        wait_for(lambda: d.api('/api/v1/limits')['unidentified'] >= N,
                 timeout=5, what='%d unidentified connections' % N)

        t1 = time.monotonic()
        sim = self.sim(d, ['--vms', '1', '--rate', '200'])
        d.wait_ports(lambda ps: len(ps) == 1 and ps[0]['connected'],
                     timeout=10, interval=0.02)
        took = time.monotonic() - t1
        print('\n  %d half-open VM connections opened in %.2fs; real VM '
              'identified in %.3fs' % (N, t_open, took), file=sys.stderr)
        self.assertLess(took, IDENT_LIMIT, 'real VM identified too late')
        sim.wait_ready(1, timeout=5)
        lim = d.api('/api/v1/limits')
        self.assertEqual(lim['unidentified'], N)
        self.assertEqual(lim['vm_connections'], N + 1)

        # Every junk connection is closed at the ident deadline: not
        # before (ident - 0.5 s) and not more than a second after it.
        closed = junk.wait_all_closed(ident + 8)
        self.assertEqual(len(closed), N, 'left open: %s' % sorted(
            {junk.conns[i][1] for i in range(N) if i not in closed}))
        late = [(junk.conns[i][1], round(closed[i] - junk.conns[i][2], 2))
                for i in closed
                if not ident - 0.5 <= closed[i] - junk.conns[i][2]
                <= ident + 1.0]
        self.assertEqual(late, [], 'closed outside the deadline')
        lim = d.api('/api/v1/limits')
        self.assertEqual((lim['unidentified'], lim['vm_connections']),
                         (0, 1))
        p = d.ports()[0]
        self.assertTrue(p['connected'], 'real VM lost at the deadline')
        self.assertEqual(sim.events('closed '), [])

    def test_frontdoor_half_open(self):
        fdt = 5
        d = self.daemon(['--frontdoor-timeout', str(fdt)])
        sim = self.sim(d, ['--vms', '1', '--rate', '400'])
        sim.wait_ready(1)
        d.wait_ports(lambda ps: len(ps) == 1 and ps[0]['connected'])
        # Ten sources: the default --max-clients-per-source is 256.
        junk = Junk()
        self.addCleanup(junk.close)
        junk.open(d.client_port, N, ['127.0.1.%d' % i for i in range(1, 11)],
                  CLIENT_KINDS)
        junk.start_trickle()
        wait_for(lambda: d.healthz()['clients'] >= N, timeout=5,
                 what='%d front-door clients' % N)

        t1 = time.monotonic()
        tn, line = self.attach(d, 'vm-00000', timeout=10)
        took = time.monotonic() - t1
        print('\n  %d idle front-door clients; real client attached in '
              '%.3fs' % (N, took), file=sys.stderr)
        self.assertTrue(line.startswith('attached to vm-00000'), line)
        self.assertLess(took, IDENT_LIMIT, 'real client attached too late')
        data = tn.read_until(b'\r\n', 5) + tn.read_until(b'\r\n', 5)
        self.assertIn(b'vm-00000:', data)

        closed = junk.wait_all_closed(fdt + 8)
        self.assertEqual(len(closed), N, 'left open: %s' % sorted(
            {junk.conns[i][1] for i in range(N) if i not in closed}))
        late = [(junk.conns[i][1], round(closed[i] - junk.conns[i][2], 2))
                for i in closed
                if not fdt - 0.5 <= closed[i] - junk.conns[i][2]
                <= fdt + 1.0]
        self.assertEqual(late, [], 'closed outside the deadline')
        self.assertEqual(d.healthz()['clients'], 1)
        # The attached client is past the front door: still served.
        tn.read_available(0)
        self.assertIn(b'vm-00000:', tn.read_for(1.0))


class TestCaps(vspctest.VspcTestCase):

    def assert_refused(self, s, what):
        st, got = probe(s, 2.0)
        self.assertEqual(st, 'refused', '%s: %s %r' % (what, st, got[:40]))

    def assert_open(self, s, what):
        st, got = probe(s, 0.5)
        self.assertEqual(st, 'open', '%s: %s' % (what, st))
        self.assertNotEqual(got, b'', '%s: no telnet negotiation' % what)

    def socks(self, n, src, port):
        out = []
        for _ in range(n):
            s = connect_from(src, port)
            self.addCleanup(s.close)
            out.append(s)
        return out

    def test_max_unidentified(self):
        d = self.daemon(['--max-unidentified', '5'])
        held = self.socks(5, '127.0.3.1', d.vm_port)
        for s in held:
            self.assert_open(s, 'within max-unidentified')
        extra = self.socks(2, '127.0.3.2', d.vm_port)
        for s in extra:
            self.assert_refused(s, 'over max-unidentified')
        lim = d.api('/api/v1/limits')
        self.assertEqual(lim['unidentified'], 5)
        self.assertGreaterEqual(lim['vm_refused_limit'], 2)
        # A slot freed is a slot for the next VM, from any source.
        held[0].close()
        wait_for(lambda: d.api('/api/v1/limits')['unidentified'] == 4,
                 timeout=3, what='slot freed')
        t1 = time.monotonic()
        sim = self.sim(d, ['--vms', '1', '--source', '127.0.0.5'])
        d.wait_ports(lambda ps: len(ps) == 1 and ps[0]['connected'],
                     timeout=5, interval=0.02)
        self.assertLess(time.monotonic() - t1, IDENT_LIMIT)
        sim.wait_ready(1)
        # Identified: no longer counted as unidentified.
        self.assertEqual(d.api('/api/v1/limits')['unidentified'], 4)
        self.assertIn('refused (connection limit)', d.stderr())

    def test_max_unidentified_per_source(self):
        # One source cannot fill the global unidentified budget: its
        # excess is refused while other sources still get in, and an
        # identified VM no longer counts against its source.
        d = self.daemon(['--max-unidentified-per-source', '4'])
        self.assertEqual(
            d.api('/api/v1/limits')['max_unidentified_per_source'], 4)
        held = self.socks(4, '127.0.3.1', d.vm_port)
        for s in held:
            self.assert_open(s, 'within max-unidentified-per-source')
        extra = self.socks(2, '127.0.3.1', d.vm_port)
        for s in extra:
            self.assert_refused(s, 'over max-unidentified-per-source')
        other = self.socks(1, '127.0.3.2', d.vm_port)
        self.assert_open(other[0], 'another source')
        sim = self.sim(d, ['--vms', '3', '--source', '127.0.3.3'])
        sim.wait_ready(3)
        self.assertEqual(d.api('/api/v1/limits')['unidentified'], 5)
        # Identified VMs free their source's slots: 4 more from .3 fit.
        more = self.socks(4, '127.0.3.3', d.vm_port)
        for s in more:
            self.assert_open(s, 'identified VMs do not count')
        held[0].close()
        wait_for(lambda: d.api('/api/v1/limits')['unidentified'] == 8,
                 timeout=3, what='slot freed')
        again = self.socks(1, '127.0.3.1', d.vm_port)
        self.assert_open(again[0], 'slot reused')

    def test_max_vm_per_source(self):
        d = self.daemon(['--max-vm-per-source', '3'])
        held = self.socks(3, '127.0.3.1', d.vm_port)
        for s in held:
            self.assert_open(s, 'within max-vm-per-source')
        extra = self.socks(2, '127.0.3.1', d.vm_port)
        for s in extra:
            self.assert_refused(s, 'over max-vm-per-source')
        other = self.socks(1, '127.0.3.2', d.vm_port)
        self.assert_open(other[0], 'another source')
        self.assertGreaterEqual(d.api('/api/v1/limits')['vm_refused_limit'],
                                2)
        t1 = time.monotonic()
        sim = self.sim(d, ['--vms', '1', '--source', '127.0.0.5'])
        d.wait_ports(lambda ps: len(ps) == 1 and ps[0]['connected'],
                     timeout=5, interval=0.02)
        self.assertLess(time.monotonic() - t1, IDENT_LIMIT)
        sim.wait_ready(1)
        self.assertEqual(d.api('/api/v1/limits')['unidentified'], 4)
        # A closed connection frees its source's slot.
        held[0].close()
        wait_for(lambda: d.api('/api/v1/limits')['unidentified'] == 3,
                 timeout=3, what='slot freed')
        again = self.socks(1, '127.0.3.1', d.vm_port)
        self.assert_open(again[0], 'slot reused')

    def test_max_clients_per_source(self):
        d = self.daemon(['--max-clients-per-source', '3'])
        sim = self.sim(d, ['--vms', '1', '--rate', '400'])
        sim.wait_ready(1)
        held = self.socks(3, '127.0.4.1', d.client_port)
        for s in held:
            self.assert_open(s, 'within max-clients-per-source')
        extra = self.socks(2, '127.0.4.1', d.client_port)
        for s in extra:
            self.assert_refused(s, 'over max-clients-per-source')
        self.assertGreaterEqual(
            d.api('/api/v1/limits')['client_refused_limit'], 2)
        t1 = time.monotonic()
        tn, line = self.attach(d, 'vm-00000')
        self.assertLess(time.monotonic() - t1, IDENT_LIMIT)
        self.assertTrue(line.startswith('attached to vm-00000'), line)
        self.assertIn(b'vm-00000:', tn.read_for(1.0))
        held[0].close()
        wait_for(lambda: d.healthz()['clients'] == 3, timeout=3,
                 what='slot freed')
        again = self.socks(1, '127.0.4.1', d.client_port)
        st, got = probe(again[0], 1.0)
        self.assertEqual(st, 'open')
        self.assertIn(telnetc.PROMPT, got)


if __name__ == '__main__':
    vspctest.main()
