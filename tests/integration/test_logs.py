#!/usr/bin/env python3
"""Console logs (GUARANTEES.md T5, T8, T9, G8, G10; doc/INTERFACES.md
"Config file, state, console logs, replay").

- exact bytes: every byte value and a few MB of seq output end up in
  LOG_DIR/<id>.log exactly, in order (read while running after a sync tick,
  and again after a clean stop);
- the .events sidecar: JSON lines, vm-connect / client-attach /
  client-detach / vm-disconnect at the .log offset of the moment; guest
  text shaped like events or conserver marks stays in the .log;
- hostile VM names and service URIs never reach a file name, never escape
  the log dir, come back from the API as valid JSON without control
  characters, and never put raw ESC or forged lines into the daemon log;
- a pre-planted symlink (or hard link) at <id>.log is not followed;
- a .log left idle and then swapped for a symlink is not followed, and
  what could not be written is an exact gap;
- rotation (--log-max-size/--log-keep): exact file sizes and contents;
- SIGHUP reopens (logrotate rename);
- disk full (root only: 1 MiB tmpfs): consoles keep working, gap events
  count exactly the missing bytes, data resumes, one ENOSPC report;
- API log routes (/api/v1/ports/X/log?tail_bytes=N, /console_log/UUID).
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import vspctest
from vspctest import (HOST, RawVM, VspcTestCase, esxi_uuid, norm_uuid,
                      vmw_sb, wait_for)

LOG_NAME = re.compile(
    r'^[0-9a-f]{32}(\.[A-Za-z0-9._-]+)?(~[0-9]+)?\.(log|events)(\.[0-9]+)?$')


def esc(data):
    """Console bytes as they go on the VM's wire (0xFF doubled)."""
    return bytes(data).replace(b'\xff', b'\xff\xff')


def seq_bytes(name, label, first, nbytes):
    out = bytearray()
    n = first
    while len(out) < nbytes:
        out += vspctest.seq_line(name, label, n)
        n += 1
    return bytes(out)


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def read_events(path):
    """Parse a sidecar: every line must be one JSON object."""
    out = []
    with open(path, 'rb') as f:
        data = f.read()
    assert data == b'' or data.endswith(b'\n'), \
        'sidecar %s does not end with a newline: %r' % (path, data[-200:])
    for ln in data.split(b'\n')[:-1]:
        ev = json.loads(ln.decode('utf-8'))
        assert isinstance(ev, dict), ln
        for k in ('time', 'offset', 'event'):
            assert k in ev, 'missing %s in %r' % (k, ln)
        out.append(ev)
    return out


def identify_bytes(vm, name, uuid, uri=b'vSPC.py', timeout=10.0):
    """RawVM.identify with a bytes VM name (any byte values)."""
    vm.send(bytes([255, 251, vspctest.VMWARE_EXT]) +
            vmw_sb(vspctest.KNOWN_SUBOPTIONS_1, vspctest.ESXI_KS1) +
            vmw_sb(vspctest.DO_PROXY, b'S' + uri) +
            vmw_sb(vspctest.VM_VC_UUID, uuid.encode()) +
            vmw_sb(vspctest.VM_NAME, name))
    return vm.read_until(vmw_sb(vspctest.WILL_PROXY), timeout)


class LogTestCase(VspcTestCase):

    def log_daemon(self, extra=(), log_dir=None, **kw):
        """A daemon with console logs; returns (daemon, log dir)."""
        args = ['--log-sync-ms', '100'] + list(extra)
        if log_dir is not None:
            args += ['--log-dir', log_dir]
        d = self.daemon(args, **kw)
        return d, log_dir or os.path.join(d.state_dir, 'logs')

    def wait_from_vm(self, d, pid, n, timeout=30.0):
        """Wait until the daemon has received n console bytes on port pid."""
        def ok():
            p = d.port(pid)
            return p is not None and p['bytes_from_vm'] >= n and p
        p = wait_for(ok, timeout, what='%d bytes from the VM on %s' %
                     (n, pid))
        self.assertEqual(p['bytes_from_vm'], n)
        return p

    def vm(self, d, tag, i, name='vm-log', uri='vSPC.py'):
        vm = self.raw_vm(d)
        uuid = esxi_uuid(tag, i)
        vm.identify(name=name, uuid=uuid, uri=uri)
        return vm, norm_uuid(uuid)


