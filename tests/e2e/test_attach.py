"""``kuke attach`` and ``kuke log`` end to end: our daemon, the real kuketty, a real terminal.

Our daemon runs as a process with ``KUKEOND_KUKETTY_BINARY`` naming the
reference ``kuketty``; it stages the helper under its run path, writes each
attachable container's terminal document and runs the helper in the
container. The real ``kuke attach`` then runs on a pseudo-terminal as a user
would: it reaches the shell in the container, a typed command's output comes
back, ``^]^]`` detaches and the shell keeps running (a second attach finds
it, with its variables). ``kuke log`` reads the helper's transcript. The
errors for a container that is not attachable and for a stopped one are the
reference daemon's (``kuke`` prints them).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import subprocess
import termios
import time

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from kukeond.base import naming
from tests.support.containerd import get_containerd_socket
from tests.support.daemon import start_our_kukeond
from tests.support.image import busybox_image
from tests.support.reference import kuke_command, reference_bin

REALM, SPACE, STACK, CELL = "att", "s", "k", "c1"
IMAGE = "docker.io/library/busybox:latest"
WHERE = ("--realm", REALM, "--space", SPACE, "--stack", STACK)
DETACH = b"\x1d\x1d"
"""``^]^]``: the detach sequence of ``kuke attach``."""


def cell_document() -> str:
    containers = [
        # No command: the image's ``sh`` runs under the helper.
        {"id": "sh", "image": IMAGE, "attachable": True},
        # Not root: the helper must still read its document and make its socket.
        {"id": "user", "image": IMAGE, "attachable": True, "user": "1000:1000",
         "command": "sh", "tty": {"prompt": "u$ "}},
        {"id": "plain", "image": IMAGE, "command": "sleep", "args": ["600"]},
    ]  # fmt: skip
    return json.dumps({
        "apiVersion": "v1beta1", "kind": "Cell", "metadata": {"name": CELL},
        "spec": {"id": CELL, "realmId": REALM, "spaceId": SPACE, "stackId": STACK,
                 "containers": containers},
    })  # fmt: skip


class Terminal:
    """``kuke attach`` on a pseudo-terminal it has as its controlling terminal."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x18\x00\x50\x00\x00\x00\x00\x00")

        def controlling_tty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.master = master
        self.output = b""
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=controlling_tty, close_fds=True,
        )  # fmt: skip
        os.close(slave)

    def read_for(self, seconds: float) -> None:
        """Collect output for up to ``seconds`` (less when the terminal closes)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], min(left, 0.1))
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError as exc:
                if exc.errno == errno.EIO:  # every slave end is closed
                    return
                raise
            if not chunk:
                return
            self.output += chunk

    def wait_for(self, needle: bytes, timeout: float = 20.0) -> bool:
        """Read until ``needle`` was printed; whether it was."""
        deadline = time.monotonic() + timeout
        while needle not in self.output and time.monotonic() < deadline:
            self.read_for(0.2)
        return needle in self.output

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 15.0) -> int | None:
        """Wait for ``kuke`` to exit (reading what it prints); its status, None if it did not."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self.read_for(0.1)
        self.read_for(0.2)
        return self.process.poll()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


