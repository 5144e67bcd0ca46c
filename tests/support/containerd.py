"""A containerd for tests: the one named by KUKEOND_TEST_CONTAINERD_SOCKET, or a private one.

``get_containerd_socket()`` returns a socket path. Without the environment
variable it starts ONE private containerd per test process (own root, state,
socket and config under a temp dir, CRI plugin disabled), stops it and removes
its directory at process exit, after deleting the namespaces the tests made.
Raises ``SkipTest`` when containerd or runc is not installed or root is missing.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import uuid

from twisted.trial.unittest import SkipTest

from kukeond.containerd.private import PrivateContainerd, PrivateContainerdError

ENV_SOCKET = "KUKEOND_TEST_CONTAINERD_SOCKET"
NAMESPACE_PREFIX = "kukeond-test-"
TEST_SUFFIX_END = ".kukeon.test"
"""Realm namespaces of controller tests end with this (see tests.support.runtime)."""
_state: dict[str, str] = {}



def unique_namespace(prefix: str = NAMESPACE_PREFIX) -> str:
    """A fresh containerd namespace name for one test."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def get_containerd_socket() -> str:
    """The socket of the test containerd, starting the private one if needed."""
    env = os.environ.get(ENV_SOCKET)
    if env:
        return env
    if "socket" in _state:
        return _state["socket"]
    if "skip" in _state:
        raise SkipTest(_state["skip"])
    missing = [tool for tool in ("containerd", "runc") if shutil.which(tool) is None]
    reason = None
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install containerd runc)"
    elif os.geteuid() != 0:
        reason = "a private containerd needs root"
    if reason:
        _state["skip"] = reason
        raise SkipTest(reason)
    _state["socket"] = _start()
    return _state["socket"]


def _start() -> str:
    daemon = PrivateContainerd(tempfile.mkdtemp(prefix="kukeond-ctrd-"))
    try:
        socket = daemon.start()
    except PrivateContainerdError as e:
        daemon.stop(remove=True)
        _state["skip"] = str(e)
        raise SkipTest(_state["skip"]) from None
    atexit.register(_stop, daemon)
    return socket


def _clean_namespaces(socket: str) -> None:
    """Delete what tests left in their namespaces (best effort, via ctr)."""
    def ctr(*args: str) -> str:
        done = subprocess.run(["ctr", "--address", socket, *args], capture_output=True,
                              text=True, timeout=60)
        return done.stdout

    for ns in ctr("namespaces", "list", "-q").split():
        if not (ns.startswith(NAMESPACE_PREFIX) or ns.endswith(TEST_SUFFIX_END)):
            continue
        for cid in ctr("-n", ns, "tasks", "list", "-q").split():
            ctr("-n", ns, "tasks", "kill", "-s", "SIGKILL", cid)
            ctr("-n", ns, "tasks", "delete", "-f", cid)
        for cid in ctr("-n", ns, "containers", "list", "-q").split():
            ctr("-n", ns, "containers", "delete", cid)
        for ref in ctr("-n", ns, "images", "list", "-q").split():
            ctr("-n", ns, "images", "rm", "--sync", ref)
        for lease in ctr("-n", ns, "leases", "list", "-q").split():
            ctr("-n", ns, "leases", "rm", "--sync", lease)
        ctr("namespaces", "remove", ns)


def _stop(daemon: PrivateContainerd) -> None:
    if daemon.running:
        try:
            _clean_namespaces(daemon.socket)
        except (OSError, subprocess.SubprocessError):
            pass
    daemon.stop(remove=True)
