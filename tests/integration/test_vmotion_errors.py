#!/usr/bin/env python3
"""vMotion error paths (PROTOCOL-VMWARE.md 6.5 E1-E14, INTERFACES.md "vMotion").

A scripted ESXi host (class Host) talks to vspcd's VM listener byte by byte:
the capture's handshake (WILL AUTH, answers to the daemon's DO/WILL, WILL
VMWARE-EXT, KS-1 + DO-PROXY 'S' "vSPC.py", VM-VC-UUID/VM-NAME on GET-*),
a full telnet decoder (SB un-doubling, console data kept apart from
commands, every SB recorded with its raw bytes and its position in the data
stream) and the vMotion messages BEGIN / PEER / COMPLETE / ABORT. A
destination connects the capture's stream-1 way: KS-1 + PEER + WILL
COM-PORT, no DO-PROXY. A telnetc client on the port's client_port types and
reads. Each test starts its own daemon with short vMotion timers.

Known daemon bugs these tests catch (at the time of writing): the per-vMotion
log line says "destination none" for completed and aborted-after-PEER-OK
vMotions; a wrong-secret PEER is counted both on the port and in
vmotion_bad_peers_unmatched; a PEER accepted for one port bumps bad_peers of
another port using the same sequence; input held when a fresh DO-PROXY
connection replaces the source mid-vMotion goes to the replaced connection.
"""

import os
import re
import socket
import select
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vspctest  # noqa: E402
from vspctest import (HOST, VMWARE_EXT, KNOWN_SUBOPTIONS_1,  # noqa: E402
                      KNOWN_SUBOPTIONS_2, DO_PROXY, WILL_PROXY,
                      VM_VC_UUID, GET_VM_VC_UUID, VM_NAME, GET_VM_NAME,
                      VMOTION_BEGIN, VMOTION_GOAHEAD, VMOTION_NOTNOW,
                      VMOTION_PEER, VMOTION_PEER_OK, VMOTION_COMPLETE,
                      VMOTION_ABORT, ESXI_KS1, vmw_sb, esxi_uuid, norm_uuid)

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
BINARY, ECHO, SGA, AUTH, COMPORT = 0, 1, 3, 37, 44

UUID_RAW = esxi_uuid(0x0e770e77, 1)
UUID = norm_uuid(UUID_RAW)
OTHER_UUID_RAW = esxi_uuid(0x0e770e77, 2)
VM_NAME_STR = 'vm-mig'
SEQ = bytes.fromhex('44da87f1')
SEQ_FF = bytes.fromhex('7619ffe9')        # TV-6


def timers(drain_ms=300, peer=1, complete=1, source_drain=1, ident=2):
    return ['--vmotion-drain-ms', str(drain_ms),
            '--vmotion-peer-timeout', str(peer),
            '--vmotion-complete-timeout', str(complete),
            '--vmotion-source-drain', str(source_drain),
            '--ident-timeout', str(ident)]


# Short timers: the whole file runs well under 90 s.
FAST = timers()
# For tests with several steps inside one vMotion state.
SLOW = timers(drain_ms=2000, peer=20, complete=20)
SYNC_CODE = 0x61   # not a VMWARE-EXT command
QUIET = 0.4       # how long "nothing happens" is watched for


