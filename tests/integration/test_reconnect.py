#!/usr/bin/env python3
"""Ports outlive VM connections: clients stay attached across reconnects.

- The VM disconnects and reconnects (vspc-sim close/open, reconnect): the
  API shows connected false then true for the same port id and client_port,
  `clients` stays 1, the client connection stays open and receives the
  output of the new connection.
- A second connection for the same key while the first is still open takes
  over: the daemon closes the first one, and the client sees the new
  connection's output (vspc-sim pair, and raw VM connections).
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vspctest  # noqa: E402

UUID = vspctest.norm_uuid(vspctest.esxi_uuid(0x12345678, 0))


class ReconnectTest(vspctest.VspcTestCase):

    def setUp(self):
        self.rate = 2000 if vspctest.scale() == 'full' else 1000
        self.d = self.daemon()

    def start_sim(self, prefix='vm-', extra=()):
        return self.sim(self.d, ['--mode', 'seq', '--rate', str(self.rate),
                                 '--name-prefix', prefix] + list(extra))

    def read_while(self, tn, seconds):
        return tn.read_for(seconds)

    def one_port(self, **want):
        ps = self.d.ports()
        self.assertEqual(len(ps), 1, ps)
        for k, v in want.items():
            self.assertEqual(ps[0][k], v, '%s in %r' % (k, ps[0]))
        return ps[0]

    def attached_client(self):
        ps = self.d.wait_ports(lambda ps: len(ps) == 1 and
                               ps[0]['connected'])
        port = ps[0]
        self.assertEqual(port['id'], UUID)
        tn = self.telnet(port['client_port'])
        self.d.wait_ports(lambda ps: ps[0]['clients'] == 1)
        return port, tn

    def check_seq(self, data, name, min_lines=5):
        n, first, errors = vspctest.verify_seq_stream(data, name, '-')
        self.assertEqual(errors, [])
        self.assertGreaterEqual(n, min_lines, 'only %d lines: %r' %
                                (n, bytes(data[-200:])))
        return n, first

    def test_close_open(self):
        sim = self.start_sim()
        sim.wait_ready(1)
        port, tn = self.attached_client()
        before = self.read_while(tn, 0.6)
        n1, first1 = self.check_seq(before, 'vm-00000')
        sim.cmd('close 0 0')
        sim.wait_event('closed 0 0')
        self.d.wait_ports(lambda ps: not ps[0]['connected'])
        p = self.one_port(id=port['id'], client_port=port['client_port'],
                          clients=1, connected=False)
        before += tn.read_available(0.1)
        gap = self.read_while(tn, 0.5)
        self.assertFalse(tn.eof, 'client closed when the VM went away')
        self.assertNotIn(b'vm-00000:', gap)
        self.assertEqual(self.d.healthz()['vm_connections'], 0)
        sim.cmd('open 0 0')
        sim.wait_ready(1)
        self.d.wait_ports(lambda ps: ps[0]['connected'])
        self.one_port(id=port['id'], client_port=port['client_port'],
                      clients=1, connected=True)
        after = self.read_while(tn, 0.6)
        self.assertFalse(tn.eof)
        n2, first2 = self.check_seq(after, 'vm-00000')
        self.assertGreater(first2, first1 + n1 - 1)
        self.one_port(id=port['id'], client_port=port['client_port'],
                      clients=1, connected=True)
        self.assertGreaterEqual(self.d.port(port['id'])['bytes_from_vm'],
                                len(before) + len(after))
        self.assertGreater(p['bytes_from_vm'], 0)

    def test_reconnect_command(self):
        sim = self.start_sim()
        sim.wait_ready(1)
        port, tn = self.attached_client()
        self.check_seq(self.read_while(tn, 0.4), 'vm-00000')
        for _ in range(3):
            sim.cmd('reconnect 0 0')
            sim.wait_event('closed 0 0')
            sim.wait_ready(1)
            self.d.wait_ports(lambda ps: ps[0]['connected'])
            # Everything queued from the old connection, then the new one.
            tn.read_available(0.1)
            after = self.read_while(tn, 0.4)
            self.assertFalse(tn.eof)
            self.check_seq(after, 'vm-00000', min_lines=3)
            self.one_port(id=port['id'], client_port=port['client_port'],
                          clients=1, connected=True)
        h = self.d.healthz()
        self.assertEqual((h['ports'], h['vm_connections'], h['clients']),
                         (1, 1, 1))

    def test_takeover_by_second_connection(self):
        a = self.start_sim('vm-')
        a.wait_ready(1)
        port, tn = self.attached_client()
        self.check_seq(self.read_while(tn, 0.4), 'vm-00000')
        self.assertEqual(self.d.port(port['id'])['vm_name'], 'vm-00000')
        # Same UUID tag and URI: same key; another name tells them apart.
        b = self.start_sim('vn-')
        b.wait_ready(1)
        a.wait_event('closed 0 0', 5)        # closed by the daemon
        self.d.wait_ports(lambda ps: ps[0]['vm_name'] == 'vn-00000')
        data = self.read_while(tn, 0.8)
        self.assertFalse(tn.eof)
        i = data.find(b'vn-00000:- ')
        self.assertGreaterEqual(i, 0, 'no output of the new connection')
        self.assertNotIn(b'vm-00000', data[i:])
        n, first = self.check_seq(data[i:], 'vn-00000')
        self.assertEqual(first, 0)
        self.assertEqual(vspctest.verify_seq_stream(data[:i], 'vm-00000',
                                                    '-')[2], [])
        self.one_port(id=port['id'], client_port=port['client_port'],
                      clients=1, connected=True)
        h = self.d.healthz()
        self.assertEqual((h['ports'], h['vm_connections'], h['clients']),
                         (1, 1, 1))
        st = a.status()
        self.assertIs(st['ports'][0]['connected'], False)

    def test_takeover_raw(self):
        uuid = vspctest.esxi_uuid(0x12345678, 0)
        vm1 = self.raw_vm(self.d)
        vm1.identify(name='vm-one', uuid=uuid)
        port, tn = self.attached_client()
        vm1.send(b'one\r\n')
        self.assertEqual(tn.read_exactly(5, 5), b'one\r\n')
        tn.send(b'x')
        self.assertIn(b'x', vm1.read_for(0.3))
        vm2 = self.raw_vm(self.d)
        vm2.identify(name='vm-two', uuid=uuid)
        self.assertTrue(vm1.wait_closed(5), 'old connection not closed')
        vm2.send(b'two\r\n')
        self.assertEqual(tn.read_exactly(5, 5), b'two\r\n')
        self.assertFalse(tn.eof)
        # Input now goes to the new connection.
        vm2.read_available(0.2)
        tn.send(b'y')
        self.assertEqual(vm2.read_exactly(1, 5), b'y')
        self.one_port(id=port['id'], client_port=port['client_port'],
                      clients=1, connected=True, vm_name='vm-two',
                      bytes_from_vm=10)
        self.assertEqual(self.d.healthz()['vm_connections'], 1)


if __name__ == '__main__':
    vspctest.main()
