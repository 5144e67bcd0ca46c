"""The reference binaries for tests: the Go ``kuke`` CLI, the Go kukeond, containerd 2.2.

They live in ``$KUKEON_REFERENCE_BIN``, by default ``<checkout>/../shared/bin``
(see the README there). Nothing here is part of kukeond.

- ``reference_dir()``: the directory looked in.
- ``reference_bin(name)``: the path of one binary, e.g. ``reference_bin("kuke")``.
  When it is missing: ``SkipTest`` with one line saying what and where, or a
  failure when ``CI=true`` (in CI the reference never skips).
- ``unavailable(reason)``: that same skip-or-fail, for other missing things.
- ``run_kuke(host, *args)`` runs the real ``kuke --host unix://HOST ARGS``
  and returns ``KukeResult(code, stdout, stderr)``; ``run_kuke_async`` is the
  same off the reactor thread (a Deferred).
- ``start_go_kukeond(test, containerd_socket=None, host=None)`` starts the Go daemon
  (``kuke`` under the name ``kukeond``) on its own socket, run path, cgroup
  root and namespace suffix, on containerd 2.2 unless told otherwise (v0.5.0
  does not work on 1.6), and stops and cleans it up at the test's cleanup.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, NoReturn

from twisted.internet import defer, threads
from twisted.trial.unittest import FailTest, SkipTest

ENV_BIN = "KUKEON_REFERENCE_BIN"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT.parent / "shared" / "bin"
CNI_PLUGIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")
"""Where CNI plugins are looked for, as our daemon does by default."""


def in_ci() -> bool:
    """Whether this runs in CI (``CI=true``), where nothing may be skipped for lack of binaries."""
    return os.environ.get("CI", "").lower() == "true"


def reference_dir() -> str:
    """Where the reference binaries are: ``$KUKEON_REFERENCE_BIN``, else ``../shared/bin``."""
    return os.path.abspath(os.environ.get(ENV_BIN) or DEFAULT_DIR)


def unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason``; in CI fail it instead."""
    if in_ci():
        raise FailTest(f"{reason} (CI=true: required, not skipped)")
    raise SkipTest(reason)


def missing_reason(name: str) -> str | None:
    """Why ``reference_bin(name)`` would not answer, in one line; None when it would."""
    path = os.path.join(reference_dir(), name)
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return None
    return (
        f"reference binary {name!r} not found in {reference_dir()} "
        f"(set {ENV_BIN} to the directory holding it)"
    )


def reference_bin(name: str) -> str:
    """The absolute path of the reference binary ``name`` (skip, or fail in CI, if missing)."""
    reason = missing_reason(name)
    if reason:
        unavailable(reason)
    return os.path.join(reference_dir(), name)


def file_tail(path: str, size: int) -> str:
    """The last ``size`` bytes of a daemon's log file, as text (``(no log)`` when unreadable)."""
    try:
        with open(path, "rb") as f:
            return f.read()[-size:].decode(errors="replace")
    except OSError:
        return "(no log)"


def stop_process(proc: subprocess.Popen | None) -> int | None:
    """SIGTERM ``proc``, SIGKILL after 20 s; its exit status (None when there is no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class KukeResult(NamedTuple):
    """What one ``kuke`` run gave back."""

    code: int
    stdout: str
    stderr: str


def kuke_command(host: str, *args: str) -> list[str]:
    """The argv of ``kuke`` talking to the daemon on the unix socket ``host``."""
    endpoint = host if "://" in host else f"unix://{host}"
    return [reference_bin("kuke"), "--host", endpoint, *args]


def run_kuke(
    host: str,
    *args: str,
    timeout: float = 60.0,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> KukeResult:
    """Run the real ``kuke --host unix://HOST ARGS`` (blocking); fail the test on timeout."""
    argv = kuke_command(host, *args)
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=env,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise FailTest(
            f"{' '.join(argv[1:])} did not finish in {timeout:g} s; "
            f"stdout {e.stdout!r}, stderr {e.stderr!r}"
        ) from None
    return KukeResult(done.returncode, done.stdout, done.stderr)


def run_kuke_async(host: str, *args: str, **kwargs) -> defer.Deferred:
    """``run_kuke`` in a thread: a Deferred firing with the ``KukeResult``."""
    return threads.deferToThread(run_kuke, host, *args, **kwargs)


