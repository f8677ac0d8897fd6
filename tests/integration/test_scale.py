#!/usr/bin/env python3
"""1,000 VMs (200 under the sanitizer build) connecting at once are all
identified and listed, with and without per-port listeners."""

import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import telnetc  # noqa: E402
import vspctest  # noqa: E402
from vspctest import esxi_uuid, norm_uuid  # noqa: E402

TAG = 0x12345678                # vspc-sim default --uuid-tag
N = 200 if vspctest.scale() == 'small' else 1000
LIMIT = 60.0                    # generous; the time is printed


class TestScale(vspctest.VspcTestCase):

    def identify_all(self, port_range):
        d = self.daemon(port_range=port_range)
        t0 = time.monotonic()
        sim = self.sim(d, ['--vms', str(N), '--print-recv'])
        ready = sim.wait_ready(N, timeout=LIMIT)
        t_ready = time.monotonic() - t0
        self.assertEqual(sorted(ready), [(i, 0) for i in range(N)])
        ports = d.wait_ports(
            lambda ps: len(ps) == N and all(p['connected'] for p in ps),
            timeout=max(LIMIT - t_ready, 5), interval=0.2)
        t_all = time.monotonic() - t0
        print('\n  %d VMs (port-range %s): all ready in %.2fs, all listed '
              'connected in %.2fs; vspcd fds %d, RSS %d KiB' %
              (N, port_range, t_ready, t_all, d.fd_count(), d.rss_kib()),
              file=sys.stderr)
        self.assertLess(t_all, LIMIT)

        by_name = {p['vm_name']: p for p in ports}
        self.assertEqual(len(by_name), N)
        for i in range(N):
            p = by_name.get('vm-%05d' % i)
            self.assertIsNotNone(p, 'vm-%05d not listed' % i)
            u = norm_uuid(esxi_uuid(TAG, i))
            self.assertEqual(p['vm_uuid'], u)
            self.assertEqual(p['id'], u)
            self.assertEqual(p['service_uri'], 'vSPC.py')
            self.assertTrue(p['connected'])
            self.assertEqual(p['clients'], 0)
        h = d.healthz()
        self.assertEqual((h['ports'], h['vm_connections'], h['clients']),
                         (N, N, 0))
        # Nobody was refused or dropped on the way.
        self.assertEqual(sim.events('refused '), [])
        self.assertEqual(sim.events('closed '), [])
        return d, sim, by_name

    def check_input(self, sim, i, tn):
        """What tn types reaches VM i (and no other)."""
        word = b'to-%05d' % i
        tn.send(word)
        got = bytearray()
        deadline = time.monotonic() + 10
        while word not in got:
            ln = sim.wait_event('recv ', max(deadline - time.monotonic(), 0))
            f = ln.split()
            self.assertEqual((int(f[1]), int(f[2])), (i, 0), ln)
            got += bytes.fromhex(f[3])

    def test_per_port_listeners(self):
        d, sim, by_name = self.identify_all('0')
        cps = [p['client_port'] for p in by_name.values()]
        self.assertTrue(all(isinstance(c, int) and c > 0 for c in cps))
        self.assertEqual(len(set(cps)), N, 'client ports not distinct')
        self.assertNotIn(d.client_port, cps)
        # One VM connection and one listener per port.
        self.assertGreaterEqual(d.fd_count(), 2 * N)
        # A few listeners lead to the right VM.
        for i in random.Random(7).sample(range(N), 3):
            tn = self.telnet(by_name['vm-%05d' % i]['client_port'])
            self.check_input(sim, i, tn)
            tn.close()
        d.wait_ports(lambda ps: all(p['clients'] == 0 for p in ps),
                     interval=0.2)

    def test_port_range_off(self):
        d, sim, by_name = self.identify_all('off')
        self.assertTrue(all(p['client_port'] is None
                            for p in by_name.values()))
        # No listener per port: about one fd per VM connection.
        # Console-log syncs hand short-lived fds to a sync thread right
        # after the connection burst; the steady state is what counts.
        deadline = time.time() + 5
        fds = d.fd_count()
        while fds >= N + 64 and time.time() < deadline:
            time.sleep(0.1)
            fds = min(fds, d.fd_count())
        self.assertLess(fds, N + 64)
        # Only the front door: it finds any of them.
        for i in random.Random(11).sample(range(N), 3):
            tn, line = self.attach(d, 'vm-%05d' % i)
            self.assertEqual(line, 'attached to vm-%05d [%s]' %
                             (i, norm_uuid(esxi_uuid(TAG, i))))
            self.check_input(sim, i, tn)
            tn.close()


if __name__ == '__main__':
    vspctest.main()