def pattern(n, tag=b'x'):
    """n bytes of numbered lines (no CR, no 0xFF): order and loss show."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += b'%s%07d\n' % (tag, i)
        i += 1
    return bytes(out[:n])


def wait_until(pred, timeout, what, interval=0.02):
    return vspctest.wait_for(pred, timeout, interval, what)


class Host:
    """One scripted ESXi connection to the VM listener.

    Console data from the daemon accumulates in .data (un-doubled); every
    VMWARE-EXT SB is kept in .sbs as a dict {cmd, payload, raw, at, t},
    where raw is the SB exactly as on the wire and at is len(.data) when
    it ended, so the order of data and commands on the stream is known.
    Nothing is read unless pump()/wait*() is called (a host that stops
    reading just does not call them).
    """

    def __init__(self, daemon, uuid=UUID_RAW, name=VM_NAME_STR, rcvbuf=None,
                 port=None, answer_uuid=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((HOST, port or daemon.vm_port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.connected_at = time.monotonic()
        self.uuid = uuid
        self.name = name
        self.answer_uuid = answer_uuid
        self.data = bytearray()
        self.pos = 0                  # data consumed by expect_data
        self.sbs = []
        self.taken = set()            # indexes of sbs consumed by wait_sb
        self.negs = []
        self.him = set()
        self.us = set()
        self.gets = []
        self.eof = False
        self.eof_at = None
        self._st = 0                  # 0 data, 1 IAC, 2 neg, 3 SB, 4 SB IAC
        self._cmd = 0
        self._sb = bytearray()
        self._raw = bytearray()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def fin(self):
        """Half-close: send FIN, keep reading."""
        self.sock.shutdown(socket.SHUT_WR)

    # -- sending --

    def send_raw(self, b):
        self.sock.setblocking(True)
        try:
            self.sock.sendall(bytes(b))
        finally:
            self.sock.setblocking(False)

    def send_data(self, b):
        self.send_raw(bytes(b).replace(b'\xff', b'\xff\xff'))

    def ext(self, cmd, payload=b''):
        self.send_raw(vmw_sb(cmd, payload))

    def begin(self, seq):
        self.ext(VMOTION_BEGIN, seq)

    def peer(self, cookie):
        self.ext(VMOTION_PEER, cookie)

    def complete(self, seq):
        self.ext(VMOTION_COMPLETE, seq)

    def abort(self):
        self.ext(VMOTION_ABORT)

    def send_uuid(self, uuid=None):
        self.ext(VM_VC_UUID, (uuid or self.uuid).encode())

    @property
    def addr(self):
        return '%s:%d' % self.sock.getsockname()

    def sync(self, timeout=5.0):
        """Round trip: an unknown VMWARE-EXT command (0x61) must come back
        as UNKNOWN-SUBOPTION-RCVD-2, so the daemon has processed everything
        sent before it."""
        self.ext(SYNC_CODE)
        self.wait(lambda: any(s['cmd'] == 3 and s['payload'] == b'\x61' and
                              k not in self.taken
                              for k, s in enumerate(self.sbs)),
                  timeout, 'UNKNOWN-SUBOPTION-RCVD-2 for the sync')
        for k, s in enumerate(self.sbs):
            if s['cmd'] == 3:
                self.taken.add(k)

    # -- decoding --

    def _auto(self, b):
        """An automatic answer, as a host sends it: if the daemon has
        closed the connection already, the answer is lost, not an error
        (the close shows as EOF)."""
        try:
            self.send_raw(b)
        except (BrokenPipeError, ConnectionResetError):
            self.eof = True
            self.eof_at = time.monotonic()

    def _reply(self, cmd, opt):
        self._auto(bytes([IAC, cmd, opt]))

    def _neg(self, cmd, opt):
        self.negs.append((cmd, opt))
        if cmd == WILL:
            if opt in (BINARY, SGA, ECHO):
                if opt not in self.him:
                    self.him.add(opt)
                    self._reply(DO, opt)
            else:
                self._reply(DONT, opt)
        elif cmd == WONT:
            if opt in self.him:
                self.him.discard(opt)
                self._reply(DONT, opt)
        elif cmd == DO:
            if opt in (BINARY, SGA, VMWARE_EXT):
                if opt not in self.us:
                    self.us.add(opt)
                    self._reply(WILL, opt)
            elif opt != ECHO:
                self._reply(WONT, opt)
        elif cmd == DONT:
            if opt in self.us:
                self.us.discard(opt)
                self._reply(WONT, opt)

    def _sb_done(self):
        sb = bytes(self._sb)
        if sb[:1] != bytes([VMWARE_EXT]) or len(sb) < 2:
            return
        ent = {'cmd': sb[1], 'payload': sb[2:], 'raw': bytes(self._raw),
               'at': len(self.data), 't': time.monotonic()}
        self.sbs.append(ent)
        if ent['cmd'] == GET_VM_VC_UUID:
            self.gets.append('uuid')
            if self.answer_uuid and self.uuid:
                self._auto(vmw_sb(VM_VC_UUID, self.uuid.encode()))
        elif ent['cmd'] == GET_VM_NAME:
            self.gets.append('name')
            self._auto(vmw_sb(VM_NAME, self.name.encode()))

    def feed(self, data):
        i, n = 0, len(data)
        while i < n:
            st = self._st
            if st == 0:
                j = data.find(b'\xff', i)
                if j < 0:
                    self.data += data[i:]
                    return
                self.data += data[i:j]
                i = j + 1
                self._st = 1
                continue
            c = data[i]
            i += 1
            if st == 1:
                if c == IAC:
                    self.data.append(IAC)
                    self._st = 0
                elif c in (WILL, WONT, DO, DONT):
                    self._cmd = c
                    self._st = 2
                elif c == SB:
                    self._sb = bytearray()
                    self._raw = bytearray([IAC, SB])
                    self._st = 3
                else:
                    self._st = 0
            elif st == 2:
                self._st = 0
                self._neg(self._cmd, c)
            elif st == 3:
                self._raw.append(c)
                if c == IAC:
                    self._st = 4
                else:
                    self._sb.append(c)
            elif st == 4:
                self._raw.append(c)
                if c == IAC:
                    self._sb.append(IAC)
                    self._st = 3
                else:
                    self._sb_done()
                    self._st = 0

    def pump(self, timeout=0.0):
        """Read whatever arrives within timeout; True if anything did."""
        if self.eof or self.sock is None:
            return False
        got = False
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        while r:
            try:
                b = self.sock.recv(262144)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionResetError:
                b = b''
            if not b:
                self.eof = True
                self.eof_at = time.monotonic()
                break
            got = True
            self.feed(b)
            r, _, _ = select.select([self.sock], [], [], 0)
        return got

    def pump_for(self, seconds):
        deadline = time.monotonic() + seconds
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.pump(left)

    def wait(self, pred, timeout=5.0, what='condition'):
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                raise AssertionError(
                    '%s: %s within %.1fs (eof=%s); SBs %s; data tail %r' %
                    ('EOF before' if self.eof else 'no', what, timeout,
                     self.eof, self.sb_summary(), bytes(self.data[-80:])))
            self.pump(min(left, 0.05))

    def sb_summary(self):
        return ['%02x:%s' % (s['cmd'], s['payload'].hex()) for s in self.sbs]

    def find_sbs(self, cmd):
        return [s for s in self.sbs if s['cmd'] == cmd]

    def wait_sb(self, cmd, timeout=5.0):
        """The next not yet consumed SB with this command."""
        def find():
            for k, s in enumerate(self.sbs):
                if k not in self.taken and s['cmd'] == cmd:
                    self.taken.add(k)
                    return s
            return None
        return self.wait(find, timeout, 'SB %02x' % cmd)

    def assert_no_sb(self, cmd, seconds=QUIET):
        self.pump_for(seconds)
        got = [s for s in self.find_sbs(cmd)]
        if got:
            raise AssertionError('unexpected SB %02x: %s' %
                                 (cmd, [s['raw'].hex(' ') for s in got]))

    def new_data(self):
        out = bytes(self.data[self.pos:])
        self.pos = len(self.data)
        return out

    def expect_data(self, want, timeout=5.0):
        """The next len(want) data bytes must be exactly want."""
        want = bytes(want)
        self.wait(lambda: len(self.data) - self.pos >= len(want), timeout,
                  '%d data bytes (have %d: %r)' %
                  (len(want), len(self.data) - self.pos,
                   bytes(self.data[self.pos:self.pos + 60])))
        got = bytes(self.data[self.pos:self.pos + len(want)])
        if got != want:
            k = next(i for i in range(len(want)) if got[i] != want[i])
            raise AssertionError('data differs at %d: got %r, want %r' %
                                 (k, got[k:k + 40], want[k:k + 40]))
        self.pos += len(want)
        return got

    def assert_no_data(self, seconds=QUIET):
        self.pump_for(seconds)
        extra = bytes(self.data[self.pos:])
        if extra:
            raise AssertionError('unexpected data %r' % extra[:200])

    def wait_closed(self, timeout):
        """True if the daemon closes the connection within timeout."""
        self.pump_for(timeout)
        return self.eof

    # -- sessions --

    def negotiate(self):
        """WILL AUTH, then answer the daemon until VMWARE-EXT and KS-2."""
        self.send_raw(bytes([IAC, WILL, AUTH]))
        self.wait(lambda: VMWARE_EXT in self.us, 5, 'DO VMWARE-EXT')
        self.wait(lambda: self.find_sbs(KNOWN_SUBOPTIONS_2), 5, 'KS-2')

    def handshake(self, uri='vSPC.py', direction='S', wait=True):
        """Source-side session (capture stream 0); waits for WILL-PROXY."""
        self.negotiate()
        self.send_raw(vmw_sb(KNOWN_SUBOPTIONS_1, ESXI_KS1) +
                      vmw_sb(DO_PROXY, direction.encode() + uri.encode()))
        self.send_raw(bytes([IAC, WILL, COMPORT]))
        if wait:
            self.wait_sb(WILL_PROXY)
        return self

    def handshake_peer(self, cookie):
        """Destination session (capture stream 1): KS-1 + PEER, no DO-PROXY."""
        self.negotiate()
        self.send_raw(vmw_sb(KNOWN_SUBOPTIONS_1, ESXI_KS1) +
                      vmw_sb(VMOTION_PEER, cookie) +
                      bytes([IAC, WILL, COMPORT]))
        return self


class VMotionTestCase(vspctest.VspcTestCase):

    # -- helpers --

    def host(self, d, **kw):
        h = Host(d, **kw)
        self.addCleanup(h.close)
        return h

    def source(self, d, uri='vSPC.py', **kw):
        return self.host(d, **kw).handshake(uri)

    def dest(self, d, cookie, ok=True, **kw):
        """A destination; with ok, wait for PEER-OK(seq) (checked)."""
        h = self.host(d, **kw).handshake_peer(cookie)
        if ok:
            s = h.wait_sb(VMOTION_PEER_OK)
            self.assertEqual(s['payload'], cookie[:len(cookie) - 8])
        return h

    def goahead(self, src, seq):
        """Send BEGIN(seq), read GOAHEAD, check it, return seq||secret."""
        src.begin(seq)
        s = src.wait_sb(VMOTION_GOAHEAD)
        self.assertEqual(s['payload'][:len(seq)], seq)
        self.assertEqual(len(s['payload']), len(seq) + 8, 'secret is 8 bytes')
        return s['payload']

    def client(self, d, pid, n=1):
        """A telnet client on the port's client_port, attached."""
        p = d.port(pid)
        tn = self.telnet(p['client_port'])
        d.wait_ports(lambda ps: any(q['id'] == pid and q['clients'] >= n
                                    for q in ps))
        tn.read_available(0.1)        # finish the option negotiation
        return tn

    def vmo(self, d, pid):
        p = d.port(pid)
        self.assertIsNotNone(p, 'port %s gone' % pid)
        return p['vmotion']

    def wait_vmo(self, d, pid, timeout=5.0, **want):
        last = {}

        def ok():
            last['v'] = self.vmo(d, pid)
            return all(last['v'].get(k) == v for k, v in want.items())
        try:
            wait_until(ok, timeout, 'vmotion %r' % want)
        except AssertionError:
            raise AssertionError('port %s vmotion never matched %r; last %r'
                                 % (pid, want, last.get('v')))
        return last['v']

    def d_port_when(self, d, pred, pid=UUID, timeout=5.0):
        return [p for p in d.wait_ports(
            lambda ps: any(p['id'] == pid and pred(p) for p in ps),
            timeout) if p['id'] == pid][0]

    def assert_vmo(self, d, pid, **want):
        v = self.vmo(d, pid)
        self.assertEqual({k: v.get(k) for k in want}, want, v)
        return v

    def setup_port(self, args, uri='vSPC.py', pid=UUID, **kw):
        d = self.daemon(args)
        src = self.source(d, uri, **kw)
        d.wait_ports(lambda ps: any(p['id'] == pid and p['connected']
                                    for p in ps))
        cl = self.client(d, pid)
        return d, src, cl

    def vmotion_log(self, d, pid, seq):
        """The daemon's one-line-per-vMotion log lines for this port/seq."""
        rx = re.compile(r'port %s: vMotion seq %s (.+) after \d+\.\d{3} s '
                        r'\(source (\S+), destination (\S+)\)' %
                        (re.escape(pid), seq.hex()))
        return [m.groups() for m in rx.finditer(d.stderr())]

    def wait_log(self, d, pid, seq, n=1):
        return wait_until(lambda: len(self.vmotion_log(d, pid, seq)) >= n
                          and self.vmotion_log(d, pid, seq), 5,
                          'vMotion log line for %s' % seq.hex())

    def unmatched(self, d):
        return d.healthz()['vmotion_bad_peers_unmatched']

    def client_sees(self, cl, want, timeout=5.0):
        got = cl.read_until(want, timeout)
        return got

    def assert_client_quiet(self, cl, seconds=QUIET):
        got = cl.read_for(seconds)
        self.assertEqual(got, b'', 'client got unexpected output')
        self.assertFalse(cl.eof, 'client connection closed')


