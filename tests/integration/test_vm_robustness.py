#!/usr/bin/env python3
"""Malformed or hostile VM-side input closes at most its own connection.

A daemon with --ident-timeout 1 serves one healthy simulated VM (seq output)
with a client attached for the whole test. Raw VM connections then send:
IAC SE outside SB, IAC x inside an option 232 SB, a 10,000-byte SB (over
the 4 KiB cap), random garbage, DO-PROXY with an empty payload, an unknown
subcommand (UNKNOWN-SUBOPTION-RCVD-2 expected), VMOTION-BEGIN (NOTNOW with
the same sequence before the connection is bound; GOAHEAD then ABORT on a
bound one; bad sequence lengths ignored), DO-PROXY with a service
URI outside the policy (WONT-PROXY, no port), and a connection that never
identifies (closed after about 1 s). Throughout, the healthy VM's client
keeps receiving a continuous, valid stream and /healthz answers ok.
"""

import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vspctest  # noqa: E402
from vspctest import vmw_sb  # noqa: E402

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
VMW = 232
HEALTHY_UUID = vspctest.norm_uuid(vspctest.esxi_uuid(0x12345678, 0))
WILL_PROXY = vmw_sb(vspctest.WILL_PROXY)
WONT_PROXY = vmw_sb(vspctest.WONT_PROXY)


