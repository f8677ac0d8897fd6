#!/usr/bin/env python3
"""Access rules and the audit log (issue 5, the parts that exist so far).

Every client here is an anonymous TCP client on 127.0.0.1 (loopback).

- Rules (config file with an access key; 4 VMs printing seq lines):
  vm-00003 has no rule: the per-port listener sends exactly
  "vspcd: access denied\\r\\n" after its telnet offers and closes, with no
  console byte; the front door answers exactly as for an unknown name and
  the same connection can then attach to vm-00002; the port's client count
  stays 0. vm-00000 is read only: the client gets the stream, 1 MiB typed
  (and IAC IP) reaches the VM as 0 bytes, the client stays connected.
  vm-00002 is read+write: typed bytes reach the VM exactly.
- Safe default (no access key): loopback clients read and write.
- "access: []": every attach is denied, with no console byte.
- Audit log: valid JSON, one object per line, attach / detach / denied with
  console = port id, kind = anonymous, source = the client's address; a VM
  with a hostile name does not break lines; SIGHUP writes config-reload;
  neither console output nor typed input ever appears in the file.
"""

import json
import os
import random
import re
import signal
import stat
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import telnetc  # noqa: E402
import vspctest  # noqa: E402
from vspctest import HOST, Daemon, wait_for  # noqa: E402

RATE = '4000'           # bytes/s per port: ~100 seq lines/s
DENIED = b'vspcd: access denied\r\n'
SEQ_ANY = re.compile(rb'vm-\d{5}:- \d{10}')

RULES = ('access: [{who: anonymous, consoles: "vm-0000[01]", '
         'rights: [read]}, '
         '{who: anonymous, consoles: "vm-00002", rights: [read, write]}]\n')


def unknown_line(name):
    return "vspcd: no console named '%s'" % name


def strip_negotiation(data):
    """Split raw server bytes into (negotiation prefix, rest).

    The prefix is the run of 3-byte IAC WILL/WONT/DO/DONT commands the
    server sends first.
    """
    i = 0
    while i + 2 < len(data) and data[i] == telnetc.IAC and \
            data[i + 1] in (telnetc.WILL, telnetc.WONT, telnetc.DO,
                            telnetc.DONT):
        i += 3
    return bytes(data[:i]), bytes(data[i:])


