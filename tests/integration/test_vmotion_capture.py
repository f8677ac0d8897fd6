#!/usr/bin/env python3
"""The whole vMotion capture replayed against the real daemon.

Every host-to-proxy (V>P) segment of tests/data/capture-transcript.tsv,
streams 0-3, is sent in capture order (time-compressed, but the order across
streams is kept, FINs included), each stream over its own raw TCP connection
to the VM listener, one send per captured segment. The proxy's secret is
random, so the daemon's GOAHEADs are decoded and each destination's
VMOTION-PEER is rewritten to carry the real sequence||secret.

Before a segment that the capture shows after a proxy reply, the test waits
(<= 5 s) for the daemon's reply of the same meaning on that stream (DONT
AUTHENTICATION, KNOWN-SUBOPTIONS-2, GOAHEAD(seq), PEER-OK(seq), the close of a
source after its FIN, ...). Then it checks (doc/INTERFACES.md "vMotion",
PROTOCOL-VMWARE.md 4.4, 6, 11 TV-3..TV-6):

- handshake on every stream; WILL-PROXY only on stream 0 (the others sent
  no DO-PROXY);
- each BEGIN gets GOAHEAD(seq || 8 bytes) (cd526755, NOTNOW in the capture,
  may get GOAHEAD or NOTNOW; the next BEGIN supersedes it, E10), each PEER
  gets PEER-OK(seq) (0xFF doubled on the wire), ABORT gets no reply;
- a telnet client on the port's listener from the start receives exactly the
  console bytes of all streams in capture order and is never closed;
- client input typed around each hand-over reaches the right connection:
  D0 on stream 0 before GOAHEAD, A1 on stream 1 after COMPLETE, B2 on stream
  2 after ABORT, C3 on stream 3 after COMPLETE, never anywhere else;
- final API counters.

Variants: every segment split into single bytes; the source FIN of vMotion 1
sent after the destination's COMPLETE.
"""

import collections
import os
import re
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import telnetc  # noqa: E402
import vspctest  # noqa: E402
from vspctest import HOST, vmw_sb  # noqa: E402

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
ECHO, AUTH, COMPORT, VMW = 1, 37, 44, 232
KS1, KS2 = 0, 1
BEGIN, GOAHEAD, NOTNOW, PEER, PEER_OK, COMPLETE, ABORT = \
    40, 41, 43, 44, 45, 46, 48
DO_PROXY, WILL_PROXY, WONT_PROXY = 70, 71, 73
VM_VC_UUID, GET_VM_VC_UUID, VM_NAME, GET_VM_NAME = 80, 81, 82, 83

KS2_REQUIRED = {0, 1, 2, 3, 40, 41, 43, 44, 45, 46, 48, 70, 71, 73,
                80, 81, 82, 83}
PORT_ID = '0123456789abcdeffedcba9800000000'
SECRET_LEN = 8
WAIT = 5.0
TRANSCRIPT = os.path.join(vspctest.SRC, 'tests', 'data',
                          'capture-transcript.tsv')

SEQ1 = bytes.fromhex('44da87f1')        # stream 0 -> 1 (TV-3)
SEQ2 = bytes.fromhex('98d98db4')        # stream 1 -> 2
SEQ_NOTNOW = bytes.fromhex('cd526755')  # stream 2, NOTNOW in the capture
SEQ_ABORT = bytes.fromhex('61ed26a2')   # stream 2, GOAHEAD then ABORT
SEQ5 = bytes.fromhex('7619ffe9')        # stream 2 -> 3 (TV-6)


