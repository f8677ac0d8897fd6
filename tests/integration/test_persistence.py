#!/usr/bin/env python3
"""Sticky ports across restarts (GUARANTEES.md G8, G9; doc/INTERFACES.md
"Config file, state, console logs, replay").

- clean restart: 200 ports come back with the same id and client port;
- kill -9 at random moments (also during the connection burst): every
  port seen in the API before a kill gets the same client port when it
  reconnects, no client port ever serves two ports, state.db passes
  PRAGMA integrity_check, and every console log is a seq stream that only
  jumps where a daemon run started (at most the unsynced tail lost);
- remembered client ports stay reserved for absent ports (new ports get
  none when the range is full);
- expiry: a port whose last_seen is set 40 days back is forgotten and its
  number can go to a new port.

Each test uses a private port block below the kernel's ephemeral range
(chosen at random, checked free) so that restarts can keep the VM listener
address and client port numbers.
"""

import json
import os
import random
import socket
import sqlite3
import threading
import time

import vspctest
from vspctest import HOST, VspcTestCase, wait_for


def port_free(port):
    s = socket.socket()
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_block(n):
    """A random block of n consecutive free TCP ports on 127.0.0.1 below
    the ephemeral range; returns the first."""
    rnd = random.Random()
    for _ in range(50):
        base = rnd.randrange(10000, 32000 - n)
        if all(port_free(p) for p in range(base, base + n)):
            return base
    raise AssertionError('no free block of %d ports found' % n)


def db_check(state_dir):
    """PRAGMA integrity_check on state.db (read-only) and its ports rows."""
    path = os.path.join(state_dir, 'state.db')
    con = sqlite3.connect('file:%s?mode=ro' % path, uri=True)
    try:
        res = con.execute('PRAGMA integrity_check').fetchall()
        rows = con.execute('SELECT id, client_port, last_seen FROM ports'
                           ).fetchall()
    finally:
        con.close()
    return res, rows


class PersistCase(VspcTestCase):

    def pdaemon(self, n_range, extra=(), block=None):
        """Daemon with a fixed VM listener port and a private range of
        n_range client ports; returns (daemon, vm_port, lo, hi)."""
        base = block if block is not None else free_block(n_range + 1)
        lo, hi = base + 1, base + n_range
        d = self.daemon(list(extra), port_range='%d-%d' % (lo, hi),
                        vm_listen=['%s:%d' % (HOST, base)])
        return d, base, lo, hi

    def restart(self, d, kill=False):
        if kill:
            d.proc.kill()
            d.proc.wait()
            d._errf.close()
            d.returncode = d.proc.returncode
        else:
            d.stop()
        d.start()


class TestCleanRestart(PersistCase):

    def test_same_client_ports_after_restart(self):
        d, vport, lo, hi = self.pdaemon(1000)
        sim = self.sim(d, ['--vms', '100', '--ports-per-vm', '2',
                           '--quiet'])
        ps = d.wait_ports(lambda ps: len(ps) == 200 and
                          all(p['connected'] for p in ps), 30)
        before = {p['id']: p['client_port'] for p in ps}
        self.assertEqual(len(set(before.values())), 200)
        self.assertTrue(all(lo <= c <= hi for c in before.values()))
        sim.stop()
        self.restart(d)
        # Before any VM is back the ports may or may not be listed; once
        # the VMs return, every one has its old id and number.
        sim2 = self.sim(d, ['--vms', '100', '--ports-per-vm', '2',
                            '--quiet'])
        ps = d.wait_ports(lambda ps: sum(p['connected'] for p in ps) == 200,
                          30)
        after = {p['id']: p['client_port'] for p in ps if p['connected']}
        self.assertEqual(after, before)
        # The numbers really are served: attach to a few of them.
        for pid in random.sample(sorted(after), 5):
            tn = self.telnet(after[pid])
            wait_for(lambda: d.port(pid)['clients'] >= 1, 5,
                     what='client on %s' % pid)
            tn.close()
        sim2.stop()