class TestExactBytes(LogTestCase):

    def test_all_byte_values_and_megabytes(self):
        d, ld = self.log_daemon()
        vm, pid = self.vm(d, 0x10000001, 1)
        d.wait_ports(lambda ps: any(p['id'] == pid for p in ps))
        sent = bytearray()
        allb = bytes(range(256))
        # Every byte value, alone, in pairs that look like telnet (CR NUL,
        # CR LF, IAC IAC) and at chunk edges.
        for chunk in (allb, allb[::-1], b'\r\x00\r\n\r\r\n\n\x00\xff\xff',
                      allb * 64):
            vm.send(esc(chunk))
            sent += chunk
        # A few MB of seq output in odd-sized writes.
        big = seq_bytes('vm-log', '-', 0, 3 * 1024 * 1024)
        rnd = random.Random(1)
        off = 0
        while off < len(big):
            n = rnd.randint(1, 70000)
            vm.send(big[off:off + n])
            off += n
        sent += big
        vm.send(esc(allb))
        sent += allb
        self.wait_from_vm(d, pid, len(sent))
        path = os.path.join(ld, pid + '.log')
        # While running: after a sync tick the file holds everything.
        wait_for(lambda: os.path.exists(path) and
                 os.path.getsize(path) >= len(sent), 5,
                 what='log file to reach %d bytes' % len(sent))
        got = read(path)
        self.assertEqual(len(got), len(sent))
        if got != bytes(sent):
            self.fail('log differs from sent bytes at offset %d' %
                      next(i for i in range(len(got)) if got[i] != sent[i]))
        vm.close()
        d.stop()
        self.assertEqual(read(path), bytes(sent))