class TelnetDecoder:
    """Streaming telnet decoder. events: ('data', bytes) (runs merged),
    ('neg', cmd, opt), ('sb', opt, payload) with 0xFF un-doubled,
    ('cmd', c)."""

    def __init__(self):
        self.events = []
        self.raw = bytearray()
        self._st = 0
        self._cmd = 0
        self._sb = bytearray()

    def _data(self, c):
        if self.events and self.events[-1][0] == 'data':
            self.events[-1] = ('data', self.events[-1][1] + bytes([c]))
        else:
            self.events.append(('data', bytes([c])))

    def feed(self, data):
        self.raw += data
        for c in data:
            st = self._st
            if st == 0:
                if c == IAC:
                    self._st = 1
                else:
                    self._data(c)
            elif st == 1:
                if c == IAC:
                    self._data(IAC)
                    self._st = 0
                elif c in (WILL, WONT, DO, DONT):
                    self._cmd = c
                    self._st = 2
                elif c == SB:
                    self._sb = bytearray()
                    self._st = 3
                else:
                    self.events.append(('cmd', c))
                    self._st = 0
            elif st == 2:
                self.events.append(('neg', self._cmd, c))
                self._st = 0
            elif st == 3:
                if c == IAC:
                    self._st = 4
                else:
                    self._sb.append(c)
            elif st == 4:
                if c == IAC:
                    self._sb.append(IAC)
                    self._st = 3
                    continue
                sb = bytes(self._sb)
                self.events.append(('sb', sb[0] if sb else None, sb[1:]))
                self._st = 0

    def data(self):
        return b''.join(e[1] for e in self.events if e[0] == 'data')

    def vmw(self, cmd=None):
        """VMWARE-EXT subnegotiations: [(cmd, payload)], optionally of one
        command."""
        out = []
        for e in self.events:
            if e[0] == 'sb' and e[1] == VMW and e[2]:
                if cmd is None or e[2][0] == cmd:
                    out.append((e[2][0], e[2][1:]))
        return out


def event_keys(events):
    """Keys with meaning for a decoded event list (see Replay.satisfied)."""
    keys = []
    for e in events:
        if e[0] == 'neg':
            keys.append(('neg', e[1], e[2]))
        elif e[0] == 'sb' and e[1] == VMW and e[2]:
            cmd, pl = e[2][0], e[2][1:]
            if cmd == GOAHEAD:
                keys.append(('goahead', pl[:-SECRET_LEN]
                             if len(pl) > SECRET_LEN else b'?' + pl))
            elif cmd == NOTNOW:
                keys.append(('notnow', pl))
            elif cmd == PEER_OK:
                keys.append(('peerok', pl))
            else:
                keys.append(('sb', cmd))
    return keys


class Seg:
    """One transcript event."""

    def __init__(self, t, stream, direction, event, data):
        self.t, self.stream, self.dir = t, stream, direction
        self.event, self.data = event, data
        dec = TelnetDecoder()
        dec.feed(data)
        self.decoded = dec
        self.vmw = dec.vmw()

    def has(self, cmd, payload=None):
        return any(c == cmd and (payload is None or p == payload)
                   for c, p in self.vmw)

    @property
    def fin(self):
        return 'fin' in self.event

    def __repr__(self):
        return '<t=%.6f s%d %s %s %s>' % (self.t, self.stream, self.dir,
                                           self.event, self.data.hex())


def load_transcript():
    segs = []
    with open(TRANSCRIPT) as f:
        for ln in f:
            if ln.startswith('#') or not ln.strip():
                continue
            t, stream, d, event, hx = (ln.rstrip('\n').split('\t') +
                                       [''])[:5]
            segs.append(Seg(float(t), int(stream), d, event,
                            bytes.fromhex(hx)))
    return segs


def expected_keys(seg):
    """What a P>V segment of the captured proxy means for our daemon: the
    keys that the daemon's reply must contain (WILL ECHO, which the
    captured proxy offered and vspcd need not, is left out; a NOTNOW may
    be answered either way)."""
    keys = []
    for k in event_keys(seg.decoded.events):
        if k == ('neg', WILL, ECHO):
            continue
        if k[0] == 'goahead':
            # The capture's secret is 4 bytes: recompute the sequence.
            pl = seg.vmw[0][1] if seg.vmw else b''
            k = ('goahead', pl[:-4])
        elif k[0] == 'notnow':
            k = ('goahead|notnow', k[1])
        keys.append(k)
    if seg.fin:
        keys.append(('eof',))
    return keys