class Typist(threading.Thread):
    """Types a large amount on a telnet client from a thread (it blocks
    under backpressure)."""

    def __init__(self, tn, data):
        super().__init__(daemon=True)
        self.tn = tn
        self.payload = data
        self.error = None

    def run(self):
        try:
            self.tn.sock.setblocking(True)
            self.tn.sock.sendall(self.payload)
        except OSError as e:
            self.error = e


class E01NotNow(VMotionTestCase):

    def stall(self, d, cl, size):
        """Type size bytes while the source does not read; wait until the
        client is backpressured (so the to-VM queue is full, not empty)."""
        typed = pattern(size, b'n')
        t = Typist(cl, typed)
        t.start()
        last = [-1, time.monotonic()]

        def settled():
            b = d.port(UUID)['bytes_to_vm']
            now = time.monotonic()
            if b != last[0]:
                last[0], last[1] = b, now
                return False
            return now - last[1] > 0.3
        wait_until(settled, 15, 'client input to stall')
        self.assertTrue(t.is_alive(), 'typing %d bytes never blocked: '
                        'the to-VM queue is not backpressured' % size)
        return t, typed

    def test_notnow_when_queue_does_not_drain(self):
        args = timers(drain_ms=600)
        d, src, cl = self.setup_port(args, rcvbuf=4096)
        t, typed = self.stall(d, cl, 12 << 20)
        t0 = time.monotonic()
        src.begin(SEQ)
        v = self.wait_vmo(d, UUID, begun=1)
        self.assertEqual(v['state'], 'begin-received', v)
        self.assertEqual(v['notnow'], 0, 'NOTNOW before --vmotion-drain-ms')
        wait_until(lambda: self.vmo(d, UUID)['notnow'] == 1, 3, 'notnow=1')
        dt = time.monotonic() - t0
        self.assertGreaterEqual(dt, 0.5, 'NOTNOW sooner than drain-ms')
        self.assertLess(dt, 2.0, 'NOTNOW much later than drain-ms')
        self.assert_vmo(d, UUID, state='idle', notnow=1, begun=1,
                        completed=0, aborted=0, abandoned=0)
        # The source reads again: every typed byte, in order, exactly once.
        src.wait(lambda: len(src.data) >= len(typed), 60,
                 'all %d typed bytes' % len(typed))
        t.join(10)
        src.pump_for(0.2)
        self.assertEqual(len(src.data), len(typed))
        self.assertTrue(bytes(src.data) == typed, 'typed bytes reordered')
        notnow = src.find_sbs(VMOTION_NOTNOW)
        self.assertEqual([s['payload'] for s in notnow], [SEQ])
        self.assertEqual(notnow[0]['raw'],
                         bytes.fromhex('fffae82b44da87f1fff0'))
        self.assertEqual(src.find_sbs(VMOTION_GOAHEAD), [], 'GOAHEAD sent')
        src.pos = len(src.data)
        # Data continues both ways on the same connection (TV-4).
        cl.read_available(0.05)
        src.send_data(b'after notnow\r\n')
        self.client_sees(cl, b'after notnow\r\n')
        cl.send(b'typed after')
        src.expect_data(b'typed after')
        self.assert_vmo(d, UUID, state='idle', notnow=1, held_bytes=0)
        self.assertEqual(d.healthz()['vmotions_open'], 0)

    def test_goahead_after_queued_bytes(self):
        hold_max = 262144
        d, src, cl = self.setup_port(SLOW + ['--vmotion-hold-max',
                                             str(hold_max)], rcvbuf=4096)
        t, typed = self.stall(d, cl, 12 << 20)
        src.begin(SEQ)
        self.wait_vmo(d, UUID, begun=1, state='begin-received')
        # The source reads again well inside --vmotion-drain-ms: GOAHEAD
        # comes right behind the bytes queued before BEGIN, not before.
        g = src.wait_sb(VMOTION_GOAHEAD, 30)
        self.assertEqual(g['payload'][:4], SEQ)
        before = g['at']
        self.assertGreater(before, 0, 'queue was empty at BEGIN')
        self.assertTrue(bytes(src.data[:before]) == typed[:before],
                        'queued bytes reordered')
        self.assertEqual(src.find_sbs(VMOTION_NOTNOW), [])
        v = self.wait_vmo(d, UUID, state='goahead-sent')
        self.assertEqual(v['notnow'], 0)
        # Input typed since BEGIN is held: nothing follows the GOAHEAD,
        # and the hold stops growing at --vmotion-hold-max (backpressure).
        src.pump_for(0.5)
        self.assertEqual(len(src.data), before, 'client bytes after GOAHEAD')
        held = self.vmo(d, UUID)['held_bytes']
        self.assertGreater(held, 0)
        self.assertLessEqual(held, hold_max + 65536, 'hold not bounded')
        self.assertTrue(t.is_alive(), 'client not backpressured by the hold')
        src.abort()
        src.wait(lambda: len(src.data) >= len(typed), 60, 'held bytes')
        t.join(10)
        src.pump_for(0.2)
        self.assertEqual(len(src.data), len(typed))
        self.assertTrue(bytes(src.data) == typed, 'typed bytes reordered')
        self.assert_vmo(d, UUID, state='idle', aborted=1, notnow=0,
                        held_bytes=0)


