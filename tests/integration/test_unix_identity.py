#!/usr/bin/env python3
"""Unix-socket front door: SO_PEERCRED identities, user:/group: rules, SSH.

Needs root (it creates throwaway local users vspct1 and vspct2 and a group
vspcops, removed again at the end); skipped otherwise. vspc runs as those
users through setpriv(1). Everything stays on loopback.

- TestUnixIdentity (rules: vspct1 may read vm-00000; group vspcops may
  read and write vm-0000*; 2 VMs printing seq lines, --print-recv):
  vspct1 sees vm-00000 but its typed input never reaches the VM; vspct1 is
  refused vm-00001 (exit 1, "no console named" on stderr, nothing on
  stdout); vspct2 (in vspcops) reads and writes vm-00001, input arriving
  byte for byte; root attaches anywhere. Every audit record of those
  sessions is kind "unix" with the right user, uid and source (pid).
- TestSshForceCommand: a real sshd on 127.0.0.1 (skipped without
  /usr/sbin/sshd) with the ForceCommand of doc/sshd-vspc.conf; vspct2 logs
  in with a throwaway key and lands in vm-00001 (it may only see that one
  here): the stream arrives over ssh -tt, typed input reaches the VM, Ctrl-]
  . detaches, vm-00000 and a shell-injection attempt are refused, and the
  daemon audits vspct2 (its uid), never root.
"""

import fcntl
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vspctest  # noqa: E402
from vspctest import Daemon, wait_for  # noqa: E402

RATE = '4000'           # bytes/s per port: ~100 seq lines/s
USER1, USER2, GROUP = 'vspct1', 'vspct2', 'vspcops'
SEQ_ANY = re.compile(rb'vm-\d{5}:- \d{10}')
SSHD = '/usr/sbin/sshd'

RULES = ('access:\n'
         '  - {who: "user:%s", consoles: "vm-00000", rights: [read]}\n'
         '  - {who: "group:%s", consoles: "vm-0000*", '
         'rights: [read, write]}\n' % (USER1, GROUP))


def _tool(name):
    return shutil.which(name) or shutil.which(name, path='/usr/sbin:/sbin')


