#!/usr/bin/env python3
"""Sharing modes, read-only attach, force, who, kick, the vspc escape menu
(issue 5, items 3 and 4).

The VMs are vspc-sim with --print-recv and no output of their own, so
every byte a VM receives is known. Identities: TCP clients are anonymous;
the Unix-socket front door knows us by uid (the user running the tests,
given every right by a user: rule; root has every right anyway); API
callers use bearer tokens.

- TestReadOnly: 1 MiB typed by a read-only client reaches the VM as 0
  bytes, for each way of being read-only (front door "/ro", the read-only
  listener, vspc attach --ro, no write right), while a read-write client's
  bytes arrive; one notice per burst, not one per keystroke.
- TestSingleWriter: vm-00000 is single-writer by a sharing-rules entry,
  vm-00001 stays shared. A holds the line, B is refused with a notice
  naming A, C (no force right) cannot force, B forces: A is told who took
  it, B's bytes arrive and A's do not; the line is free when B leaves.
  Audit records for force, the refused force and the mode changes.
- TestWhoKick: the client list through the API (tokens, per port) and
  vspc who (Unix socket, and the API with VSPC_TOKEN); kick through the
  API (admin token), through vspc kick on the Unix socket, refused for a
  token without admin and for an anonymous /kick (both audited denied).
- TestEscapeMenu: vspc attach in a pty: ^] r stops input reaching the VM,
  ^] w restores it, ^] u lists who is attached, ^] . detaches.
- TestConfig: vspcd -n reports bad sharing-rules entries with FILE:LINE;
  SIGHUP switches a console between shared and single-writer.
"""

import getpass
import hashlib
import http.client
import json
import os
import pty
import random
import select
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import telnetc  # noqa: E402
import vspctest  # noqa: E402
from vspctest import HOST, Daemon, wait_for  # noqa: E402

VSPC_OPT = 201          # the private telnet option of vspc and vspcd
ME = getpass.getuser()
MIB = 1 << 20
TOKENS = {'ops': 'ops-secret-token-1', 'viewer': 'viewer-secret-token-2'}


def token_lines():
    return ''.join('  - %s:%s\n' % (n, hashlib.sha256(t.encode()).hexdigest())
                   for n, t in TOKENS.items())


def notices(data):
    """The texts of the "[vspcd: ...]" notices in data."""
    out = []
    for ln in bytes(data).split(b'\r\n'):
        if ln.startswith(b'[vspcd: ') and ln.endswith(b']'):
            out.append(ln[8:-1].decode('utf-8', 'replace'))
    return out


class UnixTelnet(telnetc.Telnet):
    """A telnetc.Telnet over the Unix-socket front door."""

    def __init__(self, path, timeout=10.0, **kw):
        super().__init__(None, None, timeout, **kw)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.sock.setblocking(False)