class VMConn:
    """A raw TCP connection to the VM listener playing one captured stream."""

    def __init__(self, port, n):
        self.n = n
        self.sock = socket.create_connection((HOST, port), 10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.rx = TelnetDecoder()
        self.eof = False
        self.fin_sent = False

    def send(self, data):
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def shutdown(self):
        self.sock.shutdown(socket.SHUT_WR)
        self.fin_sent = True

    def read(self):
        while not self.eof:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionResetError:
                data = b''
            if not data:
                self.eof = True
                return
            self.rx.feed(data)

    def close(self):
        self.sock.close()


class Replay:
    """Drives one replay of the capture against a daemon."""

    def __init__(self, tc, daemon, split=False, fin_last=False):
        self.tc = tc
        self.d = daemon
        self.split = split
        self.segs = load_transcript()
        if fin_last:
            # vMotion 1: the source FIN after the destination's COMPLETE.
            fin0 = next(s for s in self.segs if s.stream == 0 and
                        s.dir == 'V>P' and s.fin)
            comp1 = next(s for s in self.segs if s.stream == 1 and
                         s.dir == 'V>P' and s.has(COMPLETE))
            fin0.t = comp1.t + 1e-9
            self.segs.sort(key=lambda s: s.t)
        self.conns = {}
        self.client = None
        self.client_data = bytearray()
        self.secrets = {}         # sequence -> secret issued by the daemon
        self.sent_data = []       # console bytes sent, in order
        self.marks = {}           # name -> snapshot taken during the replay

    # -- I/O --

    def pump(self, timeout=0.0):
        """Read whatever the daemon sent on every connection."""
        socks = [c.sock for c in self.conns.values() if not c.eof]
        if self.client is not None and not self.client.eof:
            socks.append(self.client.sock)
        if not socks:
            return
        r, _, _ = select.select(socks, [], [], timeout)
        for c in self.conns.values():
            if c.sock in r:
                c.read()
        if self.client is not None and self.client.sock in r:
            while self.client._fill(0):
                pass
            self.client_data += self.client.read_available(0)
        for c in self.conns.values():
            for cmd, pl in c.rx.vmw(GOAHEAD):
                if len(pl) > SECRET_LEN:
                    self.secrets[pl[:-SECRET_LEN]] = pl[-SECRET_LEN:]

    def wait(self, pred, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while True:
            self.pump(0)
            if pred():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError('timed out after %.1fs waiting for %s'
                                     % (timeout, what))
            self.pump(min(left, 0.05))

    def satisfied(self, n, key, count):
        c = self.conns.get(n)
        if c is None:
            return False
        if key == ('eof',):
            return c.eof
        have = collections.Counter(event_keys(c.rx.events))
        if key[0] == 'goahead|notnow':
            return have[('goahead', key[1])] + have[('notnow', key[1])] \
                >= count
        return have[key] >= count

    def wait_replies(self, seg, required):
        for (n, key), count in sorted(required.items(), key=repr):
            self.wait(lambda: self.satisfied(n, key, count),
                      'the reply %r (x%d) on stream %d before sending %r'
                      % (key, count, n, seg))

    # -- API --

    def port(self):
        return self.d.port(PORT_ID)

    def wait_port(self, pred, what):
        """Poll the API (pumping the sockets) until pred(port)."""
        last = [None]

        def ok():
            last[0] = self.port()
            return last[0] is not None and pred(last[0])
        try:
            self.wait(ok, what)
        except AssertionError as e:
            raise AssertionError('%s; last port: %r' % (e, last[0]))
        return last[0]

    # -- the replay --

    def rewrite_peer(self, seg):
        """The captured PEER with the daemon's real secret (0xFF doubled)."""
        data = seg.data
        for cmd, cookie in seg.vmw:
            if cmd != PEER:
                continue
            seq = cookie[:-4]     # the capture's secret is 4 bytes
            self.tc.assertIn(seq, self.secrets,
                             'no GOAHEAD for %s before its PEER' % seq.hex())
            old = vmw_sb(PEER, cookie)
            self.tc.assertIn(old, data)
            data = data.replace(old, vmw_sb(PEER, seq + self.secrets[seq]))
        return data

    def run(self, hook):
        required = collections.Counter()
        prev_t = None
        for seg in self.segs:
            if seg.dir == 'P>V':
                for k in expected_keys(seg):
                    required[(seg.stream, k)] += 1
                continue
            if prev_t is not None:
                time.sleep(min(max(seg.t - prev_t, 0), 0.02))
            prev_t = seg.t
            self.wait_replies(seg, required)
            if seg.stream not in self.conns:
                self.conns[seg.stream] = VMConn(self.d.vm_port, seg.stream)
            hook(self, seg)
            c = self.conns[seg.stream]
            if seg.data:
                data = self.rewrite_peer(seg) if seg.has(PEER) else seg.data
                if self.split:
                    for b in data:
                        c.send(bytes([b]))
                else:
                    c.send(data)
                self.sent_data.append(seg.decoded.data())
            if seg.fin:
                c.shutdown()
            self.pump(0)
        # The proxy's last replies (P>V FINs of streams 2 and 3).
        self.wait_replies('the end', required)
        for c in self.conns.values():
            self.wait(lambda: c.eof, 'the daemon to close stream %d '
                      'after its FIN' % c.n)

    def close(self):
        for c in self.conns.values():
            c.close()
        if self.client is not None:
            self.client.close()


class TestVMotionCapture(vspctest.VspcTestCase):

    def replay(self, split=False, fin_last=False):
        d = self.daemon()
        rp = Replay(self, d, split=split, fin_last=fin_last)
        self.addCleanup(rp.close)
        state = {'client_port': None, 'first_s1': True, 'first_s3': True}

        def type_held(rp, text, what):
            """Type text on the client; it must be held by the daemon."""
            rp.client.send(text)
            rp.wait_port(lambda p: p['vmotion']['held_bytes'] == len(text),
                         '%r held (%s)' % (text, what))

        def hook(rp, seg):
            s = seg.stream
            if s == 0 and seg.has(VM_NAME) and rp.client is None:
                # Bound (WILL-PROXY seen): attach the client now.
                p = rp.wait_port(lambda p: p['client_port'], 'the port')
                state['client_port'] = p['client_port']
                rp.client = telnetc.Telnet(HOST, p['client_port'])
                rp.wait_port(lambda p: p['clients'] == 1, 'client attached')
            elif s == 0 and seg.has(BEGIN, SEQ1):
                # D0: written to stream 0 before BEGIN (bytes_to_vm counts
                # it when it is queued to the VM).
                rp.client.send(b'D0')
                rp.wait_port(lambda p: p['bytes_to_vm'] == 2, 'D0 queued')
            elif s == 1 and state['first_s1']:
                state['first_s1'] = False
                type_held(rp, b'A1', 'after GOAHEAD %s' % SEQ1.hex())
            elif s == 1 and seg.has(COMPLETE, SEQ1):
                rp.marks['s1_before_complete'] = rp.conns[1].rx.data()
                p = rp.port()
                self.assertEqual(p['vmotion']['state'], 'peered', p)
            elif s == 2 and seg.has(COMPLETE, SEQ2):
                p = rp.port()
                self.assertEqual(p['vmotion']['state'], 'peered', p)
            elif s == 2 and seg.has(ABORT):
                type_held(rp, b'B2', 'after GOAHEAD %s' % SEQ_ABORT.hex())
                rp.marks['s2_before_abort'] = rp.conns[2].rx.data()
                rp.marks['s2_events_at_abort'] = len(rp.conns[2].rx.events)
            elif s == 2 and seg.has(BEGIN, SEQ5):
                rp.marks['s2_events_at_begin5'] = len(rp.conns[2].rx.events)
            elif s == 3 and state['first_s3']:
                state['first_s3'] = False
                type_held(rp, b'C3', 'after BEGIN %s' % SEQ5.hex())
            elif s == 3 and seg.has(COMPLETE, SEQ5):
                rp.marks['s3_before_complete'] = rp.conns[3].rx.data()
            if rp.client is not None and seg.has(COMPLETE):
                p = rp.port()
                self.assertEqual(p['client_port'], state['client_port'])

        rp.run(hook)
        self.check(rp, state)

    def check(self, rp, state):
        c = rp.conns
        self.assertEqual(sorted(c), [0, 1, 2, 3])

        # Handshake on every stream.
        for n, conn in c.items():
            ev = conn.rx.events
            keys = event_keys(ev)
            with self.subTest(stream=n):
                self.assertIn(('neg', DO, VMW), keys)
                self.assertIn(('neg', DONT, AUTH), keys)
                self.assertIn(('neg', DONT, COMPORT), keys)
                ks2 = conn.rx.vmw(KS2)
                self.assertEqual(len(ks2), 1, ks2)
                self.assertLessEqual(KS2_REQUIRED, set(ks2[0][1]))
                self.assertEqual(len(conn.rx.vmw(GET_VM_VC_UUID)), 1)
                self.assertEqual(len(conn.rx.vmw(GET_VM_NAME)), 1)
                self.assertEqual(conn.rx.vmw(WONT_PROXY), [])
                allowed = {KS2, GET_VM_VC_UUID, GET_VM_NAME, GOAHEAD,
                           NOTNOW, PEER_OK}
                if n == 0:
                    allowed.add(WILL_PROXY)
                    self.assertEqual(len(conn.rx.vmw(WILL_PROXY)), 1)
                else:
                    self.assertEqual(conn.rx.vmw(WILL_PROXY), [],
                                     'WILL-PROXY to a destination that '
                                     'sent no DO-PROXY')
                self.assertEqual([x for x in conn.rx.vmw()
                                  if x[0] not in allowed], [],
                                 'unexpected VMWARE-EXT commands')

        # GOAHEAD(seq || 8 bytes), 0xFF doubled, once per BEGIN.
        def goaheads(n, seq):
            return [p for cmd, p in c[n].rx.vmw(GOAHEAD)
                    if p[:len(seq)] == seq]
        for n, seq in ((0, SEQ1), (1, SEQ2), (2, SEQ_ABORT), (2, SEQ5)):
            g = goaheads(n, seq)
            self.assertEqual(len(g), 1, 'GOAHEAD for %s on stream %d: %r'
                             % (seq.hex(), n, g))
            self.assertEqual(len(g[0]), len(seq) + SECRET_LEN)
            self.assertIn(vmw_sb(GOAHEAD, g[0]), bytes(c[n].rx.raw))
        self.assertIn(bytes.fromhex('fffae8297619ffffe9'),
                      bytes(c[2].rx.raw))
        secrets = [goaheads(n, s)[0][len(s):] for n, s in
                   ((0, SEQ1), (1, SEQ2), (2, SEQ_ABORT), (2, SEQ5))]
        self.assertEqual(len(set(secrets)), len(secrets), 'secret reused')
        nn = goaheads(2, SEQ_NOTNOW) + [p for cmd, p in c[2].rx.vmw(NOTNOW)
                                        if p == SEQ_NOTNOW]
        self.assertEqual(len(nn), 1, 'BEGIN %s: %r' % (SEQ_NOTNOW.hex(), nn))
        notnow_sent = nn[0] == SEQ_NOTNOW
        if not notnow_sent:
            self.assertEqual(len(nn[0]), len(SEQ_NOTNOW) + SECRET_LEN)
        self.assertEqual(c[2].rx.vmw(NOTNOW),
                         [(NOTNOW, SEQ_NOTNOW)] if notnow_sent else [])
        for n in (0, 1, 3):
            self.assertEqual(c[n].rx.vmw(NOTNOW), [], 'NOTNOW on %d' % n)
        self.assertEqual(c[3].rx.vmw(GOAHEAD), [])

        # PEER-OK with the sequence only, on the destinations only.
        for n, seq in ((1, SEQ1), (2, SEQ2), (3, SEQ5)):
            self.assertEqual(c[n].rx.vmw(PEER_OK), [(PEER_OK, seq)],
                             'PEER-OK on stream %d' % n)
        self.assertEqual(c[0].rx.vmw(PEER_OK), [])
        self.assertIn(bytes.fromhex('fffae82d7619ffffe9fff0'),
                      bytes(c[3].rx.raw))

        # ABORT: no reply; the next thing on stream 2 is B2, then the
        # GOAHEAD of the next BEGIN.
        after = c[2].rx.events[rp.marks['s2_events_at_abort']:
                               rp.marks['s2_events_at_begin5']]
        self.assertEqual(after, [('data', b'B2')],
                         'stream 2 between ABORT and the next BEGIN')

        # Client input: each marker on the right connection only, in order.
        self.assertEqual(c[0].rx.data(), b'D0')
        ev0 = c[0].rx.events
        i_d0 = ev0.index(('data', b'D0'))
        i_ga = next(i for i, e in enumerate(ev0) if e[0] == 'sb' and
                    e[2][:1] == bytes([GOAHEAD]))
        self.assertLess(i_d0, i_ga, 'D0 must precede GOAHEAD on stream 0')
        self.assertEqual(rp.marks['s1_before_complete'], b'',
                         'held input reached the destination before '
                         'COMPLETE')
        self.assertEqual(c[1].rx.data(), b'A1')
        self.assertEqual(rp.marks['s2_before_abort'], b'')
        self.assertEqual(c[2].rx.data(), b'B2')
        self.assertEqual(rp.marks['s3_before_complete'], b'')
        self.assertEqual(c[3].rx.data(), b'C3')

        # The client got every console byte once, in capture order.
        expected = b''.join(rp.sent_data)
        self.assertEqual(expected[:25], bytes(range(0x20, 0x39)))
        self.assertIn(b'\x7e\x20\x21', expected)
        rp.wait(lambda: len(rp.client_data) >= len(expected),
                '%d console bytes at the client' % len(expected))
        extra = rp.client.read_available(0.2)
        self.assertEqual(bytes(rp.client_data) + extra, expected)
        self.assertFalse(rp.client.eof, 'client closed by the daemon')

        # API.
        p = rp.wait_port(lambda p: not p['connected'], 'connected false')
        self.assertEqual(p['client_port'], state['client_port'])
        self.assertEqual(p['clients'], 1)
        self.assertEqual(p['bytes_from_vm'], len(expected))
        self.assertEqual(p['bytes_to_vm'], 8)
        vm = p['vmotion']
        self.assertEqual(vm['state'], 'idle', vm)
        self.assertEqual(vm['begun'], 5, vm)
        self.assertEqual(vm['completed'], 3, vm)
        self.assertEqual(vm['aborted'], 1, vm)
        self.assertEqual(vm['notnow'] + vm['abandoned'], 1, vm)
        self.assertEqual(vm['notnow'], 1 if notnow_sent else 0, vm)
        self.assertEqual(vm['bad_peers'], 0, vm)
        self.assertEqual(vm['held_bytes'], 0, vm)
        h = rp.d.healthz()
        self.assertEqual(h['vmotions_open'], 0, h)
        self.assertEqual(h['vmotion_bad_peers_unmatched'], 0, h)
        self.assertEqual(h['vm_connections'], 0, h)
        self.assertEqual(h['ports'], 1, h)
        self.assertFalse(rp.client.eof, 'client closed by the daemon')

        # One log line per vMotion (OUTCOME is free text).
        seqs = re.findall(r'port %s: vMotion seq ([0-9a-f]+) [^\n]* '
                          r'after \d+\.\d{3} s \(source [^\n]*, '
                          r'destination [^\n]*\)' % PORT_ID,
                          rp.d.stderr())
        self.assertEqual(sorted(seqs), sorted(
            s.hex() for s in (SEQ1, SEQ2, SEQ_NOTNOW, SEQ_ABORT, SEQ5)),
            'one log line per vMotion')

    def test_replay_real_segments(self):
        self.replay()

    def test_replay_one_byte_per_send(self):
        self.replay(split=True)

    def test_replay_source_fin_after_complete(self):
        self.replay(fin_last=True)


if __name__ == '__main__':
    vspctest.main()
