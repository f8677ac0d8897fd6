#!/usr/bin/env python3
"""vMotion storm: many VMs, one client each, vMotions at random moments.

200 VMs (50 under ASan), one serial port each, seq output at 200 B/s each.
One client per VM on the port's client_port reads the console and types
numbered lines at random moments the whole time. vspc-sim runs two storms
at about 50 vMotions/s on random ports (never two at once on one port; one
sequence in eight or more holds 0xFF; fin first/last/never mixed):

1. 1,000 vMotions (200 small) with no faults;
2. 1,000 vMotions (200 small) with --storm-faults 0.3 (abort,
   abort-after-peer, nopeer, nopeer+abort, badsecret, die-src, die-dst).

At the end:
- every client's stream is one continuous seq stream (no loss, duplicate
  or reordering; only a partial first line is ignored);
- every VM received exactly what its client typed (count and FNV over
  source and destination connections), and nothing arrived where a correct
  proxy sends nothing (recv_during_vmotion == 0 everywhere);
- every client is still connected, every port connected and idle;
- the daemon's API agrees with the sim's outcomes: completed == completed
  (including die-src), aborted == aborted + rejected, abandoned == gaveup,
  bad_peers == rejected, notnow == 0.
"""

import os
import random
import selectors
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import telnetc  # noqa: E402
import vspctest  # noqa: E402

SMALL = vspctest.scale() == 'small'
VMS = 50 if SMALL else 200
STORM = 200 if SMALL else 1000
RATE = 200                 # seq output bytes/s per VM
STORM_RATE = 50            # vMotions per second overall
TYPE_INTERVAL = 0.5        # mean seconds between lines typed per client
DAEMON_ARGS = ['--vmotion-peer-timeout', '2',
               '--vmotion-complete-timeout', '2',
               '--vmotion-source-drain', '1']


class Client:
    """One telnet client of one VM: what it read and what it typed."""

    def __init__(self, vm, port):
        self.vm = vm
        self.name = 'vm-%05d' % vm
        self.tn = telnetc.Telnet(vspctest.HOST, port)
        self.data = bytearray()
        self.typed = bytearray()
        self.nline = 0
        self.next_type = 0.0

    def read(self):
        try:
            chunk = self.tn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            chunk = b''
        if not chunk:
            self.tn.eof = True
            return
        self.tn.feed(chunk)
        self.data += self.tn.buf
        del self.tn.buf[:]

    def type_line(self):
        line = b'%s line %06d\n' % (self.name.encode(), self.nline)
        self.nline += 1
        self.tn.send(line)
        self.typed += line


