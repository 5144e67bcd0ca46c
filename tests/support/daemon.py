"""Our daemon as a real process for end-to-end tests, with everything it makes removed after.

``start_our_kukeond(test, containerd_socket, reconcile_interval)`` starts
``kukeond serve`` on a private socket, run path, namespace suffix, cgroup
root, CNI cache/IPAM directories and subnet pool, and registers a cleanup
that stops it (SIGTERM, then SIGKILL) and removes the containerd
namespaces, cgroups and bridges of the test. ``OurKukeond.kuke(...)`` runs
the real ``kuke`` against it; ``OurKukeond.in_process(...)`` runs ``kuke``
as another writer of the same run path (``--no-daemon``, ``delete -f``).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

from twisted.internet import threads
from twisted.trial.unittest import FailTest, SkipTest

from tests.support import reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class OurKukeond:
    """One ``kukeond serve`` process and the host state it owns."""

    def __init__(
        self,
        directory: str,
        containerd_socket: str,
        reconcile_interval: str,
        subnet_pool: str | None,
        host=None,
    ) -> None:
        token = secrets.token_hex(3)
        self.directory = directory
        self.containerd_socket = containerd_socket
        self.socket = os.path.join(directory, "kukeond.sock")
        self.run_path = host.run_path if host else os.path.join(directory, "run")
        self.namespace_suffix = host.namespace_suffix if host else f"o{token}.kukeon.test"
        self.cgroup_root = host.cgroup_root if host else f"/kukeon-test-{token}"
        self.log_path = os.path.join(directory, "daemon.log")
        # The CNI cache and leases of a host handed over stay where they are; without
        # a subnet pool it is the default one, the reference's own.
        self.cni_cache_dir = getattr(host, "cni_cache_dir", os.path.join(directory, "cni-cache"))
        self.cni_ipam_dir = getattr(host, "cni_ipam_dir", os.path.join(directory, "cni-ipam"))
        cni = ["--cni-cache-dir", self.cni_cache_dir, "--cni-ipam-dir", self.cni_ipam_dir]
        if subnet_pool is not None:
            cni += ["--cni-subnet-pool", subnet_pool]
        self.flags = [
            "--configuration", os.path.join(directory, "absent.yaml"),
            "--socket", self.socket,
            "--run-path", self.run_path,
            "--containerd-socket", containerd_socket,
            "--containerd-namespace-suffix", self.namespace_suffix,
            "--cgroup-root", self.cgroup_root,
            "--reconcile-interval", reconcile_interval,
            "--pull-policy", "never",
            *cni,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.prefix: list[str] = []
        """Words run before the daemon's command (e.g. ``nsenter --net=...``)."""

    def start(self, timeout: float = 30.0) -> None:
        """Start the daemon and wait for its pid file (it is serving then)."""
        from tools.private_containerd import _accepts

        pid_file = os.path.join(self.directory, "kukeond.pid")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "kukeond.cli", "serve", *self.flags],
                cwd=self.directory,
                stdout=subprocess.DEVNULL,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while not (os.path.exists(pid_file) and _accepts(self.socket)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise FailTest(f"our kukeond did not start: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after 20 s; the exit status (None when it was not running)."""
        proc, self.process = self.process, None
        return reference.stop_process(proc)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, size: int = 4000) -> str:
        """The end of the daemon's log."""
        return reference.file_tail(self.log_path, size)

    def kuke(self, *args: str, **kwargs) -> reference.KukeResult:
        """The real ``kuke`` against this daemon (blocking)."""
        return reference.run_kuke(self.socket, *args, **kwargs)

    def kuke_async(self, *args: str, **kwargs):
        """``kuke`` off the reactor thread: a Deferred firing with the result."""
        return threads.deferToThread(self.kuke, *args, **kwargs)

    def in_process_env(self) -> dict[str, str]:
        """Environment that points an in-process ``kuke`` at this daemon's host state."""
        return dict(
            os.environ,
            KUKEON_NAMESPACE_SUFFIX=self.namespace_suffix,
            KUKEON_CGROUP_ROOT=self.cgroup_root,
        )

    def in_process(self, *args: str, **kwargs):
        """``kuke ARGS`` running the reference controller in-process on our run path.

        A Deferred (it runs in a thread) firing with the ``KukeResult``.
        """
        argv = [*args, "--run-path", self.run_path, "--containerd-socket", self.containerd_socket]
        return threads.deferToThread(
            reference.run_kuke, self.socket, *argv, env=self.in_process_env(), **kwargs
        )


def start_our_kukeond(
    test,
    containerd_socket: str,
    reconcile_interval: str = "0",
    spaces: tuple[tuple[str, str], ...] = (),
    host=None,
    default_cni: bool = False,
) -> OurKukeond:
    """Start our daemon for ``test``; everything it made is removed at cleanup.

    ``spaces`` lists the ``(realm, space)`` pairs whose bridges the test makes,
    so cleanup can remove them even when the test failed half-way.

    ``host`` (another daemon, e.g. a ``GoKukeond``) hands its run path,
    namespace suffix, cgroup root and CNI cache and lease directories over to
    ours; ours then also uses the default subnet pool, the one the Go daemon
    always uses. ``default_cni`` asks for that pool alone (a host the Go
    daemon takes over later).
    """

    from kukeond.base import naming
    from tests.network.hostenv import (
        free_parent_cidr,
        link_exists,
        preserve_ip_forward,
        remove_masquerade,
        sh,
    )
    from tests.support.runtime import hold_host_network, purge_daemon_host, short_tmpdir

    if os.geteuid() != 0:
        raise SkipTest("our daemon as a process on a real containerd needs root")
    hold_host_network(test)
    preserve_ip_forward(test)
    daemon = OurKukeond(
        short_tmpdir(test, "ko-"),
        containerd_socket,
        reconcile_interval,
        None if (host or default_cni) else free_parent_cidr(),
        host,
    )

    async def cleanup() -> None:
        await purge_daemon_host(daemon)
        for realm, space in spaces:
            remove_masquerade(naming.network_name(realm, space))
            bridge = naming.bridge_name(realm, space)
            if link_exists(bridge):
                sh("ip", "link", "delete", bridge, check=False)

    test.addCleanup(cleanup)
    daemon.start()
    return daemon


def spawn_daemon(flags: list[str], log_path: str) -> subprocess.Popen[bytes]:
    """``python -m kukeond.cli serve FLAGS`` from the checkout, stderr appended to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "kukeond.cli", "serve", *flags],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def stop_daemon_process(proc: subprocess.Popen[bytes], seconds: float) -> int:
    """SIGTERM ``proc``, SIGKILL if it still runs after ``seconds``; its exit status.

    Waits on the reactor (the test's own client may be talking to it).
    """
    from twisted.internet import reactor, task

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        for _ in range(int(seconds / 0.05)):
            if proc.poll() is not None:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        if proc.poll() is None:
            proc.kill()
    return proc.wait()
