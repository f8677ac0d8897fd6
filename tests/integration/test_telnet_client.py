#!/usr/bin/env python3
"""The stock telnet client (Debian's `telnet` package, /usr/bin/telnet)
driven through a pty: character-at-a-time mode without local echo, 8-bit
clean both ways, Ctrl-] quit, and the front door."""

import errno
import os
import pty
import select
import signal
import sys
import termios
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import telnetc  # noqa: E402
import vspctest  # noqa: E402
from vspctest import esxi_uuid, norm_uuid  # noqa: E402

TELNET = os.environ.get('VSPC_TELNET', '/usr/bin/telnet')
TAG = 0x12345678
UTF8 = 'h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c'.encode()


class PtyTelnet:
    """/usr/bin/telnet HOST PORT on a pty; we play the user's terminal."""

    def __init__(self, port, host=vspctest.HOST):
        env = dict(os.environ, TERM='xterm', LC_ALL='C.UTF-8')
        env.pop('TELNETRC', None)
        pid, fd = pty.fork()
        if pid == 0:                    # child: the telnet process
            try:
                os.chdir('/')
                env['HOME'] = '/nonexistent'    # no ~/.telnetrc
                os.execve(TELNET, ['telnet', host, str(port)], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.out = bytearray()          # everything telnet wrote
        self.pos = 0                    # consumed by read_until
        self.status = None

    def _fill(self, timeout):
        r, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not r:
            return False
        try:
            b = os.read(self.fd, 65536)
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            b = b''
        if not b:
            self.poll(0.2)
            return None                 # telnet has gone
        self.out += b
        return True

    def read_until(self, marker, timeout=10.0):
        """Output up to and including marker (from the last match on)."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.out.find(marker, self.pos)
            if i >= 0:
                got = bytes(self.out[self.pos:i + len(marker)])
                self.pos = i + len(marker)
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError('telnet never printed %r; got %r' %
                                     (marker, bytes(self.out[self.pos:])))
            if self._fill(left) is None:
                raise AssertionError('telnet exited before %r; got %r' %
                                     (marker, bytes(self.out[self.pos:])))

    def read_for(self, seconds):
        """All output during the given time (consumed, with anything
        not yet consumed before it)."""
        start = self.pos
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._fill(left) is None:
                break
        self.pos = len(self.out)
        return bytes(self.out[start:])

    def type(self, data):
        os.write(self.fd, data)

    def lflag(self):
        """The pty's local modes (what telnet set for the terminal)."""
        return termios.tcgetattr(self.fd)[3]

    def poll(self, timeout=0.0):
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = st
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        return self.status

    def wait_exit(self, timeout=10.0):
        """Drain output until telnet exits; its exit code."""
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            self._fill(0.05)
        st = self.poll()
        if st is None:
            raise AssertionError('telnet still running; output %r' %
                                 bytes(self.out[-300:]))
        return os.waitstatus_to_exitcode(st)

    def close(self):
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -9
        os.close(self.fd)


@unittest.skipUnless(os.access(TELNET, os.X_OK),
                     '%s not found: install Debian\'s telnet package '
                     '(apt-get install telnet) to run these tests' % TELNET)
class TestStockTelnet(vspctest.VspcTestCase):

    def start(self, sim_args=()):
        self.d = self.daemon()
        self.sim_ = self.sim(self.d, ['--vms', '2', '--rate', '0',
                                      '--print-recv'] + list(sim_args))
        self.sim_.wait_ready(2)
        self.ports = {p['vm_name']: p for p in self.d.wait_ports(
            lambda ps: len(ps) == 2 and all(p['connected'] for p in ps))}

    def telnet(self, port):
        t = PtyTelnet(port)
        self.addCleanup(t.close)
        t.read_until(b'Escape character is', 10)
        return t

    def wait_char_mode(self, t):
        """telnet switched the terminal to character mode, no local echo."""
        deadline = time.monotonic() + 10
        while True:
            lf = t.lflag()
            if not lf & (termios.ECHO | termios.ICANON):
                return lf
            if time.monotonic() > deadline:
                self.fail('telnet never left line mode (lflag %#o); '
                          'output %r' % (lf, bytes(t.out)))
            t._fill(0.05)

    def recv(self, vm, want, timeout=10.0):
        """VM vm's console input, accumulated until it holds want."""
        got = bytearray()
        deadline = time.monotonic() + timeout
        while want not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail('VM %d received %r, not %r' % (vm, bytes(got),
                                                         want))
            try:
                ln = self.sim_.wait_event('recv ', min(left, 0.5))
            except AssertionError:
                continue
            f = ln.split()
            self.assertEqual((int(f[1]), int(f[2])), (vm, 0), ln)
            got += bytes.fromhex(f[3])
        return bytes(got)

    def quit(self, t):
        """Ctrl-] then quit ends telnet (exit code 0)."""
        t.type(b'\x1d')
        t.read_until(b'telnet>', 5)
        t.type(b'quit\r')
        self.assertEqual(t.wait_exit(10), 0)
        self.d.wait_ports(lambda ps: all(p['clients'] == 0 for p in ps))

    def test_char_mode_no_local_echo(self):
        self.start()
        t = self.telnet(self.ports['vm-00001']['client_port'])
        self.wait_char_mode(t)
        self.d.wait_ports(lambda ps: sum(p['clients'] for p in ps) == 1)
        t.read_for(0.3)
        mark = len(t.out)
        # No newline: in character mode each key goes out at once.
        t.type(b'abc')
        got = self.recv(1, b'abc', timeout=5)
        self.assertEqual(got, b'abc')
        # No local echo (and this VM does not echo).
        out = t.read_for(0.5)
        self.assertNotIn(b'a', bytes(t.out[mark:]), out)
        self.assertEqual(bytes(t.out[mark:]), b'')
        self.assertEqual(self.d.port(self.ports['vm-00001']['id'])
                         ['bytes_to_vm'], 3)
        self.quit(t)

    def test_echo_once(self):
        self.start(['--echo'])
        t = self.telnet(self.ports['vm-00000']['client_port'])
        self.wait_char_mode(t)
        t.read_for(0.3)
        mark = len(t.out)
        t.type(b'abc')
        self.recv(0, b'abc', timeout=5)
        t.read_until(b'abc', 5)
        t.read_for(0.5)
        self.assertEqual(bytes(t.out[mark:]), b'abc')
        self.quit(t)

    def test_8bit_clean(self):
        self.start()
        t = self.telnet(self.ports['vm-00000']['client_port'])
        self.wait_char_mode(t)
        t.read_for(0.3)
        # VM -> terminal: a Latin-1 byte, UTF-8 text, and 0xFF.
        payload = b'<<\xe9|' + UTF8 + b'|\xff\x80\x7f>>'
        self.sim_.send(0, 0, payload)
        got = t.read_until(b'>>', 5)
        self.assertEqual(got, payload)
        # Terminal -> VM: UTF-8 typed by the user arrives intact.
        t.type('\u00e9\u2713'.encode())
        self.assertEqual(self.recv(0, '\u00e9\u2713'.encode()),
                         '\u00e9\u2713'.encode())
        self.quit(t)

    def test_frontdoor(self):
        self.start()
        t = self.telnet(self.d.client_port)
        t.read_until(telnetc.PROMPT, 10)
        self.wait_char_mode(t)
        t.type(b'vm-0000')
        t.type(b'1\r')
        line = 'attached to vm-00001 [%s]' % norm_uuid(esxi_uuid(TAG, 1))
        got = t.read_until(line.encode() + b'\r\n', 10)
        # The daemon echoed the name (telnet itself did not).
        self.assertEqual(got.count(b'vm-00001'), 2, got)
        self.d.wait_ports(lambda ps: ps[0]['clients'] + ps[1]['clients'] == 1
                          and [p for p in ps if p['vm_name'] == 'vm-00001']
                          [0]['clients'] == 1)
        t.type(b'xyz')
        # Exactly what was typed after the name: no stray LF or NUL.
        self.assertEqual(self.recv(1, b'xyz', timeout=5), b'xyz')
        self.sim_.send(1, 0, b'from vm-00001\r\n')
        t.read_until(b'from vm-00001\r\n', 5)
        self.quit(t)

    def test_frontdoor_unknown_then_valid(self):
        self.start()
        t = self.telnet(self.d.client_port)
        t.read_until(telnetc.PROMPT, 10)
        self.wait_char_mode(t)
        t.type(b'nosuch\r')
        t.read_until(b"vspcd: no console named 'nosuch'\r\n", 5)
        t.read_until(telnetc.PROMPT, 5)
        t.type(norm_uuid(esxi_uuid(TAG, 0)).encode() + b'\r')
        t.read_until(b'attached to vm-00000 [', 5)
        t.type(b'q')
        self.assertEqual(self.recv(0, b'q', timeout=5), b'q')
        self.quit(t)

    def test_control_without_offer(self):
        """Control for the checks above: against a server that offers
        nothing, telnet stays in line mode and echoes locally."""
        import socket
        srv = socket.create_server((vspctest.HOST, 0))
        self.addCleanup(srv.close)
        t = PtyTelnet(srv.getsockname()[1])
        self.addCleanup(t.close)
        conn, _ = srv.accept()
        self.addCleanup(conn.close)
        t.read_until(b'Escape character is', 10)
        t.read_for(0.5)
        lf = t.lflag()
        self.assertTrue(lf & termios.ECHO and lf & termios.ICANON, oct(lf))
        t.type(b'abc')
        self.assertIn(b'abc', t.read_for(0.5))
        conn.settimeout(0.5)
        try:
            early = conn.recv(100)
        except socket.timeout:
            early = b''
        self.assertNotIn(b'abc', early)     # line mode: held until Enter


if __name__ == '__main__':
    vspctest.main()
