#!/usr/bin/env python3
"""Front door and vspc CLI: selecting a console by name, UUID (normalised,
ESXi spelling) and port id; unknown and ambiguous names; raw clients;
`vspc list` and `vspc attach` with stdin a pipe."""

import json
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import telnetc  # noqa: E402
import vspctest  # noqa: E402
from vspctest import esxi_uuid, norm_uuid  # noqa: E402

TAG = 0x12345678        # vspc-sim default --uuid-tag
DUAL_TAG = 0x0000abcd   # the two-port VM
RATE = '4000'           # bytes/s per port: ~100 seq lines/s

# Single-port VMs label their seq lines '-' (empty label).
SINGLE = [('vm-%05d' % i, '-') for i in range(3)]
DUAL = [('dual-00000', 'com1'), ('dual-00000', 'com2')]
ALL_STREAMS = SINGLE + DUAL


def uid(tag, i):
    return norm_uuid(esxi_uuid(tag, i))


class FrontDoorBase(vspctest.VspcTestCase):

    def setUp(self):
        self.d = self.daemon()
        # 3 one-port VMs vm-00000..2, and one VM with com1 and com2.
        self.sim1 = self.sim(self.d, ['--vms', '3', '--rate', RATE,
                                      '--print-recv'])
        self.sim2 = self.sim(self.d, ['--vms', '1', '--ports-per-vm', '2',
                                      '--name-prefix', 'dual-',
                                      '--uuid-tag', '%08x' % DUAL_TAG,
                                      '--rate', RATE, '--print-recv'])
        self.sim1.wait_ready(3)
        self.sim2.wait_ready(2)
        self.ports = self.d.wait_ports(
            lambda ps: len(ps) == 5 and all(p['connected'] for p in ps))

    def check_stream(self, data, name, label, min_lines=20):
        """data is a seq stream of (name, label) and of nothing else."""
        count, first, errors = vspctest.verify_seq_stream(data, name, label)
        self.assertEqual(errors, [], 'stream of %s:%s' % (name, label))
        self.assertGreaterEqual(count, min_lines,
                                'too few lines of %s:%s in %r' %
                                (name, label, bytes(data[:300])))
        for other in ALL_STREAMS:
            if other != (name, label):
                pfx = ('%s:%s ' % other).encode()
                self.assertNotIn(pfx, data, 'foreign stream %s:%s in '
                                 'console of %s:%s' % (other + (name,
                                                                label)))

    def read_stream(self, tn, nbytes=2000, timeout=10.0):
        """At least nbytes of console stream from tn."""
        deadline = time.monotonic() + timeout
        data = bytearray()
        while len(data) < nbytes and time.monotonic() < deadline:
            data += tn.read_available(0.2)
            if tn.eof:
                break
        return bytes(data)

    def wait_recv(self, sim, vm, port, want, timeout=10.0):
        """Accumulate sim 'recv vm port HEX' lines until want is seen."""
        got = bytearray()
        pfx = 'recv %d %d ' % (vm, port)
        deadline = time.monotonic() + timeout
        while want not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail('VM %d port %d never received %r; got %r' %
                          (vm, port, want, bytes(got)))
            try:
                ln = sim.wait_event(pfx, min(left, 0.5))
            except AssertionError:
                continue
            got += bytes.fromhex(ln.split()[3])
        return bytes(got)