class AttachTests(TestCase):
    timeout = 300

    def setUp(self):
        self.kuketty = reference_bin("kuketty")
        reference_bin("kuke")
        self.containerd_socket = get_containerd_socket()
        if os.geteuid() != 0:
            self.skipTest("attach runs our daemon on a real containerd and needs root")
        busybox_image()

    def ok(self, result, what=""):
        self.assertEqual(
            result.code, 0, f"kuke {what}: stdout {result.stdout!r} stderr {result.stderr!r}"
        )
        return result

    async def kuke(self, *args, **kwargs):
        return self.ok(await threads.deferToThread(self.daemon.kuke, *args, **kwargs), args)

    def tty_path(self, container: str, name: str) -> str:
        return os.path.join(
            naming.tty_dir(self.daemon.run_path, REALM, SPACE, STACK, CELL, container), name
        )

    def session(self, container: str, keys: list[tuple[bytes, bytes]]) -> tuple[int | None, bytes]:
        """Attach to ``container``, type each ``keys`` line and wait for its answer, detach.

        Returns kuke's exit status and everything the terminal showed.
        """
        term = Terminal(
            kuke_command(self.daemon.socket, "attach", CELL, *WHERE, "--container", container)
        )
        try:
            term.read_for(1.0)  # the client puts the terminal in raw mode and attaches
            for line, answer in keys:
                term.type(line + b"\r")
                if not term.wait_for(answer):
                    self.fail(
                        f"{answer!r} did not come back from {container}; "
                        f"terminal showed {term.output[-2000:]!r}"
                    )
            term.type(DETACH)
            return term.finish(), term.output
        finally:
            term.close()

    async def wait_for_socket(self, container: str, timeout: float = 20.0) -> None:
        path = self.tty_path(container, "socket")
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                self.fail(
                    f"kuketty of {container} did not make {path}; "
                    f"daemon log: {self.daemon.log_tail()}"
                )
            await threads.deferToThread(time.sleep, 0.1)

    async def container_state(self, container: str) -> str:
        result = await self.kuke(
            "get", "container", container, *WHERE, "--cell", CELL, "-o", "json"
        )
        return json.loads(result.stdout)["status"]["state"]

    async def test_attach_detach_log_and_errors(self):
        os.environ["KUKEOND_KUKETTY_BINARY"] = self.kuketty
        try:
            self.daemon = start_our_kukeond(self, self.containerd_socket, spaces=((REALM, SPACE),))
        finally:
            del os.environ["KUKEOND_KUKETTY_BINARY"]
        for args in (
            ("create", "realm", REALM),
            ("create", "space", SPACE, "--realm", REALM),
            ("create", "stack", STACK, "--realm", REALM, "--space", SPACE),
            ("image", "load", busybox_image().oci_tar, "--realm", REALM),
        ):
            await self.kuke(*args)
        await self.kuke("apply", "-f", "-", input=cell_document())
        staged = naming.kuketty_binary_path(self.daemon.run_path)
        self.assertTrue(os.access(staged, os.X_OK), f"{staged} was not staged")
        for container in ("sh", "user"):
            await self.wait_for_socket(container)

        # Type a command, read its output, detach: the shell keeps running.
        code, shown = await threads.deferToThread(
            self.session, "sh", [(b"echo hello-$((6*7)); KEPT=still-here", b"hello-42")]
        )
        self.assertEqual(code, 0, f"kuke attach did not exit cleanly: {shown[-2000:]!r}")
        self.assertEqual(await self.container_state("sh"), "Ready")
        # A second attach reaches the same shell.
        code, shown = await threads.deferToThread(
            self.session, "sh", [(b"echo $KEPT-$((1+1))", b"still-here-2")]
        )
        self.assertEqual(code, 0, f"second attach did not exit cleanly: {shown[-2000:]!r}")

        # A non-root workload: its helper owns the tty dir and serves the socket.
        st = os.stat(self.tty_path("user", "socket"))
        self.assertEqual(st.st_uid, 1000)
        code, shown = await threads.deferToThread(
            self.session, "user", [(b"echo id-$(id -u)", b"id-1000")]
        )
        self.assertEqual(code, 0, f"attach as 1000 did not exit cleanly: {shown[-2000:]!r}")
        self.assertIn(b"u$ ", shown)

        # kuke log of an attachable container reads the transcript.
        log = await self.kuke("log", CELL, *WHERE, "--container", "sh")
        self.assertIn("hello-42", log.stdout)
        self.assertIn("still-here-2", log.stdout)

        result = await threads.deferToThread(
            self.daemon.kuke, "attach", CELL, *WHERE, "--container", "plain"
        )
        self.assertEqual(
            (result.code, result.stderr),
            (
                1,
                'Error: container "plain" in cell "c1" is not attachable: '
                "container is not attachable; recreate with attachable=true\n",
            ),
        )

        await self.kuke("stop", "container", "sh", *WHERE, "--cell", CELL)
        result = await threads.deferToThread(
            self.daemon.kuke, "attach", CELL, *WHERE, "--container", "sh"
        )
        socket = self.tty_path("sh", "socket")
        self.assertEqual(
            (result.code, result.stderr),
            (
                1,
                f"Error: error attaching client: ping failed: dial unix {socket}: "
                "connect: no such file or directory\n",
            ),
        )