class E02GoaheadThenNothing(VMotionTestCase):

    def test_no_peer_abandoned_after_peer_timeout(self):
        d, src, cl = self.setup_port(FAST)
        cookie = self.goahead(src, SEQ)
        t0 = time.monotonic()
        cl.send(b'typed while waiting')
        self.wait_vmo(d, UUID, state='goahead-sent', held_bytes=19)
        # R2: source output is forwarded while the vMotion is open.
        src.send_data(b'src during goahead\r\n')
        self.assertEqual(cl.read_until(b'\r\n', 3), b'src during goahead\r\n')
        src.assert_no_data(0.3)
        # No PEER, no ABORT: abandoned at --vmotion-peer-timeout (1 s),
        # held input back to the source.
        src.expect_data(b'typed while waiting', 4)
        dt = time.monotonic() - t0
        self.assertGreaterEqual(dt, 0.8, 'abandoned before the peer timeout')
        self.assertLess(dt, 2.5, 'abandoned long after the peer timeout')
        self.assert_vmo(d, UUID, state='idle', begun=1, abandoned=1,
                        aborted=0, completed=0, notnow=0, held_bytes=0)
        self.assertEqual(d.healthz()['vmotions_open'], 0)
        src.send_data(b'src after\r\n')
        self.assertEqual(cl.read_until(b'\r\n', 3), b'src after\r\n')
        cl.send(b'typed after')
        src.expect_data(b'typed after')
        self.assertEqual(src.find_sbs(VMOTION_NOTNOW), [])
        # The abandoned secret is dead.
        dst = self.dest(d, cookie, ok=False)
        dst.assert_no_sb(VMOTION_PEER_OK)
        out = self.wait_log(d, UUID, SEQ)
        self.assertEqual(len(out), 1, out)
        self.assertIn('abandon', out[0][0])


class E03AbortNoPeer(VMotionTestCase):

    def test_abort_after_goahead(self):
        d, src, cl = self.setup_port(SLOW)
        cookie = self.goahead(src, SEQ)
        cl.send(b'first ')
        cl.send(b'second\xff!')
        self.wait_vmo(d, UUID, state='goahead-sent', held_bytes=14)
        src.assert_no_data(0.3)
        self.assertEqual(d.healthz()['vmotions_open'], 1)
        src.abort()                                   # TV-5
        src.expect_data(b'first second\xff!')
        self.assert_vmo(d, UUID, state='idle', begun=1, aborted=1,
                        abandoned=0, completed=0, held_bytes=0)
        self.assertEqual(d.healthz()['vmotions_open'], 0)
        src.send_data(b'|}~ \r\n')                   # data continues
        self.assertEqual(cl.read_until(b'\r\n', 3), b'|}~ \r\n')
        cl.send(b'again')
        src.expect_data(b'again')
        # The old secret is dead: a PEER with it gets no PEER-OK.
        u0 = self.unmatched(d)
        dst = self.dest(d, cookie, ok=False)
        dst.assert_no_sb(VMOTION_PEER_OK)
        self.assertEqual(self.unmatched(d) + self.vmo(d, UUID)['bad_peers'],
                         u0 + 1, 'rejected PEER not counted once')
        self.assert_vmo(d, UUID, state='idle', completed=0)
        cl.send(b'still source')
        src.expect_data(b'still source')
        self.assertEqual(bytes(dst.data), b'')
        out = self.wait_log(d, UUID, SEQ)
        self.assertEqual(len(out), 1, out)
        self.assertIn('abort', out[0][0])
        self.assertEqual(out[0][1], src.addr)


class E04AbortAfterPeerOk(VMotionTestCase):

    def test_abort_closes_destination(self):
        d, src, cl = self.setup_port(SLOW)
        cookie = self.goahead(src, SEQ)
        dst = self.dest(d, cookie)
        self.wait_vmo(d, UUID, state='peered')
        cl.send(b'held e4')
        dst.send_data(b'FROM-DESTINATION\r\n')        # R3: held, never shown
        dst.sync()
        src.send_data(b'src one\r\n')
        seen = cl.read_until(b'src one\r\n', 3)
        src.abort()
        self.assertTrue(dst.wait_closed(3), 'destination not closed')
        src.expect_data(b'held e4')
        self.assert_vmo(d, UUID, state='idle', aborted=1, completed=0,
                        abandoned=0, held_bytes=0)
        src.send_data(b'src two\r\n')
        seen += cl.read_until(b'src two\r\n', 3)
        cl.send(b'after abort')
        src.expect_data(b'after abort')
        seen += cl.read_for(QUIET)
        self.assertEqual(seen, b'src one\r\nsrc two\r\n')
        self.assertNotIn(b'held e4', bytes(dst.data))
        self.assertNotIn(b'after', bytes(dst.data))
        self.assertEqual(d.healthz()['vm_connections'], 1)
        out = self.wait_log(d, UUID, SEQ)
        self.assertEqual(len(out), 1, out)
        self.assertEqual(out[0][1:], (src.addr, dst.addr))


