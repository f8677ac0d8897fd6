#!/usr/bin/env python3
"""10,000 guessed VMOTION-PEERs against an open vMotion window: none accepted.

A port is bound (RawVM identify), a telnet client attaches, the source sends
VMOTION-BEGIN with a random sequence and reads the GOAHEAD (secret S). While
that window is open (--vmotion-peer-timeout 600), the test makes 10,000
PEER attempts (2,000 at VSPC_TEST_SCALE=small): the right sequence with
random 8-byte secrets (some containing 0xFF, some S with one bit flipped),
with 4-byte and 9-byte secrets, and random sequences (some with S itself).
They go over ~80 connections carrying 100 PEERs each (a connection stays
unbound after a bad PEER) plus fresh connections with one PEER each. Every
connection also sends the port's UUID and VM name and some console bytes
afterwards, then a DO NAWS whose WONT proves that everything before it was
processed (no sleeps).

Checked (doc/INTERFACES.md "vMotion", PROTOCOL-VMWARE.md 6.1, 6.5 E5/E6):
no PEER-OK (nor any other vMotion reply or WILL-PROXY) on any of them, none
bound (their console bytes never reach the client), vmotion.state still
goahead-sent, the bad-PEER counters (port bad_peers for the right sequence,
healthz vmotion_bad_peers_unmatched for the rest), then the real PEER with S
on a fresh connection still gets PEER-OK, COMPLETE moves the port to it
(held client input goes to it, its output reaches the client), and replays
of the same PEER on other connections, while peered and after COMPLETE, get
nothing (single use).
"""

import os
import random
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vspctest  # noqa: E402
from vspctest import HOST, vmw_sb, esxi_uuid, norm_uuid  # noqa: E402
from test_vmotion_capture import TelnetDecoder  # noqa: E402

IAC, DONT, DO, WONT, WILL = 255, 254, 253, 252, 251
NAWS, COMPORT, VMW = 31, 44, 232
BEGIN, GOAHEAD, NOTNOW, PEER, PEER_OK, COMPLETE, ABORT = \
    40, 41, 43, 44, 45, 46, 48
KS1, WILL_PROXY, VM_VC_UUID, VM_NAME = 0, 71, 80, 82
SECRET_LEN = 8
PEERS_PER_CONN = 100
FRESH_BATCH = 200

SYNC = bytes([IAC, DO, NAWS])             # answered IAC WONT NAWS
PREAMBLE = bytes([IAC, WILL, VMW]) + vmw_sb(KS1, vspctest.ESXI_KS1)


class Conn:
    """A raw connection to the VM listener with a telnet decoder."""

    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), 10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.rx = TelnetDecoder()
        self.eof = False
        self.syncs_sent = 0

    def send(self, data):
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    def sync(self):
        self.syncs_sent += 1
        self.send(SYNC)

    def synced(self):
        return sum(1 for e in self.rx.events
                   if e == ('neg', WONT, NAWS)) >= self.syncs_sent

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


def pump_until(conns, pred, timeout, what):
    """Read all conns until pred() (or fail)."""
    deadline = time.monotonic() + timeout
    while not pred():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError('timed out after %.1fs waiting for %s' %
                                 (timeout, what))
        live = [c.sock for c in conns if not c.eof]
        if not live:
            raise AssertionError('all connections closed while waiting '
                                 'for %s' % what)
        r, _, _ = select.select(live, [], [], min(left, 0.2))
        for c in conns:
            if c.sock in r:
                c.read()