class AccessBase(vspctest.VspcTestCase):

    def start(self, conf=None, nvms=4):
        """A daemon (with conf as its config file, if given) and a sim with
        nvms printing VMs; returns the daemon; self.sim1, self.byname."""
        d = Daemon(start=False)
        self._daemons.append(d)
        self.addCleanup(self._stop_daemon, d)
        if conf is not None:
            d.conf_path = os.path.join(d.dir, 'vspcd.conf')
            with open(d.conf_path, 'w') as f:
                f.write(conf)
            d.args += ['-f', d.conf_path]
        d.start()
        self.d = d
        self.sim1 = self.sim(d, ['--vms', str(nvms), '--rate', RATE,
                                 '--print-recv'])
        self.sim1.wait_ready(nvms)
        ps = d.wait_ports(lambda ps: len(ps) == nvms and
                          all(p['connected'] and p['client_port']
                              for p in ps))
        self.byname = {p['vm_name']: p for p in ps}
        # Let output flow before anyone connects.
        wait_for(lambda: all(p['bytes_from_vm'] > 500 for p in d.ports()),
                 what='console output on every port')
        return d

    # -- helpers --

    def audit_path(self):
        return os.path.join(self.d.dir, 'audit.log')

    def audit(self):
        """Every audit record (each line must be one JSON object)."""
        try:
            with open(self.audit_path(), 'rb') as f:
                data = f.read()
        except FileNotFoundError:
            return []
        self.assertTrue(data == b'' or data.endswith(b'\n'),
                        'audit log ends mid-line: %r' % data[-200:])
        out = []
        for i, ln in enumerate(data.split(b'\n')[:-1]):
            self.assertTrue(all(0x20 <= b < 0x7f for b in ln),
                            'audit line %d is not printable ASCII: %r' %
                            (i, ln))
            try:
                rec = json.loads(ln)
            except ValueError as e:
                self.fail('audit line %d is not JSON (%s): %r' % (i, e, ln))
            self.assertIsInstance(rec, dict, ln)
            self.assertIsInstance(rec.get('event'), str, ln)
            self.assertRegex(rec.get('time', ''),
                             r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')
            out.append(rec)
        return out

    def wait_audit(self, pred, what, timeout=5.0):
        return wait_for(lambda: [r for r in self.audit() if pred(r)],
                        timeout, 0.05, what)

    def records(self, event, source=None, console=None):
        return [r for r in self.audit() if r['event'] == event and
                (source is None or r.get('source') == source) and
                (console is None or r.get('console') == console)]

    def check_identity(self, rec, source, console):
        self.assertEqual(rec.get('kind'), 'anonymous', rec)
        self.assertEqual(rec.get('source'), source, rec)
        self.assertEqual(rec.get('console'), console, rec)
        self.assertNotIn('uid', rec, rec)

    def source_of(self, tn):
        return '%s:%d' % tn.sock.getsockname()[:2]

    def read_stream(self, tn, nbytes=1500, timeout=10.0):
        deadline = time.monotonic() + timeout
        data = bytearray()
        while len(data) < nbytes and time.monotonic() < deadline:
            data += tn.read_available(0.2)
            if tn.eof:
                break
        return bytes(data)

    def check_stream(self, data, name, min_lines=10):
        n, first, errs = vspctest.verify_seq_stream(data, name, '-')
        self.assertEqual(errs, [], 'stream of %s' % name)
        self.assertGreaterEqual(n, min_lines, 'too few lines of %s in %r' %
                                (name, data[:300]))
        for other in SEQ_ANY.findall(data):
            self.assertTrue(other.startswith(name.encode() + b':'),
                            'foreign stream %r in %s' % (other, name))

    def sim_port(self, vm):
        return self.sim1.status()['ports'][vm]

    def denied_on_port_listener(self, name):
        """Connect to the per-port listener of name: exactly DENIED after
        the telnet offers, then closed; no console byte."""
        p = self.byname[name]
        tn = self.telnet(p['client_port'], raw=True)
        src = self.source_of(tn)
        try:
            data = tn.read_until_eof(5.0)
        except TimeoutError:
            self.fail('%s: per-port client not closed after denial; got %r'
                      % (name, bytes(tn.buf[:300])))
        neg, rest = strip_negotiation(data)
        self.assertGreater(len(neg), 0, 'no telnet offers before the denial')
        self.assertEqual(rest, DENIED, '%s: raw bytes %r' % (name, data))
        self.assertNotIn(name.encode() + b':', data)
        return src

    def denied_on_frontdoor(self, name, then=None):
        """Front door: name gets the unknown-name answer, byte for byte as
        for a name that does not exist; then (if given) attach to then on
        the same connection. Returns (tn, source, everything read)."""
        tn = self.telnet(self.d.client_port)
        src = self.source_of(tn)
        tn.read_until(telnetc.PROMPT)
        seen = bytearray()
        tn.send(name.encode() + b'\r\n')
        got = tn.read_until(telnetc.PROMPT, 5.0)
        seen += got
        self.assertEqual(got, name.encode() + b'\r\n' +
                         unknown_line(name).encode() + b'\r\n' +
                         telnetc.PROMPT)
        # Compare with a name that matches nothing, on the same connection.
        bogus = 'zz-no-such-vm'
        tn.send(bogus.encode() + b'\r\n')
        got2 = tn.read_until(telnetc.PROMPT, 5.0)
        seen += got2
        self.assertEqual(got.replace(name.encode(), bogus.encode()), got2)
        if then is not None:
            tn.send(then.encode() + b'\r\n')
            line = tn.read_until(b'\r\n', 5.0)
            if line == then.encode() + b'\r\n':
                line = tn.read_until(b'\r\n', 5.0)
            seen += line
            self.assertEqual(line.decode(), 'attached to %s [%s]\r\n' %
                             (then, self.byname[then]['id']))
        else:
            seen += tn.read_for(0.5)
            self.assertFalse(tn.eof, 'front door closed after a denial')
        self.assertNotIn(name.encode() + b':', seen)
        return tn, src, bytes(seen)


class TestRules(AccessBase):
    """vm-00000/1 read only, vm-00002 read+write, vm-00003 nothing."""

    def setUp(self):
        self.start(RULES)

    def test_no_rule_port_listener(self):
        pid = self.byname['vm-00003']['id']
        srcs = [self.denied_on_port_listener('vm-00003') for _ in range(3)]
        self.assertEqual(self.d.port(pid)['clients'], 0)
        for src in srcs:
            recs = self.wait_audit(lambda r: r['event'] == 'denied' and
                                   r.get('source') == src,
                                   'denied record for %s' % src)
            self.assertEqual(len(recs), 1, recs)
            self.check_identity(recs[0], src, pid)
        self.assertEqual([r for r in self.audit()
                          if r['event'] in ('attach', 'detach')], [])

    def test_no_rule_frontdoor(self):
        pid = self.byname['vm-00003']['id']
        tn, src, seen = self.denied_on_frontdoor('vm-00003',
                                                 then='vm-00002')
        self.assertEqual(self.d.port(pid)['clients'], 0)
        data = self.read_stream(tn)
        self.check_stream(data, 'vm-00002')
        self.assertNotIn(b'vm-00003:', data)
        self.assertEqual(self.d.port(pid)['clients'], 0)
        self.assertEqual(self.d.port(self.byname['vm-00002']['id'])
                         ['clients'], 1)
        # Also by UUID and port id: the same answer.
        for sel in (pid, self.byname['vm-00003']['vm_uuid']):
            tn2, line = self.attach(self.d, sel)
            self.assertEqual(line, unknown_line(sel))
        self.assertEqual(self.d.port(pid)['clients'], 0)
        denied = self.wait_audit(lambda r: r['event'] == 'denied' and
                                 r.get('source') == src, 'denied record')
        self.assertEqual(len(denied), 1, denied)
        self.check_identity(denied[0], src, pid)
        att = self.records('attach', source=src)
        self.assertEqual(len(att), 1, att)
        self.check_identity(att[0], src, self.byname['vm-00002']['id'])

    def test_read_only_input_dropped(self):
        p = self.byname['vm-00000']
        tn = self.telnet(p['client_port'])
        src = self.source_of(tn)
        self.check_stream(self.read_stream(tn), 'vm-00000')
        blob = bytes(random.Random(5).getrandbits(8)
                     for _ in range(1 << 16)) * 16          # 1 MiB
        blob = blob[:-16] + b'TYPED-SECRET-RO\r'
        self.assertEqual(len(blob), 1 << 20)
        t0 = time.monotonic()
        sent = 0
        while sent < len(blob):
            tn.send(blob[sent:sent + 65536])
            sent += 65536
            tn.read_available(0)            # keep the output side moving
        tn.send_cmd(telnetc.IP)             # IAC IP: a ^C for the VM
        # AYT after everything: its answer means all of it was processed.
        tn.send_cmd(telnetc.AYT)
        data = bytearray()
        deadline = time.monotonic() + 15
        while b'[vspcd: yes]' not in data:
            self.assertFalse(tn.eof, 'read-only client disconnected')
            self.assertLess(time.monotonic(), deadline, 'no AYT answer')
            data += tn.read_available(0.2)
        self.assertLess(time.monotonic() - t0, 20)
        time.sleep(0.3)
        data += tn.read_available(0.3)
        self.assertFalse(tn.eof, 'read-only client disconnected')
        self.check_stream(data.replace(b'\r\n[vspcd: yes]\r\n', b''),
                          'vm-00000')
        st = self.sim_port(0)
        self.assertEqual(st['received'], 0, st)
        self.assertEqual(self.sim1.events('recv '), [])
        self.assertEqual(self.d.port(p['id'])['bytes_to_vm'], 0)
        self.assertEqual(self.d.port(p['id'])['clients'], 1)
        # Still attached and still reading.
        more = self.read_stream(tn, 800)
        self.check_stream(more, 'vm-00000', 5)
        att = self.records('attach', source=src)
        self.assertEqual(len(att), 1)
        self.check_identity(att[0], src, p['id'])
        self.assertEqual(self.records('denied'), [])
        # And nothing reached any VM at all.
        for i in range(4):
            self.assertEqual(self.sim_port(i)['received'], 0)
        tn.close()
        self.wait_audit(lambda r: r['event'] == 'detach' and
                        r.get('source') == src, 'detach record')

    def test_read_only_frontdoor(self):
        p = self.byname['vm-00001']
        tn, line = self.attach(self.d, 'vm-00001')
        self.assertEqual(line, 'attached to vm-00001 [%s]' % p['id'])
        tn.send(b'should-not-arrive\r')
        tn.send_cmd(telnetc.AYT)
        tn.read_until(b'[vspcd: yes]\r\n', 5)
        self.check_stream(self.read_stream(tn), 'vm-00001')
        self.assertFalse(tn.eof)
        time.sleep(0.2)
        self.assertEqual(self.sim_port(1)['received'], 0)
        self.assertEqual(self.d.port(p['id'])['bytes_to_vm'], 0)
        self.assertEqual(self.sim1.events('recv '), [])

    def test_read_write(self):
        p = self.byname['vm-00002']
        tn = self.telnet(p['client_port'])
        self.check_stream(self.read_stream(tn), 'vm-00002')
        payload = bytes(random.Random(7).getrandbits(8)
                        for _ in range(100000))
        payload += bytes(range(256)) + b'\xff\xff\xff end'
        tn.send(payload)
        wait_for(lambda: self.sim_port(2)['received'] >= len(payload),
                 10, 0.1, 'the VM receiving every typed byte')
        time.sleep(0.2)
        st = self.sim_port(2)
        self.assertEqual(st['received'], len(payload), st)
        self.assertEqual(st['recv_fnv'], '%08x' %
                         vspctest.fnv1a32(payload))
        got = bytearray()
        for ln in self.sim1.events('recv '):
            f = ln.split()
            self.assertEqual((f[1], f[2]), ('2', '0'), ln)
            got += bytes.fromhex(f[3])
        self.assertEqual(bytes(got), payload)
        self.assertEqual(self.d.port(p['id'])['bytes_to_vm'], len(payload))
        for i in (0, 1, 3):
            self.assertEqual(self.sim_port(i)['received'], 0)
        # Through the front door too.
        tn2, line = self.attach(self.d, 'vm-00002')
        self.assertEqual(line, 'attached to vm-00002 [%s]' % p['id'])
        tn2.send(b'via-frontdoor')
        wait_for(lambda: self.sim_port(2)['received'] ==
                 len(payload) + 13, 5, 0.05, 'front-door input at the VM')


class TestSafeDefault(AccessBase):
    """No access key: loopback clients read and write."""

    def test_loopback_read_write(self):
        d = self.start(None, nvms=2)
        for i, name in enumerate(('vm-00000', 'vm-00001')):
            p = self.byname[name]
            tn = self.telnet(p['client_port'])
            src = self.source_of(tn)
            self.check_stream(self.read_stream(tn), name)
            tn.send(b'hello-%d' % i)
            wait_for(lambda: self.sim_port(i)['received'] == 7, 5, 0.05,
                     'input at %s' % name)
            att = self.wait_audit(lambda r: r['event'] == 'attach' and
                                  r.get('source') == src, 'attach record')
            self.check_identity(att[0], src, p['id'])
        tn, line = self.attach(d, 'vm-00001')
        self.assertEqual(line, 'attached to vm-00001 [%s]' %
                         self.byname['vm-00001']['id'])
        self.check_stream(self.read_stream(tn), 'vm-00001')
        tn.send(b'abc')
        wait_for(lambda: self.sim_port(1)['received'] == 10, 5, 0.05,
                 'front-door input at vm-00001')
        self.assertEqual(self.d.port(self.byname['vm-00001']['id'])
                         ['bytes_to_vm'], 10)
        self.assertEqual(self.records('denied'), [])


class TestEmptyRules(AccessBase):
    """access: [] : rules are configured and none match, so nobody
    (anonymous on loopback included) attaches anywhere."""

    def test_all_denied(self):
        self.start('access: []\n', nvms=3)
        for name in ('vm-00000', 'vm-00001', 'vm-00002'):
            self.denied_on_port_listener(name)
            tn, src, seen = self.denied_on_frontdoor(name)
            self.assertIsNone(SEQ_ANY.search(seen), seen)
            self.assertEqual(self.d.port(self.byname[name]['id'])
                             ['clients'], 0)
        for p in self.d.ports():
            self.assertEqual(p['clients'], 0, p)
        h = self.d.healthz()
        self.assertEqual(h['vm_connections'], 3)
        recs = self.audit()
        self.assertEqual([r for r in recs if r['event'] == 'attach'], [])
        self.assertEqual(len([r for r in recs if r['event'] == 'denied']), 6,
                         recs)


class TestReloadRevokes(AccessBase):
    """Rights follow the rules: a SIGHUP that removes a client's read right
    detaches it (audited as denied) instead of letting it keep reading."""

    def test_reload_detaches_revoked_reader(self):
        conf = ('access:\n  - {who: anonymous, consoles: "*", '
                'rights: [read, write]}\n')
        d = self.start(conf, nvms=1)
        p = self.byname['vm-00000']
        tn = self.telnet(p['client_port'])
        src = self.source_of(tn)
        self.check_stream(self.read_stream(tn), 'vm-00000')
        with open(d.conf_path, 'w') as f:
            f.write('access: []\n')
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: (tn.read_available(0.1), tn.eof)[1], 10, 0.05,
                 'the revoked client to be closed')
        self.wait_audit(lambda r: r['event'] == 'denied' and
                        r.get('source') == src, 'denied record')
        d.wait_ports(lambda ps: ps[0]['clients'] == 0)


