"""Harness for the vspcd integration tests (Python 3 stdlib only).

Each tests/integration/test_*.py is a standalone unittest script. Binaries
come from $VSPCD, $VSPC_SIM and $VSPC (ctest sets them), else from
$VSPC_SRC/build/. Everything stays on 127.0.0.1 with ephemeral ports.

    class TestX(vspctest.VspcTestCase):
        def test_y(self):
            d = self.daemon()                   # started, stopped at cleanup
            sim = self.sim(d, ['--vms', '3'])
            sim.wait_ready(3)
            d.wait_ports(lambda ps: len(ps) == 3)
            tn, line = telnetc.frontdoor_attach('127.0.0.1', d.client_port,
                                                'vm-00000')

Daemon and Sim also work as context managers. When a test fails, the
stderr of every daemon and sim it started is printed; set VSPC_TEST_KEEP=1
to keep the temporary state directories.

Run this file to self-test the helpers that need no daemon.
"""

import http.client
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import telnetc  # noqa: E402

HOST = '127.0.0.1'
SRC = os.environ.get('VSPC_SRC') or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))


def _binary(env, name):
    path = os.environ.get(env)
    if path:
        return path
    return os.path.join(SRC, 'build', name)


VSPCD = _binary('VSPCD', 'vspcd')
VSPC_SIM = _binary('VSPC_SIM', 'vspc-sim')
VSPC = _binary('VSPC', 'vspc')


def scale():
    """'small' under the sanitizer build (VSPC_TEST_SCALE=small), else 'full'."""
    return 'small' if os.environ.get('VSPC_TEST_SCALE') == 'small' else 'full'