class TestKill9(PersistCase):
    maxDiff = None

    def test_kill9_random_moments(self):
        small = vspctest.scale() == 'small'
        rounds = 10 if small else 20
        vms, ppv = (50, 3) if small else (100, 3)
        nports = vms * ppv
        rnd = random.Random()
        seed = rnd.randrange(1 << 30)
        rnd.seed(seed)
        print('\n  kill -9: seed %d, %d rounds, %d ports' %
              (seed, rounds, nports))
        d, vport, lo, hi = self.pdaemon(nports + 100,
                                        ['--log-sync-ms', '200'])
        sim = self.sim(d, ['--vms', str(vms), '--ports-per-vm', str(ppv),
                           '--rate', '400', '--reconnect', '50',
                           '--connect-rate', str(rnd.choice([200, 300,
                                                             1000])),
                           '--quiet'])
        known = {}          # id -> client_port, everything ever seen
        owner = {}          # client_port -> id
        problems = []
        lock = threading.Lock()
        stop = threading.Event()
        polls = [0]
        run = [0]
        connected_in_run = {}   # run -> connected ports at its last poll

        def observe(ps):
            with lock:
                for p in ps:
                    pid, cp = p['id'], p['client_port']
                    if cp is None:
                        if p['connected']:
                            problems.append('%s has no client port' % pid)
                        continue
                    if pid in known and known[pid] != cp:
                        problems.append('%s: client port %d, was %d' %
                                        (pid, cp, known[pid]))
                    if cp in owner and owner[cp] != pid:
                        problems.append('client port %d: %s, was %s' %
                                        (cp, pid, owner[cp]))
                    known.setdefault(pid, cp)
                    owner.setdefault(cp, pid)

        def poller():
            while not stop.is_set():
                try:
                    ps = d.ports()
                except Exception:          # noqa: BLE001 (daemon down)
                    time.sleep(0.01)
                    continue
                r = run[0]
                observe(ps)
                polls[0] += 1
                connected_in_run[r] = sum(p['connected'] for p in ps)
        t = threading.Thread(target=poller, daemon=True)
        t.start()
        kill_at = []
        seen_at_kill = []
        try:
            for r in range(rounds):
                # Sometimes very early (connection burst), sometimes later.
                # The first kill falls into the initial connection burst.
                delay = rnd.choice([rnd.uniform(0.0, 0.3),
                                    rnd.uniform(0.3, 1.5)])
                if r == 0:
                    delay = rnd.uniform(0.1, 0.6)
                time.sleep(delay)
                with lock:
                    n_known = len(known)
                d.proc.kill()
                d.proc.wait()
                d._errf.close()
                kill_at.append(delay)
                seen_at_kill.append(n_known)
                res, rows = db_check(d.state_dir)
                self.assertEqual(res, [('ok',)], 'round %d' % r)
                with lock:
                    dbmap = {i: c for i, c, _ in rows}
                    for pid, cp in known.items():
                        if dbmap.get(pid) != cp:
                            problems.append(
                                'round %d: %s seen with %d, state.db has %r'
                                % (r, pid, cp, dbmap.get(pid)))
                self.assertEqual(problems, [], 'round %d' % r)
                run[0] += 1
                d.start()
            # Final run: every port back, then a clean stop.
            ps = d.wait_ports(lambda ps: sum(p['connected'] for p in ps) ==
                              nports, 30)
            observe(ps)
        finally:
            stop.set()
            t.join(5)
        self.assertEqual(problems, [])
        self.assertEqual(len(known), nports)
        final = {p['id']: p['client_port'] for p in d.ports()}
        self.assertEqual(final, known)
        print('  kill -9: kills at %s s; ports known at each kill: %s; '
              'connected at the last poll of each run: %s; %d API polls' %
              (' '.join('%.2f' % x for x in kill_at), seen_at_kill,
               [connected_in_run.get(i) for i in range(rounds)], polls[0]))
        sim.stop()
        names = {p['id']: (p['vm_name'], p['label']) for p in ps}
        d.stop()
        res, rows = db_check(d.state_dir)
        self.assertEqual(res, [('ok',)])
        self.assertEqual({i: c for i, c, _ in rows}, known)
        self.check_logs(os.path.join(d.state_dir, 'logs'), names)

    def check_logs(self, ld, names):
        """Each log: the port's seq stream, contiguous between daemon runs
        (run starts are vm-connect events), only forward jumps."""
        total = jumps = 0
        errors = []
        for pid, (name, label) in sorted(names.items()):
            path = os.path.join(ld, pid + '.log')
            with open(path, 'rb') as f:
                log = f.read()
            total += len(log)
            with open(os.path.join(ld, pid + '.events'), 'rb') as f:
                evs = [json.loads(ln) for ln in f.read().splitlines()]
            cuts = sorted({e['offset'] for e in evs
                           if e['event'] in ('vm-connect', 'vm-disconnect')}
                          | {0, len(log)})
            self.assertLessEqual(cuts[-1], len(log), pid)
            last = -1
            for a, b in zip(cuts, cuts[1:]):
                seg = log[a:b]
                if not seg:
                    continue
                n, first, errs = vspctest.verify_seq_stream(seg, name, label)
                if errs:
                    errors.append('%s [%d:%d]: %s' % (pid, a, b, errs[:3]))
                if first is not None:
                    # The partial lines at the cuts are a suffix / prefix
                    # of the neighbouring seq lines (no garbage).
                    head = seg.split(b'\r\n', 1)[0] + b'\r\n'
                    prev = b''.join(vspctest.seq_line(name, label, k)
                                    for k in range(max(first - 2, 0), first))
                    if not prev.endswith(head) and \
                            not seg.startswith(vspctest.seq_line(
                                name, label, first)):
                        errors.append('%s at %d: bad partial head %r' %
                                      (pid, a, head))
                    tail = seg.rsplit(b'\r\n', 1)[1]
                    if not vspctest.seq_line(name, label, first + n
                                             ).startswith(tail):
                        errors.append('%s at %d: bad partial tail %r' %
                                      (pid, b, tail))
                    if first < last:
                        errors.append('%s at %d: seq %d after %d' %
                                      (pid, a, first, last))
                    elif first > last + 1 and last >= 0:
                        jumps += 1
                    last = first + n - 1
        print('  kill -9: logs %d bytes in %d files, %d forward jumps at '
              'restarts' % (total, len(names), jumps))
        self.assertEqual(errors, [], '%d errors' % len(errors))