class TestAmbiguous(AccessBase):
    """A name that matches several consoles the client may not read must
    get the unknown-name answer too, not a list of their port ids."""

    def test_ambiguous_name_reveals_nothing(self):
        d = Daemon(start=False)
        self._daemons.append(d)
        self.addCleanup(self._stop_daemon, d)
        d.conf_path = os.path.join(d.dir, 'vspcd.conf')
        with open(d.conf_path, 'w') as f:
            f.write('access: []\n')
        d.args += ['-f', d.conf_path]
        d.start()
        self.d = d
        sim = self.sim(d, ['--vms', '1', '--ports-per-vm', '2',
                           '--name-prefix', 'dual-', '--rate', RATE])
        sim.wait_ready(2)
        ps = d.wait_ports(lambda ps: len(ps) == 2 and
                          all(p['connected'] for p in ps))
        tn, line = self.attach(d, 'dual-00000')
        for p in ps:
            self.assertNotIn(p['id'], line)
        self.assertEqual(line, unknown_line('dual-00000'))


class TestAudit(AccessBase):
    """The audit log after denied, read-only and read-write sessions, a VM
    with a hostile name, forged-looking console output and a SIGHUP."""

    HOSTILE = (b'evil"}\n{"event":"attach","kind":"x"}\r\x1b[2J\x1b]0;pwn'
               b'\x07\x9b31m\xc3\x28\xff\xfe\xe2\x80\xa8\\u0000-end')

    def hostile_vm(self):
        vm = self.raw_vm(self.d)
        uuid = vspctest.esxi_uuid(0x0bad0bad, 1)
        vm.send(bytes([255, 251, vspctest.VMWARE_EXT]) +
                vspctest.vmw_sb(vspctest.KNOWN_SUBOPTIONS_1,
                                vspctest.ESXI_KS1) +
                vspctest.vmw_sb(vspctest.DO_PROXY, b'SvSPC.py') +
                vspctest.vmw_sb(vspctest.VM_VC_UUID, uuid.encode()) +
                vspctest.vmw_sb(vspctest.VM_NAME, self.HOSTILE))
        vm.read_until(vspctest.vmw_sb(vspctest.WILL_PROXY), 5)
        nu = vspctest.norm_uuid(uuid)
        p = wait_for(lambda: [q for q in self.d.ports()
                              if q.get('vm_uuid') == nu and q['client_port']],
                     5, 0.05, 'the hostile VM port')[0]
        return vm, p

    def test_audit_log(self):
        conf = RULES.rstrip('\n')[:-1] + (
            ', {who: anonymous, consoles: "evil*", rights: [read]}]\n')
        self.start(conf)
        d = self.d
        ids = {n: p['id'] for n, p in self.byname.items()}
        # Console output that looks like audit records.
        forged = b'{"event":"attach","kind":"forged","console":"x"}\n'
        self.sim1.send(3, 0, forged)
        self.sim1.send(0, 0, forged)
        # 1. denied: per-port listener and front door.
        s_den1 = self.denied_on_port_listener('vm-00003')
        tn, s_den2, _ = self.denied_on_frontdoor('vm-00003')
        tn.close()
        # 2. read only: attach, typing, detach.
        ro = self.telnet(self.byname['vm-00000']['client_port'])
        s_ro = self.source_of(ro)
        self.read_stream(ro, 500)
        ro.send(b'TYPED-SECRET-RO\r')
        ro.close()
        # 3. read+write through the front door, then detach.
        rw, line = self.attach(d, 'vm-00002')
        self.assertTrue(line.startswith('attached to vm-00002'), line)
        s_rw = self.source_of(rw)
        rw.send(b'TYPED-SECRET-RW\r')
        wait_for(lambda: self.sim_port(2)['received'] == 16, 5, 0.05,
                 'typed input at vm-00002')
        rw.close()
        # 4. a VM with a hostile name, read by one client.
        vm, hp = self.hostile_vm()
        hc = self.telnet(hp['client_port'])
        s_h = self.source_of(hc)
        wait_for(lambda: d.port(hp['id'])['clients'] == 1, 5, 0.05,
                 'a client on the hostile VM')
        vm.send(b'hostile output\r\n' + forged)
        hc.read_until(b'hostile output\r\n' + forged, 5)
        hc.close()
        # 5. SIGHUP.
        mark = len(d.stderr())
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: 'reload: configuration applied' in
                 d.stderr()[mark:], 10, 0.05, 'reload applied')
        self.wait_audit(lambda r: r['event'] == 'config-reload',
                        'config-reload record')
        for src in (s_ro, s_rw, s_h):
            self.wait_audit(lambda r, s=src: r['event'] == 'detach' and
                            r.get('source') == s, 'detach of %s' % src)

        recs = self.audit()
        with open(self.audit_path(), 'rb') as f:
            raw = f.read()
        # Mode 0600, a regular file.
        st = os.lstat(self.audit_path())
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)

        # A source is (address, ephemeral port); the kernel may reuse a
        # closed connection's port for a later one, so match the console
        # too.
        def one(event, src, console):
            got = [r for r in recs if r['event'] == event and
                   r.get('source') == src and r.get('console') == console]
            self.assertEqual(len(got), 1, '%s for %s: %r' % (event, src,
                                                              recs))
            return got[0]

        for src in (s_den1, s_den2):
            self.check_identity(one('denied', src, ids['vm-00003']), src,
                                ids['vm-00003'])
            self.assertEqual([r for r in recs if r.get('source') == src and
                              r.get('console') == ids['vm-00003'] and
                              r['event'] != 'denied'], [])
        for src, pid in ((s_ro, ids['vm-00000']), (s_rw, ids['vm-00002']),
                         (s_h, hp['id'])):
            a, dt = one('attach', src, pid), one('detach', src, pid)
            self.check_identity(a, src, pid)
            self.check_identity(dt, src, pid)
            self.assertLess(recs.index(a), recs.index(dt))
        self.assertEqual(len([r for r in recs if r['event'] == 'denied']), 2)
        reload_ = [r for r in recs if r['event'] == 'config-reload']
        self.assertEqual(len(reload_), 1, reload_)
        self.assertNotIn('console', reload_[0])
        # Every record is one of the expected events; nothing forged.
        self.assertEqual({r['event'] for r in recs},
                         {'attach', 'detach', 'denied', 'config-reload'})
        self.assertNotIn(b'forged', raw)
        self.assertNotIn(b'TYPED-SECRET', raw)
        self.assertNotIn(b'hostile output', raw)
        self.assertIsNone(SEQ_ANY.search(raw), raw[:500])
        self.assertNotIn(b'vm-0000', raw)
        self.assertEqual(raw.count(b'\n'), len(recs))
        # Records written after the reload go to the reopened file.
        again = self.telnet(self.byname['vm-00001']['client_port'])
        s_again = self.source_of(again)
        self.read_stream(again, 300)
        self.wait_audit(lambda r: r['event'] == 'attach' and
                        r.get('source') == s_again, 'attach after reload')


if __name__ == '__main__':
    vspctest.main()
