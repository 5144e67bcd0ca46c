"""The daemon process starts without TLS machinery or YAML, and a pull can still speak TLS."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap

from twisted.trial.unittest import SkipTest, TestCase

from kukeond.startup import install_reactor
from tests.daemon.test_listener import short_tmpdir
from tests.daemon.test_process import ROOT, wait_for

# Extension modules of pyOpenSSL's stack, and PyYAML's (no configuration file, no apply).
RARE_LIBRARIES = ("cryptography", "_cffi_backend", "/yaml/")


def mapped_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as f:
        return {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}


class StartupTests(TestCase):
    def test_serving_daemon_maps_no_tls_or_yaml_library(self):
        directory = short_tmpdir(self)
        pid_file = os.path.join(directory, "kukeond.pid")
        flags = [
            "--configuration", os.path.join(directory, "absent.yaml"),
            "--socket", os.path.join(directory, "kukeond.sock"),
            "--run-path", os.path.join(directory, "run"),
            "--containerd-socket", os.path.join(directory, "no-containerd.sock"),
            "--cgroup-root", "/kukeon-test-startup",
            "--reconcile-interval", "0",
        ]  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "kukeond.cli", "serve", *flags],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def stop():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=20)

        self.addCleanup(stop)
        self.assertTrue(wait_for(lambda: os.path.exists(pid_file) or proc.poll() is not None))
        self.assertIsNone(proc.poll(), "the daemon exited")
        loaded = [path for path in mapped_files(proc.pid) if any(n in path for n in RARE_LIBRARIES)]
        self.assertEqual(loaded, [])
        self.assertTrue(any("cygrpc" in path for path in mapped_files(proc.pid)))

    def test_too_late_changes_nothing(self):
        # trial installed the reactor long ago.
        self.assertFalse(install_reactor())

    def test_https_client_works_after_install(self):
        if shutil.which("openssl") is None:
            raise SkipTest("openssl not installed")
        directory = short_tmpdir(self)
        key, cert = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        script = textwrap.dedent(f"""
            import sys
            from kukeond.startup import install_reactor
            assert install_reactor()
            from twisted.internet import posixbase, reactor, tcp
            assert posixbase.tls is None and "OpenSSL" not in sys.modules
            from twisted.internet import ssl
            from twisted.protocols.tls import TLSMemoryBIOFactory
            from twisted.web.client import Agent, readBody
            from twisted.web.server import Site
            from twisted.web.static import Data

            from zope.interface import implementer
            from twisted.web.iweb import IPolicyForHTTPS

            @implementer(IPolicyForHTTPS)
            class Policy:
                def creatorForNetloc(self, host, port):
                    with open({cert!r}) as f:
                        root = ssl.Certificate.loadPEM(f.read())
                    return ssl.optionsForClientTLS(host.decode(), trustRoot=root)

            async def main():
                # listenSSL is what install_reactor gives up; wrap a TCP port instead.
                with open({key!r}) as k, open({cert!r}) as c:
                    options = ssl.PrivateCertificate.loadPEM(k.read() + c.read()).options()
                page = Data(b"over tls", "text/plain")
                page.isLeaf = True
                site = Site(page)
                port = reactor.listenTCP(
                    0, TLSMemoryBIOFactory(options, False, site), interface="127.0.0.1"
                )
                url = f"https://localhost:{{port.getHost().port}}/".encode()
                response = await Agent(reactor, contextFactory=Policy()).request(b"GET", url)
                print((await readBody(response)).decode())

            from twisted.internet.defer import ensureDeferred
            from twisted.internet.task import react
            react(lambda _reactor: ensureDeferred(main()))
        """)
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
            capture_output=True,
            timeout=60,
        )
        self.assertEqual((done.returncode, done.stdout.strip()), (0, b"over tls"), done.stderr)
