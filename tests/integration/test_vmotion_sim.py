#!/usr/bin/env python3
"""vMotion through vspc-sim against the real daemon, one test per sim option.

Each test: one VM (seq output), one client on the port's client_port that
keeps reading and keeps typing numbered tokens before, during and after the
vMotion. Checked for every option (doc/INTERFACES.md, vMotion section):

- the sim's outcome line `vmotion 0 0 <outcome> <ms>`;
- the daemon's per-port API counters (vmotion.begun/completed/aborted/
  abandoned/bad_peers) and, for a bad secret, healthz;
- the client's stream is one gap-free seq stream across the vMotion
  (verify_seq_stream: no loss, duplicate or reordering);
- what the client typed reached the VM exactly once, in order (the sim's
  received count and FNV over the source and destination connections);
- nothing reached a source after GOAHEAD, a destination before COMPLETE
  or a retired source (sim recv_during_vmotion == 0), and the sim saw no
  unexpected vMotion message (anomalies == 0).

Daemon timers are short (--vmotion-peer-timeout 2, --vmotion-complete-timeout
2, --vmotion-source-drain 1) and the sim's vmotionLimit is 1 s, so failure
paths end quickly.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vspctest  # noqa: E402

DAEMON_ARGS = ['--vmotion-peer-timeout', '2',
               '--vmotion-complete-timeout', '2',
               '--vmotion-source-drain', '1']
COUNTERS = ('begun', 'completed', 'aborted', 'notnow', 'abandoned',
            'bad_peers')


class VmotionSimTest(vspctest.VspcTestCase):

    def setUp(self):
        self.rate = 2000 if vspctest.scale() == 'full' else 1000
        self.d = self.daemon(DAEMON_ARGS)
        self.s = self.sim(self.d, ['--mode', 'seq', '--rate', str(self.rate),
                                   '--vmotion-limit', '1000',
                                   '--vmotion-delay', '100'])
        self.s.wait_ready(1)
        ps = self.d.wait_ports(lambda ps: len(ps) == 1 and
                               ps[0]['connected'])
        self.pid = ps[0]['id']
        self.tn = self.telnet(ps[0]['client_port'])
        self.d.wait_ports(lambda ps: ps[0]['clients'] == 1)
        self.data = bytearray()
        self.typed = bytearray()
        self.ntok = 0

    # -- helpers ----------------------------------------------------------

    def vstate(self):
        return self.d.port(self.pid)['vmotion']

    def pump(self, seconds, until=None, typing=True, every=0.01):
        """Read the client (and type a token every `every` s) for up to
        `seconds`, or until until() is true; return until()'s value."""
        deadline = time.monotonic() + seconds
        next_type = time.monotonic()
        while True:
            self.data += self.tn.read_available(0.003)
            now = time.monotonic()
            if typing and now >= next_type:
                tok = b'k%05d;' % self.ntok
                self.ntok += 1
                self.tn.send(tok)
                self.typed += tok
                next_type = now + every
            if until is not None:
                v = until()
                if v:
                    return v
            if now >= deadline:
                if until is not None:
                    raise AssertionError('timed out after %.1fs' % seconds)
                return None

    def vmotion(self, opts, outcome, deltas, settle=0.3):
        """Run one vMotion with opts; check the outcome line and the API
        counter deltas (counters not named must not move)."""
        before = self.vstate()
        hz0 = self.d.healthz()
        self.pump(0.3)
        self.s.cmd(('vmotion 0 0 ' + opts).strip())
        got = []

        def line():
            got.extend(self.s.events('vmotion 0 0 '))
            return got
        self.pump(15, line)
        self.assertEqual(len(got), 1, got)
        f = got[0].split()
        self.assertEqual(f[3], outcome, got[0])
        self.pump(settle)
        # Let the daemon finish (held input is released at its end).
        self.pump(10, lambda: self.vstate()['state'] == 'idle' and
                  self.vstate()['held_bytes'] == 0, typing=False)
        after = self.vstate()
        for k in COUNTERS:
            self.assertEqual(after[k] - before[k], deltas.get(k, 0),
                             '%s: before %r after %r' % (k, before, after))
        self.assertEqual(self.d.healthz()['vmotions_open'], 0)
        self.check_input()
        self.pump(0.3, typing=False)
        self.check_stream()
        return hz0

    def check_input(self):
        """The VM received exactly what was typed, once, in order."""
        want = (len(self.typed), '%08x' % vspctest.fnv1a32(self.typed))
        st = {}

        def done():
            st.update(self.s.status())
            p = st['ports'][0]
            self.data.extend(self.tn.read_available(0))
            return (p['received'], p['recv_fnv']) == want or \
                p['received'] > want[0]
        vspctest.wait_for(done, 10, what='typed bytes at the VM')
        p = st['ports'][0]
        self.assertEqual((p['received'], p['recv_fnv']), want,
                         'typed %d bytes' % len(self.typed))
        self.assertEqual(p['recv_during_vmotion'], 0, p)
        self.assertEqual(st['recv_during_vmotion'], 0)
        self.assertEqual(st['vmotions']['anomalies'], 0, st['vmotions'])
        self.assertEqual(st['vmotions']['in_progress'], 0)
        self.assertTrue(p['connected'], p)

    def check_stream(self):
        n, first, errors = vspctest.verify_seq_stream(self.data, 'vm-00000',
                                                      '-')
        self.assertEqual(errors, [])
        # About rate/32 lines per second over >= 1 s of reading.
        self.assertGreater(n, self.rate // 32 // 2, 'only %d lines' % n)
        self.assertFalse(self.tn.eof, 'client dropped')

    # -- success paths ----------------------------------------------------

    def test_success_fin_first(self):
        self.vmotion('', 'completed', {'begun': 1, 'completed': 1})
        self.assertEqual(self.s.status()['ports'][0]['vmotions'], 1)
        vspctest.wait_for(lambda: self.d.healthz()['vm_connections'] == 1,
                          5, what='one VM connection')

    def test_success_fin_last(self):
        self.vmotion('fin=last', 'completed', {'begun': 1, 'completed': 1})
        vspctest.wait_for(lambda: self.d.healthz()['vm_connections'] == 1,
                          5, what='one VM connection')

    def test_success_fin_never(self):
        # The source stays open: the daemon closes it after its drain time.
        self.vmotion('fin=never', 'completed', {'begun': 1, 'completed': 1},
                     settle=0.1)
        vspctest.wait_for(lambda: self.d.healthz()['vm_connections'] == 1,
                          5, what='old source closed by the daemon')
        self.pump(0.3)
        self.check_input()

    def test_seq_with_ff(self):
        self.vmotion('seq=7619ffe9', 'completed',
                     {'begun': 1, 'completed': 1})
        self.vmotion('seq=ffffffff fin=last', 'completed',
                     {'begun': 1, 'completed': 1})
        self.vmotion('seq=ff', 'completed', {'begun': 1, 'completed': 1})

    def test_repeated(self):
        for i in range(5):
            self.vmotion(('fin=first', 'fin=last')[i % 2], 'completed',
                         {'begun': 1, 'completed': 1}, settle=0.05)

    # -- failure paths ----------------------------------------------------

    def test_abort(self):
        # E3: GOAHEAD, no destination, ABORT after 300 ms.
        self.vmotion('abort delay=300', 'aborted',
                     {'begun': 1, 'aborted': 1})

    def test_abort_after_peer(self):
        # E4: PEER-OK, then ABORT on the source; the destination closes.
        self.vmotion('abort-after-peer delay=200', 'aborted',
                     {'begun': 1, 'aborted': 1})
        vspctest.wait_for(lambda: self.d.healthz()['vm_connections'] == 1,
                          5, what='destination closed')

    def test_nopeer(self):
        # The destination never sends PEER; the source resumes after 1 s
        # without ABORT; the daemon abandons at its peer timeout (2 s).
        self.vmotion('nopeer', 'gaveup', {'begun': 1, 'abandoned': 1})

    def test_nopeer_abort(self):
        self.vmotion('nopeer abort', 'aborted', {'begun': 1, 'aborted': 1})

    def test_badsecret(self):
        # E5: PEER with the right sequence and a wrong secret: no PEER-OK;
        # the source sends ABORT after its limit. Counted on the port (the
        # sequence matched), not as unmatched.
        hz0 = self.vmotion('badsecret', 'rejected',
                           {'begun': 1, 'aborted': 1, 'bad_peers': 1})
        hz1 = self.d.healthz()
        self.assertEqual(hz1['vmotion_bad_peers_unmatched'],
                         hz0['vmotion_bad_peers_unmatched'],
                         'a PEER whose sequence matched counted as '
                         'unmatched (INTERFACES.md: bad_peers on the port '
                         'when the sequence matched, else healthz)')

    def test_die_src(self):
        # E7: the source closes right after GOAHEAD; the destination
        # completes and the port lives on.
        self.vmotion('die-src', 'completed', {'begun': 1, 'completed': 1})
        vspctest.wait_for(lambda: self.d.healthz()['vm_connections'] == 1,
                          5, what='one VM connection')

    def test_die_dst(self):
        # E9: the destination closes after PEER-OK, before COMPLETE; the
        # source sends ABORT and goes on.
        self.vmotion('die-dst', 'aborted', {'begun': 1, 'aborted': 1})

    def test_mixed_sequence(self):
        # One port through several outcomes in a row: the stream and the
        # input stay exact throughout.
        self.vmotion('abort delay=50', 'aborted', {'begun': 1, 'aborted': 1},
                     settle=0.05)
        self.vmotion('', 'completed', {'begun': 1, 'completed': 1},
                     settle=0.05)
        self.vmotion('die-dst delay=50', 'aborted',
                     {'begun': 1, 'aborted': 1}, settle=0.05)
        self.vmotion('fin=last', 'completed', {'begun': 1, 'completed': 1},
                     settle=0.05)


if __name__ == '__main__':
    vspctest.main()