def _run(*args, check=True):
    r = subprocess.run(list(args), capture_output=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError('%s failed (%d): %s' % (
            ' '.join(args), r.returncode,
            r.stderr.decode('utf-8', 'replace')))
    return r


def _drop_accounts():
    for u in (USER1, USER2):
        try:
            pwd.getpwnam(u)
        except KeyError:
            continue
        _run(_tool('userdel'), u, check=False)
    if subprocess.run(['getent', 'group', GROUP],
                      capture_output=True).returncode == 0:
        _run(_tool('groupdel'), GROUP, check=False)


class Users:
    """The throwaway accounts, shared by every class of this file."""

    refs = 0
    lock = None
    shared = None       # a 0755 directory every user can read
    vspc = None         # a copy of vspc in it

    @classmethod
    def acquire(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest('needs root (creates local users '
                                    '%s, %s and group %s)' %
                                    (USER1, USER2, GROUP))
        missing = [t for t in ('useradd', 'userdel', 'groupadd', 'groupdel',
                               'setpriv') if _tool(t) is None]
        if missing:
            raise unittest.SkipTest('missing %s (passwd/util-linux)' %
                                    ', '.join(missing))
        if cls.refs == 0:
            # One run at a time on this machine: the names are fixed.
            cls.lock = open('/tmp/vspc-test-unix-identity.lock', 'w')
            fcntl.flock(cls.lock, fcntl.LOCK_EX)
            _drop_accounts()            # leftovers of a killed run
            try:
                _run(_tool('groupadd'), GROUP)
                # -p '*': no password but not locked (sshd with UsePAM no
                # refuses locked accounts even with a key).
                _run(_tool('useradd'), '-M', '-s', '/bin/sh', '-p', '*',
                     USER1)
                _run(_tool('useradd'), '-M', '-s', '/bin/sh', '-p', '*',
                     '-G', GROUP, USER2)
                cls.shared = tempfile.mkdtemp(prefix='vspc-ux-')
                os.chmod(cls.shared, 0o755)
                cls.vspc = os.path.join(cls.shared, 'vspc')
                shutil.copy(vspctest.VSPC, cls.vspc)
                os.chmod(cls.vspc, 0o755)
            except BaseException:
                cls._cleanup()
                raise
        cls.refs += 1

    @classmethod
    def release(cls):
        cls.refs -= 1
        if cls.refs == 0:
            cls._cleanup()

    @classmethod
    def _cleanup(cls):
        _drop_accounts()
        if cls.shared is not None:
            shutil.rmtree(cls.shared, ignore_errors=True)
            cls.shared = None
        if cls.lock is not None:
            cls.lock.close()
            cls.lock = None


class Vspc:
    """vspc attach running as a user; stdout/stderr collected by threads."""

    def __init__(self, user, args, vspc):
        cmd = [vspc] + list(args)
        if user != 'root':
            cmd = [_tool('setpriv'), '--reuid=' + user, '--regid=' + user,
                   '--init-groups', '--'] + cmd
        env = {'PATH': '/usr/bin:/bin', 'HOME': '/', 'LANG': 'C'}
        self.user = user
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.out = bytearray()
        self.err = bytearray()
        self._threads = [threading.Thread(target=self._pump, args=(f, b),
                                          daemon=True)
                         for f, b in ((self.proc.stdout, self.out),
                                      (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(f, buf):
        while True:
            chunk = f.read1(65536)
            if not chunk:
                break
            buf += chunk

    def write(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def wait(self, timeout=10.0):
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        return rc

    def stop(self):
        """SIGTERM (vspc detaches and exits 0); the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.close_stdin()
        return self.wait()


class UnixBase(vspctest.VspcTestCase):

    @classmethod
    def setUpClass(cls):
        Users.acquire()
        cls.uid = {u: pwd.getpwnam(u).pw_uid for u in (USER1, USER2)}
        cls.uid['root'] = 0

    @classmethod
    def tearDownClass(cls):
        Users.release()

    def start(self, conf, nvms=2):
        d = Daemon(start=False)
        self._daemons.append(d)
        self.addCleanup(self._stop_daemon, d)
        os.chmod(d.dir, 0o755)          # listeners.json, the socket
        d.conf_path = os.path.join(d.dir, 'vspcd.conf')
        with open(d.conf_path, 'w') as f:
            f.write(conf)
        self.sock = os.path.join(d.dir, 'vspcd.sock')
        d.args += ['-f', d.conf_path, '--unix-listen', self.sock]
        d.start()
        self.assertEqual(d.listeners.get('unix'), self.sock)
        st = os.stat(self.sock)
        # Anyone may connect (vspcd decides by uid). The socket is 0777 in
        # fact (bind under umask 0), not 0666 as documented: harmless.
        self.assertEqual(st.st_mode & 0o666, 0o666, oct(st.st_mode))
        self.d = d
        self.sim1 = self.sim(d, ['--vms', str(nvms), '--rate', RATE,
                                 '--print-recv'])
        self.sim1.wait_ready(nvms)
        ps = d.wait_ports(lambda ps: len(ps) == nvms and
                          all(p['connected'] for p in ps))
        self.byname = {p['vm_name']: p for p in ps}
        wait_for(lambda: all(p['bytes_from_vm'] > 500 for p in d.ports()),
                 what='console output on every port')
        return d

    def vspc(self, user, *args):
        """vspc --state-dir STATE ARGS... as user; stopped at cleanup."""
        v = Vspc(user, ['--state-dir', self.d.dir] + list(args), Users.vspc)
        self.addCleanup(v.stop)
        return v

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

    def session(self, event, pid):
        src = 'unix:pid=%d' % pid
        return self.wait_audit(lambda r: r['event'] == event and
                               r.get('source') == src,
                               '%s record of pid %d' % (event, pid))

    def check_ident(self, rec, user, console):
        self.assertEqual(rec.get('kind'), 'unix', rec)
        self.assertEqual(rec.get('user'), user, rec)
        self.assertEqual(rec.get('uid'), self.uid[user], rec)
        self.assertEqual(rec.get('console'), self.byname[console]['id'], rec)
        self.assertRegex(rec.get('source', ''), r'^unix:pid=\d+$', rec)

    # -- streams --

    def check_stream(self, data, name, min_lines=10):
        n, first, errs = vspctest.verify_seq_stream(data, name, '-')
        self.assertEqual(errs, [], 'stream of %s' % name)
        self.assertGreaterEqual(n, min_lines, 'too few lines of %s in %r' %
                                (name, bytes(data[:300])))
        for other in SEQ_ANY.findall(data):
            self.assertTrue(other.startswith(name.encode() + b':'),
                            'foreign stream %r in %s' % (other, name))

    def wait_lines(self, v, n=20, timeout=10.0):
        wait_for(lambda: v.out.count(b'\r\n') >= n or
                 v.proc.poll() is not None, timeout, 0.05,
                 '%d lines on the stdout of vspc (%s)' % (n, v.user))
        self.assertIsNone(v.proc.poll(), 'vspc exited: %r' % bytes(v.err))

    def sim_port(self, vm):
        return self.sim1.status()['ports'][vm]

    def exit_code(self, v, timeout=10.0):
        """Wait for a client that must end by itself (a refusal)."""
        try:
            return v.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail('%s still running after %.0fs; stdout %r, stderr %r'
                      % (v.user, timeout, bytes(v.out[-500:]),
                         bytes(v.err[-500:])))


class TestUnixIdentity(UnixBase):

    def setUp(self):
        self.start(RULES)

    def test_read_only_user(self):
        p = self.byname['vm-00000']
        v = self.vspc(USER1, 'attach', 'vm-00000')
        att = self.session('attach', v.proc.pid)
        self.assertEqual(len(att), 1, att)
        self.check_ident(att[0], USER1, 'vm-00000')
        self.wait_lines(v)
        typed = b'TYPED-BY-VSPCT1 \xff\x00 rm -rf /\r' * 50
        v.write(typed)
        v.close_stdin()                 # EOF: vspc keeps relaying output
        time.sleep(0.6)
        n0 = v.out.count(b'\r\n')
        self.wait_lines(v, n0 + 20)     # still attached and reading
        self.assertEqual(self.d.port(p['id'])['clients'], 1)
        st = self.sim_port(0)
        self.assertEqual(st['received'], 0, st)
        self.assertEqual(self.sim_port(1)['received'], 0)
        self.assertEqual(self.sim1.events('recv '), [])
        self.assertEqual(self.d.port(p['id'])['bytes_to_vm'], 0)
        self.assertEqual(v.stop(), 0, bytes(v.err))
        self.assertIn(b'attached to vm-00000 [%s]' % p['id'].encode(),
                      bytes(v.err))
        self.check_stream(v.out, 'vm-00000')
        det = self.session('detach', v.proc.pid)
        self.assertEqual(len(det), 1, det)
        self.check_ident(det[0], USER1, 'vm-00000')
        self.assertEqual([r for r in self.audit() if r['event'] == 'denied'],
                         [])

    def test_refused(self):
        p = self.byname['vm-00001']
        for sel in ('vm-00001', p['id'], p['vm_uuid']):
            v = self.vspc(USER1, 'attach', sel)
            rc = self.exit_code(v)
            self.assertEqual(rc, 1, (sel, bytes(v.err)))
            self.assertEqual(bytes(v.out), b'', sel)
            self.assertIn(b"vspcd: no console named '%s'" % sel.encode(),
                          bytes(v.err))
            self.assertIsNone(SEQ_ANY.search(bytes(v.err)), bytes(v.err))
            den = self.session('denied', v.proc.pid)
            self.assertEqual(len(den), 1, den)
            self.check_ident(den[0], USER1, 'vm-00001')
        # The same answer as for a console that does not exist.
        v = self.vspc(USER1, 'attach', 'vm-99999')
        self.assertEqual(self.exit_code(v), 1)
        self.assertEqual(bytes(v.err).replace(b'vm-99999', b'vm-00001'),
                         b"vspcd: no console named 'vm-00001'\n")
        self.assertEqual(self.d.port(p['id'])['clients'], 0)
        recs = self.audit()
        self.assertEqual([r for r in recs if r['event'] != 'denied'], [])
        self.assertEqual(self.sim_port(1)['received'], 0)

    def test_group_read_write(self):
        p = self.byname['vm-00001']
        v = self.vspc(USER2, 'attach', 'vm-00001')
        att = self.session('attach', v.proc.pid)
        self.check_ident(att[0], USER2, 'vm-00001')
        self.wait_lines(v)
        rnd = random.Random(11)
        # Every byte value but Ctrl-] (vspc's escape), 0xFF included.
        payload = bytes(b for b in (rnd.getrandbits(8)
                                    for _ in range(20000)) if b != 0x1d)
        payload += bytes(b for b in range(256) if b != 0x1d) + b' end\r'
        v.write(payload)
        wait_for(lambda: self.sim_port(1)['received'] >= len(payload),
                 10, 0.1, 'the VM receiving every typed byte')
        time.sleep(0.2)
        st = self.sim_port(1)
        self.assertEqual(st['received'], len(payload), st)
        self.assertEqual(st['recv_fnv'], '%08x' % vspctest.fnv1a32(payload))
        got = bytearray()
        for ln in self.sim1.events('recv '):
            f = ln.split()
            self.assertEqual((f[1], f[2]), ('1', '0'), ln)
            got += bytes.fromhex(f[3])
        self.assertEqual(bytes(got), payload)
        self.assertEqual(self.d.port(p['id'])['bytes_to_vm'], len(payload))
        self.assertEqual(self.sim_port(0)['received'], 0)
        # The group rule covers vm-00000 too.
        v0 = self.vspc(USER2, 'attach', '--no-replay', 'vm-00000')
        self.check_ident(self.session('attach', v0.proc.pid)[0], USER2,
                         'vm-00000')
        self.wait_lines(v0)
        v0.write(b'hi0')
        wait_for(lambda: self.sim_port(0)['received'] == 3, 5, 0.05,
                 'input at vm-00000')
        self.assertEqual(v.stop(), 0, bytes(v.err))
        self.assertEqual(v0.stop(), 0, bytes(v0.err))
        self.check_stream(v.out, 'vm-00001')
        self.check_stream(v0.out, 'vm-00000')
        for x, name in ((v, 'vm-00001'), (v0, 'vm-00000')):
            det = self.session('detach', x.proc.pid)
            self.assertEqual(len(det), 1, det)
            self.check_ident(det[0], USER2, name)
        recs = self.audit()
        self.assertEqual({r['event'] for r in recs}, {'attach', 'detach'})
        self.assertEqual({r.get('user') for r in recs}, {USER2})
        self.assertNotIn(b'end\r', json.dumps(recs).encode())

    def test_root_anywhere(self):
        # No rule names root: uid 0 has every right anyway.
        vs = {}
        for name in ('vm-00000', 'vm-00001'):
            vs[name] = v = self.vspc('root', 'attach', name)
            self.check_ident(self.session('attach', v.proc.pid)[0], 'root',
                             name)
        for i, (name, v) in enumerate(sorted(vs.items())):
            self.wait_lines(v)
            v.write(b'root-%d' % i)
            wait_for(lambda: self.sim_port(i)['received'] == 6, 5, 0.05,
                     'root input at %s' % name)
        for name, v in vs.items():
            self.assertEqual(v.stop(), 0, bytes(v.err))
            self.check_stream(v.out, name)
            self.check_ident(self.session('detach', v.proc.pid)[0], 'root',
                             name)
        self.assertEqual([r for r in self.audit() if r['event'] == 'denied'],
                         [])


class TestUnixNoRules(UnixBase):
    """access: [] : nobody but root; vspct2's group does not help."""

    def test_only_root(self):
        self.start('access: []\n')
        v = self.vspc(USER2, 'attach', 'vm-00000')
        self.assertEqual(self.exit_code(v), 1)
        self.assertEqual(bytes(v.out), b'')
        self.assertEqual(bytes(v.err),
                         b"vspcd: no console named 'vm-00000'\n")
        self.check_ident(self.session('denied', v.proc.pid)[0], USER2,
                         'vm-00000')
        r = self.vspc('root', 'attach', 'vm-00000')
        self.check_ident(self.session('attach', r.proc.pid)[0], 'root',
                         'vm-00000')
        self.wait_lines(r)
        self.assertEqual(r.stop(), 0)
        self.check_stream(r.out, 'vm-00000')


# -- sshd --------------------------------------------------------------------

def _free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def force_command(vspc, sock):
    """The ForceCommand line of doc/sshd-vspc.conf, with test paths."""
    return '%s --client %s attach -- "$SSH_ORIGINAL_COMMAND"' % (vspc, sock)


@unittest.skipUnless(os.access(SSHD, os.X_OK),
                     '%s not installed (openssh-server, scripts/deps.sh)' %
                     SSHD)
@unittest.skipUnless(shutil.which('ssh') and shutil.which('ssh-keygen'),
                     'ssh/ssh-keygen not installed (openssh-client)')
class TestSshForceCommand(UnixBase):
    """vspct2 logs in over SSH and lands in a console as vspct2."""

    CONF = ('access:\n'
            '  - {who: "group:%s", consoles: "vm-00001", '
            'rights: [read, write]}\n' % GROUP)

    def doc_force_command(self):
        """The ForceCommand doc/sshd-vspc.conf recommends (its shape)."""
        path = os.path.join(vspctest.SRC, 'doc', 'sshd-vspc.conf')
        with open(path) as f:
            lines = [ln.strip() for ln in f
                     if ln.strip().startswith('ForceCommand ')]
        self.assertEqual(len(lines), 1, lines)
        return lines[0][len('ForceCommand '):]

    def start_sshd(self):
        self.tmp = tmp = tempfile.mkdtemp(prefix='vspc-sshd-')
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o755)
        hostkey = os.path.join(tmp, 'hostkey')
        self.key = os.path.join(tmp, 'userkey')
        for k in (hostkey, self.key):
            _run('ssh-keygen', '-q', '-N', '', '-t', 'ed25519', '-f', k)
        with open(self.key + '.pub') as f:
            pub = f.read()
        with open(os.path.join(tmp, 'keys-' + USER2), 'w') as f:
            f.write(pub)
        os.chmod(os.path.join(tmp, 'keys-' + USER2), 0o644)
        os.makedirs('/run/sshd', 0o755, exist_ok=True)   # privsep dir
        fc = force_command(Users.vspc, self.sock)
        # Same line as the doc, apart from the paths.
        self.assertEqual(
            re.sub(r'\S*/vspc --client \S+', 'vspc --client SOCK', fc),
            re.sub(r'\S*/vspc --client \S+', 'vspc --client SOCK',
                   self.doc_force_command()))
        conf = os.path.join(tmp, 'sshd_config')
        with open(conf, 'w') as f:
            f.write('ListenAddress 127.0.0.1\n'
                    'HostKey %s\n'
                    'PidFile none\n'
                    'UsePAM no\n'
                    'StrictModes no\n'
                    'AuthorizedKeysFile %s/keys-%%u\n'
                    'PasswordAuthentication no\n'
                    'KbdInteractiveAuthentication no\n'
                    'PubkeyAuthentication yes\n'
                    'AllowUsers %s\n'
                    'LogLevel VERBOSE\n'
                    'Match User %s\n'
                    '    ForceCommand %s\n'
                    '    PermitTTY yes\n'
                    '    DisableForwarding yes\n'
                    '    AllowTcpForwarding no\n'
                    '    AllowStreamLocalForwarding no\n'
                    '    X11Forwarding no\n'
                    '    PermitTunnel no\n'
                    '    AllowAgentForwarding no\n'
                    % (hostkey, tmp, USER2, USER2, fc))
        r = _run(SSHD, '-t', '-f', conf, check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        errpath = os.path.join(tmp, 'sshd.stderr')
        for attempt in range(5):
            self.ssh_port = _free_port()
            errf = open(errpath, 'ab')
            proc = subprocess.Popen([SSHD, '-D', '-e', '-f', conf, '-p',
                                     str(self.ssh_port)],
                                    stdin=subprocess.DEVNULL, stdout=errf,
                                    stderr=errf)
            errf.close()
            ok = False
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    socket.create_connection(('127.0.0.1', self.ssh_port),
                                             1).close()
                    ok = True
                    break
                except OSError:
                    time.sleep(0.05)
            if ok:
                break
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        else:
            self.fail('sshd did not start:\n' + vspctest._tail(errpath))
        self.sshd_err = errpath

        def stop():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.addCleanup(stop)

    def ssh(self, command):
        """ssh -tt vspct2@127.0.0.1 command, as root, output collected."""
        args = ['ssh', '-tt', '-F', '/dev/null', '-i', self.key,
                '-p', str(self.ssh_port),
                '-o', 'StrictHostKeyChecking=no',
                '-o', 'UserKnownHostsFile=/dev/null',
                '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes',
                '-o', 'LogLevel=ERROR',
                '%s@127.0.0.1' % USER2, command]
        v = _Ssh(args)
        self.addCleanup(v.stop)
        return v

    def run(self, result=None):
        # Print sshd's log when a test of this class fails.
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            if len(result.failures) + len(result.errors) > before and \
                    getattr(self, 'sshd_err', None):
                print('----- sshd stderr -----\n%s\n----- end -----' %
                      vspctest._tail(self.sshd_err), file=sys.stderr)

    def test_ssh_lands_in_console_as_user(self):
        self.start(self.CONF)
        self.start_sshd()
        p = self.byname['vm-00001']
        s = self.ssh('vm-00001')
        wait_for(lambda: s.out.count(b'vm-00001:- ') >= 20 or
                 s.proc.poll() is not None, 15, 0.05,
                 'the console stream over ssh')
        self.assertIsNone(s.proc.poll(), bytes(s.out[-2000:]))
        att = self.wait_audit(lambda r: r['event'] == 'attach',
                              'attach record')
        self.assertEqual(len(att), 1, att)
        self.check_ident(att[0], USER2, 'vm-00001')
        self.assertEqual(self.d.port(p['id'])['clients'], 1)
        s.write(b'over-ssh\r')
        wait_for(lambda: self.sim_port(1)['received'] == 9, 5, 0.05,
                 'ssh input at the VM')
        got = b''.join(bytes.fromhex(ln.split()[3])
                       for ln in self.sim1.events('recv '))
        self.assertEqual(got, b'over-ssh\r')
        s.write(b'\x1d.')               # Ctrl-] . : detach
        self.assertEqual(self.exit_code(s), 0, bytes(s.out[-2000:]))
        data = bytes(s.out)
        self.assertIn(b'attached to vm-00001 [%s]\r\n' % p['id'].encode(),
                      data)
        # vspc in raw mode on the remote pty: its notice goes to stderr,
        # the same pty, between two console writes; without it the stream
        # is the console's, byte for byte.
        notice = b'\r\n(escape: ^] . to detach, ^] ? for help)\r\n'
        self.assertEqual(data.count(notice), 1, data[-3000:])
        before, after = data.split(notice)
        # vspc makes the tty raw (and prints the notice) before any
        # console byte, replay included, so the stream is exact.
        self.assertNotIn(b'vm-00001:- ', before)
        stream = after
        self.check_stream(stream, 'vm-00001', 30)
        self.assertNotIn(b'\r\r\n', after)
        self.assertGreater(after.count(b'vm-00001:- '), 5)
        self.assertIn(b'attached to vm-00001 [%s]' % p['id'].encode(), data)
        self.wait_audit(lambda r: r['event'] == 'detach', 'detach record')
        # Not allowed for vspct2 (root could): refused, no byte of it.
        s0 = self.ssh('vm-00000')
        self.assertEqual(self.exit_code(s0), 1, bytes(s0.out))
        self.assertIn(b"vspcd: no console named 'vm-00000'", bytes(s0.out))
        self.assertIsNone(SEQ_ANY.search(bytes(s0.out)), bytes(s0.out))
        # The command is one console name, never shell.
        marker = os.path.join(self.tmp, 'injected')
        s1 = self.ssh('vm-00001; touch %s; id' % marker)
        self.assertEqual(self.exit_code(s1), 1, bytes(s1.out))
        self.assertIn(b"no console named 'vm-00001; touch", bytes(s1.out))
        self.assertNotIn(b'uid=', bytes(s1.out))
        self.assertFalse(os.path.exists(marker))
        self.assertEqual(self.sim_port(0)['received'], 0)
        recs = self.audit()
        self.assertEqual([r['event'] for r in recs],
                         ['attach', 'detach', 'denied'], recs)
        for r in recs:
            self.assertEqual((r['kind'], r['user'], r['uid']),
                             ('unix', USER2, self.uid[USER2]), r)
            self.assertNotEqual(r['uid'], 0, r)
        self.check_ident(recs[2], USER2, 'vm-00000')


class _Ssh(Vspc):
    """An ssh client process (stdout and stderr collected)."""

    def __init__(self, args):
        self.user = 'root'
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT,
                                     env={'PATH': '/usr/bin:/bin',
                                          'HOME': '/root', 'LANG': 'C'})
        self.out = bytearray()
        self.err = self.out
        self._threads = [threading.Thread(target=self._pump,
                                          args=(self.proc.stdout, self.out),
                                          daemon=True)]
        self._threads[0].start()


if __name__ == '__main__':
    vspctest.main()