def flip_bit(b, rng):
    i = rng.randrange(len(b) * 8)
    out = bytearray(b)
    out[i // 8] ^= 1 << (i % 8)
    return bytes(out)


def make_attempts(n, seq, secret, rng):
    """[(kind, cookie)]: kind 'right8' (right sequence, wrong 8-byte
    secret), 'odd' (right sequence, secret of another length), 'wrong'
    (a sequence that is not open)."""
    out = []
    for i in range(n):
        r = i % 20
        if r < 8:
            s = bytes(rng.randrange(256) for _ in range(SECRET_LEN))
            out.append(('right8', seq + s))
        elif r < 10:                       # with 0xFF bytes
            s = bytearray(rng.randrange(256) for _ in range(SECRET_LEN))
            for _ in range(rng.randrange(1, 4)):
                s[rng.randrange(SECRET_LEN)] = 0xff
            out.append(('right8', seq + bytes(s)))
        elif r < 13:                       # S with one bit flipped
            out.append(('right8', seq + flip_bit(secret, rng)))
        elif r == 13:                      # truncated to 4 bytes
            s = secret[:4] if rng.random() < 0.5 else \
                bytes(rng.randrange(256) for _ in range(4))
            out.append(('odd', seq + s))
        elif r == 14:                      # 9 bytes
            s = secret + bytes([rng.randrange(256)]) if rng.random() < 0.5 \
                else bytes(rng.randrange(256) for _ in range(9))
            out.append(('odd', seq + s))
        else:                              # another sequence
            while True:
                q = bytes(rng.randrange(256) for _ in range(
                    4 if r < 18 else rng.randrange(1, 9)))
                if q != seq:
                    break
            s = secret if r == 19 else \
                bytes(rng.randrange(256) for _ in range(SECRET_LEN))
            out.append(('wrong', q + s))
        if out[-1][1] == seq + secret:     # never the right cookie
            out.pop()
            out.append(('right8', seq + flip_bit(secret, rng)))
    rng.shuffle(out)
    return out


class TestPeerBruteforce(vspctest.VspcTestCase):

    def test_bruteforce_then_real_peer(self):
        t0 = time.monotonic()
        total = 2000 if vspctest.scale() == 'small' else 10000
        rng = random.Random(int.from_bytes(os.urandom(8), 'big'))
        d = self.daemon(['--vmotion-peer-timeout', '600',
                         '--ident-timeout', '60'])
        uuid = esxi_uuid(0x0b7f0bce, 1)
        pid = norm_uuid(uuid)
        identity = vmw_sb(VM_VC_UUID, uuid.encode()) + \
            vmw_sb(VM_NAME, b'bf-vm')

        src = self.raw_vm(d)
        src.identify(name='bf-vm', uuid=uuid)
        p = d.wait_ports(lambda ps: any(x['id'] == pid and x['client_port']
                                        for x in ps))
        p = d.port(pid)
        client = self.telnet(p['client_port'])
        d.wait_ports(lambda ps: d.port(pid)['clients'] == 1)
        client_data = bytearray()

        # BEGIN, GOAHEAD (secret S).
        seq = os.urandom(4)
        src_rx = TelnetDecoder()
        src.send(vmw_sb(BEGIN, seq))
        deadline = time.monotonic() + 10

        def goaheads():
            return [pl for c, pl in src_rx.vmw(GOAHEAD)]
        while not goaheads():
            self.assertLess(time.monotonic(), deadline, 'no GOAHEAD')
            src_rx.feed(src.read_available(0.2))
        ga = goaheads()[0]
        self.assertEqual(ga[:4], seq)
        self.assertEqual(len(ga), 4 + SECRET_LEN)
        secret = ga[4:]
        self.assertIn(vmw_sb(GOAHEAD, ga), bytes(src_rx.raw))

        # Client input typed during the window is held.
        client.send(b'HELD')
        vspctest.wait_for(lambda: d.port(pid)['vmotion']['held_bytes'] == 4,
                          what='HELD held')

        attempts = make_attempts(total, seq, secret, rng)
        n_multi = (total * 4 // 5) // PEERS_PER_CONN
        multi = attempts[:n_multi * PEERS_PER_CONN]
        fresh = attempts[n_multi * PEERS_PER_CONN:]
        all_conns = []

        def attack(conn, batch, tag):
            data = bytearray(PREAMBLE)
            for i, (kind, cookie) in enumerate(batch):
                data += vmw_sb(PEER, cookie)
                if i == 0:
                    data += bytes([IAC, WILL, COMPORT])
            # Identity of the port and console bytes: must not bind.
            data += identity + b'<attacker %s>' % tag
            conn.send(bytes(data))
            conn.sync()

        # Phase 1: connections with 100 PEERs each, all open at once.
        conns = []
        for k in range(n_multi):
            c = Conn(d.vm_port)
            all_conns.append(c)
            conns.append(c)
            attack(c, multi[k * PEERS_PER_CONN:(k + 1) * PEERS_PER_CONN],
                   b'm%d' % k)
        pump_until(conns, lambda: all(c.synced() for c in conns), 30,
                   'the multi-PEER connections to be processed')

        # Phase 2: fresh connections, one PEER each, in batches.
        for b in range(0, len(fresh), FRESH_BATCH):
            batch = []
            for i, att in enumerate(fresh[b:b + FRESH_BATCH]):
                c = Conn(d.vm_port)
                all_conns.append(c)
                batch.append(c)
                attack(c, [att], b'f%d' % (b + i))
            pump_until(batch, lambda: all(c.synced() for c in batch), 30,
                       'fresh PEER connections to be processed')
            for c in batch:
                c.close()
        client_data += client.read_available(0)

        # Nothing accepted, nothing bound, the window still open.
        for c in all_conns:
            self.assertEqual([x for x in c.rx.vmw() if x[0] in
                              (PEER_OK, GOAHEAD, NOTNOW, WILL_PROXY)], [])
            self.assertNotIn(bytes([IAC, 250, VMW, PEER_OK]),
                             bytes(c.rx.raw))
            self.assertFalse(c.eof, 'attacker connection closed early')
        self.assertNotIn(b'attacker', bytes(client_data))
        p = d.port(pid)
        self.assertEqual(p['vmotion']['state'], 'goahead-sent', p)
        self.assertTrue(p['connected'], p)
        self.assertEqual(p['vmotion']['held_bytes'], 4, p)
        self.assertEqual(p['vmotion']['begun'], 1, p)
        h = d.healthz()
        self.assertEqual(h['vmotions_open'], 1, h)
        counters = (p['vmotion']['bad_peers'],
                    h['vmotion_bad_peers_unmatched'])
        for c in conns:           # phase 1 connections: gone
            c.close()

        # The real PEER, like ESXi: KS-1 | PEER | WILL COM-PORT.
        dst = Conn(d.vm_port)
        self.addCleanup(dst.close)
        dst.send(PREAMBLE + vmw_sb(PEER, seq + secret) +
                 bytes([IAC, WILL, COMPORT]))
        pump_until([dst], lambda: dst.rx.vmw(PEER_OK), 10, 'PEER-OK')
        self.assertEqual(dst.rx.vmw(PEER_OK), [(PEER_OK, seq)])
        self.assertEqual(d.port(pid)['vmotion']['state'], 'peered')
        before = sum(counters)

        def replay(what):
            rep = Conn(d.vm_port)
            self.addCleanup(rep.close)
            rep.send(PREAMBLE + vmw_sb(PEER, seq + secret) +
                     bytes([IAC, WILL, COMPORT]) + identity)
            rep.sync()
            pump_until([rep], rep.synced, 10, 'replayed PEER processed')
            self.assertEqual(rep.rx.vmw(PEER_OK), [],
                             'replayed PEER accepted (%s)' % what)
            self.assertNotIn(bytes([IAC, 250, VMW, PEER_OK]),
                             bytes(rep.rx.raw))

        # Replay while peered: the secret is already unpublished.
        replay('while peered')
        p = d.port(pid)
        self.assertEqual(p['vmotion']['state'], 'peered', p)
        self.assertEqual(p['vmotion']['bad_peers'] +
                         d.healthz()['vmotion_bad_peers_unmatched'],
                         before + 1, 'the replay counted once')
        dst.send(identity)
        dst.sync()
        pump_until([dst], dst.synced, 10, 'identity processed')
        self.assertEqual(dst.rx.data(), b'', 'held input before COMPLETE')
        dst.send(vmw_sb(COMPLETE, seq))
        pump_until([dst], lambda: dst.rx.data() == b'HELD', 10,
                   'held input on the destination after COMPLETE')
        p = vspctest.wait_for(
            lambda: (lambda x: x if x['vmotion']['state'] == 'idle' else
                     None)(d.port(pid)), what='vMotion ended')
        self.assertEqual(p['vmotion']['completed'], 1, p)
        self.assertEqual(p['vmotion']['abandoned'], 0, p)
        dst.send(b'from the destination\r\n')
        client_data += client.read_until(b'from the destination\r\n', 10)
        self.assertEqual(bytes(client_data), b'from the destination\r\n')
        client.send(b'typed')
        pump_until([dst], lambda: dst.rx.data() == b'HELDtyped', 10,
                   'input to the new connection')
        src.close()

        # Replay after COMPLETE: nothing either.
        replay('after COMPLETE')
        p = d.port(pid)
        h = d.healthz()
        self.assertEqual(p['vmotion']['state'], 'idle', p)
        self.assertEqual(h['vmotions_open'], 0, h)
        self.assertEqual(p['vmotion']['bad_peers'] +
                         h['vmotion_bad_peers_unmatched'], before + 2,
                         'each replay counted once as a bad PEER')
        self.assertEqual(client.read_available(0.1), b'')
        self.assertFalse(client.eof)
        self.assertEqual(dst.rx.vmw(PEER_OK), [(PEER_OK, seq)])
        self.assertFalse(dst.eof)

        # Counters during the window (INTERFACES: the port's bad_peers when
        # the sequence matched, else vmotion_bad_peers_unmatched). 4- and
        # 9-byte secrets leave the sequence length open: either counter.
        n = {k: sum(1 for a in attempts if a[0] == k)
             for k in ('right8', 'odd', 'wrong')}
        bad, unmatched = counters
        self.assertEqual(bad + unmatched, total,
                         'every attempt counted once: %r, %r' %
                         (counters, n))
        self.assertGreaterEqual(bad, n['right8'],
                                'port bad_peers %d < %d attempts with the '
                                'right sequence (%r)' %
                                (bad, n['right8'], n))
        self.assertLessEqual(bad, n['right8'] + n['odd'])
        self.assertGreaterEqual(unmatched, n['wrong'])
        self.assertLess(time.monotonic() - t0, 60)


if __name__ == '__main__':
    vspctest.main()
