#!/usr/bin/env python3
"""Config file check (-n -f) and SIGHUP reload with live sessions (issue 4).

- vspcd -n -f: OK files print "configuration OK" (exit 0); a bad file
  prints every error with its line number (exit 1);
- SIGHUP with a good new file: "reload: configuration applied", a second
  vm listener appears (listeners.json, a sim connects to it), every VM and
  client connection stays and its stream continues without a gap, new
  console log lines get timestamps;
- SIGHUP with a bad file, or one whose new listener cannot be opened: the
  errors are logged, the old configuration and listeners stay, nothing is
  dropped.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vspctest  # noqa: E402
from vspctest import (HOST, SRC, VSPCD, Daemon, norm_uuid, esxi_uuid,  # noqa
                      verify_seq_stream, wait_for)

TS = re.compile(rb'^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ')
SEQ = re.compile(rb'^vm-\d{5}:- \d{10} [0-9a-f]{8}$')


def uuid_of(i, tag=0x12345678):
    return norm_uuid(esxi_uuid(tag, i))


class Pump:
    """Reads a telnet client in a thread until stopped; keeps everything."""

    def __init__(self, tn):
        self.tn = tn
        self.data = bytearray()
        self.lock = threading.Lock()
        self.stopping = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stopping and not self.tn.eof:
            got = self.tn.read_for(0.05)
            with self.lock:
                self.data += got

    def size(self):
        with self.lock:
            return len(self.data)

    def stop(self):
        self.stopping = True
        self.t.join(5)
        return bytes(self.data)


class ConfigCheckTest(unittest.TestCase):

    def check(self, path):
        return subprocess.run([VSPCD, '-n', '-f', path], capture_output=True,
                              timeout=10)

    def write(self, text):
        import tempfile
        fd, path = tempfile.mkstemp(prefix='vspcd-', suffix='.conf')
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_good(self):
        path = self.write('vm-listen:\n  - 127.0.0.1:0\n'
                          'client-listen: 127.0.0.1:0\n'
                          'admin-listen: off\nclient-queue: 128K\n'
                          'log-timestamps: true\nreplay-size: 1000\n')
        r = self.check(path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b'configuration OK', r.stdout + r.stderr)

    def test_example(self):
        r = self.check(os.path.join(SRC, 'etc', 'vspcd.conf.example'))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b'configuration OK', r.stdout + r.stderr)

    def test_bad_reports_every_error(self):
        path = self.write('# three errors\n'
                          'no-such-key: 1\n'
                          'vm-listen: 127.0.0.1:0\n'
                          'ident-timeout: ten\n'
                          'client-queue: 1M\n'
                          'admin-listen: 999.1.1.1:99999\n')
        r = self.check(path)
        out = (r.stdout + r.stderr).decode()
        self.assertEqual(r.returncode, 1, out)
        self.assertNotIn('configuration OK', out)
        for line, word in ((2, 'no-such-key'), (4, 'ident-timeout'),
                           (6, 'admin-listen')):
            self.assertRegex(out, r'(?m)^%s:%d: .*%s' %
                             (re.escape(path), line, word))
        errs = [ln for ln in out.splitlines() if ln.startswith(path + ':')]
        self.assertEqual(len(errs), 3, out)


class ReloadTest(vspctest.VspcTestCase):

    def conf(self, d, vm_listen=(HOST + ':0',), extra=''):
        return ('# written by test_config_reload\n'
                'state-dir: %s\n'
                'vm-listen:\n%s'
                'client-listen: %s:0\n'
                'admin-listen: %s:0\n'
                'port-range: 0\n'
                'log-sync-ms: 100\n%s' %
                (d.dir, ''.join('  - %s\n' % v for v in vm_listen),
                 HOST, HOST, extra))

    def start(self, extra=''):
        d = Daemon(start=False)
        self._daemons.append(d)
        self.addCleanup(self._stop_daemon, d)
        d.conf_path = os.path.join(d.dir, 'vspcd.conf')
        with open(d.conf_path, 'w') as f:
            f.write(self.conf(d, extra=extra))
        d.args = [VSPCD, '-d', '-f', d.conf_path]
        d.start()
        return d

    def rewrite(self, d, text):
        tmp = d.conf_path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.rename(tmp, d.conf_path)

    def hup(self, d, marker, timeout=10):
        """SIGHUP and wait for marker (regex) in the daemon log after it."""
        mark = len(d.stderr())
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: re.search(marker, d.stderr()[mark:]), timeout,
                 0.05, '%r in the daemon log' % marker)
        return d.stderr()[mark:]

    def listeners(self, d):
        with open(os.path.join(d.dir, 'listeners.json')) as f:
            return json.load(f)

    def fleet(self, d, nvms=3):
        """A sim printing on nvms VMs, and clients: per-port listeners for
        every VM and the front door for VM 0 and the last one."""
        sim = self.sim(d, ['--vms', str(nvms), '--rate', '20000'])
        sim.wait_ready(nvms)
        ps = d.wait_ports(lambda ps: len(ps) == nvms and
                          all(p['client_port'] for p in ps))
        pumps = []
        for p in ps:
            pumps.append((p['vm_name'], Pump(self.telnet(p['client_port']))))
        for name in ('vm-00000', 'vm-%05d' % (nvms - 1)):
            tn, line = self.attach(d, name)
            self.assertTrue(line.startswith('attached to ' + name), line)
            pumps.append((name, Pump(tn)))
        wait_for(lambda: d.healthz()['clients'] == len(pumps),
                 what='all clients attached')
        return sim, pumps

    def check_continuity(self, d, sim, pumps, nvms):
        """After the reload: every stream keeps flowing without a gap."""
        sizes = [pm.size() for _, pm in pumps]
        wait_for(lambda: all(pm.size() > s + 2000 for s, (_, pm)
                             in zip(sizes, pumps)), 10, 0.1,
                 'output on every client after the reload')
        for name, pm in pumps:
            data = pm.stop()
            self.assertFalse(pm.tn.eof, '%s: client closed' % name)
            self.assertNotIn(b'[vspcd:', data, name)
            n, first, errs = verify_seq_stream(data, name, '-')
            self.assertEqual(errs, [], '%s: %s' % (name, errs[:5]))
            self.assertGreater(n, 100, name)
        self.assertEqual([ln for ln in sim.lines if ln.startswith('closed')],
                         [])
        st = sim.status()
        self.assertTrue(all(p['connected'] and p['ready']
                            for p in st['ports']), st)
        h = d.healthz()
        self.assertEqual(h['vm_connections'], nvms)
        self.assertEqual(h['clients'], len(pumps))
        self.assertTrue(all(p['connected'] for p in d.ports()))

    def log_lines(self, d, pid):
        with open(os.path.join(d.dir, 'logs', pid + '.log'), 'rb') as f:
            lines = f.read().split(b'\r\n')
        return lines[1:-1]        # whole lines only

    def test_reload_applied_live(self):
        d = self.start('client-queue: 256K\nlog-timestamps: false\n')
        sim, pumps = self.fleet(d)
        time.sleep(0.5)
        li0 = self.listeners(d)
        self.assertEqual(len(li0['vm']), 1)
        before = self.log_lines(d, uuid_of(0))
        self.assertTrue(before and all(SEQ.match(ln) for ln in before),
                        before[:3])

        self.rewrite(d, self.conf(
            d, vm_listen=(HOST + ':0', '127.0.0.2:0'),
            extra='client-queue: 128K\nlog-timestamps: true\n'))
        out = self.hup(d, r'reload: configuration applied')
        self.assertNotRegex(out, r'reload: .*error')
        li = wait_for(lambda: (lambda x: len(x['vm']) == 2 and x)(
            self.listeners(d)), 5, 0.05, 'two vm ports in listeners.json')
        self.assertEqual(li['vm'][0], li0['vm'][0])
        self.assertEqual((li['client'], li['admin'], li['pid']),
                         (li0['client'], li0['admin'], li0['pid']))
        # A new VM connects to the new listener (127.0.0.2).
        sim2 = self.sim(d, ['--vms', '1', '--uuid-tag', 'abcdef01',
                            '--name-prefix', 'new-', '--rate', '2000'],
                        target='127.0.0.2:%d' % li['vm'][1])
        sim2.wait_ready(1)
        d.wait_ports(lambda ps: any(p['vm_name'] == 'new-00000' and
                                    p['connected'] for p in ps))
        # The old one still takes new VMs too.
        sim3 = self.sim(d, ['--vms', '1', '--uuid-tag', 'abcdef02',
                            '--name-prefix', 'old-', '--rate', '2000'])
        sim3.wait_ready(1)

        self.check_continuity(d, sim, pumps, 5)
        # New console log lines carry timestamps, old ones do not.
        wait_for(lambda: sum(1 for ln in self.log_lines(d, uuid_of(0))
                             if TS.match(ln)) > 20, 5, 0.1,
                 'timestamped log lines')
        lines = self.log_lines(d, uuid_of(0))
        stamped = [i for i, ln in enumerate(lines) if TS.match(ln)]
        self.assertTrue(all(SEQ.match(ln) for ln in lines[:len(before)]))
        # Once they start, every whole line is stamped.
        first = stamped[0]
        for ln in lines[first + 1:]:
            self.assertTrue(TS.match(ln) and SEQ.match(TS.sub(b'', ln)),
                            ln)
        # The stamped log still holds the unbroken stream.
        raw = b'\r\n'.join(TS.sub(b'', ln) for ln in lines) + b'\r\n'
        self.assertEqual(verify_seq_stream(raw, 'vm-00000', '-')[2], [])

    def test_reload_bad_file_keeps_everything(self):
        d = self.start()
        sim, pumps = self.fleet(d)
        li0 = self.listeners(d)
        st0 = os.stat(os.path.join(d.dir, 'listeners.json'))
        self.rewrite(d, '# bad\n'
                     'no-such-key: 1\n'
                     'log-timestamps: true\n'
                     'ident-timeout: ten\n'
                     'client-queue: 1M\n'
                     'admin-listen: 999.1.1.1:99999\n'
                     'vm-listen:\n  - %s:0\n  - 127.0.0.2:0\n' % HOST)
        out = self.hup(d, r'reload: \d+ errors?; keeping the old '
                          r'configuration')
        for line in (2, 4, 6):
            self.assertRegex(out, r'reload: %s:%d: ' %
                             (re.escape(d.conf_path), line))
        self.assertIn('reload: 3 errors; keeping the old configuration', out)
        self.assertNotIn('configuration applied', out)
        time.sleep(0.5)
        self.assertEqual(self.listeners(d), li0)
        st = os.stat(os.path.join(d.dir, 'listeners.json'))
        self.assertEqual(st.st_mtime_ns, st0.st_mtime_ns)
        self.check_continuity(d, sim, pumps, 3)
        lines = self.log_lines(d, uuid_of(0))
        self.assertFalse([ln for ln in lines if TS.match(ln)])
        # The same daemon still takes a good reload afterwards.
        self.rewrite(d, self.conf(d, extra='log-timestamps: true\n'))
        self.hup(d, r'reload: configuration applied')

    def test_reload_listener_in_use(self):
        d = self.start()
        sim, pumps = self.fleet(d, 2)
        li0 = self.listeners(d)
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind((HOST, 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        self.rewrite(d, self.conf(d, vm_listen=(HOST + ':0',
                                                '%s:%d' % (HOST, port)),
                                  extra='log-timestamps: true\n'))
        out = self.hup(d, r'reload: cannot open the new listeners; '
                          r'keeping the old configuration')
        self.assertNotIn('configuration applied', out)
        time.sleep(0.3)
        self.assertEqual(self.listeners(d), li0)
        # The old listener still works; the busy socket is still ours.
        sim2 = self.sim(d, ['--vms', '1', '--uuid-tag', 'abcdef03',
                            '--name-prefix', 'late-', '--rate', '2000'])
        sim2.wait_ready(1)
        self.check_continuity(d, sim, pumps, 3)
        self.assertFalse([ln for ln in self.log_lines(d, uuid_of(0))
                          if TS.match(ln)], 'log-timestamps applied by a '
                         'refused reload')

    def test_reload_admin_listener_in_use(self):
        """admin-listen is part of the all-or-nothing listener set."""
        d = self.start()
        li0 = self.listeners(d)
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind((HOST, 0))
        busy.listen(1)
        text = self.conf(d).replace(
            'admin-listen: %s:0' % HOST,
            'admin-listen: %s:%d' % (HOST, busy.getsockname()[1]))
        self.rewrite(d, text)
        self.hup(d, r'reload: (cannot open|configuration applied|.*admin)')
        time.sleep(0.3)
        self.assertEqual(self.listeners(d), li0)
        self.assertEqual(d.healthz()['status'], 'ok')


if __name__ == '__main__':
    vspctest.main()