class TestSelect(FrontDoorBase):

    def select(self, tn, name):
        """Answer a prompt already read: send name, return the reply
        line (the echo of the name stripped)."""
        tn.send(name.encode() + b'\r\n')
        line = tn.read_until(b'\r\n').rstrip(b'\r\n')
        if line == name.encode():           # our echo on its own line
            line = tn.read_until(b'\r\n').rstrip(b'\r\n')
        return line.decode()

    def attach_ok(self, sel, name, pid):
        tn, line = self.attach(self.d, sel)
        self.assertEqual(line, 'attached to %s [%s]' % (name, pid))
        return tn

    def test_by_name(self):
        tn = self.attach_ok('vm-00001', 'vm-00001', uid(TAG, 1))
        self.check_stream(self.read_stream(tn), 'vm-00001', '-')
        # Input goes to that VM (and only that one).
        tn.send(b'ping')
        self.wait_recv(self.sim1, 1, 0, b'ping')
        time.sleep(0.2)
        self.assertEqual([ln for ln in self.sim1.events('recv ')
                          if not ln.startswith('recv 1 0 ')], [])

    def test_by_normalised_uuid(self):
        u = uid(TAG, 2)
        self.assertEqual(len(u), 32)
        tn = self.attach_ok(u, 'vm-00002', u)
        self.check_stream(self.read_stream(tn), 'vm-00002', '-')

    def test_by_esxi_uuid(self):
        raw = esxi_uuid(TAG, 0)
        self.assertIn(' ', raw)
        self.assertIn('-', raw)
        tn = self.attach_ok(raw, 'vm-00000', uid(TAG, 0))
        self.check_stream(self.read_stream(tn), 'vm-00000', '-')

    def test_by_uppercase_dashed_uuid(self):
        # "UUID (any spelling)": the 8-4-4-4-12 form, upper case.
        u = uid(TAG, 1)
        sel = '-'.join([u[:8], u[8:12], u[12:16], u[16:20], u[20:]]).upper()
        tn = self.attach_ok(sel, 'vm-00001', u)
        self.check_stream(self.read_stream(tn), 'vm-00001', '-')

    def test_by_port_id(self):
        pid = uid(DUAL_TAG, 0) + '.com2'
        self.assertIn(pid, [p['id'] for p in self.ports])
        tn = self.attach_ok(pid, 'dual-00000', pid)
        self.check_stream(self.read_stream(tn), 'dual-00000', 'com2')
        tn.send(b'to-com2')
        self.wait_recv(self.sim2, 0, 1, b'to-com2')

    def test_unknown_then_valid_on_same_connection(self):
        tn = self.telnet(self.d.client_port)
        tn.read_until(telnetc.PROMPT)
        tn.send(b'no-such-vm\r\n')
        reply = tn.read_until(telnetc.PROMPT)
        # Echo of what we typed, the error line, the prompt again.
        self.assertEqual(reply, b"no-such-vm\r\n"
                         b"vspcd: no console named 'no-such-vm'\r\n" +
                         telnetc.PROMPT)
        line = self.select(tn, 'vm-00002')
        self.assertEqual(line, 'attached to vm-00002 [%s]' % uid(TAG, 2))
        self.check_stream(self.read_stream(tn), 'vm-00002', '-')

    def test_unknown_uuid(self):
        u = uid(TAG, 77)
        tn, line = self.attach(self.d, u)
        self.assertEqual(line, "vspcd: no console named '%s'" % u)
        tn.read_until(telnetc.PROMPT)

    def test_ambiguous_name(self):
        tn = self.telnet(self.d.client_port)
        tn.read_until(telnetc.PROMPT)
        tn.send(b'dual-00000\r\n')
        reply = tn.read_until(telnetc.PROMPT)
        ids = sorted(uid(DUAL_TAG, 0) + s for s in ('.com1', '.com2'))
        lines = reply.split(b'\r\n')
        self.assertEqual(lines[0], b'dual-00000')        # echo
        self.assertEqual(lines[-1], telnetc.PROMPT)
        self.assertEqual(len(lines), 3, reply)
        err = lines[1].decode()
        head = "vspcd: 'dual-00000' matches 2 consoles: "
        self.assertTrue(err.startswith(head), err)
        self.assertEqual(sorted(err[len(head):].split(' ')), ids)
        # Nothing of either console arrived while not attached.
        self.assertEqual(tn.read_for(0.3), b'')
        # The same connection can pick one of them by id.
        line = self.select(tn, ids[0])
        self.assertEqual(line, 'attached to dual-00000 [%s]' % ids[0])
        self.check_stream(self.read_stream(tn), 'dual-00000', 'com1')

    def test_ambiguous_uuid(self):
        # The UUID of the two-port VM names two consoles too.
        u = uid(DUAL_TAG, 0)
        tn, line = self.attach(self.d, esxi_uuid(DUAL_TAG, 0))
        self.assertTrue(line.startswith("vspcd: '%s' matches 2 consoles: "
                                        % esxi_uuid(DUAL_TAG, 0)), line)
        self.assertIn(u + '.com1', line)
        self.assertIn(u + '.com2', line)
        tn.read_until(telnetc.PROMPT)

    def test_raw_client(self):
        tn = self.telnet(self.d.client_port, raw=True)
        head = tn.read_until(telnetc.PROMPT)
        # The offer (telnet negotiation) arrives, but we never answer it.
        self.assertIn(bytes([telnetc.IAC, telnetc.WILL, telnetc.ECHO]), head)
        tn.send(b'vm-00001\n')
        want = b'attached to vm-00001 [%s]\r\n' % uid(TAG, 1).encode()
        before = tn.read_until(want)
        # At most our echoed name before the line; no error.
        self.assertNotIn(b'vspcd:', before)
        data = self.read_stream(tn)
        self.assertNotIn(b'\xff', data)
        self.check_stream(data, 'vm-00001', '-')
        tn.send(b'raw!')
        self.wait_recv(self.sim1, 1, 0, b'raw!')

    def test_raw_client_crlf_and_error(self):
        tn = self.telnet(self.d.client_port, raw=True)
        tn.read_until(telnetc.PROMPT)
        tn.send(b'nope\r\n')
        self.assertIn(b"vspcd: no console named 'nope'\r\n",
                      tn.read_until(telnetc.PROMPT))
        tn.send(b'vm-00000\r\n')
        tn.read_until(b'attached to vm-00000 [%s]\r\n' %
                      uid(TAG, 0).encode())
        self.check_stream(self.read_stream(tn), 'vm-00000', '-')


