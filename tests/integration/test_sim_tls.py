#!/usr/bin/env python3
"""vspc-sim --tls (telnets://) against `openssl s_server`, no daemon.

A throwaway self-signed P-256 certificate (SAN localhost, 127.0.0.1) is
made in a temporary directory; each test starts `openssl s_server` on
127.0.0.1:0 (-naccept 1), reads its ACCEPT line for the port and collects
its stdout, where s_server writes the bytes it receives after its own
text. What is checked:

- `vspc-sim --thumbprint` / `--thumbprint-sha1` print what
  `openssl x509 -fingerprint` prints;
- with the right SHA-256 thumbprint the handshake is done and the sim's
  V>P bytes match capture stream 0 through WILL COM-PORT byte for byte,
  with the capture's P>V segments written to s_server's stdin (the replay
  of sim_negotiation_check.py, over TLS); status has tls.handshakes 1;
- a right SHA-1 thumbprint (colons, upper case) works too;
- a wrong thumbprint is refused: 'tls-failed 0 0 thumbprint mismatch ...'
  on stdout, 'tls: handshake failed' on stderr, tls.failed 1, and not one
  telnet byte reaches the server;
- --tls-max 1.1 against an s_server limited to TLS 1.2 fails and is
  reported the same way, while --tls-min 1.2 against it works (TLSv1.2);
- --tls-ca with the certificate as its own CA: verified for 127.0.0.1,
  refused for another --tls-servername (host name mismatch);
- without verification options there is one warning; --tls-* without
  --tls and a malformed thumbprint are usage errors;
- vMotions over TLS: until vspcd has its own TLS listener, a small
  Python TLS terminator in front of the real daemon's VM listener; three
  vMotions (fin=first, last, never) complete with no anomaly and the
  destination connections do their own handshakes (4 in all).
"""

import json
import os
import queue
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sim_negotiation_check as snc  # noqa: E402
import vspctest  # noqa: E402

SRC = os.environ.get('VSPC_SRC', os.path.join(HERE, '..', '..'))
VSPC_SIM = os.environ.get('VSPC_SIM', os.path.join(SRC, 'build', 'vspc-sim'))
TIMEOUT = 10.0
WILL_AUTH = bytes.fromhex('fffb25')


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=30, **kw)


class SServer:
    """openssl s_server for one connection; its stdout is collected."""

    def __init__(self, d, extra=()):
        self.p = subprocess.Popen(
            ['openssl', 's_server', '-accept', '127.0.0.1:0',
             '-cert', os.path.join(d, 'cert.pem'),
             '-key', os.path.join(d, 'key.pem'), '-naccept', '1'] +
            list(extra),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.out = bytearray()
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        m = self.wait_re(rb'ACCEPT 127\.0\.0\.1:(\d+)\n')
        self.port = int(m.group(1))

    def _read(self):
        while True:
            b = self.p.stdout.read1(65536)
            if not b:
                return
            with self.lock:
                self.out += b

    def data(self):
        with self.lock:
            return bytes(self.out)

    def wait_re(self, pat, timeout=TIMEOUT):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(pat, self.data())
            if m:
                return m
            time.sleep(0.02)
        raise AssertionError('s_server: no %r in %r' % (pat, self.data()))

    def rx(self):
        """What the client sent: from its first byte (IAC WILL AUTH) on."""
        d = self.data()
        i = d.find(WILL_AUTH)
        return b'' if i < 0 else d[i:]

    def want(self, n, what, timeout=TIMEOUT):
        end = time.monotonic() + timeout
        while len(self.rx()) < n:
            if time.monotonic() > end:
                raise AssertionError('timeout waiting for %s: have %s'
                                     % (what, self.rx().hex(' ')))
            time.sleep(0.01)

    def send(self, b):
        self.p.stdin.write(b)
        self.p.stdin.flush()

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        if self.p.poll() is None:
            self.p.terminate()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.p.stdout.close()
        self.p.stderr.close()


class Sim:
    """vspc-sim --control; stdout lines queued, stderr in a file."""

    def __init__(self, d, port, args):
        self.errf = tempfile.TemporaryFile(dir=d)
        self.p = subprocess.Popen(
            [VSPC_SIM, '--target', '127.0.0.1:%d' % port, '--vms', '1',
             '--control'] + list(args),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.errf)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.decode('utf-8', 'replace').rstrip('\n'))

    def expect(self, prefix, timeout=TIMEOUT):
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError('sim: no line %r; saw %r; stderr %r'
                                     % (prefix, self.seen, self.stderr()))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def status(self):
        self.p.stdin.write(b'status\n')
        self.p.stdin.flush()
        return json.loads(self.expect('status ')[len('status '):])

    def stderr(self):
        self.errf.seek(0)
        return self.errf.read().decode('utf-8', 'replace')

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError('sim did not exit on EOF')
        self.p.stdout.close()
        return self.p.returncode