class VmRobustnessTest(vspctest.VspcTestCase):

    def setUp(self):
        self.rate = 2000 if vspctest.scale() == 'full' else 1000
        self.d = self.daemon(['--ident-timeout', '1'])
        self.sim_ = self.sim(self.d, ['--mode', 'seq', '--rate',
                                      str(self.rate)])
        self.sim_.wait_ready(1)
        ps = self.d.wait_ports(lambda ps: len(ps) == 1 and
                               ps[0]['connected'])
        self.healthy = ps[0]
        self.assertEqual(self.healthy['id'], HEALTHY_UUID)
        self.hc = self.telnet(self.healthy['client_port'])
        self.d.wait_ports(lambda ps: ps[0]['clients'] == 1)
        self.stream = bytearray()
        self.lines_seen = 0
        self.check_healthy()

    def tearDown(self):
        self.check_healthy()

    # -- helpers --

    def check_healthy(self, seconds=0.3):
        """The healthy VM's client still gets a valid continuous stream,
        the daemon is up and healthz says ok."""
        self.assertTrue(self.d.running, 'vspcd died')
        self.stream += self.hc.read_for(seconds)
        self.assertFalse(self.hc.eof, 'healthy client was closed')
        n, _, errors = vspctest.verify_seq_stream(self.stream, 'vm-00000',
                                                  '-')
        self.assertEqual(errors, [])
        self.assertGreater(n, self.lines_seen, 'healthy output stalled')
        self.lines_seen = n
        h = self.d.healthz()
        self.assertEqual(h['status'], 'ok')
        p = self.d.port(HEALTHY_UUID)
        self.assertIs(p['connected'], True)
        self.assertEqual(p['clients'], 1)

    def vm(self):
        return self.raw_vm(self.d)

    def identified(self, name, i, **kw):
        """A raw VM bound to its own port, with a client attached."""
        vm = self.vm()
        uuid = vspctest.esxi_uuid(0xbad0, i)
        vm.identify(name=name, uuid=uuid, **kw)
        pid = vspctest.norm_uuid(uuid)
        self.d.wait_ports(lambda ps: any(p['id'] == pid and p['connected']
                                         for p in ps))
        tn = self.telnet(self.d.port(pid)['client_port'])
        self.d.wait_ports(lambda ps: [p['clients'] for p in ps
                                      if p['id'] == pid] == [1])
        vm.read_available(0.1)
        return vm, tn, pid

    def still_open(self, vm, seconds=0.2):
        vm.read_for(seconds)
        return not vm.eof

    def ports_except_healthy(self):
        return [p for p in self.d.ports() if p['id'] != HEALTHY_UUID]

    # -- telnet framing errors --

    def test_se_outside_sb(self):
        vm, tn, pid = self.identified('vm-se', 1)
        vm.send(b'A' + bytes([IAC, SE]) + b'B')
        self.assertEqual(tn.read_exactly(2, 5), b'AB')
        # Before identification too: the connection recovers and binds.
        vm2 = self.vm()
        vm2.send(bytes([IAC, SE, IAC, SE]))
        vm2.identify(name='vm-se2', uuid=vspctest.esxi_uuid(0xbad0, 2))
        self.d.wait_ports(lambda ps: len(ps) == 3)
        self.assertTrue(self.still_open(vm))
        self.check_healthy()

    def test_bad_iac_inside_sb(self):
        vm, tn, pid = self.identified('vm-sbiac', 3)
        # IAC 0x01 inside the SB ends it there (spec section 3 rule 7).
        vm.send(bytes([IAC, SB, VMW, 0x52]) + b'x' +
                bytes([IAC, 0x01]) + b'y' + bytes([IAC, SE]))
        vm.send(vmw_sb(0x52, b'vm-sbiac-renamed'))
        self.d.wait_ports(lambda ps: any(
            p['id'] == pid and p['vm_name'] == 'vm-sbiac-renamed'
            for p in ps))
        self.assertTrue(self.still_open(vm))
        vm.send(b'after')
        got = tn.read_until(b'after', 5)
        self.assertNotIn(b'\xff', got)
        self.check_healthy()

    def test_oversized_sb(self):
        vm, tn, pid = self.identified('vm-big', 4)
        vm.send(vmw_sb(0x52, b'N' * 10000))
        vm.send(bytes([IAC, SB, VMW, 0x99]) + os.urandom(5000).replace(
            b'\xff', b'\x00') + bytes([IAC, SE]))
        vm.send(b'tail')
        # Nothing of the SBs leaks into the console stream.
        self.assertEqual(tn.read_exactly(4, 5), b'tail')
        self.assertTrue(self.still_open(vm))
        p = self.d.port(pid)
        self.assertEqual(p['vm_name'], 'vm-big')
        self.assertEqual(p['bytes_from_vm'], 4)
        # Oversized SB before identification: own connection only.
        vm2 = self.vm()
        vm2.send(bytes([IAC, WILL, VMW]) + vmw_sb(0x50, b'5' * 10000))
        # The discarded SB is not taken as the UUID; the proper one that
        # follows identifies the connection.
        vm2.identify(name='vm-big2', uuid=vspctest.esxi_uuid(0xbad0, 5))
        pid2 = vspctest.norm_uuid(vspctest.esxi_uuid(0xbad0, 5))
        self.d.wait_ports(lambda ps: any(
            p['id'] == pid2 and p['vm_name'] == 'vm-big2' for p in ps))
        self.assertEqual(len(self.ports_except_healthy()), 2)
        self.assertTrue(self.still_open(vm2))
        self.check_healthy()

    def test_random_garbage(self):
        rnd = random.Random(1234)
        size = 200000 if vspctest.scale() == 'full' else 50000
        vms = []
        for k in range(4):
            vm = self.vm()
            blob = bytes(rnd.getrandbits(8) for _ in range(size // 4))
            if k == 1:      # garbage after a proper WILL 232
                blob = bytes([IAC, WILL, VMW]) + blob
            if k == 2:      # an unterminated SB
                blob = bytes([IAC, SB, VMW, 0x46]) + blob.replace(
                    b'\xff', b'')
            try:
                vm.send(blob)
            except OSError:
                pass
            vms.append(vm)
            self.check_healthy(0.05)
        # An identified VM with a client gets garbage as data: delivered.
        ivm, tn, pid = self.identified('vm-garbage', 6)
        blob = bytes(rnd.getrandbits(8) for _ in range(4096))
        blob = blob.replace(b'\xff', b'\xfe')
        ivm.send(blob)
        self.assertEqual(tn.read_exactly(len(blob), 5), blob)
        # None of the garbage connections made a port; all are closed by
        # the identification deadline.
        for vm in vms:
            self.assertTrue(vm.wait_closed(4), 'garbage conn not closed')
        self.assertEqual([p['id'] for p in self.ports_except_healthy()],
                         [pid])
        self.assertEqual(self.d.healthz()['vm_connections'], 2)
        self.check_healthy()

    # -- option 232 commands --

    def test_do_proxy_empty_payload(self):
        vm = self.vm()
        vm.send(bytes([IAC, WILL, VMW]) +
                vmw_sb(0, vspctest.ESXI_KS1) + vmw_sb(70) +
                vmw_sb(0x50, vspctest.esxi_uuid(0xbad0, 7).encode()) +
                vmw_sb(0x52, b'vm-empty'))
        t0 = time.monotonic()
        got = vm.read_until_eof(5)
        dt = time.monotonic() - t0
        self.assertNotIn(WILL_PROXY, got)
        self.assertGreater(dt, 0.5)
        self.assertLess(dt, 4)
        self.assertEqual(self.ports_except_healthy(), [])
        self.check_healthy()

    def test_unknown_subcommand(self):
        vm = self.vm()
        vm.send(bytes([IAC, WILL, VMW]) + vmw_sb(0x99, b'abc'))
        vm.read_until(bytes.fromhex('fffae80399fff0'), 5)
        # And on an identified connection, without disturbing it.
        vm2, tn, pid = self.identified('vm-unk', 8)
        vm2.send(b'a' + vmw_sb(0x99) + b'b' + vmw_sb(0xfe, b'\xff') + b'c')
        self.assertEqual(tn.read_exactly(3, 5), b'abc')
        vm2.read_until(bytes.fromhex('fffae80399fff0'), 5)
        vm2.read_until(bytes.fromhex('fffae803fefff0'), 5)
        self.assertTrue(self.still_open(vm2))
        self.check_healthy()

    def read_sb(self, vm, prefix, timeout=5):
        """Read up to an SB starting with prefix; its un-doubled payload."""
        vm.read_until(prefix, timeout)
        raw = bytearray()
        while True:
            raw += vm.read_exactly(1, timeout)
            if raw.endswith(b'\xff\xf0') and \
                    not raw[:-2].replace(b'\xff\xff', b'').endswith(b'\xff'):
                return bytes(raw[:-2]).replace(b'\xff\xff', b'\xff')

    def test_vmotion_begin_unbound_notnow(self):
        """VMOTION-BEGIN on a connection that is not bound (E12): NOTNOW
        with the same sequence, 0xFF doubled (TV-6)."""
        vm = self.vm()
        vm.send(bytes([IAC, WILL, VMW]) + vmw_sb(0, vspctest.ESXI_KS1))
        vm.read_until(vmw_sb(vspctest.GET_VM_VC_UUID), 5)
        seq = bytes.fromhex('44da87f1')
        vm.send(vmw_sb(vspctest.VMOTION_BEGIN, seq))
        vm.read_until(bytes.fromhex('fffae82b44da87f1fff0'), 5)
        vm.send(bytes.fromhex('fffae8287619ffffe9fff0'))
        got = vm.read_until(bytes.fromhex('fffae82b7619ffffe9fff0'), 5)
        self.assertNotIn(bytes([IAC, SB, VMW, vspctest.VMOTION_GOAHEAD]), got)
        self.assertTrue(self.still_open(vm))
        self.assertEqual(self.ports_except_healthy(), [])
        self.check_healthy()

    def test_vmotion_begin_bound_and_bad_lengths(self):
        """On a bound connection BEGIN gets GOAHEAD(seq + 8 bytes); ABORT
        ends it and the console keeps working. BEGIN with an empty or
        oversized (> 64 bytes) sequence changes nothing."""
        vm, tn, pid = self.identified('vm-vmo', 9)
        for bad in (b'', bytes(range(1, 101))):
            vm.send(vmw_sb(vspctest.VMOTION_BEGIN, bad))
        vm.send(b'x')
        self.assertEqual(tn.read_exactly(1, 5), b'x')
        self.assertEqual(vm.read_for(0.3), b'')
        self.assertEqual(self.d.port(pid)['vmotion']['begun'], 0)
        seq = bytes.fromhex('7619ffe9')
        vm.send(vmw_sb(vspctest.VMOTION_BEGIN, seq))
        payload = self.read_sb(vm, bytes([IAC, SB, VMW,
                                          vspctest.VMOTION_GOAHEAD]))
        self.assertEqual(payload[:4], seq)
        self.assertEqual(len(payload), 12, payload.hex())
        vm.send(vmw_sb(vspctest.VMOTION_ABORT))
        self.d.wait_ports(lambda ps: any(
            p['id'] == pid and p['vmotion']['aborted'] == 1 for p in ps))
        vm.send(b'still here')
        self.assertEqual(tn.read_exactly(10, 5), b'still here')
        tn.send(b'in')
        self.assertEqual(vm.read_exactly(2, 5), b'in')
        p = self.d.port(pid)
        self.assertIs(p['connected'], True)
        self.assertEqual(p['vmotion']['begun'], 1)
        self.check_healthy()

    def test_service_uri_refused(self):
        conns = []
        for k, uri in enumerate(('other.py', 'vSPC.pyx', 'xvSPC.py', '')):
            vm = self.vm()
            got = vm.identify(name='vm-ref%d' % k, uri=uri,
                              uuid=vspctest.esxi_uuid(0xbad1, k), wait=False)
            got = vm.read_until(WONT_PROXY, 5)
            self.assertNotIn(WILL_PROXY, got)
            conns.append(vm)
        t0 = time.monotonic()
        for vm in conns:
            rest = vm.read_until_eof(5)
            self.assertNotIn(WILL_PROXY, rest)
        self.assertLess(time.monotonic() - t0, 4)
        self.assertEqual(self.ports_except_healthy(), [])
        # The policy's accepted forms still work next to them.
        ok = self.vm()
        ok.identify(name='vm-okuri', uri='vSPC.py?port=x',
                    uuid=vspctest.esxi_uuid(0xbad1, 9))
        self.assertEqual(len(self.ports_except_healthy()), 1)
        self.check_healthy()

    def test_never_identifies(self):
        quiet = self.vm()                       # sends nothing at all
        half = self.vm()                        # negotiates, no DO-PROXY
        half.send(bytes([IAC, WILL, 37]) + bytes([IAC, WILL, VMW]) +
                  vmw_sb(0, vspctest.ESXI_KS1) + b'early data')
        noid = self.vm()                        # DO-PROXY but no UUID
        noid.send(bytes([IAC, WILL, VMW]) + vmw_sb(70, b'SvSPC.py'))
        got = noid.read_until(vmw_sb(vspctest.GET_VM_VC_UUID), 5)
        self.assertNotIn(WONT_PROXY, got)
        self.assertNotIn(WILL_PROXY, got)
        t0 = time.monotonic()
        time.sleep(0.3)
        self.assertEqual(self.d.healthz()['vm_connections'], 4)
        for vm in (quiet, half, noid):
            rest = vm.read_until_eof(4)
            # WILL-PROXY means "identified": never sent here.
            self.assertNotIn(WILL_PROXY, rest)
        dt = time.monotonic() - t0
        self.assertLess(dt, 3.5)
        self.assertEqual(self.ports_except_healthy(), [])
        self.assertEqual(self.d.healthz()['vm_connections'], 1)
        self.check_healthy()


if __name__ == '__main__':
    vspctest.main()