class E05BadPeer(VMotionTestCase):

    def bad_dest(self, d, cookie, tag):
        h = self.dest(d, cookie, ok=False)
        h.send_uuid()                 # the port's own UUID
        h.send_data(b'BAD-' + tag + b'\r\n')
        return h

    def test_wrong_replayed_and_used_secret(self):
        d, src, cl = self.setup_port(SLOW)
        cookie = self.goahead(src, SEQ)
        u0 = self.unmatched(d)
        # (a) right sequence, wrong secret.
        wrong = cookie[:-1] + bytes([cookie[-1] ^ 0x5a])
        a = self.bad_dest(d, wrong, b'a')
        a.assert_no_sb(VMOTION_PEER_OK)
        self.assert_vmo(d, UUID, state='goahead-sent', bad_peers=1)
        ua = self.unmatched(d)          # checked at the end
        # ... and then even DO-PROXY does not make it the port's connection.
        a.ext(DO_PROXY, b'SvSPC.py')
        a.sync()
        self.assertEqual(a.find_sbs(WILL_PROXY), [])
        self.assertEqual(d.healthz()['vm_connections'], 2)
        self.assert_vmo(d, UUID, state='goahead-sent', abandoned=0)
        cl.send(b'held e5')
        # The real destination still gets in.
        good = self.dest(d, cookie)
        self.wait_vmo(d, UUID, state='peered')
        # (b) the same cookie again: replay.
        b = self.bad_dest(d, cookie, b'b')
        b.assert_no_sb(VMOTION_PEER_OK)
        self.assert_vmo(d, UUID, state='peered')
        good.complete(SEQ)
        good.expect_data(b'held e5')
        self.wait_vmo(d, UUID, state='idle', completed=1)
        # (c) after completion.
        c = self.bad_dest(d, cookie, b'c')
        c.assert_no_sb(VMOTION_PEER_OK)
        self.assertEqual(self.unmatched(d) + self.vmo(d, UUID)['bad_peers'],
                         ua + 1 + 2, 'replay and used PEER counted once each')
        good.send_data(b'good output\r\n')
        cl.send(b'to the destination')
        good.expect_data(b'to the destination')
        # Each bad connection is closed at --ident-timeout (2 s after its
        # connect), never got client input, never reached the client.
        for h in (a, b, c):
            self.assertTrue(h.wait_closed(4), 'bad peer not closed')
            took = h.eof_at - h.connected_at
            self.assertGreater(took, 1.5, 'closed before --ident-timeout')
            self.assertLess(took, 3.5, 'closed long after --ident-timeout')
            self.assertEqual(bytes(h.data), b'', 'client input reached it')
            self.assertEqual(h.find_sbs(VMOTION_PEER_OK), [])
        seen = cl.read_for(QUIET)
        self.assertIn(b'good output\r\n', seen)
        self.assertNotIn(b'BAD', seen)
        self.assertFalse(cl.eof)
        self.assertEqual(src.find_sbs(VMOTION_PEER_OK), [])
        self.assert_vmo(d, UUID, state='idle', completed=1, abandoned=0,
                        aborted=0)
        # INTERFACES.md: port bad_peers when the sequence matched, *else*
        # the healthz counter.
        self.assertEqual(ua, u0, 'PEER with a matching sequence (wrong '
                         'secret) counted in vmotion_bad_peers_unmatched too')

    def test_destination_with_another_uuid(self):
        d, src, cl = self.setup_port(SLOW)
        cookie = self.goahead(src, SEQ)
        cl.send(b'held e5b')
        # Right cookie, but the destination says it is another VM.
        h = self.host(d, uuid=OTHER_UUID_RAW)
        h.negotiate()
        h.send_raw(vmw_sb(KNOWN_SUBOPTIONS_1, ESXI_KS1) +
                   vmw_sb(VMOTION_PEER, cookie) + b'OTHER-VM\r\n' +
                   vmw_sb(VM_VC_UUID, OTHER_UUID_RAW.encode()))
        self.assertTrue(h.wait_closed(3), 'destination of another VM kept')
        wait_until(lambda: self.vmo(d, UUID)['bad_peers'] == 1, 3,
                   'bad_peers=1')
        self.assertEqual(bytes(h.data), b'')
        src.send_data(b'src\r\n')
        src.abort()
        src.expect_data(b'held e5b')
        self.wait_vmo(d, UUID, state='idle', aborted=1, completed=0)
        seen = cl.read_for(QUIET)
        self.assertEqual(seen, b'src\r\n')
        self.assertEqual([p['id'] for p in d.ports()], [UUID])


class E06PeerNeverIssued(VMotionTestCase):

    def test_unknown_cookie_and_silent_connection(self):
        d, src, cl = self.setup_port(FAST)
        u0 = self.unmatched(d)
        t = self.dest(d, bytes.fromhex('0badc0de') + os.urandom(8), ok=False)
        t.send_uuid()
        t.send_data(b'E6-PEER-OUT\r\n')
        # Neither DO-PROXY nor PEER: identity and data only.
        q = self.host(d)
        q.negotiate()
        q.send_raw(vmw_sb(KNOWN_SUBOPTIONS_1, ESXI_KS1))
        q.send_uuid()
        q.ext(VM_NAME, VM_NAME_STR.encode())
        q.send_data(b'E6-SILENT-OUT\r\n')
        t.assert_no_sb(VMOTION_PEER_OK)
        q.sync()
        self.assertEqual(q.find_sbs(WILL_PROXY), [])
        self.assertEqual(self.unmatched(d), u0 + 1)
        self.assert_vmo(d, UUID, state='idle', bad_peers=0, begun=0)
        cl.send(b'still the source')
        src.expect_data(b'still the source')
        src.send_data(b'source out\r\n')
        for h in (t, q):
            self.assertTrue(h.wait_closed(4), 'not closed')
            took = h.eof_at - h.connected_at
            self.assertGreater(took, 1.5, 'closed before --ident-timeout')
            self.assertLess(took, 3.5, 'closed long after --ident-timeout')
            self.assertEqual(bytes(h.data), b'')
        seen = cl.read_for(QUIET)
        self.assertEqual(seen, b'source out\r\n')
        self.assertEqual(len(d.ports()), 1)
        self.assertEqual(d.healthz()['vm_connections'], 1)