class Terminator:
    """TLS server on 127.0.0.1:0 relaying each connection to a TCP port."""

    def __init__(self, d, upstream):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(d, 'cert.pem'),
                                 os.path.join(d, 'key.pem'))
        self.upstream = upstream
        self.ls = socket.socket()
        self.ls.bind(('127.0.0.1', 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.socks = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.ls.accept()
                t = self.ctx.wrap_socket(c, server_side=True)
                u = socket.create_connection(('127.0.0.1', self.upstream))
            except OSError:
                if self.ls.fileno() < 0:
                    return
                continue
            self.socks += [t, u]
            for a, b in ((t, u), (u, t)):
                threading.Thread(target=self._pump, args=(a, b),
                                 daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                x = a.recv(65536)
                if not x:
                    break
                b.sendall(x)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.ls.close()
        for x in self.socks:
            x.close()


class SimTlsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='vspc-simtls-')
        r = run(['openssl', 'req', '-x509', '-newkey', 'ec',
                 '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
                 '-keyout', os.path.join(cls.dir, 'key.pem'),
                 '-out', os.path.join(cls.dir, 'cert.pem'), '-days', '2',
                 '-subj', '/CN=localhost',
                 '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'])
        assert r.returncode == 0, r.stderr
        cls.cert = os.path.join(cls.dir, 'cert.pem')
        cls.sha256 = cls.fingerprint('-sha256')
        cls.sha1 = cls.fingerprint('-sha1')

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def fingerprint(cls, md):
        r = run(['openssl', 'x509', '-in', cls.cert, '-noout',
                 '-fingerprint', md], text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().split('=', 1)[1]

    def setUp(self):
        self.procs = []

    def tearDown(self):
        for p in reversed(self.procs):
            if isinstance(p, Sim):
                if p.p.poll() is None:
                    p.close()
                if os.environ.get('VSPC_TEST_VERBOSE'):
                    sys.stderr.write(p.stderr())
                p.errf.close()
            else:
                p.close()

    def start(self, sim_args, server_args=()):
        srv = SServer(self.dir, server_args)
        self.procs.append(srv)
        sim = Sim(self.dir, srv.port, ['--tls'] + list(sim_args))
        self.procs.append(sim)
        return srv, sim

    def assert_refused(self, srv, sim, reason_re):
        line = sim.expect('tls-failed 0 0 ')
        self.assertRegex(line, reason_re)
        sim.expect('closed 0 0')
        st = sim.status()
        self.assertEqual(st['tls'], {'handshakes': 0, 'failed': 1})
        self.assertFalse(st['ports'][0]['connected'])
        self.assertEqual(sim.close(), 0)
        err = sim.stderr()
        self.assertIn('vm 0 port 0: tls: handshake failed: ', err)
        self.assertIn('tls: 0 handshakes, 1 failed', err)
        srv.close()
        self.assertEqual(srv.rx(), b'', 'telnet bytes went out')

    # -- tests ------------------------------------------------------------

    def test_thumbprint_printing(self):
        r = run([VSPC_SIM, '--thumbprint', self.cert], text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, self.sha256 + '\n')
        self.assertEqual(len(r.stdout.strip().split(':')), 32)
        r = run([VSPC_SIM, '--thumbprint-sha1', self.cert], text=True)
        self.assertEqual(r.stdout, self.sha1 + '\n')
        r = run([VSPC_SIM, '--thumbprint',
                 os.path.join(self.dir, 'nonexistent.pem')])
        self.assertNotEqual(r.returncode, 0)

    def test_negotiation_over_tls(self):
        """The capture's stream 0 replay, byte for byte, inside TLS."""
        segs = snc.load_stream0()
        expected = b''.join(b for d, b in segs if d == 'V>P')
        self.assertTrue(expected.startswith(WILL_AUTH))
        self.assertTrue(expected.endswith(snc.WILL_COMPORT))
        pin = self.sha256.replace(':', '').lower()
        srv, sim = self.start([
            '--tls-thumbprint', pin, '-v',
            '--uuid-base', '0123456789abcdeffedcba9800000000',
            '--mode', 'none', '--comport-delay', '44'])
        need = 0
        for d, b in segs:
            if d == 'V>P':
                need += len(b)
                srv.want(need, b.hex(' '))
            else:
                srv.send(b)
        got = srv.rx()[:len(expected)]
        self.assertEqual(got.hex(' '), expected.hex(' '))
        sim.expect('ready 0 0')
        st = sim.status()
        self.assertEqual(st['tls'], {'handshakes': 1, 'failed': 0})
        self.assertTrue(st['ports'][0]['connected'])
        self.assertTrue(st['ports'][0]['ready'])
        self.assertEqual(sim.close(), 0)
        self.assertRegex(sim.stderr(), r'vm 0 port 0: tls: TLSv1\.3')
        self.assertNotIn('not verified', sim.stderr())

    def test_sha1_thumbprint(self):
        srv, sim = self.start(['--tls-thumbprint', self.sha1.upper()])
        srv.want(3, 'IAC WILL AUTH')
        self.assertEqual(srv.rx()[:3], WILL_AUTH)
        self.assertEqual(sim.status()['tls'],
                         {'handshakes': 1, 'failed': 0})

    def test_wrong_thumbprint(self):
        last = self.sha256[-1]
        bad = self.sha256[:-1] + ('0' if last != '0' else '1')
        srv, sim = self.start(['--tls-thumbprint', bad])
        self.assert_refused(srv, sim, r'thumbprint mismatch: server '
                            r'certificate SHA-256 ' + re.escape(self.sha256))

    def test_tls11_refused(self):
        srv, sim = self.start(['--tls-thumbprint', self.sha256,
                               '--tls-max', '1.1'], ['-tls1_2'])
        self.assert_refused(srv, sim, r'protocol version|unsupported '
                            r'protocol|no protocols')

    def test_tls12_accepted(self):
        """The control for test_tls11_refused: same server, 1.2 works."""
        srv, sim = self.start(['--tls-thumbprint', self.sha256,
                               '--tls-min', '1.2', '-v'], ['-tls1_2'])
        srv.want(3, 'IAC WILL AUTH')
        self.assertEqual(sim.status()['tls'],
                         {'handshakes': 1, 'failed': 0})
        self.assertEqual(sim.close(), 0)
        self.assertRegex(sim.stderr(), r'tls: TLSv1\.2\b')

    def test_ca_verification(self):
        srv, sim = self.start(['--tls-ca', self.cert])
        srv.want(3, 'IAC WILL AUTH')
        self.assertEqual(sim.status()['tls'],
                         {'handshakes': 1, 'failed': 0})
        srv, sim = self.start(['--tls-ca', self.cert,
                               '--tls-servername', 'other.invalid'])
        self.assert_refused(srv, sim, r'certificate verify failed.*'
                            r'[Hh]ostname mismatch')

    def test_no_verification_warns(self):
        srv, sim = self.start([])
        srv.want(3, 'IAC WILL AUTH')
        self.assertEqual(sim.status()['tls']['handshakes'], 1)
        self.assertEqual(sim.close(), 0)
        self.assertEqual(sim.stderr().count('not verified'), 1)

    def test_vmotion_over_tls(self):
        d = vspctest.Daemon(['--vmotion-peer-timeout', '2',
                             '--vmotion-complete-timeout', '2',
                             '--vmotion-source-drain', '1'])
        self.addCleanup(d.cleanup)
        term = Terminator(self.dir, d.vm_port)
        self.procs.append(term)
        sim = Sim(self.dir, term.port, [
            '--tls', '--tls-thumbprint', self.sha256, '--mode', 'seq',
            '--rate', '1000', '--vmotion-limit', '2000'])
        self.procs.append(sim)
        sim.expect('ready 0 0')
        for fin in ('first', 'last', 'never'):
            # 'skipped' until WILL COM-PORT went out (44 ms after ready).
            end = time.monotonic() + TIMEOUT
            while True:
                sim.p.stdin.write(b'vmotion 0 0 fin=%s\n' % fin.encode())
                sim.p.stdin.flush()
                line = sim.expect('vmotion 0 0 ')
                if line != 'vmotion 0 0 skipped 0' or \
                        time.monotonic() > end:
                    break
                time.sleep(0.05)
            self.assertRegex(line, r'^vmotion 0 0 completed \d+$')
            vspctest.wait_for(lambda: d.port(d.ports()[0]['id'])
                              ['vmotion']['state'] == 'idle', 5,
                              what='daemon vMotion idle')
        st = sim.status()
        self.assertEqual(st['vmotions']['completed'], 3)
        self.assertEqual(st['vmotions']['anomalies'], 0)
        self.assertEqual(st['recv_during_vmotion'], 0)
        self.assertEqual(st['tls'], {'handshakes': 4, 'failed': 0})
        self.assertTrue(st['ports'][0]['ready'])

    def test_usage_errors(self):
        r = run([VSPC_SIM, '--target', '127.0.0.1:1', '--tls-thumbprint',
                 self.sha256])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b'need --tls', r.stderr)
        r = run([VSPC_SIM, '--target', '127.0.0.1:1', '--tls',
                 '--tls-thumbprint', self.sha256[:-3]])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b'--tls-thumbprint', r.stderr)
        r = run([VSPC_SIM, '--target', '127.0.0.1:1', '--tls',
                 '--tls-min', '1.3', '--tls-max', '1.2'])
        self.assertNotEqual(r.returncode, 0)


if __name__ == '__main__':
    unittest.main(verbosity=2)