class TestEvents(LogTestCase):

    def test_events_offsets_and_guest_forgery(self):
        d, ld = self.log_daemon()
        vm, pid = self.vm(d, 0x10000002, 1)
        ps = d.wait_ports(lambda ps: any(p['id'] == pid for p in ps))
        cport = [p for p in ps if p['id'] == pid][0]['client_port']
        forged = (b'{"time":"2020-01-01T00:00:00Z","offset":0,'
                  b'"event":"vm-connect","detail":"guest"}\n'
                  b'\n{"event":"client-attach","offset":1}\r\n'
                  b'[-- MARK -- Mon Jan  1 00:00:00 2024]\r\n'
                  b'[-- Console down -- GUEST]\r\n'
                  b'\x1b]0;pwn\x07"},{"event":"gap","bytes":999}\n')
        sent = bytearray()
        a = b'boot line 1\r\n' + forged + b'after A\r\n'
        vm.send(esc(a))
        sent += a
        self.wait_from_vm(d, pid, len(sent))
        off_attach = len(sent)
        tn = self.telnet(cport)
        wait_for(lambda: d.port(pid)['clients'] == 1, 5, what='attach')
        b = forged + b'during client\r\n' + bytes(range(256))
        vm.send(esc(b))
        sent += b
        self.assertEqual(tn.read_exactly(len(b), 10), b)
        self.wait_from_vm(d, pid, len(sent))
        off_detach = len(sent)
        tn.close()
        wait_for(lambda: d.port(pid)['clients'] == 0, 5, what='detach')
        c = b'after client\r\n' + forged
        vm.send(esc(c))
        sent += c
        self.wait_from_vm(d, pid, len(sent))
        off_disc = len(sent)
        vm.close()
        wait_for(lambda: not d.port(pid)['connected'], 5,
                 what='vm disconnect')
        d.stop()
        self.assertEqual(read(os.path.join(ld, pid + '.log')), bytes(sent))
        evraw = read(os.path.join(ld, pid + '.events'))
        evs = read_events(os.path.join(ld, pid + '.events'))
        names = [e['event'] for e in evs]
        want = [('vm-connect', 0), ('client-attach', off_attach),
                ('client-detach', off_detach), ('vm-disconnect', off_disc)]
        got = [(e['event'], e['offset']) for e in evs
               if e['event'] in dict(want)]
        self.assertEqual(got, want, 'events: %r' % evs)
        for e in evs:
            self.assertRegex(e['time'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d'
                             r'(\.\d+)?Z$')
        # Nothing the guest printed leaks into the sidecar.
        for bad in (b'guest', b'GUEST', b'MARK', b'pwn', b'\x1b', b'999',
                    b'2020-01-01'):
            self.assertNotIn(bad, evraw)
        self.assertNotIn('gap', names)


class TestHostileNames(LogTestCase):

    NAMES = [
        b'../../x',
        b'../../../x',
        b'a/b',
        b'/tmp/vspcd-abs-x',
        b'nul\x00byte\x00../../x',
        b'A' * 4096,
        b'\x1b]0;pwn\x07\x1b[2J',
        b'line1\nFAKE-LINE vspcd: injected\r\nFAKE2\r',
        b'.',
        b'..',
        b'\xff\xfe invalid utf8 \xc3\x28',
        b'"},{"id":"x',
    ]

    def snapshot(self, path):
        try:
            return set(os.listdir(path))
        except OSError:
            return set()

    def test_hostile_vm_names(self):
        d = self.daemon(start=False)
        # The log dir is 3 levels below the state dir, so "../../x" and
        # "../../../x" would land inside the state dir where we look.
        ld = os.path.join(d.state_dir, 'l1', 'l2', 'logs')
        os.makedirs(ld)
        d.args += ['--log-sync-ms', '100', '--log-dir', ld, '-v']
        parent = os.path.dirname(d.state_dir)
        watch = [parent, '/tmp', os.getcwd(), '/']
        before = {p: self.snapshot(p) for p in watch}
        d.start()
        vms = []
        for i, name in enumerate(self.NAMES):
            vm = self.raw_vm(d)
            uuid = esxi_uuid(0x20000000, i)
            identify_bytes(vm, name, uuid)
            data = b'console of hostile vm %d\r\n' % i + name + b'\r\n'
            vm.send(esc(data))
            vms.append((vm, norm_uuid(uuid), data))
        ids = {v[1] for v in vms}
        ps = d.wait_ports(lambda ps: {p['id'] for p in ps} >= ids and all(
            p['bytes_from_vm'] == len(v[2]) for p in ps for v in vms
            if v[1] == p['id']), 10)
        # The API: valid JSON (d.ports parsed it), no raw control bytes.
        status, _, body = d.api_raw('/api/v1/ports')
        self.assertEqual(status, 200)
        self.assertIsNone(re.search(rb'[\x00-\x1f\x7f]', body.rstrip()),
                          'raw control byte in API output')
        json.loads(body)
        for p in ps:
            name = p['vm_name']
            self.assertIsNone(re.search(r'[\x00-\x1f\x7f]', name),
                              'control character in vm_name %r' % name)
            self.assertNotIn('\x1b', name)
        for vm, pid, data in vms:
            p = d.api('/api/v1/ports/' + pid)
            self.assertEqual(p['id'], pid)
            vm.close()
        wait_for(lambda: not any(p['connected'] for p in d.ports()), 5,
                 what='disconnects')
        d.stop()
        # Every log holds its VM's bytes; file names are only port ids.
        for vm, pid, data in vms:
            self.assertEqual(read(os.path.join(ld, pid + '.log')), data)
        for f in os.listdir(ld):
            self.assertRegex(f, LOG_NAME)
            self.assertTrue(f.split('.')[0] in ids, f)
        # Nothing anywhere else in the state dir but known files.
        for root, dirs, files in os.walk(d.state_dir):
            for f in files:
                full = os.path.join(root, f)
                if root == ld:
                    continue
                rel = os.path.relpath(full, d.state_dir)
                self.assertRegex(rel, r'^(listeners\.json|state\.db.*|audit\.log|'
                                 r'vspcd\.stderr|vspc-sim-.*\.stderr)$',
                                 'unexpected file %r' % full)
            for x in dirs:
                rel = os.path.relpath(os.path.join(root, x), d.state_dir)
                self.assertIn(rel, ('l1', 'l1/l2', 'l1/l2/logs', 'logs'),
                              'unexpected directory %r' % rel)
        after = {p: self.snapshot(p) for p in watch}
        for p in watch:
            new = after[p] - before[p]
            bad = [n for n in new if n in ('x', 'x.log', 'x.events', 'b',
                                           'b.log', 'vspcd-abs-x',
                                           'vspcd-abs-x.log') or
                   'pwn' in n or 'AAAAAAAA' in n or '\n' in n or
                   'byte' in n or 'FAKE' in n]
            self.assertEqual(bad, [], 'new entries in %s' % p)
        # Daemon log: no raw ESC/BEL, no forged line starts.
        err = read(d.stderr_path)
        self.assertNotIn(b'\x1b', err)
        self.assertNotIn(b'\x07', err)
        self.assertNotIn(b'\x00', err)
        for ln in err.split(b'\n'):
            self.assertFalse(ln.startswith(b'FAKE'), ln)
            self.assertFalse(ln.lstrip(b'\r').startswith(b'FAKE'), ln)

    def test_hostile_uri_labels(self):
        d = self.daemon(start=False)
        ld = os.path.join(d.state_dir, 'l1', 'l2', 'logs')
        os.makedirs(ld)
        d.args += ['--log-sync-ms', '100', '--log-dir', ld]
        d.start()
        uris = ['vSPC.py?port=../../etc', 'vSPC.py?port=..',
                'vSPC.py?port=../../../x', 'vSPC.py?port=a/b',
                'vSPC.py?port=/etc/passwd', 'vSPC.py?port=.hidden',
                'vSPC.py?port=%2e%2e%2fx', 'vSPC.py/../../x',
                'vSPC.py#/../../../x', 'vSPC.py?port=\x1b[2J..\n']
        vms = []
        for i, uri in enumerate(uris):
            vm = self.raw_vm(d)
            uuid = norm_uuid(esxi_uuid(0x30000000, i))
            identify_bytes(vm, b'vm-uri', esxi_uuid(0x30000000, i),
                           uri=uri.encode())
            data = b'uri test %d\r\n' % i
            vm.send(data)
            vms.append((vm, uuid, data))
        ps = d.wait_ports(lambda ps: len(ps) == len(uris) and all(
            p['bytes_from_vm'] > 0 for p in ps))
        by_uuid = {p['vm_uuid']: p for p in ps}
        for vm, uuid, data in vms:
            p = by_uuid[uuid]
            self.assertNotIn('/', p['id'])
            self.assertNotIn('..', p['id'])
            self.assertTrue(p['id'].startswith(uuid), p['id'])
            self.assertRegex(p['id'] + '.log', LOG_NAME)
        d.stop()
        for vm, uuid, data in vms:
            p = by_uuid[uuid]
            self.assertEqual(read(os.path.join(ld, p['id'] + '.log')), data)
        for f in os.listdir(ld):
            self.assertRegex(f, LOG_NAME)
        for root, dirs, files in os.walk(d.state_dir):
            rel = os.path.relpath(root, d.state_dir)
            self.assertIn(rel, ('.', 'l1', 'l1/l2', 'l1/l2/logs'),
                          'unexpected directory %r' % root)
            if rel in ('l1', 'l1/l2'):
                self.assertEqual(files, [], root)
        self.assertFalse(os.path.lexists('/etc/passwd.log'))
        self.assertFalse(os.path.lexists('/tmp/x.log'))


class TestLinks(LogTestCase):

    def test_symlink_not_followed(self):
        d, ld = self.log_daemon()
        os.makedirs(ld, exist_ok=True)
        target = os.path.join(d.state_dir, 'target.txt')
        etarget = os.path.join(d.state_dir, 'etarget.txt')
        hard = os.path.join(d.state_dir, 'hard.txt')
        for t in (target, etarget, hard):
            with open(t, 'wb') as f:
                f.write(b'ORIGINAL\n')
        uuid1 = esxi_uuid(0x40000000, 1)
        uuid2 = esxi_uuid(0x40000000, 2)
        id1, id2 = norm_uuid(uuid1), norm_uuid(uuid2)
        os.symlink(target, os.path.join(ld, id1 + '.log'))
        os.symlink(etarget, os.path.join(ld, id1 + '.events'))
        os.link(hard, os.path.join(ld, id2 + '.log'))
        vm1 = self.raw_vm(d)
        vm1.identify(name='vm-sym', uuid=uuid1)
        vm2 = self.raw_vm(d)
        vm2.identify(name='vm-hard', uuid=uuid2)
        ps = d.wait_ports(lambda ps: len(ps) == 2)
        cp = {p['id']: p['client_port'] for p in ps}
        tn1 = self.telnet(cp[id1])
        tn2 = self.telnet(cp[id2])
        wait_for(lambda: all(p['clients'] == 1 for p in d.ports()), 5,
                 what='clients attached')
        payload = b'secret console output\r\n' + bytes(range(256))
        vm1.send(esc(payload))
        vm2.send(esc(payload))
        self.assertEqual(tn1.read_exactly(len(payload), 10), payload)
        self.assertEqual(tn2.read_exactly(len(payload), 10), payload)
        tn1.send(b'typed\r')
        vm1.read_until(b'typed\r', 5)
        time.sleep(0.4)
        self.assertTrue(d.running)
        for t in (target, etarget, hard):
            self.assertEqual(read(t), b'ORIGINAL\n', t)
        self.assertTrue(os.path.islink(os.path.join(ld, id1 + '.log')))
        vm1.close()
        vm2.close()
        d.stop()
        for t in (target, etarget, hard):
            self.assertEqual(read(t), b'ORIGINAL\n', t)
        self.assertTrue(os.path.islink(os.path.join(ld, id1 + '.log')))
        self.assertTrue(os.path.islink(os.path.join(ld, id1 + '.events')))


class TestIdleReopen(LogTestCase):

    def log_fds(self, d, ld):
        out = []
        for fd in os.listdir('/proc/%d/fd' % d.proc.pid):
            try:
                t = os.readlink('/proc/%d/fd/%s' % (d.proc.pid, fd))
            except OSError:
                continue
            if t.startswith(ld + '/'):
                out.append(t)
        return out

    def test_idle_then_swapped_symlink(self):
        """A .log left idle (its fd may be closed) and then replaced by a
        symlink is not followed when data comes again; nothing before is
        lost; a regular file swapped in is not trusted past its size."""
        d, ld = self.log_daemon()
        vm, pid = self.vm(d, 0x45000000, 1)
        cport = d.wait_ports(lambda ps: len(ps) == 1)[0]['client_port']
        a = seq_bytes('vm-log', 'idle', 0, 20000)
        vm.send(a)
        self.wait_from_vm(d, pid, len(a))
        path = os.path.join(ld, pid + '.log')
        wait_for(lambda: os.path.getsize(path) == len(a), 5, what='sync')
        # Idle for longer than the daemon's idle close (5 s).
        time.sleep(6)
        nfds = len(self.log_fds(d, ld))
        os.rename(path, path + '.moved')
        target = os.path.join(d.state_dir, 'outside.txt')
        with open(target, 'wb') as f:
            f.write(b'ORIGINAL\n')
        os.symlink(target, path)
        tn = self.telnet(cport)
        wait_for(lambda: d.port(pid)['clients'] == 1, 5, what='attach')
        b = b'after idle\r\n' + bytes(range(256))
        vm.send(esc(b))
        self.assertEqual(tn.read_exactly(len(b), 10), b)
        self.wait_from_vm(d, pid, len(a) + len(b))
        time.sleep(0.5)
        self.assertTrue(d.running)
        self.assertEqual(read(target), b'ORIGINAL\n')
        self.assertTrue(os.path.islink(path))
        vm.close()
        tn.close()
        d.stop()
        self.assertEqual(read(target), b'ORIGINAL\n')
        self.assertTrue(os.path.islink(path))
        moved = read(path + '.moved')
        # The moved file got the first bytes; whether the daemon kept its
        # fd (then b follows) or closed it (then b is a gap) is its choice.
        self.assertTrue(moved in (a, a + b), (len(moved), len(a)))
        print('\n  idle: %d .log fd(s) open after 6 s idle; moved file %s'
              % (nfds, 'got the later bytes too' if moved == a + b
                 else 'was left alone'))
        evs = read_events(os.path.join(ld, pid + '.events'))
        if moved == a:
            gaps = [e for e in evs if e['event'] == 'gap']
            lost = sum(e['bytes'] for e in gaps)
            print('  idle: %d gap bytes recorded for the refused file' % lost)
            self.assertEqual(lost, len(b), 'refused bytes not counted '
                             'exactly as a gap: %r' % evs)


class TestRotation(LogTestCase):

    def test_rotation_sizes_and_content(self):
        d, ld = self.log_daemon(['--log-max-size', '4096', '--log-keep',
                                 '3'])
        vm, pid = self.vm(d, 0x50000000, 1)
        rnd = random.Random(5)
        sent = bytes(rnd.getrandbits(8) for _ in range(50 * 1024))
        off = 0
        while off < len(sent):
            n = rnd.randint(1, 3000)
            vm.send(esc(sent[off:off + n]))
            off += n
        self.wait_from_vm(d, pid, len(sent))
        vm.close()
        wait_for(lambda: not d.port(pid)['connected'], 5, what='close')
        d.stop()
        files = sorted(f for f in os.listdir(ld) if f.startswith(pid))
        logs = sorted(f for f in files if '.log' in f)
        self.assertEqual(logs, [pid + '.log', pid + '.log.1',
                                pid + '.log.2', pid + '.log.3'])
        for i in (1, 2, 3):
            self.assertEqual(os.path.getsize(os.path.join(
                ld, '%s.log.%d' % (pid, i))), 4096)
        cur = read(os.path.join(ld, pid + '.log'))
        self.assertEqual(len(cur), len(sent) % 4096 or 4096)
        cat = b''.join(read(os.path.join(ld, '%s.log.%d' % (pid, i)))
                       for i in (3, 2, 1)) + cur
        self.assertEqual(cat, sent[-len(cat):])
        for f in files:
            self.assertRegex(f, LOG_NAME)
            if '.events' in f:
                read_events(os.path.join(ld, f))
        # The API tail crosses rotated files.
        # (daemon stopped; covered in TestApi)


class TestSighup(LogTestCase):

    def test_sighup_reopens(self):
        d, ld = self.log_daemon()
        vm, pid = self.vm(d, 0x60000000, 1)
        a = seq_bytes('vm-log', 'a', 0, 100000)
        vm.send(a)
        self.wait_from_vm(d, pid, len(a))
        path = os.path.join(ld, pid + '.log')
        wait_for(lambda: os.path.getsize(path) == len(a), 5,
                 what='log synced')
        os.rename(path, path + '.old')
        os.rename(os.path.join(ld, pid + '.events'),
                  os.path.join(ld, pid + '.events.old'))
        # Bytes that arrive after the rename but before the HUP belong
        # to the old file (it is still open).
        a2 = b'between rename and hup\r\n'
        vm.send(a2)
        self.wait_from_vm(d, pid, len(a) + len(a2))
        n = d.stderr().count('reload')
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: d.stderr().count('reload') > n, 5,
                 what='reload message')
        time.sleep(0.2)
        b = seq_bytes('vm-log', 'b', 0, 50000)
        vm.send(b)
        self.wait_from_vm(d, pid, len(a) + len(a2) + len(b))
        wait_for(lambda: os.path.exists(path) and
                 os.path.getsize(path) == len(b), 5,
                 what='new log with %d bytes' % len(b))
        vm.close()
        d.stop()
        self.assertEqual(read(path + '.old'), a + a2)
        self.assertEqual(read(path), b)
        read_events(os.path.join(ld, pid + '.events'))
        self.assertTrue(d.stderr().count('reload: configuration applied')
                        >= 1, 'no "reload: configuration applied"')