class E07SourceFinFirst(VMotionTestCase):

    def test_source_fin_in_peered(self):
        d, src, cl = self.setup_port(SLOW)
        cport = d.port(UUID)['client_port']
        cookie = self.goahead(src, SEQ)
        dst = self.dest(d, cookie)
        cl.send(b'held e7 ')
        self.wait_vmo(d, UUID, state='peered', held_bytes=8)
        src.fin()                        # the capture's order: FIN first
        src.pump_for(0.3)                # let the daemon see the EOF
        # The port, its client and its listener survive; still peered.
        time.sleep(0.2)
        p = d.port(UUID)
        self.assertIsNotNone(p, 'port deleted on source FIN')
        self.assertEqual((p['client_port'], p['clients']), (cport, 1))
        self.assertEqual(p['vmotion']['state'], 'peered')
        self.assert_client_quiet(cl, 0.2)
        cl2 = self.client(d, UUID, n=2)
        cl.send(b'more')
        dst.complete(SEQ)
        dst.expect_data(b'held e7 more')
        p = self.d_port_when(d, lambda p: p['connected'])
        self.assertEqual(p['client_port'], cport)
        self.assertEqual(p['vmotion']['state'], 'idle')
        self.assertEqual(p['vmotion']['completed'], 1)
        self.assertEqual(p['vmotion']['abandoned'], 0)
        dst.send_data(b'9:;<\r\n')
        for c in (cl, cl2):
            self.assertEqual(c.read_until(b'\r\n', 3), b'9:;<\r\n')
        cl2.send(b'x')
        dst.expect_data(b'x')

    def test_fin_and_complete_back_to_back(self):
        # TV-3 (FIN 0.2 us before COMPLETE), then TV-6 (COMPLETE first).
        d, src, cl = self.setup_port(SLOW)
        for k, seq in enumerate((SEQ, SEQ_FF)):
            cookie = self.goahead(src, seq)
            dst = self.dest(d, cookie)
            cl.send(b'held %d ' % k)
            self.wait_vmo(d, UUID, state='peered', held_bytes=7)
            if k == 0:
                src.fin()
                dst.complete(seq)
            else:
                dst.complete(seq)
                src.fin()
            dst.expect_data(b'held %d ' % k)
            self.wait_vmo(d, UUID, state='idle', completed=k + 1,
                          abandoned=0)
            dst.send_data(b'out %d\r\n' % k)
            self.assertEqual(cl.read_until(b'\r\n', 3), b'out %d\r\n' % k)
            src.pump_for(0.05)
            self.assertEqual(bytes(src.data[src.pos:]), b'',
                             'client input to the old source')
            src = dst

    def test_source_fin_in_goahead_sent(self):
        d, src, cl = self.setup_port(SLOW)
        cport = d.port(UUID)['client_port']
        cookie = self.goahead(src, SEQ)
        cl.send(b'held e7b')
        src.fin()
        src.pump_for(0.3)                # let the daemon see the EOF
        time.sleep(0.2)
        p = d.port(UUID)
        self.assertIsNotNone(p, 'port deleted on source FIN')
        self.assertEqual((p['client_port'], p['clients']), (cport, 1))
        self.assertEqual(p['vmotion']['state'], 'goahead-sent')
        self.assertFalse(cl.eof)
        dst = self.dest(d, cookie)       # the destination still arrives
        dst.complete(SEQ)
        dst.expect_data(b'held e7b')
        p = self.d_port_when(d, lambda p: p['connected'])
        self.assertEqual(p['vmotion']['completed'], 1)
        dst.send_data(b'NOP\r\n')
        self.assertEqual(cl.read_until(b'\r\n', 3), b'NOP\r\n')


class E08CompleteSourceOpen(VMotionTestCase):

    def test_complete_while_source_open(self):
        d, src, cl = self.setup_port(SLOW)
        cookie = self.goahead(src, SEQ)
        dst = self.dest(d, cookie)
        cl.send(b'held e8')
        self.wait_vmo(d, UUID, held_bytes=7)
        dst.complete(SEQ)
        t0 = time.monotonic()
        dst.expect_data(b'held e8')
        self.wait_vmo(d, UUID, state='idle', completed=1)
        cl.send(b'to dest')
        dst.expect_data(b'to dest')
        # Late output from the old source is still forwarded (and logged).
        src.send_data(b'late source bytes\r\n')
        self.assertEqual(cl.read_until(b'\r\n', 3), b'late source bytes\r\n')
        wait_until(lambda: re.search(r'%s\b.*COMPLETE' % re.escape(src.addr),
                                     d.stderr()), 3, 'late bytes logged')
        dst.send_data(b'dest out\r\n')
        self.assertEqual(cl.read_until(b'\r\n', 3), b'dest out\r\n')
        # The old source is closed after --vmotion-source-drain (1 s) and
        # never got a client byte after COMPLETE.
        self.assertTrue(src.wait_closed(4), 'old source never closed')
        took = src.eof_at - t0
        self.assertGreater(took, 0.7, 'source closed before the drain time')
        self.assertLess(took, 2.5, 'source closed long after the drain')
        self.assertEqual(bytes(src.data), b'', 'client bytes to the source')
        self.assertFalse(cl.eof)
        self.assert_vmo(d, UUID, state='idle', completed=1, aborted=0,
                        abandoned=0)
        out = self.wait_log(d, UUID, SEQ)
        self.assertEqual(len(out), 1, out)
        self.assertIn('complete', out[0][0])
        self.assertEqual(out[0][1:], (src.addr, dst.addr))


class E09DestinationFin(VMotionTestCase):

    def test_destination_fin_then_abort(self):
        d, src, cl = self.setup_port(SLOW)
        cookie = self.goahead(src, SEQ)
        dst = self.dest(d, cookie)
        cl.send(b'held e9')
        self.wait_vmo(d, UUID, state='peered', held_bytes=7)
        dst.fin()
        dst.pump_for(0.3)                # let the daemon see the EOF
        time.sleep(0.2)
        v = self.vmo(d, UUID)
        self.assertNotEqual(v['state'], 'idle', 'ended on destination EOF')
        self.assertEqual(v['held_bytes'], 7)
        src.assert_no_data(0.2)
        src.abort()
        src.expect_data(b'held e9')
        self.assert_vmo(d, UUID, state='idle', aborted=1, completed=0,
                        held_bytes=0)
        self.assertEqual(bytes(dst.data), b'')
        cl.send(b'after')
        src.expect_data(b'after')

    def test_destination_fin_then_complete_timeout(self):
        d, src, cl = self.setup_port(FAST)
        cookie = self.goahead(src, SEQ)
        dst = self.dest(d, cookie)
        t0 = time.monotonic()
        cl.send(b'held e9b')
        dst.fin()
        dst.pump_for(0.3)                # let the daemon see the EOF
        src.expect_data(b'held e9b', 4)     # at --vmotion-complete-timeout
        self.assertGreater(time.monotonic() - t0, 0.7)
        self.assert_vmo(d, UUID, state='idle', abandoned=1, held_bytes=0)


class E10SecondBegin(VMotionTestCase):

    def test_second_begin_supersedes(self):
        d, src, cl = self.setup_port(SLOW)
        c1 = self.goahead(src, SEQ)
        cl.send(b'typed-1 ')
        self.wait_vmo(d, UUID, held_bytes=8)
        seq2 = bytes.fromhex('98d98db4')
        src.begin(seq2)
        g2 = src.wait_sb(VMOTION_GOAHEAD)
        c2 = g2['payload']
        self.assertEqual(c2[:4], seq2)
        self.assertNotEqual(c2[4:], c1[4:])
        # Input held for the first one went to the source, ahead of GOAHEAD.
        self.assertEqual(bytes(src.data[src.pos:g2['at']]), b'typed-1 ')
        src.pos = g2['at']
        self.assert_vmo(d, UUID, state='goahead-sent', begun=2, abandoned=1)
        a = self.dest(d, c1, ok=False)
        a.assert_no_sb(VMOTION_PEER_OK)
        cl.send(b'typed-2')
        b = self.dest(d, c2)
        b.complete(seq2)
        b.expect_data(b'typed-2')
        self.assert_vmo(d, UUID, state='idle', begun=2, abandoned=1,
                        completed=1)
        src.pump_for(0.2)
        self.assertEqual(bytes(src.data), b'typed-1 ')
        self.assertEqual(bytes(a.data), b'')
        b.send_data(b'from b\r\n')
        self.assertEqual(cl.read_until(b'\r\n', 3), b'from b\r\n')

    def test_second_begin_closes_peered_destination(self):
        d, src, cl = self.setup_port(SLOW)
        c1 = self.goahead(src, SEQ)
        a = self.dest(d, c1)
        cl.send(b'held')
        seq2 = bytes.fromhex('cd526755')
        c2 = self.goahead(src, seq2)
        self.assertTrue(a.wait_closed(3), 'old destination not closed')
        self.assertEqual(bytes(a.data), b'')
        b = self.dest(d, c2)
        b.complete(seq2)
        self.wait_vmo(d, UUID, state='idle', completed=1, abandoned=1)
        cl.send(b' more')
        b.expect_data(b' more')
        src.pump_for(0.2)
        self.assertEqual(bytes(src.data), b'held')