class ShareBase(vspctest.VspcTestCase):

    RULES = None

    def start(self, conf, nvms=2, ro_door=False):
        d = Daemon(start=False)
        self._daemons.append(d)
        self.addCleanup(self._stop_daemon, d)
        d.conf_path = os.path.join(d.dir, 'vspcd.conf')
        with open(d.conf_path, 'w') as f:
            f.write(conf)
        self.sock = os.path.join(d.dir, 'vspcd.sock')
        d.args += ['-f', d.conf_path, '--unix-listen', self.sock]
        if ro_door:
            d.args += ['--client-listen-ro', HOST + ':0']
        d.start()
        self.d = d
        self.sim1 = self.sim(d, ['--vms', str(nvms), '--rate', '0',
                                 '--print-recv'])
        self.sim1.wait_ready(nvms)
        ps = d.wait_ports(lambda ps: len(ps) == nvms and
                          all(p['connected'] for p in ps))
        self.byname = {p['vm_name']: p for p in ps}
        self.got = {i: bytearray() for i in range(nvms)}
        return d

    # -- the VM side --

    def recv(self, vm):
        """Every byte VM vm received so far."""
        for ln in self.sim1.events('recv '):
            f = ln.split()
            self.got[int(f[1])] += bytes.fromhex(f[3])
        return bytes(self.got[vm])

    def wait_recv(self, vm, marker, timeout=10.0):
        wait_for(lambda: marker in self.recv(vm), timeout, 0.05,
                 '%r at vm %d' % (marker, vm))

    # -- clients --

    def unix_attach(self, name, opts=''):
        tn = UnixTelnet(self.sock)
        self.addCleanup(tn.close)
        line = tn.frontdoor_attach(opts + name)
        self.assertTrue(line.startswith('attached to '), line)
        return tn

    def tcp_attach(self, name, opts=''):
        tn, line = self.attach(self.d, opts + name)
        self.assertTrue(line.startswith('attached to '), line)
        return tn

    def control(self, tn, word):
        """Agree to the control option (once), then send one command."""
        if VSPC_OPT not in tn.us:
            tn.accept_us.add(VSPC_OPT)
            tn.send_cmd(telnetc.WILL, VSPC_OPT)
            wait_for(lambda: (tn.read_available(0.05),
                              tn.negotiated(telnetc.DO, VSPC_OPT))[1],
                     5, 0.01, 'DO %d from vspcd' % VSPC_OPT)
            tn.us.add(VSPC_OPT)
        tn.send_raw(bytes([telnetc.IAC, telnetc.SB, VSPC_OPT]) +
                    word.encode() + bytes([telnetc.IAC, telnetc.SE]))

    def wait_notice(self, tn, text, timeout=5.0):
        """Read until a notice containing text arrives; all notices read."""
        seen = bytearray()
        deadline = time.monotonic() + timeout
        while not any(text in n for n in notices(seen)):
            left = deadline - time.monotonic()
            if left <= 0 or tn.eof:
                self.fail('no notice with %r; got %r' % (text, bytes(seen)))
            seen += tn.read_available(min(left, 0.2))
        return notices(seen)

    def clients(self, token=None, path='/api/v1/clients'):
        st, body = self.http('GET', path, token)
        self.assertEqual(st, 200, body)
        return json.loads(body)['clients']

    def http(self, method, path, token=None):
        conn = http.client.HTTPConnection(HOST, self.d.admin_port,
                                          timeout=10)
        try:
            hdrs = {}
            if token is not None:
                hdrs['Authorization'] = 'Bearer ' + TOKENS[token]
            conn.request(method, path, headers=hdrs)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def client_by_source(self, src, token='ops'):
        for c in self.clients(token):
            if c['source'] == src:
                return c
        self.fail('no client from %s in %r' % (src, self.clients(token)))

    @staticmethod
    def source_of(tn):
        return '%s:%d' % tn.sock.getsockname()[:2]

    # -- audit --

    def audit(self):
        try:
            with open(os.path.join(self.d.dir, 'audit.log'), 'rb') as f:
                data = f.read()
        except FileNotFoundError:
            return []
        self.assertTrue(data == b'' or data.endswith(b'\n'), data[-200:])
        return [json.loads(ln) for ln in data.split(b'\n')[:-1]]

    def wait_audit(self, pred, what, timeout=5.0):
        return wait_for(lambda: [r for r in self.audit() if pred(r)],
                        timeout, 0.05, what)