class TestReserved(PersistCase):

    def test_reserved_then_expired(self):
        n = 20
        d, vport, lo, hi = self.pdaemon(n)
        sim = self.sim(d, ['--vms', str(n), '--quiet'])
        ps = d.wait_ports(lambda ps: len(ps) == n and
                          all(p['connected'] for p in ps), 15)
        first = {p['id']: p['client_port'] for p in ps}
        self.assertEqual(sorted(first.values()), list(range(lo, hi + 1)))
        sim.stop()
        self.restart(d)
        # Half the VMs (0..n/2-1) come back.
        half = self.sim(d, ['--vms', str(n // 2), '--quiet'])
        ps = d.wait_ports(lambda ps: sum(p['connected'] for p in ps) ==
                          n // 2, 15)
        back = {p['id']: p['client_port'] for p in ps if p['connected']}
        for pid, cp in back.items():
            self.assertEqual(cp, first[pid], pid)
        absent = {pid: cp for pid, cp in first.items() if pid not in back}
        self.assertEqual(len(absent), n // 2)
        # New VMs (another UUID tag): the range is full of remembered
        # numbers, so they get none.
        new = self.sim(d, ['--vms', '5', '--uuid-tag', 'abcdef01',
                           '--name-prefix', 'new-', '--quiet'])
        ps = d.wait_ports(lambda ps: sum(p['connected'] and
                                         p['vm_name'].startswith('new-')
                                         for p in ps) == 5, 15)
        for p in ps:
            if p['vm_name'].startswith('new-'):
                self.assertIsNone(p['client_port'], p)
            else:
                self.assertEqual(p['client_port'], first[p['id']], p)
        owner = {cp: pid for pid, cp in absent.items()}
        for p in ps:
            # Nobody else got an absent port's number.
            if p['client_port'] in owner:
                self.assertEqual(p['id'], owner[p['client_port']], p)
        new.stop()
        half.stop()
        d.stop()
        # Expiry: age one absent port by 40 days; it is forgotten at the
        # next start and a new port may take its number.
        victim, vcp = sorted(absent.items())[0]
        con = sqlite3.connect(os.path.join(d.state_dir, 'state.db'))
        with con:
            cur = con.execute('UPDATE ports SET last_seen = ? WHERE id = ?',
                              (int(time.time()) - 40 * 86400, victim))
            self.assertEqual(cur.rowcount, 1)
        con.close()
        d.start()
        half = self.sim(d, ['--vms', str(n // 2), '--quiet'])
        d.wait_ports(lambda ps: sum(p['connected'] for p in ps) == n // 2,
                     15)
        new = self.sim(d, ['--vms', '1', '--uuid-tag', 'abcdef02',
                           '--name-prefix', 'newer-', '--quiet'])
        ps = d.wait_ports(lambda ps: any(p['connected'] and
                                         p['vm_name'] == 'newer-00000'
                                         for p in ps), 15)
        self.assertNotIn(victim, [p['id'] for p in ps if p['connected']])
        newer = [p for p in ps if p['vm_name'] == 'newer-00000'][0]
        self.assertEqual(newer['client_port'], vcp,
                         'the expired number %d was not reused: %r' %
                         (vcp, newer))
        for p in ps:
            if p['id'] in first and p['client_port'] is not None:
                self.assertEqual(p['client_port'], first[p['id']])
        new.stop()
        half.stop()
        d.stop()
        res, rows = db_check(d.state_dir)
        self.assertEqual(res, [('ok',)])
        ids = {r[0] for r in rows}
        self.assertNotIn(victim, ids - {newer['id']})


if __name__ == '__main__':
    vspctest.main()
