#!/usr/bin/env python3
"""TLS: telnets:// VM listeners, TLS clients, client certificates, HTTPS API.

Certificates are made by the openssl CLI in a temporary directory: a test
CA, a server certificate for 127.0.0.1 signed by it, a second server
certificate (for the reload test), client certificates for alice and bob
signed by the CA, and a self-signed "mallory" the CA never signed.

- VM side: `openssl s_client` and a Python TLS VM reach the daemon's
  negotiation and identify; console bytes from a TLS VM reach a plain
  client and typed bytes reach the VM; the certificate served is the
  configured one (its SHA-256 is what #thumbprint= pins); plain text on the
  TLS port is closed at once (well before the ident deadline); TLS 1.1 is
  refused, while the same client does complete TLS 1.1 with an
  `openssl s_server` that allows it (so the refusal is the daemon's).
- SIGHUP with a new certificate serves it to new connections; a reload with
  a key that does not match is refused and the old one stays.
- Clients: per-port listeners with port-tls and a TLS front door; with
  tls-client-certs optional, alice's certificate is named in the access
  rules (cert:CN=alice) and reads the console, an anonymous TLS client on
  the same port is denied with zero console bytes, mallory's certificate
  fails the handshake; with require, no certificate = no connection.
- Admin API over HTTPS: the client certificate is the identity (audit
  shows kind certificate); without one, the console log is refused.
- Config: -n reports a missing key file and missing tls-cert.
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import telnetc  # noqa: E402
import vspctest  # noqa: E402
from vspctest import HOST, VSPCD, wait_for  # noqa: E402

OPENSSL = shutil.which('openssl')


def run(*args, **kw):
    subprocess.run(args, check=True, capture_output=True, **kw)


class Certs:
    """A throwaway CA with server and client certificates."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='vspcd-tls-')
        d = self.dir
        self.ca = self.path('ca.pem')
        run(OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
            'ec_paramgen_curve:P-256', '-nodes', '-keyout',
            self.path('ca.key'), '-out', self.ca, '-days', '2',
            '-subj', '/CN=vspcd test CA')
        self.server, self.server_key = self.signed('server', '/CN=127.0.0.1',
                                                   san='IP:127.0.0.1')
        self.server2, self.server2_key = self.signed('server2',
                                                     '/CN=127.0.0.1',
                                                     san='IP:127.0.0.1')
        self.alice = self.signed('alice', '/O=test/CN=alice')
        self.bob = self.signed('bob', '/CN=bob')
        mk, mc = self.path('mallory.key'), self.path('mallory.pem')
        run(OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
            'ec_paramgen_curve:P-256', '-nodes', '-keyout', mk, '-out', mc,
            '-days', '2', '-subj', '/CN=alice')
        self.mallory = (mc, mk)
        os.chmod(d, 0o755)

    def path(self, name):
        return os.path.join(self.dir, name)

    def signed(self, name, subj, san=None):
        key, csr, crt = (self.path(name + '.key'), self.path(name + '.csr'),
                         self.path(name + '.pem'))
        run(OPENSSL, 'req', '-new', '-newkey', 'ec', '-pkeyopt',
            'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr,
            '-subj', subj)
        ext = self.path(name + '.ext')
        with open(ext, 'w') as f:
            if san:
                f.write('subjectAltName=%s\n' % san)
            else:
                f.write('extendedKeyUsage=clientAuth\n')
        run(OPENSSL, 'x509', '-req', '-in', csr, '-CA', self.ca, '-CAkey',
            self.path('ca.key'), '-CAcreateserial', '-out', crt, '-days',
            '2', '-extfile', ext)
        return crt, key

    def der_sha256(self, pem):
        with open(pem) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        return hashlib.sha256(der).hexdigest()

    def client_ctx(self, cert=None, verify=True):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            ctx.load_verify_locations(self.ca)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cert is not None:
            ctx.load_cert_chain(*cert)
        return ctx

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def tls11_ctx():
    """A client that offers TLS 1.1 and nothing newer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers('DEFAULT:@SECLEVEL=0')
    return ctx


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


@unittest.skipIf(OPENSSL is None, 'no openssl CLI (scripts/deps.sh installs '
                 'it)')
class TLSTest(vspctest.VspcTestCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    def tls_daemon(self, *extra, **kw):
        c = self.certs
        d = self.daemon(['--vm-listen-tls', HOST + ':0', '--tls-cert',
                         c.server, '--tls-key', c.server_key] + list(extra),
                        **kw)
        d.vm_tls_port = d.listeners['vm_tls'][0]
        return d

    def tls_vm(self, d, name, ctx=None, uuid=None):
        ctx = ctx or self.certs.client_ctx()
        vm = vspctest.RawVM(d, port=d.vm_tls_port, tls=ctx)
        self.addCleanup(vm.close)
        vm.identify(name=name, uuid=uuid or vspctest.esxi_uuid(0x7715,
                                                              len(name)))
        return vm

    # -- the VM side ------------------------------------------------------

    def test_openssl_s_client_vm(self):
        d = self.tls_daemon()
        uuid = vspctest.esxi_uuid(0x51, 1)
        ident = (bytes([255, 251, vspctest.VMWARE_EXT]) +
                 vspctest.vmw_sb(vspctest.KNOWN_SUBOPTIONS_1,
                                 vspctest.ESXI_KS1) +
                 vspctest.vmw_sb(vspctest.DO_PROXY, b'SvSPC.py') +
                 vspctest.vmw_sb(vspctest.VM_VC_UUID, uuid.encode()) +
                 vspctest.vmw_sb(vspctest.VM_NAME, b'vm-s-client'))
        p = subprocess.Popen([OPENSSL, 's_client', '-connect',
                              '%s:%d' % (HOST, d.vm_tls_port), '-quiet',
                              '-verify_return_error', '-CAfile',
                              self.certs.ca],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            p.stdin.write(ident)
            p.stdin.flush()
            ports = d.wait_ports(lambda ps: any(
                x.get('vm_name') == 'vm-s-client' and x.get('connected')
                for x in ps))
            self.assertEqual(len(ports), 1)
            self.assertEqual(ports[0]['vm_uuid'], vspctest.norm_uuid(uuid))
            time.sleep(0.3)   # let WILL-PROXY through s_client
        finally:
            p.terminate()
            out, err = p.communicate(timeout=10)
        # The daemon's own offers and WILL-PROXY came back through TLS.
        self.assertIn(bytes([255, 253, vspctest.VMWARE_EXT]), out)
        self.assertIn(vspctest.vmw_sb(vspctest.WILL_PROXY), out)

    def test_python_vm_relay_and_thumbprint(self):
        d = self.tls_daemon()
        vm = self.tls_vm(d, 'vm-tls-1')
        der = vm.sock.getpeercert(binary_form=True)
        self.assertEqual(hashlib.sha256(der).hexdigest(),
                         self.certs.der_sha256(self.certs.server))
        self.assertTrue(vm.sock.version() in ('TLSv1.2', 'TLSv1.3'))
        tn, line = self.attach(d, 'vm-tls-1')
        self.assertIn('vm-tls-1', line)
        payload = bytes(range(256)) * 64
        vm.send(payload.replace(b'\xff', b'\xff\xff'))
        self.assertEqual(tn.read_exactly(len(payload), timeout=10), payload)
        tn.send(b'typed over plain, read over TLS')
        got = vm.read_until(b'read over TLS', timeout=10)
        self.assertTrue(got.endswith(b'typed over plain, read over TLS'))

    def test_plain_text_closed_at_once(self):
        d = self.tls_daemon('--ident-timeout', '30')
        t0 = time.monotonic()
        s = socket.create_connection((HOST, d.vm_tls_port), timeout=10)
        s.sendall(bytes([255, 251, vspctest.VMWARE_EXT, 255, 253, 0]))
        s.settimeout(5)
        got = b''
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                got += b
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - t0
        s.close()
        self.assertLess(elapsed, 3.0, 'plain text held open %.1fs' % elapsed)
        # No telnet byte ever went out in the clear (at most a TLS alert).
        self.assertNotIn(bytes([255, 253]), got)
        self.assertTrue(got == b'' or got[0] == 0x15, got[:16].hex())
        wait_for(lambda: d.healthz().get('vm_connections', 0) == 0,
                 what='the plain-text connection gone')

    def test_tls11_refused(self):
        # Control: this client can do TLS 1.1 where it is allowed.
        port = free_port()
        srv = subprocess.Popen([OPENSSL, 's_server', '-accept',
                                '%s:%d' % (HOST, port), '-cert',
                                self.certs.server, '-key',
                                self.certs.server_key, '-tls1_1', '-cipher',
                                'DEFAULT@SECLEVEL=0', '-quiet'],
                               stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            def control():
                try:
                    s = tls11_ctx().wrap_socket(socket.create_connection(
                        (HOST, port), timeout=5))
                except (ConnectionRefusedError, ssl.SSLError):
                    return None
                v = s.version()
                s.close()
                return v
            v = wait_for(control, timeout=10, what='s_server up')
            self.assertEqual(v, 'TLSv1.1')
        finally:
            srv.kill()
            srv.wait()
        d = self.tls_daemon()
        with self.assertRaises(ssl.SSLError):
            tls11_ctx().wrap_socket(socket.create_connection(
                (HOST, d.vm_tls_port), timeout=5))
        r = subprocess.run([OPENSSL, 's_client', '-connect',
                            '%s:%d' % (HOST, d.vm_tls_port), '-tls1_1',
                            '-cipher', 'DEFAULT@SECLEVEL=0'],
                           input=b'', capture_output=True, timeout=20)
        self.assertIn(b'Cipher is (NONE)', r.stdout)
        self.assertNotEqual(r.returncode, 0)
        # TLS 1.3 only when asked: 1.2 is refused too.
        d13 = self.tls_daemon('--tls-min-version', '1.3')
        ctx = self.certs.client_ctx()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with self.assertRaises(ssl.SSLError):
            ctx.wrap_socket(socket.create_connection(
                (HOST, d13.vm_tls_port), timeout=5), server_hostname=HOST)

    def test_reload_certificate(self):
        c = self.certs
        cfg = os.path.join(c.dir, 'reload-%d.yaml' % os.getpid())

        def write(cert, key):
            with open(cfg, 'w') as f:
                f.write('tls-cert: %s\ntls-key: %s\n' % (cert, key))
        write(c.server, c.server_key)
        d = self.daemon(['-f', cfg, '--vm-listen-tls', HOST + ':0'])
        port = d.listeners['vm_tls'][0]

        def served():
            s = c.client_ctx().wrap_socket(socket.create_connection(
                (HOST, port), timeout=5), server_hostname=HOST)
            der = s.getpeercert(binary_form=True)
            s.close()
            return hashlib.sha256(der).hexdigest()
        self.assertEqual(served(), c.der_sha256(c.server))
        write(c.server2, c.server2_key)
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: served() == c.der_sha256(c.server2),
                 what='the new certificate served')
        # A key that does not match: the reload is refused, server2 stays.
        write(c.server, c.server2_key)
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: 'TLS set-up failed' in d.stderr(),
                 what='the refused reload logged')
        self.assertEqual(served(), c.der_sha256(c.server2))
        self.assertTrue(d.running)
        os.unlink(cfg)

    # -- clients ----------------------------------------------------------

    def access_config(self, mode):
        path = os.path.join(self.certs.dir, 'access-%s.yaml' % mode)
        with open(path, 'w') as f:
            f.write('tls-client-ca: %s\n'
                    'tls-client-certs: %s\n'
                    'access:\n'
                    '  - who: ["cert:CN=alice"]\n'
                    '    consoles: ["vm-cert-*"]\n'
                    '    rights: [read, write]\n'
                    '  - who: ["cert:CN=bob"]\n'
                    '    consoles: ["vm-cert-*"]\n'
                    '    rights: [read]\n' % (self.certs.ca, mode))
        return path

    def test_client_certificates_port_listener(self):
        d = self.tls_daemon('-f', self.access_config('optional'),
                            '--port-tls')
        vm = self.tls_vm(d, 'vm-cert-1')
        p = d.wait_ports(lambda ps: ps and ps[0].get('client_port'))[0]
        cport = p['client_port']
        c = self.certs
        alice = self.telnet(cport, tls=c.client_ctx(c.alice))
        wait_for(lambda: d.port(p['id'])['clients'] == 1,
                 what='alice attached')
        vm.send(b'secret console line\r\n')
        alice.read_until(b'secret console line', timeout=10)
        alice.send(b'from alice\r')
        vm.read_until(b'from alice', timeout=10)
        # Anonymous TLS on the same port: denied, no console byte.
        anon = self.telnet(cport, tls=c.client_ctx())
        rest = anon.read_until_eof(timeout=10)
        self.assertIn(b'access denied', rest)
        self.assertNotIn(b'secret', rest)
        # A certificate the CA never signed fails the handshake.
        with self.assertRaises((ssl.SSLError, ConnectionResetError,
                                BrokenPipeError)):
            t = telnetc.Telnet(HOST, cport, timeout=5,
                               tls=c.client_ctx(c.mallory))
            try:
                t.send(b'x')
                if not t._fill(5):
                    raise ssl.SSLError('closed')
            finally:
                t.close()
        # Bob reads but his typing never reaches the VM.
        bob = self.telnet(cport, tls=c.client_ctx(c.bob))
        wait_for(lambda: d.port(p['id'])['clients'] == 2,
                 what='bob attached')
        bob.send(b'from bob\r')
        vm.send(b'marker after bob\r\n')
        bob.read_until(b'marker after bob', timeout=10)
        alice.send(b'second from alice\r')
        got = vm.read_until(b'second from alice', timeout=10)
        self.assertNotIn(b'from bob', got)
        audit = open(os.path.join(d.dir, 'audit.log')).read()
        lines = [json.loads(x) for x in audit.splitlines()]
        attach = [x for x in lines if x.get('event') == 'attach']
        names = {json.dumps(x) for x in attach}
        self.assertTrue(any('CN=alice' in n for n in names), audit)
        self.assertTrue(any('certificate' in n or 'cert' in n
                            for n in names), audit)

    def test_tls_front_door_require(self):
        port = None
        d = self.tls_daemon('-f', self.access_config('require'),
                            '--client-listen-tls', HOST + ':0')
        port = d.listeners['client_tls']
        self.assertIsInstance(port, int)
        vm = self.tls_vm(d, 'vm-cert-2')
        c = self.certs
        tn = telnetc.Telnet(HOST, port, timeout=10,
                            tls=c.client_ctx(c.alice))
        self.addCleanup(tn.close)
        line = tn.frontdoor_attach('vm-cert-2')
        self.assertIn('vm-cert-2', line)
        vm.send(b'hello front door\r\n')
        tn.read_until(b'hello front door', timeout=10)
        # Without a certificate there is no session at all (TLS 1.3
        # reports the refusal on the first read).
        t = telnetc.Telnet(HOST, port, timeout=5, tls=c.client_ctx())
        self.addCleanup(t.close)
        self.assertEqual(t.read_until_eof(timeout=5), b'')

    def test_admin_https_client_cert(self):
        d = self.tls_daemon('-f', self.access_config('optional'),
                            '--admin-tls')
        vm = self.tls_vm(d, 'vm-cert-3')
        vm.send(b'logged line\r\n')
        c = self.certs

        def get(path, cert=None):
            conn = http.client.HTTPSConnection(HOST, d.admin_port, timeout=10,
                                               context=c.client_ctx(cert))
            try:
                conn.request('GET', path)
                r = conn.getresponse()
                return r.status, r.read()
            finally:
                conn.close()
        def ports():
            st, body = get('/api/v1/ports', c.alice)
            self.assertEqual(st, 200)
            ps = json.loads(body)['ports']
            return ps if ps and ps[0]['bytes_from_vm'] > 0 else None
        ps = wait_for(ports, what='the port over HTTPS')
        self.assertEqual(ps[0]['vm_name'], 'vm-cert-3')
        pid = ps[0]['id']
        wait_for(lambda: b'logged line' in get('/api/v1/ports/%s/log' % pid,
                                               c.alice)[1],
                 what='the log through HTTPS with alice')
        st, body = get('/api/v1/ports/%s/log' % pid)
        self.assertIn(st, (401, 403, 404))
        self.assertNotIn(b'logged line', body)
        # Plain HTTP on the HTTPS port gets no API answer.
        conn = http.client.HTTPConnection(HOST, d.admin_port, timeout=5)
        try:
            conn.request('GET', '/healthz')
            r = conn.getresponse()
            self.assertNotEqual(r.status, 200)
        except (http.client.HTTPException, ConnectionError, OSError):
            pass
        finally:
            conn.close()

    # -- configuration ----------------------------------------------------

    def test_check_config(self):
        r = subprocess.run([VSPCD, '-n', '--vm-listen-tls', HOST + ':0'],
                           capture_output=True, timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b'tls-cert', r.stderr)
        r = subprocess.run([VSPCD, '-n', '--vm-listen-tls', HOST + ':0',
                            '--tls-cert', self.certs.server, '--tls-key',
                            '/nonexistent/key.pem'],
                           capture_output=True, timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b'/nonexistent/key.pem', r.stderr)
        r = subprocess.run([VSPCD, '-n', '--vm-listen-tls', HOST + ':0',
                            '--tls-cert', self.certs.server, '--tls-key',
                            self.certs.server_key],
                           capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == '__main__':
    vspctest.main()