class E11WrongConnection(VMotionTestCase):

    def test_misplaced_messages_ignored(self):
        d, src, cl = self.setup_port(SLOW)
        cookie = self.goahead(src, SEQ)
        cl.send(b'held e11')
        want = dict(state='goahead-sent', begun=1, completed=0, aborted=0,
                    abandoned=0, held_bytes=8)
        self.wait_vmo(d, UUID, **want)
        # COMPLETE on the source.
        src.complete(SEQ)
        src.sync()
        self.assert_vmo(d, UUID, **want)
        # COMPLETE on a connection that sent no PEER.
        stray = self.host(d)
        stray.negotiate()
        stray.send_raw(vmw_sb(KNOWN_SUBOPTIONS_1, ESXI_KS1))
        stray.complete(SEQ)
        stray.sync()
        self.assert_vmo(d, UUID, **want)
        self.assertEqual(bytes(stray.data), b'')
        dst = self.dest(d, cookie)
        want['state'] = 'peered'
        self.wait_vmo(d, UUID, **want)
        # ABORT on the destination.
        dst.abort()
        dst.sync()
        self.assert_vmo(d, UUID, **want)
        self.assertFalse(dst.eof)
        # COMPLETE on the source again, now that a peer exists.
        src.complete(SEQ)
        src.sync()
        self.assert_vmo(d, UUID, **want)
        # COMPLETE with a wrong sequence (and one with a longer one).
        dst.complete(bytes.fromhex('44da87f0'))
        dst.complete(SEQ + b'\x00')
        dst.complete(SEQ[:3])
        dst.sync()
        self.assert_vmo(d, UUID, **want)
        src.assert_no_data(0.1)
        self.assertEqual(bytes(dst.data), b'')
        # The vMotion still completes normally.
        dst.complete(SEQ)
        dst.expect_data(b'held e11')
        self.wait_vmo(d, UUID, state='idle', completed=1, aborted=0,
                      abandoned=0, held_bytes=0)
        cl.send(b'next')
        dst.expect_data(b'next')
        self.assertEqual(bytes(src.data), b'')


class E12BeginUnbound(VMotionTestCase):

    def test_begin_before_do_proxy(self):
        d = self.daemon(FAST)
        h = self.host(d)
        h.negotiate()
        h.send_raw(vmw_sb(KNOWN_SUBOPTIONS_1, ESXI_KS1))
        h.begin(SEQ_FF)
        n = h.wait_sb(VMOTION_NOTNOW)
        self.assertEqual(n['payload'], SEQ_FF)
        self.assertEqual(n['raw'], bytes.fromhex('fffae82b7619ffffe9fff0'))
        h.assert_no_sb(VMOTION_GOAHEAD, 0.2)

    def test_begin_before_uuid(self):
        d = self.daemon(FAST)
        h = self.host(d, answer_uuid=False)
        h.handshake(wait=False)
        h.wait(lambda: 'uuid' in h.gets, 3, 'GET-VM-VC-UUID')
        h.begin(SEQ)
        n = h.wait_sb(VMOTION_NOTNOW)
        self.assertEqual(n['payload'], SEQ)
        self.assertEqual(h.find_sbs(VMOTION_GOAHEAD), [])
        self.assertEqual(h.find_sbs(WILL_PROXY), [])
        h.send_uuid()
        h.wait_sb(WILL_PROXY)
        self.assert_vmo(d, UUID, state='idle', completed=0, aborted=0,
                        abandoned=0)
        # Once bound, BEGIN works.
        self.goahead(h, SEQ)
        self.wait_vmo(d, UUID, state='goahead-sent')


class E13ProxyRestart(VMotionTestCase):

    def test_restart_forgets_secrets(self):
        d, src, cl = self.setup_port(SLOW)
        cookie = self.goahead(src, SEQ)
        cl.send(b'held e13')
        self.wait_vmo(d, UUID, held_bytes=8)
        d.stop()                                    # SIGTERM, exit 0
        self.assertTrue(src.wait_closed(3))
        d.start()
        dst = self.dest(d, cookie, ok=False)
        dst.send_uuid()
        dst.assert_no_sb(VMOTION_PEER_OK)
        self.assertEqual(self.unmatched(d), 1)
        self.assertEqual(d.ports(), [], 'port created from a PEER')
        # A fresh DO-PROXY connection re-creates the port.
        src2 = self.source(d)
        p = d.wait_ports(lambda ps: len(ps) == 1 and ps[0]['connected'])[0]
        self.assertEqual(p['id'], UUID)
        self.assertEqual(p['vmotion']['state'], 'idle')
        cl2 = self.client(d, UUID)
        src2.send_data(b'back\r\n')
        self.assertEqual(cl2.read_until(b'\r\n', 3), b'back\r\n')
        cl2.send(b'hello')
        src2.expect_data(b'hello')
        self.assertTrue(dst.wait_closed(4), 'bad peer not closed')
        self.assertEqual(bytes(dst.data), b'')


