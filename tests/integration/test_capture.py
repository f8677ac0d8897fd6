#!/usr/bin/env python3
"""Replay the real ESXi capture (PROTOCOL-VMWARE.md TV-1, TV-2) to vspcd.

Stream 0 of tests/data/capture-transcript.tsv, host-to-proxy segments with
their real boundaries, goes over a raw TCP connection to the VM listener.
The daemon's replies are decoded with a small telnet parser and checked by
meaning (section 4.3), the serial data must reach a telnet client attached
to the port, and the admin API must show the identity from the capture.
Variants: the same bytes one byte per write, all in one write, and console
data sent before identification.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vspctest  # noqa: E402
from vspctest import HOST  # noqa: E402

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
BINARY, ECHO, SGA, AUTH, COMPORT, VMW = 0, 1, 3, 37, 44, 232
KS2, UNKNOWN_RCVD_2 = 1, 3
DO_PROXY, WILL_PROXY, WONT_PROXY = 70, 71, 73
GET_VM_VC_UUID, GET_VM_NAME = 81, 83

KS2_REQUIRED = {0, 1, 2, 3, 40, 41, 43, 44, 45, 46, 48, 70, 71, 73,
                80, 81, 82, 83}
UUID = '0123456789abcdeffedcba9800000000'
NAME = 'vm-00000'
DATA = bytes(range(0x20, 0x39))          # TV-2: ' ' .. '8', 25 bytes
TRANSCRIPT = os.path.join(vspctest.SRC, 'tests', 'data',
                          'capture-transcript.tsv')


def load_stream0():
    """V>P data segments of stream 0 up to the last serial byte (TV-1,
    TV-2); the VMOTION-BEGIN that follows is left out."""
    segs = []
    with open(TRANSCRIPT) as f:
        for ln in f:
            if ln.startswith('#') or not ln.strip():
                continue
            t, stream, direction, event, hx = (ln.rstrip('\n').split('\t') +
                                               [''])[:5]
            if stream != '0' or direction != 'V>P' or event != 'data':
                continue
            segs.append(bytes.fromhex(hx))
    last = max(i for i, s in enumerate(segs) if s == b'\x38')
    return segs[:last + 1]


class TelnetParser:
    """Streaming telnet decoder: events ('data', b), ('neg', cmd, opt),
    ('sb', opt, payload), ('cmd', c), ('bad', what)."""

    def __init__(self):
        self.events = []
        self.st = 0
        self.cmd = 0
        self.sb = bytearray()
        self.data = bytearray()

    def _flush(self):
        if self.data:
            self.events.append(('data', bytes(self.data)))
            self.data = bytearray()

    def feed(self, buf):
        for c in buf:
            st = self.st
            if st == 0:
                if c == IAC:
                    self.st = 1
                else:
                    self.data.append(c)
            elif st == 1:
                if c == IAC:
                    self.data.append(IAC)
                    self.st = 0
                elif c in (WILL, WONT, DO, DONT):
                    self._flush()
                    self.cmd = c
                    self.st = 2
                elif c == SB:
                    self._flush()
                    self.sb = bytearray()
                    self.st = 3
                else:
                    self._flush()
                    self.events.append(('cmd', c) if c != SE
                                       else ('bad', 'SE outside SB'))
                    self.st = 0
            elif st == 2:
                self.events.append(('neg', self.cmd, c))
                self.st = 0
            elif st == 3:
                if c == IAC:
                    self.st = 4
                else:
                    self.sb.append(c)
            elif st == 4:
                if c == IAC:
                    self.sb.append(IAC)
                    self.st = 3
                    continue
                if c != SE:
                    self.events.append(('bad', 'IAC %d in SB' % c))
                sb = bytes(self.sb)
                self.events.append(('sb', sb[0] if sb else None, sb[1:]))
                self.st = 0
        self._flush()

    def negs(self):
        return [(e[1], e[2]) for e in self.events if e[0] == 'neg']

    def vmw(self):
        """[(subcommand, payload)] of the option 232 subnegotiations."""
        return [(e[2][0], e[2][1:]) for e in self.events
                if e[0] == 'sb' and e[1] == VMW and e[2]]

    def data_bytes(self):
        return b''.join(e[1] for e in self.events if e[0] == 'data')


class CaptureTest(vspctest.VspcTestCase):

    def setUp(self):
        self.segs = load_stream0()
        # Sanity of the transcript itself: 20 negotiation segments, 25 data.
        self.assertEqual(b''.join(self.segs[-25:]), DATA)
        self.assertEqual(self.segs[0], bytes([IAC, WILL, AUTH]))
        self.d = self.daemon()

    # -- helpers --

    def read_replies(self, vm, parser, seconds):
        parser.feed(vm.read_for(seconds))

    def check_replies(self, p, sent):
        """The daemon's replies on the VM link, by meaning."""
        negs = p.negs()
        for want, what in (((WILL, BINARY), 'WILL BINARY'),
                           ((DO, BINARY), 'DO BINARY'),
                           ((WILL, SGA), 'WILL SGA'),
                           ((DO, SGA), 'DO SGA'),
                           ((DO, VMW), 'DO VMWARE-EXT'),
                           ((DONT, AUTH), 'DONT AUTHENTICATION'),
                           ((DONT, COMPORT), 'DONT COM-PORT')):
            self.assertIn(want, negs, '%s missing; got %r' % (what, negs))
        for bad in ((DO, AUTH), (DO, COMPORT), (WONT, BINARY), (DONT, BINARY),
                    (WONT, SGA), (DONT, SGA), (DONT, VMW)):
            self.assertNotIn(bad, negs)
        # The host's DO ECHO: acceptable only if the daemon offered ECHO
        # itself; otherwise it must be refused (section 4.3).
        if (WILL, ECHO) not in negs:
            self.assertIn((WONT, ECHO), negs)
        # RFC 1143: no option is requested twice in the same direction.
        for n in set(negs):
            self.assertEqual(negs.count(n), 1, 'repeated %r in %r' % (n, negs))
        self.assertEqual([e for e in p.events if e[0] == 'bad'], [])

        vmw = p.vmw()
        cmds = [c for c, _ in vmw]
        ks2 = [pl for c, pl in vmw if c == KS2]
        self.assertTrue(ks2, 'no KNOWN-SUBOPTIONS-2 in %r' % vmw)
        for pl in ks2:
            missing = KS2_REQUIRED - set(pl)
            self.assertFalse(missing, 'KS-2 %s lacks %s' %
                             (pl.hex(' '), sorted(missing)))
            self.assertEqual(len(pl), len(set(pl)), 'KS-2 has duplicates')
        self.assertIn(GET_VM_VC_UUID, cmds)
        self.assertIn(GET_VM_NAME, cmds)
        self.assertIn(WILL_PROXY, cmds)
        self.assertNotIn(WONT_PROXY, cmds)
        self.assertNotIn(UNKNOWN_RCVD_2, cmds,
                         'daemon called a capture command unknown: %r' % vmw)
        for c, pl in vmw:
            if c in (GET_VM_VC_UUID, GET_VM_NAME, WILL_PROXY):
                self.assertEqual(pl, b'', 'payload on %d' % c)
        # WILL-PROXY only after DO-PROXY was sent (we send it in segment
        # 14; it is the only thing the daemon could be answering).
        self.assertTrue(any(s.find(bytes([IAC, SB, VMW, DO_PROXY])) >= 0
                            for s in sent))
        # Never any console data toward the VM: no echo of what it sent.
        self.assertEqual(p.data_bytes(), b'',
                         'daemon sent data to the VM (echo?)')

    def check_api(self, port_id=None, clients=1):
        ports = self.d.ports()
        self.assertEqual(len(ports), 1, ports)
        p = ports[0]
        if port_id is not None:
            self.assertEqual(p['id'], port_id)
        self.assertEqual(p['id'], UUID)
        self.assertEqual(p['vm_uuid'], UUID)
        self.assertEqual(p['vm_name'], NAME)
        self.assertEqual(p['service_uri'], 'vSPC.py')
        self.assertEqual(p['direction'], 'server')
        self.assertIs(p['connected'], True)
        self.assertEqual(p['clients'], clients)
        self.assertEqual(p['bytes_from_vm'], len(DATA))
        self.assertEqual(p['bytes_to_vm'], 0)
        return p

    def wait_port(self):
        ps = self.d.wait_ports(lambda ps: len(ps) == 1 and ps[0]['connected'])
        self.assertIsInstance(ps[0]['client_port'], int)
        return ps[0]

    def attach_client(self, port):
        tn = self.telnet(port['client_port'])
        self.d.wait_ports(lambda ps: ps[0]['clients'] == 1)
        return tn

    def preexisting_port(self):
        """Create the capture's port with another connection and close it;
        attach a client. The port (and the client) outlive the
        connection, so a new connection's first bytes can be observed."""
        vm0 = vspctest.RawVM(self.d)
        vm0.identify(name=NAME,
                     uuid='01 23 45 67 89 ab cd ef-fe dc ba 98 00 00 00 00')
        port = self.wait_port()
        self.assertEqual(port['id'], UUID)
        tn = self.attach_client(port)
        vm0.close()
        self.d.wait_ports(lambda ps: not ps[0]['connected'])
        self.assertEqual(tn.read_available(0.2), b'')
        return port, tn

    # -- tests --

    def test_tv1_tv2_real_segments(self):
        """TV-1 then TV-2 with the real TCP segment boundaries."""
        vm = self.raw_vm(self.d)
        p = TelnetParser()
        neg, data = self.segs[:-25], self.segs[-25:]
        will_proxy_at = None
        for i, seg in enumerate(neg):
            vm.send(seg)
            self.read_replies(vm, p, 0.02)
            if will_proxy_at is None and WILL_PROXY in [c for c, _ in
                                                        p.vmw()]:
                will_proxy_at = i
        self.read_replies(vm, p, 0.2)
        # WILL-PROXY means "identified": not before the VC UUID was sent
        # (INTERFACES.md, vMotion section; as the capture's proxy does).
        uuid_seg = next(i for i, s in enumerate(neg)
                        if s.startswith(bytes([IAC, SB, VMW, 0x50])))
        self.assertIsNotNone(will_proxy_at)
        self.assertGreaterEqual(will_proxy_at, uuid_seg)
        port = self.wait_port()
        self.assertEqual(port['bytes_from_vm'], 0)
        tn = self.attach_client(port)
        for seg in data:
            vm.send(seg)
            time.sleep(0.01)
        got = tn.read_exactly(len(DATA), 5)
        self.assertEqual(got, DATA)
        self.assertEqual(tn.read_available(0.3), b'', 'extra output')
        self.read_replies(vm, p, 0.1)
        self.check_replies(p, self.segs)
        self.check_api(port['id'])
        # The order of the proxy's own requests: KS-2 before the GETs and
        # WILL-PROXY; GET-VM-VC-UUID before anything bound.
        cmds = [c for c, _ in p.vmw()]
        self.assertLess(cmds.index(KS2), cmds.index(GET_VM_VC_UUID))
        self.assertLess(cmds.index(KS2), cmds.index(WILL_PROXY))
        self.assertIn(self.d.healthz()['vm_connections'], (1,))

    def test_one_byte_per_write(self):
        """The whole stream one byte per write: same outcome."""
        port0, tn = self.preexisting_port()
        vm = self.raw_vm(self.d)
        p = TelnetParser()
        for seg in self.segs:
            for b in seg:
                vm.send(bytes([b]))
                p.feed(vm.read_available(0))
                time.sleep(0.001)
        self.assertEqual(tn.read_exactly(len(DATA), 5), DATA)
        self.assertEqual(tn.read_available(0.3), b'')
        self.read_replies(vm, p, 0.2)
        self.check_replies(p, self.segs)
        self.d.wait_ports(lambda ps: ps[0]['connected'])
        port = self.check_api(port0['id'])
        self.assertEqual(port['client_port'], port0['client_port'])

    def test_single_write(self):
        """The whole stream in a single write: same outcome."""
        port0, tn = self.preexisting_port()
        vm = self.raw_vm(self.d)
        vm.send(b''.join(self.segs))
        self.assertEqual(tn.read_exactly(len(DATA), 5), DATA)
        self.assertEqual(tn.read_available(0.3), b'')
        p = TelnetParser()
        self.read_replies(vm, p, 0.3)
        self.check_replies(p, self.segs)
        self.d.wait_ports(lambda ps: ps[0]['connected'])
        port = self.check_api(port0['id'])
        self.assertEqual(port['client_port'], port0['client_port'])

    def test_data_before_identification_reaches_client(self):
        """Console data sent right after WILL AUTH, before any
        identification, is held and delivered in order once bound."""
        port0, tn = self.preexisting_port()
        vm = self.raw_vm(self.d)
        early, late = DATA[:10], DATA[10:]
        neg = self.segs[:-25]
        vm.send(neg[0])                          # WILL AUTHENTICATION
        vm.send(early[:4])
        time.sleep(0.05)
        for i, seg in enumerate(neg[1:]):
            vm.send(seg)
            if i == 5:                           # mid-negotiation
                vm.send(early[4:])
            time.sleep(0.01)
        for b in late:
            vm.send(bytes([b]))
            time.sleep(0.005)
        self.assertEqual(tn.read_exactly(len(DATA), 5), DATA)
        self.assertEqual(tn.read_available(0.3), b'')
        p = TelnetParser()
        self.read_replies(vm, p, 0.2)
        self.check_replies(p, self.segs)
        self.d.wait_ports(lambda ps: ps[0]['connected'])
        self.check_api(port0['id'])

    def test_data_before_identification_counted_on_new_port(self):
        """On a port that does not exist yet, early data is counted in
        bytes_from_vm at bind, and the client attached as soon as the port
        appears receives everything after it, in order."""
        vm = self.raw_vm(self.d)
        early = bytes(range(0x41, 0x51))          # 16 bytes
        neg = self.segs[:-25]
        vm.send(neg[0] + early)
        time.sleep(0.05)
        self.assertEqual(self.d.ports(), [])
        for seg in neg[1:]:
            vm.send(seg)
            time.sleep(0.005)
        port = self.wait_port()
        tn = self.attach_client(port)
        port = self.d.port(port['id'])
        self.assertEqual(port['bytes_from_vm'], len(early))
        vm.send(DATA)
        self.assertEqual(tn.read_exactly(len(DATA), 5), DATA)
        self.assertEqual(tn.read_available(0.3), b'')
        self.d.wait_ports(
            lambda ps: ps[0]['bytes_from_vm'] == len(early) + len(DATA))


if __name__ == '__main__':
    vspctest.main()
