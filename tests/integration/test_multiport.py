#!/usr/bin/env python3
"""One VM with two serial ports: two consoles, kept apart both ways.

vspc-sim --vms 1 --ports-per-vm 2 connects twice with the same VC UUID and
the service URIs vSPC.py?port=com1 / ?port=com2. The API must list two ports
(<uuid>.com1, <uuid>.com2) with their own client_port; a client on each sees
only its own port's seq lines, continuous; input typed on one port's client
reaches only that VM port.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vspctest  # noqa: E402

NAME = 'vm-00000'
UUID = vspctest.norm_uuid(vspctest.esxi_uuid(0x12345678, 0))


class MultiPortTest(vspctest.VspcTestCase):

    def setUp(self):
        self.rate = 2000 if vspctest.scale() == 'full' else 1000
        self.d = self.daemon()
        self.s = self.sim(self.d, ['--vms', '1', '--ports-per-vm', '2',
                                   '--mode', 'seq', '--rate', str(self.rate),
                                   '--print-recv'])
        self.assertEqual(sorted(self.s.wait_ready(2)), [(0, 0), (0, 1)])
        self.ps = self.d.wait_ports(
            lambda ps: len(ps) == 2 and all(p['connected'] for p in ps))
        self.byid = {p['id']: p for p in self.ps}

    def test_two_ports_in_api(self):
        self.assertEqual(sorted(self.byid), [UUID + '.com1', UUID + '.com2'])
        p1, p2 = self.byid[UUID + '.com1'], self.byid[UUID + '.com2']
        for p, label in ((p1, 'com1'), (p2, 'com2')):
            self.assertEqual(p['vm_uuid'], UUID)
            self.assertEqual(p['vm_name'], NAME)
            self.assertEqual(p['label'], label)
            self.assertEqual(p['service_uri'], 'vSPC.py?port=' + label)
            self.assertIsInstance(p['client_port'], int)
        self.assertNotEqual(p1['client_port'], p2['client_port'])
        h = self.d.healthz()
        self.assertEqual((h['ports'], h['vm_connections']), (2, 2))

    def test_output_kept_apart(self):
        p1, p2 = self.byid[UUID + '.com1'], self.byid[UUID + '.com2']
        c1 = self.telnet(p1['client_port'])
        c2 = self.telnet(p2['client_port'])
        self.d.wait_ports(lambda ps: all(p['clients'] == 1 for p in ps))
        d1 = bytearray()
        d2 = bytearray()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            d1 += c1.read_available(0.05)
            d2 += c2.read_available(0.05)
        for data, mine, other in ((d1, 'com1', 'com2'),
                                  (d2, 'com2', 'com1')):
            self.assertNotIn(('%s:%s' % (NAME, other)).encode(), data)
            n, first, errors = vspctest.verify_seq_stream(data, NAME, mine)
            self.assertEqual(errors, [])
            self.assertGreaterEqual(n, 10, '%s: only %d lines' % (mine, n))
            # The client saw at most a partial line before the first one.
            self.assertLess(data.find(b'\r\n'), 36)
        # A second client on com2 gets the same stream as the first.
        c2b = self.telnet(p2['client_port'])
        self.d.wait_ports(lambda ps: [p['clients'] for p in ps
                                      if p['id'] == p2['id']] == [2])
        a = bytearray(c2.read_available(0))
        b = bytearray()
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline:
            a += c2.read_available(0.05)
            b += c2b.read_available(0.05)
        a += c2.read_available(0.2)
        b += c2b.read_available(0)
        n, _, errors = vspctest.verify_seq_stream(b, NAME, 'com2')
        self.assertEqual(errors, [])
        self.assertGreater(n, 3)
        # Every complete line of the late client is in the early one's.
        lines_b = bytes(b).split(b'\r\n')[1:-1]
        self.assertIn(b'\r\n'.join(lines_b), bytes(a))

    def test_input_goes_to_own_port_only(self):
        p1, p2 = self.byid[UUID + '.com1'], self.byid[UUID + '.com2']
        c1 = self.telnet(p1['client_port'])
        c2 = self.telnet(p2['client_port'])
        self.d.wait_ports(lambda ps: all(p['clients'] == 1 for p in ps))
        c1.read_available(0.2)
        c2.read_available(0)
        c1.send(b'typed-on-com1\r')
        got = bytearray()
        deadline = time.monotonic() + 5
        while len(got) < 14 and time.monotonic() < deadline:
            ln = self.s.wait_event('recv ', 5)
            f = ln.split()
            self.assertEqual((f[1], f[2]), ('0', '0'), ln)
            got += bytes.fromhex(f[3])
        self.assertEqual(bytes(got), b'typed-on-com1\r')
        c2.send(b'two')
        ln = self.s.wait_event('recv ', 5)
        self.assertEqual(ln.split()[1:], ['0', '1', b'two'.hex()])
        time.sleep(0.2)
        self.assertEqual(self.s.events('recv '), [])
        st = {(p['vm'], p['port']): p for p in self.s.status()['ports']}
        self.assertEqual(st[(0, 0)]['received'], 14)
        self.assertEqual(st[(0, 1)]['received'], 3)
        api = {p['id']: p for p in self.d.ports()}
        self.assertEqual(api[p1['id']]['bytes_to_vm'], 14)
        self.assertEqual(api[p2['id']]['bytes_to_vm'], 3)


if __name__ == '__main__':
    vspctest.main()
