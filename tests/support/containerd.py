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
import signal
import subprocess
import tempfile
import time
import uuid

from twisted.trial.unittest import SkipTest

ENV_SOCKET = "KUKEOND_TEST_CONTAINERD_SOCKET"
NAMESPACE_PREFIX = "kukeond-test-"
_state: dict[str, str] = {}

_CONFIG = """version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{root}/containerd.sock"

[ttrpc]
  address = "{root}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
"""


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
    root = tempfile.mkdtemp(prefix="kukeond-ctrd-")
    config = os.path.join(root, "config.toml")
    with open(config, "w") as f:
        f.write(_CONFIG.format(root=root))
    log = open(os.path.join(root, "containerd.log"), "wb")
    proc = subprocess.Popen(
        ["containerd", "-c", config], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    socket = os.path.join(root, "containerd.sock")
    atexit.register(_stop, proc, root, socket)
    deadline = time.monotonic() + 30
    while not os.path.exists(socket):
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(os.path.join(root, "containerd.log"), "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace")
            _stop(proc, root, socket)
            _state["skip"] = f"private containerd did not start: {tail}"
            raise SkipTest(_state["skip"])
        time.sleep(0.05)
    return socket


def _clean_namespaces(socket: str) -> None:
    """Delete what tests left in their namespaces (best effort, via ctr)."""
    def ctr(*args: str) -> str:
        done = subprocess.run(["ctr", "--address", socket, *args], capture_output=True,
                              text=True, timeout=60)
        return done.stdout

    for ns in ctr("namespaces", "list", "-q").split():
        if not ns.startswith(NAMESPACE_PREFIX):
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


def _stop(proc: subprocess.Popen[bytes], root: str, socket: str) -> None:
    if proc.poll() is None:
        try:
            _clean_namespaces(socket)
        except (OSError, subprocess.SubprocessError):
            pass
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    subprocess.run(["umount", "-R", os.path.join(root, "root")], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)