def wait_for(pred, timeout=10.0, interval=0.05, what='condition'):
    """Poll pred() until it returns a true value; return it or fail."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError('timed out after %.1fs waiting for %s' %
                                 (timeout, what))
        time.sleep(interval)


def _tail(path, limit=20000):
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:
        return ''
    if len(data) > limit:
        data = b'...\n' + data[-limit:]
    return data.decode('utf-8', 'replace')


# -- seq stream ---------------------------------------------------------------

def fnv1a32(data):
    """FNV-1a 32-bit hash of bytes (or str, as UTF-8)."""
    if isinstance(data, str):
        data = data.encode()
    h = 0x811c9dc5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xffffffff
    return h


def _seq_text(name, label, n):
    return '%s:%s %010u' % (name, label, n)


def seq_line(name, label, n):
    """The exact line vspc-sim --mode seq emits for sequence number n."""
    text = _seq_text(name, label, n)
    return ('%s %08x\r\n' % (text, fnv1a32(text))).encode()


_NOTICE = re.compile(rb'^\[vspcd: .*\]$')


def verify_seq_stream(data, name, label, allow_gaps=False):
    """Check a received seq stream: (count, first_seq, errors).

    count is the number of good lines, first_seq the first good sequence
    number (None if none). A partial first and last line are expected (a
    client can attach mid-line). Daemon notices ("[vspcd: ...]" lines) are
    skipped; the sequence may jump forwards right after one, and the lines
    next to one may be partial. With allow_gaps, any forward jump is fine.
    errors lists strings describing bad lines, checksums and gaps.
    """
    prefix = ('%s:%s ' % (name, label)).encode()
    lines = bytes(data).split(b'\r\n')
    lines.pop()                   # incomplete tail (or b'')
    errors = []
    count = 0
    first = expect = None
    notice_at = {i for i, ln in enumerate(lines) if _NOTICE.match(ln)}
    after_notice = False
    for i, ln in enumerate(lines):
        if i in notice_at:
            after_notice = True
            continue
        near_notice = (i + 1) in notice_at or after_notice
        ok = (ln.startswith(prefix) and len(ln) == len(prefix) + 19 and
              ln[len(prefix) + 10:len(prefix) + 11] == b' ')
        if ok:
            digits = ln[len(prefix):len(prefix) + 10]
            hexsum = ln[len(prefix) + 11:]
            ok = digits.isdigit() and re.fullmatch(rb'[0-9a-f]{8}', hexsum)
        if not ok:
            if i == 0 or near_notice:
                continue          # partial line at the start or at a skip
            errors.append('line %d: malformed %r' % (i, ln[:120]))
            continue
        seq = int(digits)
        text = ln[:len(prefix) + 10]
        if int(hexsum, 16) != fnv1a32(text):
            errors.append('line %d: bad checksum %r' % (i, ln))
            continue
        if expect is not None and seq != expect:
            if seq > expect and (allow_gaps or after_notice):
                pass
            else:
                errors.append('line %d: seq %d, expected %d' %
                              (i, seq, expect))
        if first is None:
            first = seq
        expect = seq + 1
        count += 1
        after_notice = False
    return count, first, errors


# -- daemon ---------------------------------------------------------------

class Daemon:
    """A vspcd on 127.0.0.1 ephemeral ports with a temporary state dir."""

    def __init__(self, extra_args=(), port_range='0', start=True,
                 vm_listen=None, client_listen=HOST + ':0',
                 admin_listen=HOST + ':0', env=None):
        self.dir = tempfile.mkdtemp(prefix='vspcd-test-')
        self.state_dir = self.dir
        self.stderr_path = os.path.join(self.dir, 'vspcd.stderr')
        self.args = [VSPCD, '-d', '--state-dir', self.dir]
        for v in (vm_listen or [HOST + ':0']):
            self.args += ['--vm-listen', v]
        self.args += ['--client-listen', client_listen,
                      '--admin-listen', admin_listen]
        if port_range is not None:
            self.args += ['--port-range', str(port_range)]
        self.args += list(extra_args)
        self.env = env
        self.proc = None
        self.returncode = None
        self.vm_ports = []
        self.vm_port = self.client_port = self.admin_port = None
        self.listeners = None
        if start:
            self.start()

    def start(self, timeout=10.0):
        """Start vspcd and wait for listeners.json."""
        lpath = os.path.join(self.dir, 'listeners.json')
        if os.path.exists(lpath):
            os.unlink(lpath)
        self._errf = open(self.stderr_path, 'ab')
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=self._errf, stderr=self._errf,
                                     env=self.env)
        self.returncode = None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise AssertionError('vspcd exited with %d at start:\n%s\n%s'
                                     % (self.proc.returncode,
                                        ' '.join(self.args), self.stderr()))
            try:
                with open(lpath) as f:
                    self.listeners = json.load(f)
                break
            except (OSError, ValueError):
                pass
            if time.monotonic() >= deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError('vspcd wrote no %s within %.0fs:\n%s'
                                     % (lpath, timeout, self.stderr()))
            time.sleep(0.02)
        li = self.listeners
        self.pid = li.get('pid', self.proc.pid)
        self.vm_ports = list(li.get('vm') or [])
        self.vm_port = self.vm_ports[0] if self.vm_ports else None
        self.client_port = li.get('client')
        self.admin_port = li.get('admin')
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        """Everything vspcd wrote to stderr/stdout so far."""
        return _tail(self.stderr_path)

    def dump(self, file=None):
        print('----- vspcd stderr (%s) -----\n%s\n----- end -----' %
              (self.dir, self.stderr()), file=file or sys.stderr)

    # -- admin API --

    def api_raw(self, path, method='GET', timeout=10.0):
        """(status, headers dict, body bytes) for one admin request."""
        conn = http.client.HTTPConnection(HOST, self.admin_port,
                                          timeout=timeout)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def api(self, path, timeout=10.0):
        """GET path from the admin API; the parsed JSON (asserts 200)."""
        status, _, body = self.api_raw(path, timeout=timeout)
        if status != 200:
            raise AssertionError('GET %s -> %d: %r' % (path, status,
                                                      body[:500]))
        return json.loads(body)

    def ports(self):
        """The list of PORT objects from /api/v1/ports."""
        return self.api('/api/v1/ports')['ports']

    def healthz(self):
        return self.api('/healthz')

    def port(self, key, value=None):
        """The port whose id is key (or whose key field equals value)."""
        for p in self.ports():
            if (value is None and p['id'] == key) or \
                    (value is not None and p.get(key) == value):
                return p
        return None

    def wait_ports(self, pred, timeout=10.0, interval=0.05):
        """Poll the port list until pred(list) is true; return the list."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = self.ports()
            if pred(last):
                return last
            if time.monotonic() >= deadline:
                raise AssertionError('port list never matched within %.1fs; '
                                     'last: %s' % (timeout,
                                                   json.dumps(last)[:3000]))
            time.sleep(interval)

    def rss_kib(self):
        """Resident set size of vspcd in KiB."""
        with open('/proc/%d/status' % self.proc.pid) as f:
            for ln in f:
                if ln.startswith('VmRSS:'):
                    return int(ln.split()[1])
        raise AssertionError('no VmRSS for pid %d' % self.proc.pid)

    def fd_count(self):
        """Open file descriptors of vspcd."""
        return len(os.listdir('/proc/%d/fd' % self.proc.pid))

    # -- CLI and clients --

    def vspc(self, *args, input=None, timeout=10.0):
        """Run vspc against this daemon (via --state-dir)."""
        return subprocess.run([VSPC, '--state-dir', self.dir] + list(args),
                              input=input, capture_output=True,
                              timeout=timeout)

    def attach(self, name, timeout=10.0, **kw):
        """Front-door attach: (telnetc.Telnet, reply line)."""
        return telnetc.frontdoor_attach(HOST, self.client_port, name,
                                        timeout, **kw)

    def connect_port(self, client_port, timeout=10.0, **kw):
        """Telnet client on a per-port listener."""
        return telnetc.Telnet(HOST, client_port, timeout, **kw)

    # -- lifetime --

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, expect=0, timeout=10.0, sig=signal.SIGTERM):
        """SIGTERM, wait, check the exit code (expect=None: any)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._errf.close()
                self.dump()
                raise AssertionError('vspcd did not exit within %.0fs of '
                                     'signal %d' % (timeout, sig))
        self._errf.close()
        self.returncode = self.proc.returncode
        if expect is not None and self.returncode != expect:
            self.dump()
            raise AssertionError('vspcd exit code %d, expected %d' %
                                 (self.returncode, expect))
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        """Kill if still running and remove the state dir (unless kept)."""
        self.kill()
        if not os.environ.get('VSPC_TEST_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.stop()
            else:
                self.kill()
                self.dump()
        finally:
            self.cleanup()


# -- simulated ESXi fleet -------------------------------------------------------

class Sim:
    """vspc-sim --control against a daemon; stdout events are collected."""

    def __init__(self, daemon, args=(), control=True, target=None):
        self.daemon = daemon
        tgt = target or '%s:%d' % (HOST, daemon.vm_port)
        self.args = [VSPC_SIM, '--target', tgt]
        if control:
            self.args.append('--control')
        self.args += list(args)
        fd, self.stderr_path = tempfile.mkstemp(
            prefix='vspc-sim-', suffix='.stderr',
            dir=getattr(daemon, 'dir', None))
        self._errf = os.fdopen(fd, 'wb')
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=self._errf)
        self.lines = []           # every stdout line, in order
        self._pending = []        # lines not yet consumed by wait_event
        self._cv = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            ln = raw.decode('utf-8', 'replace').rstrip('\r\n')
            with self._cv:
                self.lines.append(ln)
                self._pending.append(ln)
                self._cv.notify_all()
        with self._cv:
            self._eof = True
            self._cv.notify_all()

    def stderr(self):
        return _tail(self.stderr_path)

    def dump(self, file=None):
        print('----- vspc-sim stderr -----\n%s\n----- end -----' %
              self.stderr(), file=file or sys.stderr)

    def wait_event(self, prefix, timeout=10.0):
        """Consume and return the first unconsumed line starting with prefix.

        Lines that do not match stay queued for later waits.
        """
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for i, ln in enumerate(self._pending):
                    if ln.startswith(prefix):
                        del self._pending[i]
                        return ln
                left = deadline - time.monotonic()
                if self._eof:
                    raise AssertionError('vspc-sim exited (%s) before %r; '
                                         'stderr:\n%s' % (self.proc.poll(),
                                                          prefix,
                                                          self.stderr()))
                if left <= 0:
                    raise AssertionError('no %r from vspc-sim within %.1fs; '
                                         'last lines: %r' %
                                         (prefix, timeout, self.lines[-10:]))
                self._cv.wait(left)

    def events(self, prefix=''):
        """Consume and return every queued line starting with prefix."""
        with self._cv:
            got = [ln for ln in self._pending if ln.startswith(prefix)]
            self._pending = [ln for ln in self._pending
                             if not ln.startswith(prefix)]
            return got

    def wait_ready(self, n, timeout=10.0):
        """Wait for n 'ready' events; return [(vm, port)...]."""
        deadline = time.monotonic() + timeout
        out = []
        for _ in range(n):
            ln = self.wait_event('ready ', max(deadline - time.monotonic(), 0))
            f = ln.split()
            out.append((int(f[1]), int(f[2])))
        return out

    def cmd(self, line):
        """Send one control command line."""
        self.proc.stdin.write(line.encode() + b'\n')
        self.proc.stdin.flush()

    def send(self, vm, port, data):
        """Emit bytes as console output of (vm, port)."""
        self.cmd('send %d %d %s' % (vm, port, bytes(data).hex()))

    def status(self, timeout=10.0):
        """The parsed JSON of a 'status' command."""
        self.events('status ')    # drop stale answers
        self.cmd('status')
        return json.loads(self.wait_event('status ', timeout)[7:])

    def stop(self, timeout=5.0):
        """quit, then terminate/kill if needed; the exit code."""
        if self.proc.poll() is None:
            try:
                self.cmd('quit')
                self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self._reader.join(timeout)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._errf.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        if exc_type is not None:
            self.dump()


# -- raw VM side ----------------------------------------------------------------

VMWARE_EXT = 232
KNOWN_SUBOPTIONS_1, KNOWN_SUBOPTIONS_2 = 0, 1
DO_PROXY, WILL_PROXY, WONT_PROXY = 70, 71, 73
VM_VC_UUID, GET_VM_VC_UUID, VM_NAME, GET_VM_NAME = 80, 81, 82, 83
VMOTION_BEGIN, VMOTION_GOAHEAD, VMOTION_NOTNOW = 40, 41, 43
VMOTION_PEER, VMOTION_PEER_OK, VMOTION_COMPLETE, VMOTION_ABORT = 44, 45, 46, 48
ESXI_KS1 = bytes([0, 1, 2, 3, 40, 41, 43, 44, 45, 46, 48, 70, 71, 73, 80,
                  81, 84, 85, 86, 87, 82, 83])


def vmw_sb(cmd, payload=b''):
    """IAC SB 232 cmd payload IAC SE, with 0xFF doubled in the payload."""
    payload = bytes(payload).replace(b'\xff', b'\xff\xff')
    return bytes([255, 250, VMWARE_EXT, cmd]) + payload + bytes([255, 240])


def esxi_uuid(tag=0x12345678, i=0):
    """A VC UUID the way ESXi sends it (same scheme as vspc-sim)."""
    b = bytes([0x50]) + tag.to_bytes(4, 'big') + bytes(3) + \
        i.to_bytes(8, 'big')
    h = ['%02x' % x for x in b]
    return ' '.join(h[:8]) + '-' + ' '.join(h[8:])


def norm_uuid(raw):
    """Normalise a UUID like vspcd: hex digits only, lowercase."""
    return re.sub(r'[\s-]', '', raw).lower()


class RawVM(telnetc.Telnet):
    """A raw TCP connection to the VM listener for byte-exact sessions.

    Nothing is decoded or answered: read_* see the daemon's bytes verbatim
    and send() sends bytes verbatim.
    """

    def __init__(self, daemon, timeout=10.0, port=None, tls=None):
        super().__init__(HOST, port or daemon.vm_port, timeout, raw=True,
                         tls=tls)
        self.daemon = daemon

    def send_hex(self, text):
        """Send bytes written as hex (spaces and newlines allowed)."""
        self.send(bytes.fromhex(re.sub(r'\s', '', text)))

    def expect(self, data, timeout=10.0):
        """Read len(data) bytes and assert they are exactly data."""
        got = self.read_exactly(len(data), timeout)
        if got != data:
            raise AssertionError('expected %s, got %s' %
                                 (data.hex(' '), got.hex(' ')))
        return got

    def identify(self, name='vm-raw', uuid=None, uri='vSPC.py',
                 direction='S', wait=True, timeout=10.0):
        """Do the ESXi side of the handshake; wait for WILL-PROXY.

        Sends WILL 232, KNOWN-SUBOPTIONS-1, DO-PROXY, VM-VC-UUID and
        VM-NAME without waiting for the GET-* requests (ESXi answers them;
        sending early is also legal). Returns the bytes read up to and
        including WILL-PROXY (or b'' if wait is false).
        """
        uuid = uuid or esxi_uuid()
        self.send(bytes([255, 251, VMWARE_EXT]) +
                  vmw_sb(KNOWN_SUBOPTIONS_1, ESXI_KS1) +
                  vmw_sb(DO_PROXY, direction.encode() + uri.encode()) +
                  vmw_sb(VM_VC_UUID, uuid.encode()) +
                  vmw_sb(VM_NAME, name.encode()))
        if not wait:
            return b''
        return self.read_until(vmw_sb(WILL_PROXY), timeout)


# -- test case base ---------------------------------------------------------------

class VspcTestCase(unittest.TestCase):
    """TestCase that owns its daemons and sims and dumps their stderr
    when the test fails."""

    def run(self, result=None):
        self._daemons = []
        self._sims = []
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            failed = len(result.failures) + len(result.errors) > before
            for s in self._sims:
                if failed:
                    s.dump()
            for d in self._daemons:
                if failed:
                    d.dump()
                d.cleanup()

    def daemon(self, *args, **kw):
        """Start a Daemon, stopped (exit code 0 checked) at cleanup."""
        d = Daemon(*args, **kw)
        self._daemons.append(d)
        self.addCleanup(self._stop_daemon, d)
        return d

    def _stop_daemon(self, d):
        if d.proc is not None and d.returncode is None:
            d.stop()

    def sim(self, daemon, args=(), **kw):
        """Start a Sim, stopped at cleanup (before its daemon)."""
        s = Sim(daemon, args, **kw)
        self._sims.append(s)
        self.addCleanup(s.stop)
        return s

    def telnet(self, port, **kw):
        """A telnetc.Telnet to 127.0.0.1:port, closed at cleanup."""
        tn = telnetc.Telnet(HOST, port, **kw)
        self.addCleanup(tn.close)
        return tn

    def attach(self, daemon, name, **kw):
        """Front-door attach, closed at cleanup: (Telnet, line)."""
        tn, line = daemon.attach(name, **kw)
        self.addCleanup(tn.close)
        return tn, line

    def raw_vm(self, daemon, **kw):
        vm = RawVM(daemon, **kw)
        self.addCleanup(vm.close)
        return vm


def main():
    """unittest.main with buffered output off (daemon dumps go to stderr)."""
    unittest.main(verbosity=2)


# -- self-test -------------------------------------------------------------------

if __name__ == '__main__':
    class SelfTest(unittest.TestCase):
        def test_fnv(self):
            self.assertEqual(fnv1a32(b''), 0x811c9dc5)
            self.assertEqual(fnv1a32(b'a'), 0xe40c292c)
            self.assertEqual(fnv1a32(b'foobar'), 0xbf9cf968)

        def test_seq_roundtrip(self):
            data = b''.join(seq_line('vm-00001', 'com1', n)
                            for n in range(5, 105))
            self.assertEqual(len(seq_line('vm-1', 'com1', 7)),
                             len('vm-1:com1 ') + 19 + 2)
            self.assertEqual(verify_seq_stream(data, 'vm-00001', 'com1'),
                             (100, 5, []))
            # Partial first and last lines are fine.
            self.assertEqual(verify_seq_stream(data[7:-9], 'vm-00001',
                                               'com1'), (98, 6, []))

        def test_seq_errors(self):
            ls = [seq_line('v', 'l', n) for n in range(10)]
            gap = b''.join(ls[:3] + ls[4:])
            c, f, e = verify_seq_stream(gap, 'v', 'l')
            self.assertEqual((c, f, len(e)), (9, 0, 1))
            self.assertEqual(verify_seq_stream(gap, 'v', 'l',
                                               allow_gaps=True)[2], [])
            bad = b''.join(ls[:3]) + ls[3].replace(b'3 ', b'9 ') + ls[4]
            self.assertEqual(len(verify_seq_stream(bad, 'v', 'l')[2]), 2)
            wrong = b''.join(ls[:2]) + seq_line('w', 'l', 2) + ls[3]
            self.assertEqual(len(verify_seq_stream(wrong, 'v', 'l')[2]), 2)
            skip = b''.join(ls[:3]) + ls[3][:5] + \
                b'\r\n[vspcd: 300 bytes skipped, client too slow]\r\n' + \
                ls[6][4:] + b''.join(ls[7:])
            self.assertEqual(verify_seq_stream(skip, 'v', 'l'),
                             (6, 0, []))

        def test_uuid(self):
            u = esxi_uuid(0x12345678, 1)
            self.assertEqual(u, '50 12 34 56 78 00 00 00-'
                                '00 00 00 00 00 00 00 01')
            self.assertEqual(norm_uuid(u),
                             '50123456780000000000000000000001')

        def test_vmw_sb(self):
            self.assertEqual(vmw_sb(WILL_PROXY), bytes.fromhex('fffae847fff0'))
            self.assertEqual(vmw_sb(DO_PROXY, b'S\xff'),
                             bytes.fromhex('fffae84653fffffff0'))

        def test_scale(self):
            self.assertIn(scale(), ('small', 'full'))

    have_bins = all(os.access(b, os.X_OK) for b in (VSPCD, VSPC_SIM, VSPC))

    @unittest.skipUnless(have_bins, 'vspcd/vspc-sim/vspc not built')
    class SelfTestEndToEnd(VspcTestCase):
        def test_fleet_list_attach(self):
            d = self.daemon()
            sim = self.sim(d, ['--vms', '3', '--rate', '4000'])
            sim.wait_ready(3)
            ps = d.wait_ports(lambda ps: len(ps) == 3 and
                              all(p['connected'] for p in ps))
            r = d.vspc('list')
            self.assertEqual(r.returncode, 0, r.stderr)
            for p in ps:
                self.assertIn(p['id'].encode(), r.stdout)
            r = d.vspc('list', '--json')
            self.assertEqual(len(json.loads(r.stdout)['ports']), 3)
            tn, line = self.attach(d, 'vm-00001')
            self.assertTrue(line.startswith('attached to vm-00001 ['), line)
            data = tn.read_for(1.0)
            n, first, errs = verify_seq_stream(data, 'vm-00001', '-')
            self.assertGreater(n, 3)
            self.assertEqual(errs, [])
            tn2, line = self.attach(d, 'no-such-vm')
            self.assertEqual(line, "vspcd: no console named 'no-such-vm'")
            vm = self.raw_vm(d)
            vm.identify(name='raw-vm', uuid=esxi_uuid(0xabcdef01, 7))
            d.wait_ports(lambda ps: any(p['vm_name'] == 'raw-vm'
                                        for p in ps))
            tn3, line = self.attach(d, 'raw-vm')
            vm.send(b'x\xff\xffy\r\n')
            self.assertEqual(tn3.read_until(b'\r\n', 5), b'x\xffy\r\n')
            tn3.send(b'\xffz')
            vm.read_until(b'\xff\xffz', 5)
            self.assertEqual(sim.status()['ports'][1]['ready'], True)

    unittest.main()