class VmotionStormTest(vspctest.VspcTestCase):

    def pump(self, seconds, until=None, typing=True):
        """Serve every client for up to `seconds` (or until until())."""
        deadline = time.monotonic() + seconds
        while True:
            for key, _ in self.sel.select(0.01):
                c = key.data
                c.read()
                if c.tn.eof:
                    self.sel.unregister(c.tn.sock)
            now = time.monotonic()
            if typing:
                for c in self.clients:
                    if now >= c.next_type and not c.tn.eof:
                        c.type_line()
                        c.next_type = now + self.rng.expovariate(
                            1 / TYPE_INTERVAL)
            if until is not None and until():
                return True
            if now >= deadline:
                return False

    def storm(self, n, faults, timeout):
        self.sim_.cmd('storm %d rate=%d faults=%s' % (n, STORM_RATE, faults))
        done = []

        def finished():
            done.extend(self.sim_.events('storm done'))
            return done
        t0 = time.monotonic()
        if not self.pump(timeout, finished):
            st = self.sim_.status()
            self.fail('storm of %d not done within %ds: %r' %
                      (n, timeout, (st['vmotions'], st['storm'])))
        f = done[0].split()
        outcomes = dict(kv.split('=') for kv in f[4:])
        outcomes = {k: int(v) for k, v in outcomes.items()}
        self.assertEqual(int(f[2]), n, done[0])
        self.assertEqual(sum(outcomes.values()), n, done[0])
        sys.stderr.write('storm %d faults=%s: %.1f s, %s\n' %
                         (n, faults, time.monotonic() - t0, done[0]))
        return outcomes

    def test_storm(self):
        t_start = time.monotonic()
        seed = int(os.environ.get('VSPC_STORM_SEED', '0')) or \
            random.randrange(1, 1 << 31)
        sys.stderr.write('storm seed %d\n' % seed)
        self.rng = random.Random(seed)
        d = self.daemon(DAEMON_ARGS)
        self.sim_ = sim = self.sim(d, [
            '--vms', str(VMS), '--mode', 'seq', '--rate', str(RATE),
            '--source', '127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4',
            '--dest-source', '127.0.1.1,127.0.1.2,127.0.1.3,127.0.1.4',
            '--vmotion-limit', '1000', '--vmotion-delay', '50',
            '--seed', str(seed)])
        sim.wait_ready(VMS, timeout=60)
        ps = d.wait_ports(lambda ps: len(ps) == VMS and
                          all(p['connected'] for p in ps), timeout=30)
        by_name = {p['vm_name']: p for p in ps}

        self.sel = selectors.DefaultSelector()
        self.clients = []
        for vm in range(VMS):
            c = Client(vm, by_name['vm-%05d' % vm]['client_port'])
            self.addCleanup(c.tn.close)
            self.clients.append(c)
            self.sel.register(c.tn.sock, selectors.EVENT_READ, c)
        d.wait_ports(lambda ps: all(p['clients'] == 1 for p in ps),
                     timeout=30)
        for c in self.clients:
            c.next_type = time.monotonic() + self.rng.uniform(
                0, TYPE_INTERVAL)
        self.pump(1.0)

        per_storm = STORM / STORM_RATE
        phase1 = self.storm(STORM, 0, 30 + 3 * per_storm)
        self.assertEqual(phase1['completed'], STORM, phase1)
        self.pump(0.5)
        phase2 = self.storm(STORM, 0.3, 30 + 3 * per_storm)
        self.pump(1.0)

        # Settle: no vMotion open anywhere, nothing held, then input done.
        def settled():
            hz = d.healthz()
            return hz['vmotions_open'] == 0 and all(
                p['vmotion']['held_bytes'] == 0 and p['connected']
                for p in d.ports())
        self.assertTrue(self.pump(15, settled, typing=False),
                        'daemon did not settle')
        want = {c.vm: (len(c.typed), '%08x' % vspctest.fnv1a32(c.typed))
                for c in self.clients}
        st = {}

        def delivered():
            st.update(sim.status())
            return all((p['received'], p['recv_fnv']) == want[p['vm']] or
                       p['received'] > want[p['vm']][0]
                       for p in st['ports'])
        self.pump(15, delivered, typing=False)
        self.pump(0.5, typing=False)

        # -- checks -----------------------------------------------------
        mismatches = []
        for p in st['ports']:
            got = (p['received'], p['recv_fnv'])
            if got != want[p['vm']]:
                mismatches.append('vm %d: VM received %r, client typed %r' %
                                  (p['vm'], got, want[p['vm']]))
            if p['recv_during_vmotion'] != 0:
                mismatches.append('vm %d: %d bytes where none may come' %
                                  (p['vm'], p['recv_during_vmotion']))
            if not p['connected'] or p['vmotion'] != 'idle':
                mismatches.append('vm %d: sim port %r' % (p['vm'], p))
        lines = 0
        for c in self.clients:
            if c.tn.eof:
                mismatches.append('%s: client disconnected' % c.name)
            n, first, errors = vspctest.verify_seq_stream(c.data, c.name,
                                                          '-')
            lines += n
            if errors:
                mismatches.append('%s: %d stream errors, first: %s' %
                                  (c.name, len(errors), errors[:3]))
            if n < 10:
                mismatches.append('%s: only %d lines' % (c.name, n))
        sys.stderr.write('storm: %d VMs, %d seq lines checked, %d bytes '
                         'typed, %d mismatches, %.1f s\n' %
                         (VMS, lines, sum(len(c.typed) for c in self.clients),
                          len(mismatches), time.monotonic() - t_start))
        self.assertEqual(mismatches, [], '%d mismatches' % len(mismatches))

        sv = st['vmotions']
        self.assertEqual(st['recv_during_vmotion'], 0)
        self.assertEqual(sv['anomalies'], 0, sv)
        self.assertEqual(sv['in_progress'], 0, sv)
        self.assertEqual(sv['started'], 2 * STORM, sv)
        for k in ('completed', 'aborted', 'gaveup', 'rejected', 'notnow',
                  'timeout', 'failed', 'lost'):
            self.assertEqual(sv[k], phase1.get(k, 0) + phase2.get(k, 0), k)
        self.assertEqual(sv['failed'] + sv['lost'] + sv['timeout'] +
                         sv['notnow'], 0, sv)
        self.assertGreater(sv['completed'], STORM, sv)

        api = {k: sum(p['vmotion'][k] for p in d.ports())
               for k in ('begun', 'completed', 'aborted', 'abandoned',
                         'notnow', 'bad_peers')}
        self.assertEqual(api['begun'], 2 * STORM, api)
        self.assertEqual(api['completed'], sv['completed'], (api, sv))
        self.assertEqual(api['aborted'], sv['aborted'] + sv['rejected'],
                         (api, sv))
        self.assertEqual(api['abandoned'], sv['gaveup'], (api, sv))
        self.assertEqual(api['bad_peers'], sv['rejected'], (api, sv))
        self.assertEqual(api['notnow'], 0, api)
        # Retired fin=never sources go after --vmotion-source-drain (1 s).
        vspctest.wait_for(lambda: d.healthz()['vm_connections'] == VMS, 10,
                          what='one VM connection per port')
        hz = d.healthz()
        self.assertEqual(hz['clients'], VMS, hz)
        self.assertEqual(hz['vmotion_bad_peers_unmatched'], 0, hz)


if __name__ == '__main__':
    vspctest.main()