class TestDiskFull(LogTestCase):

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest('disk-full test needs root (tmpfs mount)')
        self.mnt = tempfile.mkdtemp(prefix='vspcd-tmpfs-')
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m,mode=0700',
                            'tmpfs', self.mnt], capture_output=True)
        if r.returncode != 0:
            os.rmdir(self.mnt)
            self.skipTest('cannot mount tmpfs: %s' %
                          r.stderr.decode(errors='replace').strip())
        self.addCleanup(self._umount)

    def _umount(self):
        subprocess.run(['umount', '-l', self.mnt], capture_output=True)
        try:
            os.rmdir(self.mnt)
        except OSError:
            pass

    def test_enospc_gaps_exact(self):
        filler = os.path.join(self.mnt, 'filler')
        with open(filler, 'wb') as f:
            f.write(b'\0' * (512 * 1024))
        ld = os.path.join(self.mnt, 'logs')
        d, ld = self.log_daemon(['--client-queue', '64M'], log_dir=ld)
        vm, pid = self.vm(d, 0x70000000, 1)
        ps = d.wait_ports(lambda ps: len(ps) == 1)
        tn = self.telnet(ps[0]['client_port'])
        wait_for(lambda: d.port(pid)['clients'] == 1, 5, what='attach')
        rnd = random.Random(7)
        flood = rnd.randbytes(3 * 1024 * 1024)
        got = bytearray()
        err = []

        def reader():
            try:
                got.extend(tn.read_exactly(len(flood), 60))
            except Exception as e:     # noqa: BLE001
                err.append(e)
        t = threading.Thread(target=reader)
        t.start()
        t0 = time.monotonic()
        off = 0
        while off < len(flood):
            vm.send(esc(flood[off:off + 32768]))
            off += 32768
        t_send = time.monotonic() - t0
        t.join(70)
        t_recv = time.monotonic() - t0
        self.assertEqual(err, [])
        self.assertTrue(bytes(got) == flood, 'client stream differs')
        self.wait_from_vm(d, pid, len(flood))
        self.assertTrue(d.running)
        print('\n  disk full: 3 MiB written by the VM in %.2fs, received by '
              'the client in %.2fs' % (t_send, t_recv))
        # Free space, send more: writing resumes.
        time.sleep(0.3)
        os.unlink(filler)
        more = rnd.randbytes(200 * 1024)
        off = 0
        while off < len(more):
            vm.send(esc(more[off:off + 4096]))
            off += 4096
        self.assertEqual(tn.read_exactly(len(more), 20), more)
        sent = flood + more
        self.wait_from_vm(d, pid, len(sent))
        time.sleep(0.3)
        vm.close()
        d.stop()
        log = read(os.path.join(ld, pid + '.log'))
        evs = read_events(os.path.join(ld, pid + '.events'))
        gaps = [e for e in evs if e['event'] == 'gap']
        self.assertTrue(gaps, 'no gap event: %r' % evs)
        missing = sum(e['bytes'] for e in gaps)
        self.assertEqual(len(log) + missing, len(sent),
                         'log %d + gaps %d != sent %d' %
                         (len(log), missing, len(sent)))
        # Reassemble: log segments between gaps match sent at the right
        # positions.
        pos_log = pos_sent = 0
        for g in sorted(gaps, key=lambda e: e['offset']):
            seg = g['offset'] - pos_log
            self.assertGreaterEqual(seg, 0)
            self.assertEqual(log[pos_log:g['offset']],
                             sent[pos_sent:pos_sent + seg],
                             'segment before gap at %d' % g['offset'])
            pos_log = g['offset']
            pos_sent += seg + g['bytes']
        self.assertEqual(log[pos_log:], sent[pos_sent:],
                         'data after the last gap')
        self.assertGreater(len(log) - gaps[-1]['offset'], 0,
                           'nothing written after the gap')
        self.assertEqual(log[-len(more):], more)
        enospc = [ln for ln in d.stderr().splitlines()
                  if 'No space left' in ln]
        print('  disk full: log %d bytes, %d gap(s) = %d bytes, %d ENOSPC '
              'report(s)' % (len(log), len(gaps), missing, len(enospc)))
        self.assertLessEqual(len(enospc), 1, enospc)
        self.assertGreaterEqual(len(enospc), 1, 'ENOSPC never reported')


