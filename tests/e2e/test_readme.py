"""The README's quick start, command by command, as a user on a fresh clone runs it.

The ``sh`` blocks of the README's "Quick start" section are read and run in
order, ``$PWD`` standing for a fresh directory of the test's own:

- ``make run`` is ``python -m tools.devrun --run-dir $PWD/.run`` (what the
  Makefile runs), on the test containerd, with a cgroup root and namespace
  suffix of the test's own added (devrun passes extra flags to ``serve``);
- ``make test`` is this suite, and is not run again;
- ``make image`` builds the busybox image into ``$PWD/.image``;
- ``kuke`` is the real one when present; otherwise ``kuke get realms`` and
  ``kuke image load`` are made as the same calls with our client;
- ``python -m kukeond.client`` is ours.

Every command must succeed: in particular ``image load … --realm default``
right after ``make run``, which needs the default realm ``make run`` makes.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase

from kukeond.client import BlockingClient
from kukeond.containerd.grpc import GrpcContainerd
from tests.containerd.ocispec import remove_cgroup_tree
from tests.support import reference, runtime
from tests.support.containerd import get_containerd_socket
from tests.support.image import build as build_busybox
from tests.support.reference import REPO_ROOT
from tools.private_containerd import _accepts

README = REPO_ROOT / "README.md"
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


def quick_start_commands(text: str) -> list[list[str]]:
    """The commands of the ``sh`` blocks of the "Quick start" section, comments dropped."""
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in _BLOCK.findall(section):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


class ReadmeQuickStartTest(TestCase):
    """Every quick-start command of the README works, verbatim and in order."""

    timeout = 180

    def setUp(self):
        if os.geteuid() != 0:
            raise SkipTest("the README's make run needs root")
        self.containerd = get_containerd_socket()
        self.pwd = runtime.short_tmpdir(self, "krd-")
        token = secrets.token_hex(3)
        self.cgroup_root = f"/kukeon-test-{token}"
        self.suffix = f"{token}.kukeon.test"
        self.addCleanup(remove_cgroup_tree, self.cgroup_root)
        self.addCleanup(self.purge)
        self.devrun: subprocess.Popen | None = None
        self.addCleanup(self.stop_devrun)

    async def purge(self) -> None:
        client = GrpcContainerd(self.containerd, reactor=reactor, call_timeout=20)
        client.start()
        try:
            await runtime.purge_test_namespaces(client, self.suffix)
        finally:
            await client.stop()

    def stop_devrun(self) -> None:
        if self.devrun is not None and self.devrun.poll() is None:
            self.devrun.send_signal(signal.SIGTERM)
            try:
                self.devrun.wait(30)
            except subprocess.TimeoutExpired:
                self.devrun.kill()
                self.devrun.wait()

    def socket(self) -> str:
        return os.path.join(self.pwd, ".run", "kukeond.sock")

    def make_run(self) -> None:
        """``make run``: devrun in the background until it says the default realm is there."""
        log_path = os.path.join(self.pwd, "make-run.log")
        env = dict(os.environ, KUKEON_CONTAINERD_SOCKET=self.containerd)
        with open(log_path, "wb") as log:
            self.devrun = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tools.devrun",
                    "--run-dir",
                    os.path.join(self.pwd, ".run"),
                    "--cgroup-root",
                    self.cgroup_root,
                    "--containerd-namespace-suffix",
                    self.suffix,
                    "--reconcile-interval",
                    "0",
                ],
                cwd=self.pwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while "'default' are ready" not in open(log_path).read():
            if self.devrun.poll() is not None or time.monotonic() > deadline:
                self.fail(f"make run did not come up: {open(log_path).read()[-3000:]}")
            time.sleep(0.1)
        self.assertTrue(_accepts(self.socket()))

    def kuke_by_client(self, argv: list[str]) -> str:
        """The README's ``kuke`` commands as calls of our client (no reference kuke here)."""
        host = argv[argv.index("--host") + 1]
        rest = [a for a in argv[1:] if a not in ("--host", host)]
        client = BlockingClient(host)
        try:
            if rest[:2] == ["get", "realms"]:
                return repr(client.call("ListRealms"))
            if rest[:2] == ["image", "load"]:
                with open(os.path.join(self.pwd, rest[2]), "rb") as f:
                    tarball = base64.b64encode(f.read()).decode()
                realm = rest[rest.index("--realm") + 1]
                return repr(client.call("LoadImage", {"Realm": realm, "Tarball": tarball}))
        finally:
            client.close()
        self.fail(f"no client translation for the README's {shlex.join(argv)}")

    def run_command(self, argv: list[str]) -> str:
        """Run one README command; its output."""
        if argv == ["make", "run"]:
            self.make_run()
            return ""
        if argv == ["make", "test"]:
            return ""
        if argv == ["make", "image"]:
            build_busybox(os.path.join(self.pwd, ".image"))
            return ""
        if argv[0] == "kuke" and reference.missing_reason("kuke"):
            return self.kuke_by_client(argv)
        if argv[0] == "kuke":
            argv = [reference.reference_bin("kuke"), *argv[1:]]
        elif argv[:3] == ["python", "-m", "kukeond.client"]:
            argv = [sys.executable, *argv[1:]]
        else:
            self.fail(f"the README's {shlex.join(argv)} is not known to this test")
        done = subprocess.run(
            argv,
            cwd=self.pwd,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, HOME=self.pwd),
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(done.returncode, 0, f"{shlex.join(argv)}: {done.stdout}{done.stderr}")
        return done.stdout

    def test_quick_start_commands_work_in_order(self):
        commands = quick_start_commands(README.read_text())
        self.assertIn(["make", "run"], commands)
        self.assertTrue(any("load" in argv for argv in commands))
        for argv in commands:
            output = self.run_command([a.replace("$PWD", self.pwd) for a in argv])
            if "ListRealms" in argv or argv[-2:] == ["get", "realms"]:
                self.assertIn("default", output, f"{shlex.join(argv)} lists realm default")
