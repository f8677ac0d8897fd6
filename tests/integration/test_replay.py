#!/usr/bin/env python3
"""Replay on attach, console log tail API, vspc attach/log (issue 4).

- the replay seam is exact: replayed bytes + live output form one
  contiguous seq stream (20 attaches at random moments; also with a replay
  ring smaller than the output, and byte-exact with known content);
- /noreplay, plain names and per-port listeners get no earlier output by
  default; --replay-telnet gives it to every telnet client;
- vspc attach replays unless --no-replay;
- vspc log prints the exact log tail by name, uuid and id (unknown and
  ambiguous names fail); vspc log -f follows read-only; /console_log/UUID
  (Nova) returns the same bytes.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vspctest  # noqa: E402
from vspctest import (VSPC, norm_uuid, esxi_uuid, seq_line,  # noqa
                      verify_seq_stream, wait_for)

UUID_A = norm_uuid(esxi_uuid(0x12345678, 0))
UUID_B = norm_uuid(esxi_uuid(0xabcdef01, 0))
LINE = len(seq_line('vm-00000', '-', 0))


def seq_stream(name, label, nbytes):
    """The first nbytes of the seq stream of (name, label)."""
    out = bytearray()
    n = 0
    while len(out) < nbytes:
        out += seq_line(name, label, n)
        n += 1
    return bytes(out[:nbytes])


def stream_start(data, name, label):
    """Stream offset of data[0] in a seq stream, from its first full line."""
    count, first, errs = verify_seq_stream(data, name, label)
    if first is None:
        raise AssertionError('no full seq line in %r' % data[:200])
    lines = bytes(data).split(b'\r\n')
    if lines[0] == seq_line(name, label, first)[:-2]:
        return first * LINE
    return first * LINE - (len(lines[0]) + 2)


class Reader:
    """A subprocess whose stdout is collected by a thread."""

    def __init__(self, args, stdin=subprocess.PIPE):
        self.proc = subprocess.Popen(args, stdin=stdin,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = bytearray()
        self.err = bytearray()
        self._lock = threading.Lock()
        self._t = [threading.Thread(target=self._pump, args=(f, b),
                                    daemon=True)
                   for f, b in ((self.proc.stdout, self.out),
                                (self.proc.stderr, self.err))]
        for t in self._t:
            t.start()

    def _pump(self, f, buf):
        while True:
            data = f.read1(65536)
            if not data:
                return
            with self._lock:
                buf += data

    def stdout(self):
        with self._lock:
            return bytes(self.out)

    def wait_out(self, marker, timeout=10.0):
        return wait_for(lambda: marker in self.stdout(), timeout,
                        what='%r in vspc output (have %r)' %
                        (marker, self.stdout()[-200:]))

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError('vspc did not exit on signal %d' % sig)
        for t in self._t:
            t.join(5)
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self._t:
            t.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass


class ReplayTest(vspctest.VspcTestCase):

    def reader(self, args):
        r = Reader(args)
        self.addCleanup(r.kill)
        return r

    def from_vm(self, d, pid):
        return d.port(pid)['bytes_from_vm']

    def wait_stable(self, d, pid, want=None):
        """Wait until bytes_from_vm stops moving (or equals want)."""
        last = [-1]

        def pred():
            v = self.from_vm(d, pid)
            if want is not None:
                return v == want and v
            ok = v == last[0] and v > 0
            last[0] = v
            return ok and v
        return wait_for(pred, 10, 0.2, 'bytes_from_vm to settle')

    def attach_events(self, d, pid, n):
        """The client-attach events of a port's sidecar if at least n."""
        try:
            with open(os.path.join(d.dir, 'logs', pid + '.events')) as f:
                evs = [json.loads(ln) for ln in f if ln.strip()]
        except OSError:
            return None
        evs = [e for e in evs if e['event'] == 'client-attach']
        return evs if len(evs) >= n else None

    # -- seam ------------------------------------------------------------

    def check_seam(self, replay_size, attaches):
        args = [] if replay_size is None else ['--replay-size',
                                               str(replay_size)]
        ring = 65536 if replay_size is None else replay_size
        rate = 200000
        d = self.daemon(args)
        sim = self.sim(d, ['--vms', '1', '--rate', str(rate)])
        sim.wait_ready(1)
        wait_for(lambda: (d.ports() and
                          self.from_vm(d, UUID_A) > 2 * ring + 10000),
                 10, 0.05, 'the ring to fill')
        rnd = random.Random(os.getpid())
        for i in range(attaches):
            time.sleep(rnd.uniform(0, 0.1))
            before = self.from_vm(d, UUID_A)
            tn, line = d.attach('/replay vm-00000')
            try:
                self.assertTrue(line.startswith('attached to vm-00000 ['),
                                line)
                data = tn.read_for(0.25)
            finally:
                tn.close()
            after = self.from_vm(d, UUID_A)
            what = 'attach %d (ring %d): ' % (i, ring)
            evs = wait_for(lambda: self.attach_events(d, UUID_A, i + 1),
                           5, 0.05, 'client-attach event %d' % i)
            at = evs[i]['offset']
            self.assertNotIn(b'[vspcd:', data, what + 'skip notice')
            count, first, errs = verify_seq_stream(data, 'vm-00000', '-')
            self.assertEqual(errs, [], what + 'seq stream broken at the '
                             'seam: %s' % errs[:5])
            # The first byte is the ring's start: ring bytes before the
            # attach moment, which lies between the two API calls.
            start = stream_start(data, 'vm-00000', '-')
            self.assertLessEqual(before, start + ring,
                                 what + 'replay started too late (no '
                                 'replay, or a short one)')
            self.assertLessEqual(start + ring, after,
                                 what + 'replay started too early')
            # Exact: the attach event's offset in the console log is the
            # stream position at the attach; the replay is the ring bytes
            # before it.
            self.assertEqual(start, at - ring, what + 'replay starts at '
                             'stream offset %d, the attach was at %d '
                             '(client-attach event)' % (start, at))
            self.assertGreaterEqual(len(data), ring, what)
            self.assertGreater(count, ring // LINE - 2, what)

    def test_seam_exact_64k(self):
        self.check_seam(None, 20)

    def test_seam_exact_small_ring(self):
        self.check_seam(1000, 20)

    def test_replay_bytes_exact(self):
        """Known content, 0xFF included: replay = the last N bytes, then
        live output, nothing else."""
        d = self.daemon(['--replay-size', '1000'])
        sim = self.sim(d, ['--vms', '1', '--mode', 'none'])
        sim.wait_ready(1)
        d.wait_ports(lambda ps: len(ps) == 1)
        rnd = random.Random(7)
        early = bytes(rnd.randrange(256) for _ in range(3000))
        sim.send(0, 0, early)
        self.wait_stable(d, UUID_A, 3000)
        tn, line = self.attach(d, '/replay ' + UUID_A)
        self.assertTrue(line.startswith('attached to '), line)
        got = tn.read_exactly(1000, 5)
        self.assertEqual(got, early[-1000:])
        self.assertEqual(tn.read_for(0.3), b'')
        late = bytes(rnd.randrange(256) for _ in range(500)) + b'\xff'
        sim.send(0, 0, late)
        self.assertEqual(tn.read_exactly(len(late), 5), late)
        self.assertEqual(tn.read_for(0.3), b'')
        # Fewer bytes than the ring: all of them.
        vm = self.raw_vm(d)
        vm.identify(name='raw-vm', uuid=esxi_uuid(0x0badcafe, 3))
        d.wait_ports(lambda ps: any(p['vm_name'] == 'raw-vm' for p in ps))
        vm.send(b'hello\xff\xff world\r\n')
        pid = d.port('vm_name', 'raw-vm')['id']
        self.wait_stable(d, pid, len(b'hello\xff world\r\n'))
        tn2, line = self.attach(d, '/replay raw-vm')
        self.assertEqual(tn2.read_exactly(14, 5), b'hello\xff world\r\n')
        self.assertEqual(tn2.read_for(0.3), b'')

    # -- who gets a replay -----------------------------------------------

    def start_one(self, args=()):
        d = self.daemon(list(args))
        sim = self.sim(d, ['--vms', '1', '--mode', 'none'])
        sim.wait_ready(1)
        ps = d.wait_ports(lambda ps: len(ps) == 1 and
                          ps[0]['client_port'] is not None)
        sim.send(0, 0, b'EARLY-OUTPUT\r\n')
        self.wait_stable(d, UUID_A, 14)
        return d, sim, ps[0]['client_port']

    def test_no_replay_by_default(self):
        d, sim, cport = self.start_one()
        clients = {
            '/noreplay': self.attach(d, '/noreplay vm-00000'),
            'plain name': self.attach(d, 'vm-00000'),
            'per-port': (self.telnet(cport), None),
        }
        for what, (tn, line) in clients.items():
            if line is not None:
                self.assertTrue(line.startswith('attached to vm-00000'),
                                line)
            self.assertEqual(tn.read_for(0.4), b'',
                             what + ' got earlier output')
        sim.send(0, 0, b'LATE\r\n')
        for what, (tn, _) in clients.items():
            self.assertEqual(tn.read_exactly(6, 5), b'LATE\r\n', what)
        # /replay still works with replay-telnet off.
        tn, _ = self.attach(d, '/replay vm-00000')
        self.assertEqual(tn.read_exactly(20, 5), b'EARLY-OUTPUT\r\nLATE\r\n')

    def test_replay_telnet_on(self):
        d, sim, cport = self.start_one(['--replay-telnet'])
        for what, tn in (('per-port', self.telnet(cport)),
                         ('plain name', self.attach(d, 'vm-00000')[0]),
                         ('/replay', self.attach(d, '/replay vm-00000')[0])):
            self.assertEqual(tn.read_exactly(14, 5), b'EARLY-OUTPUT\r\n',
                             what)
            self.assertEqual(tn.read_for(0.2), b'', what)
        tn, _ = self.attach(d, '/noreplay vm-00000')
        self.assertEqual(tn.read_for(0.4), b'', '/noreplay got a replay')

    def test_replay_size_zero(self):
        d, sim, cport = self.start_one(['--replay-size', '0',
                                        '--replay-telnet'])
        tn, _ = self.attach(d, '/replay vm-00000')
        self.assertEqual(tn.read_for(0.4), b'')

    # -- vspc attach -----------------------------------------------------

    def test_vspc_attach_replay(self):
        d, sim, _ = self.start_one()
        r = self.reader([VSPC, '--state-dir', d.dir, 'attach', 'vm-00000'])
        r.wait_out(b'EARLY-OUTPUT\r\n')
        sim.send(0, 0, b'LATE\r\n')
        r.wait_out(b'LATE\r\n')
        self.assertEqual(r.stdout(), b'EARLY-OUTPUT\r\nLATE\r\n')
        self.assertEqual(r.stop(), 0, r.err)
        self.assertIn(b'attached to vm-00000', r.err)

        r = self.reader([VSPC, '--state-dir', d.dir, 'attach',
                         '--no-replay', 'vm-00000'])
        wait_for(lambda: d.healthz()['clients'] == 1, what='attach')
        time.sleep(0.3)
        sim.send(0, 0, b'LATER\r\n')
        r.wait_out(b'LATER\r\n')
        self.assertEqual(r.stdout(), b'LATER\r\n')
        self.assertEqual(r.stop(), 0, r.err)
        # Input still goes to the VM (stdin is a pipe here).
        sim2 = sim
        r = self.reader([VSPC, '--state-dir', d.dir, 'attach', UUID_A])
        r.wait_out(b'LATER\r\n')
        r.proc.stdin.write(b'typed\r')
        r.proc.stdin.flush()
        wait_for(lambda: sim2.status()['ports'][0]['received'] >= 6,
                 what='input to reach the VM')
        self.assertEqual(r.stop(), 0, r.err)

    # -- vspc log ----------------------------------------------------------

    def log_fleet(self):
        d = self.daemon(['--log-sync-ms', '100'])
        a = self.sim(d, ['--vms', '1', '--rate', '50000'])
        b = self.sim(d, ['--vms', '1', '--ports-per-vm', '2',
                         '--name-prefix', 'multi-', '--uuid-tag',
                         'abcdef01', '--mode', 'none'])
        a.wait_ready(1)
        b.wait_ready(2)
        d.wait_ports(lambda ps: len(ps) == 3)
        wait_for(lambda: self.from_vm(d, UUID_A) > 80000, 10,
                 what='80 kB of output')
        a.cmd('rate 0')
        tail = b'\xff\x00binary tail\xfe\r\n'
        n = self.wait_stable(d, UUID_A)
        a.send(0, 0, tail)
        n = self.wait_stable(d, UUID_A, n + len(tail))
        expect = seq_stream('vm-00000', '-', n - len(tail)) + tail
        b.send(0, 1, b'multi com2 output\r\n')
        self.wait_stable(d, UUID_B + '.com2', 19)
        return d, a, b, expect

    def vspc_log(self, d, *args):
        return d.vspc('log', *args)

    def test_vspc_log(self):
        d, a, b, expect = self.log_fleet()
        # The daemon writes and syncs the log itself; wait for the tail.
        wait_for(lambda: self.vspc_log(d, 'vm-00000').stdout ==
                 expect[-65536:], 5, 0.2, 'the log tail to match')
        r = self.vspc_log(d, 'vm-00000')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout), 65536)
        self.assertEqual(r.stdout, expect[-65536:])
        for key, n in ((UUID_A, 1000), ('vm-00000', 1), (UUID_A, 100000),
                       (UUID_A, 0)):
            r = self.vspc_log(d, key, '--tail-bytes', str(n))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, expect[-n:] if n else b'',
                             '%s tail %d' % (key, n))
        r = self.vspc_log(d, '--tail-bytes', '19', UUID_B + '.com2')
        self.assertEqual((r.returncode, r.stdout),
                         (0, b'multi com2 output\r\n'), r.stderr)
        r = self.vspc_log(d, UUID_B + '.com1')
        self.assertEqual((r.returncode, r.stdout), (0, b''), r.stderr)
        # Unknown and ambiguous.
        r = self.vspc_log(d, 'no-such-vm')
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, b'')
        self.assertEqual(r.stderr.strip(),
                         b"vspc: no console named 'no-such-vm'")
        for key in ('multi-00000', UUID_B):
            r = self.vspc_log(d, key)
            self.assertEqual(r.returncode, 1, key)
            self.assertEqual(r.stdout, b'')
            self.assertEqual(
                r.stderr.strip(),
                ("vspc: '%s' is ambiguous: %s.com1 %s.com2" %
                 (key, UUID_B, UUID_B)).encode())
        r = self.vspc_log(d, '--tail-bytes', 'x', 'vm-00000')
        self.assertEqual(r.returncode, 1)
        # Odd characters in the name are URL-encoded, not misrouted.
        r = self.vspc_log(d, 'vm-00000/log?tail_bytes=1')
        self.assertEqual(r.returncode, 1)
        self.assertIn(b'no console named', r.stderr)

    def test_console_log_nova(self):
        d, a, b, expect = self.log_fleet()
        wait_for(lambda: self.vspc_log(d, 'vm-00000').stdout ==
                 expect[-65536:], 5, 0.2, 'the log tail to match')
        st, hdrs, body = d.api_raw('/console_log/' + UUID_A)
        self.assertEqual(st, 200)
        self.assertEqual(body, expect[-65536:])
        self.assertEqual(body, self.vspc_log(d, UUID_A).stdout)
        self.assertEqual(hdrs.get('X-Vspc-Port'), UUID_A)
        self.assertEqual(hdrs.get('Content-Type'),
                         'application/octet-stream')
        st, _, body = d.api_raw('/console_log/%s?tail_bytes=500' % UUID_A)
        self.assertEqual((st, body), (200, expect[-500:]))
        st, _, body = d.api_raw('/api/v1/ports/vm-00000/log?tail_bytes=77')
        self.assertEqual((st, body), (200, expect[-77:]))
        st, _, _ = d.api_raw('/console_log/' + '0' * 32)
        self.assertEqual(st, 404)
        st, _, _ = d.api_raw('/console_log/' + UUID_B)
        self.assertEqual(st, 409)

    def test_vspc_log_follow(self):
        d, sim, _ = self.start_one(['--log-sync-ms', '100'])
        r = self.reader([VSPC, '--state-dir', d.dir, 'log', '-f',
                         'vm-00000'])
        r.wait_out(b'EARLY-OUTPUT\r\n')
        wait_for(lambda: d.healthz()['clients'] == 1, what='follower')
        # Input on its stdin is never sent to the console.
        r.proc.stdin.write(b'do not send this\r\n\x1d.')
        r.proc.stdin.flush()
        for i in range(5):
            sim.send(0, 0, b'live %d\r\n' % i)
            r.wait_out(b'live %d\r\n' % i)
        r.proc.stdin.close()
        sim.send(0, 0, b'after stdin EOF\r\n')
        r.wait_out(b'after stdin EOF\r\n')
        self.assertEqual(r.stdout(), b'EARLY-OUTPUT\r\n' +
                         b''.join(b'live %d\r\n' % i for i in range(5)) +
                         b'after stdin EOF\r\n')
        self.assertEqual(sim.status()['ports'][0]['received'], 0)
        self.assertEqual(d.port(UUID_A)['bytes_to_vm'], 0)
        self.assertEqual(r.stop(signal.SIGTERM), 0, r.err)
        self.assertEqual(r.err, b'')
        wait_for(lambda: d.healthz()['clients'] == 0, what='detach')

        # SIGINT works too; the server closing ends it with 0.
        r = self.reader([VSPC, '--state-dir', d.dir, 'log', '--follow',
                         UUID_A])
        r.wait_out(b'after stdin EOF\r\n')
        self.assertEqual(r.stop(signal.SIGINT), 0, r.err)
        r = self.reader([VSPC, '--state-dir', d.dir, 'log', '-f',
                         'vm-00000'])
        r.wait_out(b'after stdin EOF\r\n')
        d.stop()
        self.assertEqual(r.proc.wait(10), 0, r.err)

    def test_vspc_log_follow_unknown(self):
        d, sim, _ = self.start_one()
        r = d.vspc('log', '-f', 'no-such-vm')
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, b'')
        self.assertEqual(r.stderr.strip(),
                         b"vspc: no console named 'no-such-vm'")


if __name__ == '__main__':
    vspctest.main()