class TestApi(LogTestCase):

    def test_log_routes(self):
        d, ld = self.log_daemon(['--log-max-size', '4096', '--log-keep',
                                 '5'])
        vm, pid = self.vm(d, 0x80000000, 1, name='vm-apilog')
        uuid = pid
        sent = os.urandom(3000)
        vm.send(esc(sent))
        self.wait_from_vm(d, pid, len(sent))
        # Exactly the last 100 bytes, straight away (the route flushes).
        for key in (pid, 'vm-apilog', uuid,
                    esxi_uuid(0x80000000, 1).replace(' ', '%20')):
            st, hdr, body = d.api_raw('/api/v1/ports/%s/log?tail_bytes=100'
                                      % key)
            self.assertEqual(st, 200, (key, body[:200]))
            self.assertEqual(body, sent[-100:], key)
            self.assertEqual(hdr.get('X-Vspc-Port'), pid)
            self.assertIn('application/octet-stream',
                          hdr.get('Content-Type', ''))
        st, _, body = d.api_raw('/console_log/' + uuid + '?tail_bytes=100')
        self.assertEqual((st, body), (200, sent[-100:]))
        st, _, body = d.api_raw('/console_log/' + uuid)
        self.assertEqual((st, body), (200, sent))
        # Across rotated files (4096-byte limit).
        more = os.urandom(10000)
        vm.send(esc(more))
        allb = sent + more
        self.wait_from_vm(d, pid, len(allb))
        st, _, body = d.api_raw('/api/v1/ports/%s/log?tail_bytes=9000' % pid)
        self.assertEqual((st, body), (200, allb[-9000:]))
        st, _, body = d.api_raw('/api/v1/ports/%s/log' % pid)
        self.assertEqual((st, body), (200, allb[-len(body):]))
        self.assertEqual(len(body), min(len(allb), 4096 * 6))
        # Two consoles of one VM name: 409 with the matching ids.
        vm2, pid2 = self.vm(d, 0x80000000, 2, name='vm-apilog')
        d.wait_ports(lambda ps: len(ps) == 2)
        st, _, body = d.api_raw('/api/v1/ports/vm-apilog/log')
        self.assertEqual(st, 409, body[:300])
        self.assertEqual(sorted(json.dumps(json.loads(body)).count(x)
                                for x in (pid, pid2)), [1, 1])
        for path in ('/api/v1/ports/%s/log' % ('0' * 32),
                     '/api/v1/ports/nosuchvm/log?tail_bytes=10',
                     '/console_log/' + '1' * 32,
                     '/console_log/nosuch'):
            st, _, body = d.api_raw(path)
            self.assertEqual(st, 404, path)


if __name__ == '__main__':
    vspctest.main()
