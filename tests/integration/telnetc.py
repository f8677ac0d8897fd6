"""Small telnet client for the integration tests (Python 3 stdlib only).

Telnet(host, port, timeout=10, binary=True, raw=False)
    A client that agrees to the server's WILL ECHO/SGA/BINARY with DO and to
    DO SGA/BINARY with WILL (DO BINARY is refused when binary=False), refuses
    every other option, ignores subnegotiations and un-doubles 0xFF. Every
    negotiation byte received is kept in .neg_bytes, and the parsed
    (command, option) pairs in .negotiations (SB as (SB, opt, payload)),
    two-byte commands in .commands. With raw=True nothing is decoded or
    answered and send() does not double 0xFF (a non-negotiating client).

frontdoor_attach(host, port, name, timeout=10, **kw) -> (Telnet, line)
    Connect to the front door, wait for the prompt, send the name and return
    the client and the reply line ("attached to ..." or "vspcd: ...").

Run this file to self-test it against a tiny in-process telnet server.
"""

import select
import socket
import ssl
import time

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
NOP, AYT, IP, BRK = 241, 246, 244, 243
BINARY, ECHO, SGA = 0, 1, 3

PROMPT = b'console (name, uuid or id): '


class Telnet:
    """A telnet client connection with a buffered, decoded input side."""

    def __init__(self, host=None, port=None, timeout=10.0, binary=True,
                 raw=False, tls=None):
        self.sock = None
        self.tls = tls            # an ssl.SSLContext: speak TLS
        self.raw = raw
        self.binary = binary
        self.accept_him = {ECHO, SGA, BINARY}
        self.accept_us = {SGA, BINARY} if binary else {SGA}
        self.him = set()          # options enabled on the server's side
        self.us = set()           # options enabled on our side
        self.buf = bytearray()    # decoded data not yet read
        self.neg_bytes = bytearray()
        self.negotiations = []
        self.commands = []
        self.sent = bytearray()   # negotiation replies we sent
        self.eof = False
        self._state = 0           # 0 data, 1 IAC, 2 neg, 3 SB, 4 SB IAC
        self._cmd = 0
        self._sb = bytearray()
        if host is not None:
            self.connect(host, port, timeout)

    def connect(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            self.sock = self.tls.wrap_socket(self.sock,
                                             server_hostname=host)
        self.sock.setblocking(False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- output ----------------------------------------------------------

    def send_raw(self, data):
        """Send bytes exactly as given."""
        self.sock.setblocking(True)
        try:
            self.sock.sendall(bytes(data))
        finally:
            self.sock.setblocking(False)

    def send(self, data):
        """Send console data, doubling 0xFF unless raw."""
        data = bytes(data)
        if not self.raw:
            data = data.replace(b'\xff', b'\xff\xff')
        self.send_raw(data)

    def send_cmd(self, cmd, opt=None):
        """Send IAC cmd [opt]."""
        self.send_raw(bytes([IAC, cmd] + ([] if opt is None else [opt])))

    def _reply(self, cmd, opt):
        b = bytes([IAC, cmd, opt])
        self.sent += b
        try:
            self.send_raw(b)
        except ssl.SSLError:
            pass              # TLS peer gone: the read side sees the EOF

    # -- decoder ---------------------------------------------------------

    def _negotiate(self, cmd, opt):
        self.negotiations.append((cmd, opt))
        if cmd == WILL:
            if opt in self.him:
                return
            if opt in self.accept_him:
                self.him.add(opt)
                self._reply(DO, opt)
            else:
                self._reply(DONT, opt)
        elif cmd == WONT:
            if opt in self.him:
                self.him.discard(opt)
                self._reply(DONT, opt)
        elif cmd == DO:
            if opt in self.us:
                return
            if opt in self.accept_us:
                self.us.add(opt)
                self._reply(WILL, opt)
            else:
                self._reply(WONT, opt)
        elif cmd == DONT:
            if opt in self.us:
                self.us.discard(opt)
                self._reply(WONT, opt)

    def feed(self, data):
        """Decode bytes from the server into self.buf."""
        if self.raw:
            self.buf += data
            return
        for c in data:
            st = self._state
            if st == 0:
                if c == IAC:
                    self._state = 1
                else:
                    self.buf.append(c)
                continue
            if st == 1:
                if c == IAC:
                    self.buf.append(IAC)
                    self._state = 0
                    continue
                self.neg_bytes += bytes([IAC, c])
                if c in (WILL, WONT, DO, DONT):
                    self._cmd = c
                    self._state = 2
                elif c == SB:
                    self._sb = bytearray()
                    self._state = 3
                else:
                    self.commands.append(c)
                    self._state = 0
                continue
            self.neg_bytes.append(c)
            if st == 2:
                self._state = 0
                self._negotiate(self._cmd, c)
            elif st == 3:
                if c == IAC:
                    self._state = 4
                else:
                    self._sb.append(c)
            elif st == 4:
                if c == IAC:
                    self._sb.append(IAC)
                    self._state = 3
                    continue
                # IAC SE ends the SB; any other IAC x also ends it.
                sb = bytes(self._sb)
                self.negotiations.append((SB, sb[:1] and sb[0], sb[1:]))
                self._state = 0

    def _fill(self, timeout):
        """Wait up to timeout for input; False on timeout or EOF."""
        if self.eof:
            return False
        pending = self.tls is not None and self.sock.pending() > 0
        r = pending or select.select([self.sock], [], [], max(timeout, 0))[0]
        if not r:
            return False
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        except ssl.SSLWantReadError:
            return True
        except ssl.SSLError:
            data = b''        # an alert or a broken record: the end
        except ConnectionResetError:
            data = b''
        if not data:
            self.eof = True
            return False
        self.feed(data)
        return True

    # -- input -----------------------------------------------------------

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, marker, timeout=10.0):
        """Data up to and including marker; TimeoutError/EOFError if not."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                return self._take(i + len(marker))
            left = deadline - time.monotonic()
            if self.eof:
                raise EOFError('EOF before %r; have %r' %
                               (marker, bytes(self.buf[-200:])))
            if left <= 0:
                raise TimeoutError('no %r within %.1fs; have %r' %
                                   (marker, timeout, bytes(self.buf[-200:])))
            self._fill(left)

    def read_exactly(self, n, timeout=10.0):
        """Exactly n data bytes; TimeoutError/EOFError if not."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if self.eof:
                raise EOFError('EOF after %d of %d bytes' % (len(self.buf), n))
            if left <= 0:
                raise TimeoutError('%d of %d bytes within %.1fs' %
                                   (len(self.buf), n, timeout))
            self._fill(left)
        return self._take(n)

    def read_available(self, timeout=0.0):
        """Whatever arrives: wait up to timeout for the first byte."""
        if not self.buf:
            self._fill(timeout)
        while self._fill(0):
            pass
        return self._take(len(self.buf))

    def read_for(self, seconds):
        """Everything that arrives during the given time (or until EOF)."""
        deadline = time.monotonic() + seconds
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._fill(left)
        return self._take(len(self.buf))

    def read_until_eof(self, timeout=10.0):
        """Everything until the server closes; TimeoutError if it does not."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('no EOF within %.1fs' % timeout)
            self._fill(left)
        return self._take(len(self.buf))

    def wait_closed(self, timeout=10.0):
        """True if the server closes within timeout (data is discarded)."""
        try:
            self.read_until_eof(timeout)
            return True
        except TimeoutError:
            return False

    def negotiated(self, cmd, opt):
        return (cmd, opt) in self.negotiations

    def frontdoor_attach(self, name, timeout=10.0):
        """Answer the front-door prompt; return the reply line (str)."""
        self.read_until(PROMPT, timeout)
        if isinstance(name, str):
            name = name.encode()
        self.send(name + b'\r\n')
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_until(b'\n', max(deadline - time.monotonic(), 0))
            line = line.rstrip(b'\r\n')
            # The server echoes what we typed; skip it.
            if line.startswith(name):
                rest = line[len(name):]
                if rest.startswith(b'attached to ') or \
                        rest.startswith(b'vspcd: '):
                    line = rest
            if line.startswith(b'attached to ') or line.startswith(b'vspcd: '):
                return line.decode('utf-8', 'replace')


def frontdoor_attach(host, port, name, timeout=10.0, **kw):
    """Connect to the front door and answer the prompt: (Telnet, line)."""
    tn = Telnet(host, port, timeout, **kw)
    try:
        return tn, tn.frontdoor_attach(name, timeout)
    except BaseException:
        tn.close()
        raise


# -- self-test ---------------------------------------------------------------

if __name__ == '__main__':
    import threading
    import unittest

    OFFER = bytes([IAC, WILL, ECHO, IAC, WILL, SGA, IAC, DO, SGA,
                   IAC, WILL, BINARY, IAC, DO, BINARY])

    class FakeFrontDoor:
        """One-shot telnet server scripted by a function of the socket."""

        def __init__(self, script):
            self.lsock = socket.create_server(('127.0.0.1', 0))
            self.port = self.lsock.getsockname()[1]
            self.received = bytearray()
            self.error = None
            self.thread = threading.Thread(target=self._run, args=(script,),
                                           daemon=True)
            self.thread.start()

        def _run(self, script):
            try:
                conn, _ = self.lsock.accept()
                conn.settimeout(5)
                with conn:
                    script(self, conn)
            except Exception as e:  # reported by join()
                self.error = e
            finally:
                self.lsock.close()

        def recv_until(self, conn, marker):
            while marker not in self.received:
                data = conn.recv(4096)
                if not data:
                    raise EOFError(bytes(self.received))
                self.received += data

        def join(self):
            self.thread.join(10)
            if self.error:
                raise self.error

    def frontdoor_script(srv, conn):
        conn.sendall(OFFER + PROMPT)
        srv.recv_until(conn, b'\r\n')
        line = srv.received.split(bytes([IAC, WILL, BINARY]))[-1]
        assert line.endswith(b'\r\n'), line
        name = bytes(b for b in line.rstrip(b'\r\n') if b < 240 and b > 3)
        conn.sendall(name + b'\r\n')          # echo
        if name == b'vm-00001':
            conn.sendall(b'attached to vm-00001 [5012.com1]\r\n')
            # Data with a doubled IAC, an SB and a NOP in the middle.
            conn.sendall(b'hello \xff\xff\x00 world' +
                         bytes([IAC, SB, 24, 1, IAC, IAC, IAC, SE]) +
                         bytes([IAC, NOP]) + b'!\r\n')
            srv.recv_until(conn, b'bye')
        else:
            conn.sendall(b"vspcd: no console named '%s'\r\n" % name + PROMPT)
            try:
                srv.recv_until(conn, b'never')
            except EOFError:
                pass

    class SelfTest(unittest.TestCase):
        def test_attach(self):
            srv = FakeFrontDoor(frontdoor_script)
            tn, line = frontdoor_attach('127.0.0.1', srv.port, 'vm-00001')
            with tn:
                self.assertEqual(line, 'attached to vm-00001 [5012.com1]')
                data = tn.read_until(b'!\r\n', 5)
                self.assertEqual(data, b'hello \xff\x00 world!\r\n')
                self.assertIn((SB, 24, b'\x01\xff'), tn.negotiations)
                self.assertIn(NOP, tn.commands)
                self.assertEqual(tn.him, {ECHO, SGA, BINARY})
                self.assertEqual(tn.us, {SGA, BINARY})
                self.assertTrue(tn.negotiated(WILL, ECHO))
                self.assertTrue(tn.neg_bytes.startswith(OFFER))
                tn.send(b'\xffbye')
                srv.join()
            self.assertIn(bytes([IAC, DO, ECHO]), srv.received)
            self.assertIn(bytes([IAC, WILL, BINARY]), srv.received)
            self.assertTrue(srv.received.endswith(b'\xff\xffbye'))

        def test_unknown(self):
            srv = FakeFrontDoor(frontdoor_script)
            tn, line = frontdoor_attach('127.0.0.1', srv.port, 'nope',
                                        binary=False)
            with tn:
                self.assertEqual(line, "vspcd: no console named 'nope'")
                tn.read_until(PROMPT, 5)
            srv.join()
            self.assertIn(bytes([IAC, WONT, BINARY]), srv.received)
            self.assertIn(bytes([IAC, DO, BINARY]), srv.received)

        def test_raw(self):
            def script(srv, conn):
                conn.sendall(OFFER + b'x\xff\xffy')
                srv.recv_until(conn, b'\xff!')
            srv = FakeFrontDoor(script)
            with Telnet('127.0.0.1', srv.port, raw=True) as tn:
                self.assertEqual(tn.read_exactly(len(OFFER) + 4, 5),
                                 OFFER + b'x\xff\xffy')
                tn.send(b'\xff!')
                srv.join()
            self.assertEqual(bytes(srv.received), b'\xff!')

        def test_split_input_and_refusal(self):
            tn = Telnet()
            tn.sock = None
            sent = []
            tn.send_raw = sent.append
            stream = bytes([IAC, WILL, 24, IAC, DO, 31, IAC]) + \
                bytes([IAC, IAC, DONT, SGA, IAC, WONT, ECHO]) + b'z'
            for b in stream:            # one byte at a time
                tn.feed(bytes([b]))
            self.assertEqual(bytes(tn.buf), b'\xffz')
            self.assertEqual(b''.join(sent), bytes([IAC, DONT, 24,
                                                    IAC, WONT, 31]))

        def test_eof_and_timeout(self):
            def script(srv, conn):
                conn.sendall(b'abc')
            srv = FakeFrontDoor(script)
            with Telnet('127.0.0.1', srv.port) as tn:
                self.assertEqual(tn.read_available(5), b'abc')
                srv.join()
                self.assertRaises(EOFError, tn.read_exactly, 1, 1)
            srv = FakeFrontDoor(lambda s, c: s.recv_until(c, b'q'))
            with Telnet('127.0.0.1', srv.port) as tn:
                t0 = time.monotonic()
                self.assertRaises(TimeoutError, tn.read_until, b'x', 0.3)
                self.assertLess(time.monotonic() - t0, 2)
                tn.send(b'q')
            srv.join()

    unittest.main()