class TestReadOnly(ShareBase):
    """vm-00000: anonymous read+write; vm-00001: anonymous read only."""

    CONF = ('access:\n'
            '  - {who: anonymous, consoles: vm-00000, rights: [write]}\n'
            '  - {who: anonymous, consoles: vm-00001, rights: [read]}\n'
            '  - {who: "user:%s", consoles: "*", rights: [admin]}\n'
            '  - {who: "token:ops", consoles: "*", rights: [admin]}\n'
            'tokens:\n%s' % (ME, token_lines()))

    def setUp(self):
        self.start(self.CONF, ro_door=True)
        self.blob = bytes(random.Random(3).getrandbits(8)
                          for _ in range(1 << 16)) * 16
        self.assertEqual(len(self.blob), MIB)

    def type_mib(self, tn, src):
        """Type 1 MiB as tn; wait until vspcd has dropped all of it."""
        got = bytearray()
        for i in range(0, MIB, 65536):
            tn.send(self.blob[i:i + 65536])
            got += tn.read_available(0)
        wait_for(lambda: self.client_by_source(src)['input_denied'] >= MIB,
                 30, 0.1, '1 MiB dropped for %s' % src)
        c = self.client_by_source(src)
        self.assertEqual(c['input_denied'], MIB, c)
        self.assertEqual(c['bytes_in'], 0, c)
        self.assertEqual(c['mode'], 'ro', c)
        got += tn.read_for(0.3)
        ns = [n for n in notices(got) if n.startswith('input not sent')]
        # One notice per burst of typing, never one per keystroke.
        self.assertGreaterEqual(len(ns), 1, got[:300])
        self.assertLess(len(ns), 8, ns)
        return ns[0]

    def rw_marker(self, rw, marker):
        """A read-write client's bytes arrive; the VM got nothing else."""
        rw.send(marker)
        self.wait_recv(0, marker)
        time.sleep(0.2)
        return self.recv(0)

    def test_ro_every_way(self):
        rw = self.tcp_attach('vm-00000')
        expect = b''
        # 1. front door "/ro NAME".
        ro1 = self.tcp_attach('vm-00000', '/ro ')
        n = self.type_mib(ro1, self.source_of(ro1))
        self.assertEqual(n, 'input not sent: you are read-only')
        expect += b'rw-after-slash-ro;'
        self.assertEqual(self.rw_marker(rw, b'rw-after-slash-ro;'), expect)
        # 2. the read-only listener.
        ro2 = self.telnet(self.d.listeners['client_ro'])
        line = ro2.frontdoor_attach('vm-00000')
        self.assertTrue(line.startswith('attached to vm-00000'), line)
        n = self.type_mib(ro2, self.source_of(ro2))
        self.assertEqual(n, 'input not sent: read-only front door')
        # It cannot switch itself to read-write or force.
        self.control(ro2, 'rw')
        self.wait_notice(ro2, 'read-write refused: read-only front door')
        ro2.send(b'still-ro')
        expect += b'rw-after-ro-door;'
        self.assertEqual(self.rw_marker(rw, b'rw-after-ro-door;'), expect)
        # 3. no write right (vm-00001 is read only for anonymous).
        ro3 = self.tcp_attach('vm-00001')
        n = self.type_mib(ro3, self.source_of(ro3))
        self.assertEqual(n, 'input not sent: no write right on this console')
        self.assertEqual(self.recv(1), b'')
        # 4. vspc attach --ro over the Unix socket, with every right.
        v = subprocess.Popen([vspctest.VSPC, '--state-dir', self.d.dir,
                              'attach', '--ro', '-e', 'none', 'vm-00000'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(lambda: (v.poll() is None and v.kill(), v.wait()))
        vc = wait_for(lambda: [c for c in self.clients('ops')
                               if c['kind'] == 'unix'], 10, 0.05,
                      'the vspc client')[0]
        self.assertEqual(vc['mode'], 'ro', vc)
        self.assertEqual(vc['rights'], 'read,write,force,admin', vc)
        v.stdin.write(self.blob)
        v.stdin.flush()
        wait_for(lambda: [c for c in self.clients('ops') if
                          c['id'] == vc['id'] and
                          c['input_denied'] >= MIB], 30, 0.1,
                 '1 MiB from vspc --ro dropped')
        expect += b'rw-after-vspc-ro;'
        self.assertEqual(self.rw_marker(rw, b'rw-after-vspc-ro;'), expect)
        v.send_signal(signal.SIGTERM)
        v.communicate(timeout=10)
        self.assertEqual(v.returncode, 0)
        # The attach records say which mode each client had.
        modes = sorted(r['detail'] for r in self.audit()
                       if r['event'] == 'attach')
        self.assertEqual(modes, ['rights read, mode ro'] +
                         ['rights read,write, mode ro'] * 2 +
                         ['rights read,write, mode rw'] +
                         ['rights read,write,force,admin, mode ro'])
        self.assertEqual(self.recv(0), expect)
        self.assertEqual(self.recv(1), b'')
        self.assertEqual(self.d.port(self.byname['vm-00000']['id'])
                         ['bytes_to_vm'], len(expect))


class TestSingleWriter(ShareBase):

    CONF = ('sharing: shared\n'
            'sharing-rules:\n'
            '  - {consoles: [vm-00000], mode: single-writer}\n'
            'access:\n'
            '  - {who: anonymous, consoles: "*", rights: [write]}\n'
            '  - {who: "user:%s", consoles: "*", rights: [admin]}\n'
            '  - {who: "token:ops", consoles: "*", rights: [admin]}\n'
            'tokens:\n%s' % (ME, token_lines()))

    def setUp(self):
        self.start(self.CONF)

    def test_force(self):
        pid = self.byname['vm-00000']['id']
        a = self.tcp_attach('vm-00000')
        b = self.unix_attach('vm-00000')
        c = self.tcp_attach('vm-00000')
        sa, sc = self.source_of(a), self.source_of(c)
        ida = self.client_by_source(sa)['id']
        idb = [x for x in self.clients('ops') if x['kind'] == 'unix'][0]['id']
        a.send(b'A1;')
        self.wait_recv(0, b'A1;')
        self.assertEqual(self.client_by_source(sa)['mode'], 'writer')
        b.send(b'B1;')
        ns = self.wait_notice(b, 'holds the line')
        self.assertIn('input not sent: #%d anonymous (%s) holds the line '
                      '(force takes it)' % (ida, sa), ns)
        # C has no force right: no "(force takes it)"; force refused.
        c.send(b'C1;')
        self.assertIn('input not sent: #%d anonymous (%s) holds the line' %
                      (ida, sa), self.wait_notice(c, 'holds the line'))
        self.control(c, 'force')
        self.wait_notice(c, 'force refused: no force right')
        # B forces: A learns who took the line.
        self.control(b, 'force')
        nb = self.wait_notice(b, 'you hold the line')
        self.assertIn('you hold the line (taken from #%d anonymous (%s))' %
                      (ida, sa), nb)
        na = self.wait_notice(a, 'took the line')
        self.assertEqual(len(na), 1, na)
        self.assertRegex(na[0], r'^#%d %s \(unix:pid=\d+\) took the line; '
                         r'your input is not sent$' % (idb, ME))
        b.send(b'B2;')
        self.wait_recv(0, b'B2;')
        a.send(b'A2;')
        self.assertTrue(any('holds the line' in n for n in
                            self.wait_notice(a, 'holds the line')))
        # Typing on: no second notice within the burst.
        for _ in range(20):
            a.send(b'x')
            time.sleep(0.01)
        more = a.read_for(0.3)
        self.assertEqual(notices(more), [], more)
        # B leaves: the line is free for the next one to type.
        b.close()
        wait_for(lambda: len(self.clients('ops')) == 2, 5, 0.05,
                 'B detached')
        a.send(b'A3;')
        self.wait_recv(0, b'A3;')
        time.sleep(0.2)
        self.assertEqual(self.recv(0), b'A1;B2;A3;')
        # vm-00001 is shared: both type.
        x = self.tcp_attach('vm-00001')
        y = self.unix_attach('vm-00001')
        x.send(b'X;')
        self.wait_recv(1, b'X;')
        y.send(b'Y;')
        self.wait_recv(1, b'X;Y;')
        self.control(y, 'force')
        self.wait_notice(y, 'nothing to force: this console is shared')
        # Audit: the force (by B, naming A), the refused force of C.
        f = self.wait_audit(lambda r: r['event'] == 'force', 'force record')
        self.assertEqual(len(f), 1, f)
        self.assertEqual(f[0]['kind'], 'unix')
        self.assertEqual(f[0]['user'], ME)
        self.assertEqual(f[0]['console'], pid)
        self.assertEqual(f[0]['detail'], 'took the line from #%d anonymous '
                         '(%s)' % (ida, sa))
        den = [r for r in self.audit() if r['event'] == 'denied']
        self.assertEqual([(r['source'], r['detail']) for r in den],
                         [(sc, 'force: no force right')])
        with open(os.path.join(self.d.dir, 'audit.log'), 'rb') as f:
            raw = f.read()
        for typed in (b'A1;', b'B1;', b'B2;', b'A2;', b'C1;'):
            self.assertNotIn(typed, raw)

    def test_ro_rw_commands(self):
        a = self.tcp_attach('vm-00000')
        sa = self.source_of(a)
        self.control(a, 'rw')
        self.wait_notice(a, 'already read-write')
        a.send(b'a1;')
        self.wait_recv(0, b'a1;')
        self.control(a, 'ro')
        self.wait_notice(a, 'read-only: your input is not sent')
        self.assertEqual(self.client_by_source(sa)['mode'], 'ro')
        a.send(b'dropped;')
        self.wait_notice(a, 'input not sent: you are read-only')
        # The line was released: another client takes it.
        b = self.tcp_attach('vm-00000')
        b.send(b'b1;')
        self.wait_recv(0, b'b1;')
        self.control(a, 'rw')
        self.wait_notice(a, 'read-write')
        a.send(b'a2;')
        self.wait_notice(a, 'holds the line')
        self.control(a, 'who')
        ns = self.wait_notice(a, '(you)')
        self.assertIn('2 clients on %s, sharing single-writer' %
                      self.byname['vm-00000']['id'], ns)
        self.control(a, 'bogus')
        self.wait_notice(a, 'unknown control command')
        time.sleep(0.2)
        self.assertEqual(self.recv(0), b'a1;b1;')
        modes = [r['detail'] for r in self.audit() if r['event'] == 'mode']
        self.assertEqual(modes, ['ro', 'rw'])

    def test_sb_before_negotiation_ignored(self):
        a = self.tcp_attach('vm-00000')
        b = self.tcp_attach('vm-00000')
        a.send(b'a;')
        self.wait_recv(0, b'a;')
        # A force SB without the option agreed does nothing.
        b.send_raw(bytes([telnetc.IAC, telnetc.SB, VSPC_OPT]) + b'force' +
                   bytes([telnetc.IAC, telnetc.SE]))
        b.send(b'b;')
        self.wait_notice(b, 'holds the line')
        self.assertEqual(notices(a.read_for(0.3)), [])
        self.assertEqual(self.recv(0), b'a;')


class TestWhoKick(ShareBase):

    CONF = ('access:\n'
            '  - {who: anonymous, consoles: "*", rights: [write]}\n'
            '  - {who: "token:viewer", consoles: "*", rights: [read]}\n'
            '  - {who: "token:ops", consoles: "*", rights: [admin]}\n'
            '  - {who: "user:%s", consoles: "*", rights: [admin]}\n'
            'tokens:\n%s' % (ME, token_lines()))

    def setUp(self):
        self.start(self.CONF)

    def test_who(self):
        a = self.tcp_attach('vm-00000')
        b = self.tcp_attach('vm-00001', '/ro ')
        sa, sb = self.source_of(a), self.source_of(b)
        a.send(b'hello')
        self.wait_recv(0, b'hello')
        cl = self.clients('viewer')
        self.assertEqual([c['source'] for c in cl], [sa, sb])
        ca, cb = cl
        self.assertLess(ca['id'], cb['id'])
        self.assertEqual((ca['console'], ca['kind'], ca['name'], ca['mode'],
                          ca['bytes_in'], ca['sharing']),
                         (self.byname['vm-00000']['id'], 'anonymous', None,
                          'rw', 5, 'shared'))
        self.assertEqual((cb['console'], cb['mode']),
                         (self.byname['vm-00001']['id'], 'ro'))
        self.assertLessEqual(abs(ca['attached_at'] - time.time()), 60)
        one = self.clients('viewer', '/api/v1/ports/vm-00001/clients')
        self.assertEqual([c['id'] for c in one], [cb['id']])
        st, body = self.http('GET', '/api/v1/clients/%d' % ca['id'], 'ops')
        self.assertEqual((st, json.loads(body)['source']), (200, sa))
        # vspc who over the Unix socket (known by uid).
        r = self.d.vspc('who')
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = r.stdout.decode().splitlines()
        self.assertEqual(rows[0].split(), ['ID', 'CONSOLE', 'WHO', 'SOURCE',
                                           'MODE', 'SINCE', 'IN', 'OUT'])
        self.assertEqual([ln.split()[:5] for ln in rows[1:]],
                         [[str(ca['id']), ca['console'], 'anonymous', sa,
                           'rw'],
                          [str(cb['id']), cb['console'], 'anonymous', sb,
                           'ro']])
        r = self.d.vspc('who', '--json', 'vm-00000')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([c['id'] for c in json.loads(r.stdout)['clients']],
                         [ca['id']])
        r = self.d.vspc('who', 'no-such-vm')
        self.assertEqual((r.returncode, r.stdout), (1, b''))
        self.assertIn(b"no console named 'no-such-vm'", r.stderr)
        # No socket: the API with VSPC_TOKEN.
        env = dict(os.environ, VSPC_TOKEN=TOKENS['viewer'])
        r = subprocess.run([vspctest.VSPC, '--state-dir', self.d.dir,
                            '--client', '%s:%d' % (HOST, self.d.client_port),
                            'who', '--json'], env=env, capture_output=True,
                           timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([c['id'] for c in json.loads(r.stdout)['clients']],
                         [ca['id'], cb['id']])
        # An anonymous client of the API sees what it may read.
        self.assertEqual(len(self.clients()), 2)

    def test_kick(self):
        a = self.tcp_attach('vm-00000')
        b = self.tcp_attach('vm-00001')
        c = self.tcp_attach('vm-00001')
        sa, sb, sc = map(self.source_of, (a, b, c))
        ida = self.client_by_source(sa)['id']
        idb = self.client_by_source(sb)['id']
        idc = self.client_by_source(sc)['id']
        pid0, pid1 = (self.byname[n]['id'] for n in ('vm-00000', 'vm-00001'))
        # Refused: a token without admin (403), unknown ids (404).
        st, body = self.http('DELETE', '/api/v1/clients/%d' % ida, 'viewer')
        self.assertEqual(st, 403, body)
        self.assertIn(b'no admin right', body)
        self.assertEqual(self.http('DELETE', '/api/v1/clients/99999',
                                   'ops')[0], 404)
        self.assertEqual(self.http('DELETE', '/api/v1/clients/x', 'ops')[0],
                         404)
        # Refused: an anonymous front-door /kick.
        tn = self.telnet(self.d.client_port)
        tn.read_until(telnetc.PROMPT)
        tn.send(b'/kick %d\r\n' % idb)
        got = tn.read_until_eof(5)
        self.assertIn(b'vspcd: kick refused: no admin right on %s\r\n' %
                      pid1.encode(), got)
        self.assertFalse(a.eof or b.eof)
        self.assertEqual(len(self.clients('ops')), 3)
        # Kick through the API with the ops token.
        st, body = self.http('DELETE', '/api/v1/clients/%d' % ida, 'ops')
        self.assertEqual((st, json.loads(body)), (200, {'kicked': ida}))
        data = a.read_until_eof(5)
        self.assertEqual(len(notices(data)), 1, data)
        self.assertRegex(notices(data)[0],
                         r'^kicked by token:ops \(127\.0\.0\.1:\d+\)$')
        # Kick through vspc on the Unix socket.
        r = self.d.vspc('kick', str(idb))
        self.assertEqual((r.returncode, r.stdout), (0, b'kicked client %d\n'
                                                    % idb), r.stderr)
        data = b.read_until_eof(5)
        self.assertEqual(len(notices(data)), 1, data)
        self.assertRegex(notices(data)[0],
                         r'^kicked by %s \(unix:pid=\d+\)$' % ME)
        r = self.d.vspc('kick', str(idb))
        self.assertEqual(r.returncode, 1)
        self.assertIn(b'no client %d' % idb, r.stderr)
        self.assertFalse(c.eof)
        self.assertEqual([x['id'] for x in self.clients('ops')], [idc])
        # Audit: two kicks naming the victims, two denied attempts.
        recs = self.audit()
        kicks = [r for r in recs if r['event'] == 'kick']
        self.assertEqual([(k['kind'], k.get('user'), k['console'],
                           k['detail']) for k in kicks],
                         [('token', 'ops', pid0,
                           'kicked #%d anonymous (%s)' % (ida, sa)),
                          ('unix', ME, pid1,
                           'kicked #%d anonymous (%s)' % (idb, sb))])
        den = [r for r in recs if r['event'] == 'denied']
        self.assertEqual([(r['kind'], r.get('user'), r['detail'])
                          for r in den],
                         [('token', 'viewer', 'kick #%d anonymous (%s): '
                           'no admin right' % (ida, sa)),
                          ('anonymous', None, 'kick #%d anonymous (%s): '
                           'no admin right' % (idb, sb))])
        for src in (sa, sb):
            self.wait_audit(lambda r, s=src: r['event'] == 'detach' and
                            r['source'] == s, 'detach of %s' % src)


class TestEscapeMenu(ShareBase):

    CONF = 'sharing: single-writer\n'

    def setUp(self):
        self.start(self.CONF, nvms=1)

    def test_pty(self):
        master, slave = pty.openpty()
        v = subprocess.Popen([vspctest.VSPC, '--state-dir', self.d.dir,
                              'attach', '--no-replay', 'vm-00000'],
                             stdin=slave, stdout=slave, stderr=slave,
                             start_new_session=True)
        os.close(slave)
        self.addCleanup(os.close, master)
        self.addCleanup(lambda: (v.poll() is None and v.kill(), v.wait()))
        out = bytearray()

        def read_until(marker, timeout=10.0):
            deadline = time.monotonic() + timeout
            while marker not in out:
                left = deadline - time.monotonic()
                self.assertGreater(left, 0, 'no %r in %r' % (marker,
                                                            bytes(out)))
                r, _, _ = select.select([master], [], [], left)
                if r:
                    try:
                        out.extend(os.read(master, 65536))
                    except OSError:
                        self.fail('pty closed; got %r' % bytes(out))
            i = out.index(marker) + len(marker)
            got = bytes(out[:i])
            del out[:i]
            return got

        read_until(b'(escape: ^] . to detach, ^] ? for help)')
        wait_for(lambda: self.clients() != [], 5, 0.05, 'vspc attached')
        os.write(master, b'one;')
        self.wait_recv(0, b'one;')
        os.write(master, b'\x1d?')
        read_until(b'^] r read-only')
        os.write(master, b'\x1dr')
        read_until(b'[vspcd: read-only: your input is not sent]')
        self.assertEqual(self.clients()[0]['mode'], 'ro')
        os.write(master, b'two;')
        read_until(b'[vspcd: input not sent: you are read-only]')
        os.write(master, b'\x1dw')
        read_until(b'[vspcd: read-write]')
        os.write(master, b'three;')
        self.wait_recv(0, b'three;')
        self.assertEqual(self.clients()[0]['mode'], 'writer')
        os.write(master, b'\x1du')
        read_until(b'[vspcd: 1 client on ')
        read_until(b' writer (you)]')
        os.write(master, b'\x1d\x1d')       # a literal ^]
        self.wait_recv(0, b'three;\x1d')
        os.write(master, b'\x1d.')
        self.assertEqual(v.wait(10), 0)
        time.sleep(0.2)
        self.assertEqual(self.recv(0), b'one;three;\x1d')
        wait_for(lambda: self.clients() == [], 5, 0.05, 'vspc detached')
        modes = [r['detail'] for r in self.audit() if r['event'] == 'mode']
        self.assertEqual(modes, ['ro', 'rw'])


class TestConfig(ShareBase):

    def test_check_reports_line(self):
        d = Daemon(start=False)
        self._daemons.append(d)
        path = os.path.join(d.dir, 'bad.conf')
        with open(path, 'w') as f:
            f.write('sharing: shared\n'
                    'sharing-rules:\n'
                    '  - {consoles: vm-1, mode: single-writer}\n'
                    '  - {consoles: vm-2, mode: exclusive}\n'
                    '  - {mode: shared}\n'
                    '  - {consoles: [], mode: shared, who: x}\n')
        r = subprocess.run([vspctest.VSPCD, '-n', '-f', path],
                           capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        err = r.stderr.decode()
        self.assertIn("%s:4: sharing-rules: mode 'exclusive' is not shared "
                      "or single-writer\n" % path, err)
        self.assertIn("%s:5: sharing-rules: rule has no 'consoles'\n" % path,
                      err)
        self.assertIn("%s:6: sharing-rules: 'consoles' wants 1 to " % path,
                      err)
        self.assertIn("%s:6: sharing-rules: unknown rule key 'who'" % path,
                      err)
        self.assertNotIn(':3:', err)
        with open(path, 'w') as f:
            f.write('sharing-rules:\n'
                    '  - {consoles: ["vm-*", "5012345678000000-'
                    '0000000000000000"], mode: single-writer}\n'
                    'client-listen-ro: 127.0.0.1:0\n')
        r = subprocess.run([vspctest.VSPCD, '-n', '-f', path],
                           capture_output=True, timeout=10)
        self.assertEqual((r.returncode, r.stdout), (0,
                                                    b'configuration OK\n'),
                         r.stderr)

    def test_sighup_switches_mode(self):
        d = self.start('sharing: shared\n', nvms=1)
        a = self.tcp_attach('vm-00000')
        b = self.tcp_attach('vm-00000')
        a.send(b'a1;')
        self.wait_recv(0, b'a1;')
        b.send(b'b1;')
        self.wait_recv(0, b'a1;b1;')
        # A holds nothing in shared mode; now single-writer for vm-00000.
        with open(d.conf_path, 'w') as f:
            f.write('sharing: shared\nsharing-rules:\n'
                    '  - {consoles: "vm-0000?", mode: single-writer}\n')
        mark = len(d.stderr())
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: 'reload: configuration applied' in
                 d.stderr()[mark:], 10, 0.05, 'reload applied')
        for tn in (a, b):
            self.wait_notice(tn, 'sharing is now single-writer')
        self.assertEqual([c['mode'] for c in self.clients()], ['rw', 'rw'])
        b.send(b'b2;')                  # nobody held the line: B takes it
        self.wait_recv(0, b'b2;')
        a.send(b'a2;')
        self.wait_notice(a, 'holds the line')
        # Back to shared: nobody is "the writer" any more.
        with open(d.conf_path, 'w') as f:
            f.write('sharing: shared\n')
        mark = len(d.stderr())
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: 'reload: configuration applied' in
                 d.stderr()[mark:], 10, 0.05, 'reload applied')
        self.wait_notice(a, 'sharing is now shared')
        a.send(b'a3;')
        self.wait_recv(0, b'a3;')
        time.sleep(0.2)
        self.assertEqual(self.recv(0), b'a1;b1;b2;a3;')
        # A bad file changes nothing.
        with open(d.conf_path, 'w') as f:
            f.write('sharing-rules: [{consoles: "*", mode: nope}]\n')
        mark = len(d.stderr())
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: 'keeping the old configuration' in
                 d.stderr()[mark:], 10, 0.05, 'reload refused')
        self.assertIn("sharing-rules: mode 'nope'", d.stderr()[mark:])
        b.send(b'b3;')
        self.wait_recv(0, b'a3;b3;')


if __name__ == '__main__':
    vspctest.main()