class GoKukeond:
    """The reference daemon, running; made by ``start_go_kukeond``."""

    def __init__(
        self,
        directory: str,
        containerd_socket: str,
        token: str,
        extra_args: Sequence[str] = (),
        host=None,
    ) -> None:
        self.directory = directory
        self.socket = os.path.join(directory, "kukeond.sock")
        self.run_path = host.run_path if host else os.path.join(directory, "run")
        self.containerd_socket = containerd_socket
        self.cgroup_root = host.cgroup_root if host else f"/kukeon-test-{token}"
        self.namespace_suffix = host.namespace_suffix if host else f"{token}.kukeon.test"
        self.cni_cache_dir = getattr(host, "cni_cache_dir", os.path.join(directory, "cni-cache"))
        self.cni_ipam_dir = getattr(host, "cni_ipam_dir", os.path.join(directory, "cni-ipam"))
        self.log_path = os.path.join(directory, "kukeond.log")
        link = os.path.join(directory, "kukeond")
        os.symlink(reference_bin("kuke"), link)
        self.argv = [
            *self.cni_mounts(),
            link,
            "--configuration",
            os.path.join(directory, "absent.yaml"),
            "serve",
            "--socket",
            self.socket,
            "--run-path",
            self.run_path,
            "--containerd-socket",
            containerd_socket,
            "--cgroup-root",
            self.cgroup_root,
            "--containerd-namespace-suffix",
            self.namespace_suffix,
            *extra_args,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def cni_mounts(self) -> list[str]:
        """An argv prefix: the daemon's own mount namespace for its fixed CNI paths.

        v0.5.0 looks for CNI plugins in ``/opt/cni/bin`` only (Debian has them
        in ``/usr/lib/cni``), caches in ``/opt/cni/cache`` and keeps leases in
        ``/var/lib/cni/networks``. There, under tmpfs mounts, it finds the
        plugins, ``cni_cache_dir`` and ``cni_ipam_dir``: the host's paths are
        neither needed nor changed, and our daemon can be given the same two
        directories.
        """
        plugins = next(
            (d for d in CNI_PLUGIN_DIRS if os.path.exists(os.path.join(d, "bridge"))), None
        )
        binds = os.path.join(self.directory, "cni-bin")
        for path in (binds, self.cni_cache_dir, self.cni_ipam_dir):
            os.makedirs(path, exist_ok=True)
        script = " && ".join([
            *([f'mount --bind "{plugins}" "{binds}"'] if plugins else []),
            'for d in /opt/cni /var/lib/cni; do m=$d; [ -d "$m" ] || m=$(dirname "$d"); '
            'mount -t tmpfs -o mode=0755 kukeond-test "$m"; done',
            "mkdir -p /opt/cni/bin /opt/cni/cache /var/lib/cni/networks",
            f'mount --bind "{binds}" /opt/cni/bin',
            f'mount --bind "{self.cni_cache_dir}" /opt/cni/cache',
            f'mount --bind "{self.cni_ipam_dir}" /var/lib/cni/networks',
            'exec "$@"',
        ])  # fmt: skip
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]

    def start(self, timeout: float = 30.0) -> None:
        """Start the daemon and wait until its socket accepts connections."""
        from tools.private_containerd import _accepts

        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not _accepts(self.socket):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise FailTest(f"the Go kukeond did not start: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, size: int = 2000) -> str:
        """The end of the daemon's log."""
        return file_tail(self.log_path, size)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 20 s; the exit status (None when it was not running)."""
        proc, self.process = self.process, None
        return stop_process(proc)

    def kuke(self, *args: str, **kwargs) -> KukeResult:
        """``run_kuke`` against this daemon."""
        return run_kuke(self.socket, *args, **kwargs)


def start_go_kukeond(
    test, containerd_socket: str | None = None, extra_args: Sequence[str] = (), host=None
) -> GoKukeond:
    """Start the Go kukeond for ``test``; it is stopped and cleaned up at the test's cleanup.

    Without ``containerd_socket`` it runs on the test containerd 2.2
    (``tests.support.containerd.get_containerd2_socket``). Cleanup stops the
    daemon, purges the containerd namespaces ending in its suffix and removes
    its cgroup root. Tests that make spaces should also hold
    ``tests.support.runtime.hold_host_network``: bridge names do not depend on
    the daemon. ``host`` (another daemon, e.g. an ``OurKukeond``) hands its run
    path, namespace suffix and cgroup root over to this one.
    """

    from tests.support.containerd import get_containerd2_socket
    from tests.support.runtime import purge_daemon_host, short_tmpdir

    if os.geteuid() != 0:
        raise SkipTest("the Go kukeond needs root")
    reference_bin("kuke")
    socket = containerd_socket or get_containerd2_socket()
    daemon = GoKukeond(
        short_tmpdir(test, "kg-"), socket, f"g{secrets.token_hex(3)}", extra_args, host
    )

    test.addCleanup(purge_daemon_host, daemon)
    daemon.start()
    return daemon