class E14TwoPorts(VMotionTestCase):

    def test_two_ports_independent(self):
        d = self.daemon(SLOW)
        A, B = UUID + '.com1', UUID + '.com2'
        sA = self.source(d, 'vSPC.py?port=com1')
        sB = self.source(d, 'vSPC.py?port=com2')
        d.wait_ports(lambda ps: len(ps) == 2 and all(p['connected']
                                                     for p in ps))
        cA = self.client(d, A)
        cB = self.client(d, B)
        seqA, seqB = bytes.fromhex('a1a1a1a1'), bytes.fromhex('b2b2b2b2')
        kA = self.goahead(sA, seqA)
        kB = self.goahead(sB, seqB)   # not refused: A is mid-vMotion
        cA.send(b'A1 ')
        cB.send(b'B1 ')
        dB = self.dest(d, kB)
        sA.send_data(b'srcA\r\n')
        dA = self.dest(d, kA)
        self.wait_vmo(d, A, state='peered', held_bytes=3)
        self.wait_vmo(d, B, state='peered', held_bytes=3)
        sA.fin()
        dA.complete(seqA)
        dA.expect_data(b'A1 ')
        self.wait_vmo(d, A, state='idle', completed=1)
        self.assert_vmo(d, B, state='peered', completed=0)
        cB.send(b'B2 ')
        sB.send_data(b'srcB\r\n')
        dB.complete(seqB)
        sB.fin()
        dB.expect_data(b'B1 B2 ')
        self.wait_vmo(d, B, state='idle', completed=1)
        dA.send_data(b'dstA\r\n')
        dB.send_data(b'dstB\r\n')
        self.assertEqual(cA.read_until(b'dstA\r\n', 3), b'srcA\r\ndstA\r\n')
        self.assertEqual(cB.read_until(b'dstB\r\n', 3), b'srcB\r\ndstB\r\n')
        # Round two from the new connections: A completes, B aborts.
        seqA2, seqB2 = bytes.fromhex('a2a2ffa2'), bytes.fromhex('b3b3b3b3')
        kB2 = self.goahead(dB, seqB2)
        kA2 = self.goahead(dA, seqA2)
        cA.send(b'A2 ')
        cB.send(b'B3 ')
        dA2 = self.dest(d, kA2)
        dB2 = self.dest(d, kB2)
        self.wait_vmo(d, A, state='peered')
        self.wait_vmo(d, B, state='peered')
        dB.abort()
        self.assertTrue(dB2.wait_closed(3))
        dB.expect_data(b'B3 ')
        self.assert_vmo(d, A, state='peered', aborted=0)
        dA2.complete(seqA2)
        dA2.expect_data(b'A2 ')
        self.wait_vmo(d, A, state='idle', begun=2, completed=2, aborted=0)
        self.assert_vmo(d, B, state='idle', begun=2, completed=1, aborted=1)
        dA2.send_data(b'dstA2\r\n')
        dB.send_data(b'dstB again\r\n')
        self.assertEqual(cA.read_until(b'\r\n', 3), b'dstA2\r\n')
        self.assertEqual(cB.read_until(b'\r\n', 3), b'dstB again\r\n')
        self.assertEqual(cA.read_for(QUIET), b'')
        self.assertEqual(cB.read_for(QUIET), b'')
        for h in (sA, sB, dA):
            h.pump_for(0.05)
        self.assertEqual(bytes(sA.data), b'')
        self.assertEqual(bytes(sB.data), b'')
        self.assertEqual(bytes(dA.data), b'A1 ')
        self.assertEqual(bytes(dB2.data), b'')
        self.assertEqual(d.healthz()['vmotions_open'], 0)

    def test_same_sequence_on_both_ports(self):
        # The cookie, not the sequence, picks the port (R11). Records with
        # equal sequences sit in the daemon's table in address order, so
        # several rounds with both PEER orders are run.
        d = self.daemon(SLOW)
        A, B = UUID + '.com1', UUID + '.com2'
        sA = self.source(d, 'vSPC.py?port=com1')
        sB = self.source(d, 'vSPC.py?port=com2')
        d.wait_ports(lambda ps: len(ps) == 2)
        cA = self.client(d, A)
        cB = self.client(d, B)
        for r in range(4):
            seq = bytes([0x5e, 0x90, r, 0xff])
            kA = self.goahead(sA, seq)
            kB = self.goahead(sB, seq)
            self.assertNotEqual(kA, kB)
            cA.send(b'for A%d' % r)
            cB.send(b'for B%d' % r)
            if r % 2:
                dA = self.dest(d, kA)
                dB = self.dest(d, kB)
            else:
                dB = self.dest(d, kB)
                dA = self.dest(d, kA)
            dB.complete(seq)
            dA.complete(seq)
            dA.expect_data(b'for A%d' % r)
            dB.expect_data(b'for B%d' % r)
            self.wait_vmo(d, A, state='idle', completed=r + 1)
            self.wait_vmo(d, B, state='idle', completed=r + 1)
            dA.send_data(b'A%d\r\n' % r)
            dB.send_data(b'B%d\r\n' % r)
            self.assertEqual(cA.read_until(b'\r\n', 3), b'A%d\r\n' % r)
            self.assertEqual(cB.read_until(b'\r\n', 3), b'B%d\r\n' % r)
            sA.close()
            sB.close()
            sA, sB = dA, dB
        self.assertEqual((self.vmo(d, A)['bad_peers'],
                          self.vmo(d, B)['bad_peers'],
                          self.unmatched(d)), (0, 0, 0),
                         'accepted PEERs counted as bad')

class FreshConnection(VMotionTestCase):

    def test_do_proxy_reconnect_during_vmotion(self):
        d, src, cl = self.setup_port(SLOW)
        cookie = self.goahead(src, SEQ)
        cl.send(b'held for new')
        self.wait_vmo(d, UUID, held_bytes=12)
        new = self.source(d)              # same UUID and service URI
        self.wait_vmo(d, UUID, state='idle', abandoned=1, held_bytes=0)
        src.pump_for(0.2)
        self.assertEqual(bytes(src.data), b'',
                         'held input went to the replaced connection')
        new.expect_data(b'held for new')
        dst = self.dest(d, cookie, ok=False)
        dst.assert_no_sb(VMOTION_PEER_OK)
        cl.send(b'next')
        new.expect_data(b'next')
        new.send_data(b'new out\r\n')
        self.assertEqual(cl.read_until(b'\r\n', 3), b'new out\r\n')
        src.pump_for(0.1)
        self.assertEqual(bytes(src.data), b'')


class EscapedFF(VMotionTestCase):

    def test_sequence_and_secret_with_ff(self):
        d, src, cl = self.setup_port(SLOW)
        tries = 0
        while True:
            tries += 1
            src.begin(SEQ_FF)
            g = src.wait_sb(VMOTION_GOAHEAD)
            pl = g['payload']
            self.assertEqual(pl[:4], SEQ_FF)
            self.assertEqual(len(pl), 12)
            # On the wire every 0xFF of the payload is doubled (TV-6/TV-7).
            self.assertEqual(g['raw'], b'\xff\xfa\xe8\x29' +
                             pl.replace(b'\xff', b'\xff\xff') + b'\xff\xf0')
            self.assertTrue(g['raw'].startswith(
                bytes.fromhex('fffae8297619ffffe9')))
            if b'\xff' in pl[4:] or tries >= 1000:
                break
            src.abort()
        self.assertIn(b'\xff', pl[4:], 'no secret with 0xFF in %d GOAHEADs'
                      % tries)
        self.wait_vmo(d, UUID, begun=tries, aborted=tries - 1,
                      state='goahead-sent')
        cl.send(b'held \xff ff')
        dst = self.host(d).handshake_peer(pl)
        ok = dst.wait_sb(VMOTION_PEER_OK)
        self.assertEqual(ok['raw'], bytes.fromhex('fffae82d7619ffffe9fff0'))
        dst.complete(SEQ_FF)
        dst.expect_data(b'held \xff ff')
        self.wait_vmo(d, UUID, state='idle', completed=1)
        dst.send_data(b'\xff\xfe\r\n')
        self.assertEqual(cl.read_until(b'\r\n', 3), b'\xff\xfe\r\n')


if __name__ == '__main__':
    vspctest.main()