VOLATILE = ('bytes_from_vm', 'bytes_to_vm', 'last_seen', 'clients',
            'client_bytes_dropped', 'input_dropped')


class TestVspc(FrontDoorBase):

    def test_list_table(self):
        r = self.d.vspc('list')
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        lines = out.splitlines()
        self.assertTrue(lines[0].split()[:2] == ['ID', 'NAME'], out)
        self.assertEqual(len(lines), 1 + len(self.ports), out)
        for p in self.ports:
            row = [ln for ln in lines if ln.split()[0] == p['id']]
            self.assertEqual(len(row), 1, '%s not once in\n%s' %
                             (p['id'], out))
            cells = row[0].split()
            self.assertEqual(cells[1], p['vm_name'])
            self.assertIn(str(p['client_port']), cells)

    def test_list_json(self):
        r = self.d.vspc('list', '--json')
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        api = self.d.ports()

        def stable(ps):
            return {p['id']: {k: v for k, v in p.items()
                              if k not in VOLATILE} for p in ps}
        self.assertEqual(set(got), {'ports'})
        self.assertEqual(stable(got['ports']), stable(api))
        self.assertEqual(len(got['ports']), 5)
        # Same key set per port as the API.
        for a, b in zip(sorted(got['ports'], key=lambda p: p['id']),
                        sorted(api, key=lambda p: p['id'])):
            self.assertEqual(sorted(a), sorted(b))

    def test_attach_pipe(self):
        p = subprocess.Popen([vspctest.VSPC, '--state-dir', self.d.state_dir,
                              'attach', 'vm-00002'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        out = bytearray()
        err = bytearray()

        def pump(src, dst):
            while True:
                b = src.read1(65536) if hasattr(src, 'read1') else \
                    src.read(65536)
                if not b:
                    return
                dst += b
        ts = [threading.Thread(target=pump, args=(p.stdout, out),
                               daemon=True),
              threading.Thread(target=pump, args=(p.stderr, err),
                               daemon=True)]
        for t in ts:
            t.start()
        try:
            vspctest.wait_for(lambda: b'attached to' in err, 10,
                              what='attached line from vspc attach')
            p.stdin.write(b'hello')
            p.stdin.flush()
            self.wait_recv(self.sim1, 2, 0, b'hello')
            vspctest.wait_for(lambda: out.count(b'\r\n') >= 30, 10,
                              what='console output on vspc stdout')
            self.assertEqual(self.d.port(uid(TAG, 2))['clients'], 1)
            # EOF on a piped stdin: vspc keeps relaying output.
            p.stdin.close()
            n = len(out)
            vspctest.wait_for(lambda: len(out) > n + 400, 10,
                              what='output after stdin EOF')
            self.assertIsNone(p.poll())
        finally:
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            for t in ts:
                t.join(5)
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(err.decode().splitlines()[0],
                         'attached to vm-00002 [%s]' % uid(TAG, 2))
        self.assertNotIn(b'attached to', out)
        self.assertNotIn(b'console (name', out)
        self.check_stream(bytes(out), 'vm-00002', '-')
        # Nothing else went to another VM.
        self.assertEqual([ln for ln in self.sim1.events('recv ')
                          if not ln.startswith('recv 2 0 ')], [])
        # The client is gone once vspc exits.
        self.d.wait_ports(lambda ps: all(x['clients'] == 0 for x in ps))

    def test_attach_unknown(self):
        r = self.d.vspc('attach', 'no-such-vm', input=b'')
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"no console named 'no-such-vm'", r.stderr)
        self.assertEqual(r.stdout, b'')


if __name__ == '__main__':
    vspctest.main()
