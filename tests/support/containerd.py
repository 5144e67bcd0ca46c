"""A containerd for tests: the one named by KUKEOND_TEST_CONTAINERD_SOCKET, or a private one.

``get_containerd_socket()`` returns a socket path. Without the environment
variable it starts ONE private containerd per test process (own root, state,
socket and config under a temp dir, CRI plugin disabled), stops it and removes
its directory at process exit, after deleting the namespaces the tests made.
Raises ``SkipTest`` when containerd or runc is not installed or root is missing.
The private one runs ``$KUKEOND_TEST_CONTAINERD_BIN`` when set (default:
``containerd`` on ``PATH``, Debian's 1.6); so does ``private_containerd(dir)``,
which tests that stop and start their own containerd use.

``get_containerd2_socket()`` is the same for containerd 2.2, whatever the
suite runs on: ``$KUKEOND_TEST_CONTAINERD2_SOCKET``, else a private one from
the reference binaries (``tests.support.reference``; skipped when they are
missing, a failure when ``CI=true``).

``make test`` runs the whole suite on containerd 1.6, then every module that
uses a real containerd again on 2.2, through this module's command line::

    python -m tests.support.containerd keep DIR [--reference]   # CI: serve until SIGTERM
    python -m tests.support.containerd modules                  # what the 2.2 run runs
    python -m tests.support.containerd on-2 [TRIAL ARGS...]      # the 2.2 part of make test
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from twisted.trial.unittest import SkipTest

from tests.support import reference
from tools.private_containerd import PrivateContainerd, PrivateContainerdError

ENV_SOCKET = "KUKEOND_TEST_CONTAINERD_SOCKET"
ENV_SOCKET2 = "KUKEOND_TEST_CONTAINERD2_SOCKET"
ENV_BINARY = "KUKEOND_TEST_CONTAINERD_BIN"
ENV_MAJOR = "KUKEOND_TEST_CONTAINERD_MAJOR"
"""When set, the major version the suite's containerd must have (checked by one test)."""
NAMESPACE_PREFIX = "kukeond-test-"
TEST_SUFFIX_END = ".kukeon.test"
"""Realm namespaces of controller tests end with this (see tests.support.runtime)."""
PART_MARK = "tests part: "
"""A line starting so opens one trial run in ``make test`` (see tests.summarize)."""
_state: dict[str, str] = {}
_state2: dict[str, str] = {}


def unique_namespace(prefix: str = NAMESPACE_PREFIX) -> str:
    """A fresh containerd namespace name for one test."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def private_containerd(directory: str) -> PrivateContainerd:
    """A ``PrivateContainerd`` running the suite's containerd ($KUKEOND_TEST_CONTAINERD_BIN)."""
    return PrivateContainerd(directory, binary=os.environ.get(ENV_BINARY) or None)


def get_containerd_socket() -> str:
    """The socket of the test containerd, starting the private one if needed."""
    env = os.environ.get(ENV_SOCKET)
    if env:
        return env
    if "socket" in _state:
        return _state["socket"]
    if "skip" in _state:
        raise SkipTest(_state["skip"])
    binary = os.environ.get(ENV_BINARY) or "containerd"
    missing = [tool for tool in (binary, "runc") if shutil.which(tool) is None]
    reason = None
    if missing:
        reason = f"{' and '.join(missing)} not installed (apt-get install containerd runc)"
    elif os.geteuid() != 0:
        reason = "a private containerd needs root"
    if reason:
        _state["skip"] = reason
        raise SkipTest(reason)
    _state["socket"] = _start(
        private_containerd(tempfile.mkdtemp(prefix="kukeond-ctrd-")), _state, ci_fails=False
    )
    return _state["socket"]


def get_containerd2_socket() -> str:
    """The socket of a containerd 2.2 for tests, starting a private one if needed."""
    env = os.environ.get(ENV_SOCKET2)
    if env:
        return env
    if "socket" in _state2:
        return _state2["socket"]
    if "skip" in _state2:
        reference.unavailable(_state2["skip"])
    binary = reference.reference_bin("containerd")
    if shutil.which("runc") is None:
        reference.unavailable("runc not installed (apt-get install runc)")
    if os.geteuid() != 0:
        raise SkipTest("a private containerd needs root")
    daemon = PrivateContainerd(tempfile.mkdtemp(prefix="kukeond-ctrd2-"), binary=binary)
    _state2["socket"] = _start(daemon, _state2, ci_fails=True)
    return _state2["socket"]


def _start(daemon: PrivateContainerd, state: dict[str, str], ci_fails: bool) -> str:
    """Start ``daemon`` for this process; skip (or with ``ci_fails`` in CI, fail) if it won't."""
    try:
        socket = daemon.start()
    except PrivateContainerdError as e:
        daemon.stop(remove=True)
        state["skip"] = str(e)
        if ci_fails:
            reference.unavailable(state["skip"])
        raise SkipTest(state["skip"]) from None
    atexit.register(_stop, daemon)
    return socket


def _ctr_for(daemon: PrivateContainerd) -> str:
    """The ``ctr`` shipped beside the daemon's binary, else the one on PATH."""
    if daemon.bin_dir and os.access(os.path.join(daemon.bin_dir, "ctr"), os.X_OK):
        return os.path.join(daemon.bin_dir, "ctr")
    return "ctr"


def _clean_namespaces(socket: str, ctr_binary: str = "ctr") -> None:
    """Delete what tests left in their namespaces (best effort, via ctr)."""

    def ctr(*args: str) -> str:
        done = subprocess.run(
            [ctr_binary, "--address", socket, *args], capture_output=True, text=True, timeout=60
        )
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
            _clean_namespaces(daemon.socket, _ctr_for(daemon))
        except (OSError, subprocess.SubprocessError):
            pass
    daemon.stop(remove=True)


# The command line: CI's long-lived containerds, and the 2.2 part of make test.

_USES_CONTAINERD = re.compile(
    r"\b(get_containerd_socket|real_runtime|private_containerd|RestartableContainerd)\("
    r"|\(RealCellTestCase\)"
)


def containerd_test_modules(root: Path = reference.REPO_ROOT) -> list[str]:
    """The test modules that use a real containerd, as dotted names (for trial).

    Found by what they call: ``get_containerd_socket``, ``real_runtime``,
    ``private_containerd`` or ``RestartableContainerd`` (tests/support excluded).
    """
    modules = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        if "support" in path.relative_to(root).parts:
            continue
        if _USES_CONTAINERD.search(path.read_text(errors="replace")):
            modules.append(".".join(path.relative_to(root).with_suffix("").parts))
    return modules


def _keep(directory: str, use_reference: bool) -> int:
    """Run one private containerd in ``directory`` until SIGTERM; print its socket.

    ``DIRECTORY/ready`` appears once it accepts connections.
    """
    binary = None
    if use_reference:
        reason = reference.missing_reason("containerd")
        if reason:
            print(f"error: {reason}", file=sys.stderr, flush=True)
            return 1
        binary = os.path.join(reference.reference_dir(), "containerd")
    daemon = PrivateContainerd(directory, binary=binary)
    try:
        daemon.start()
    except PrivateContainerdError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    with open(os.path.join(directory, "ready"), "w"):
        pass
    print(f"private containerd {daemon.version} on {daemon.socket}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (daemon.stop(remove=True), sys.exit(0)))
    while daemon.running:
        time.sleep(1)
    return 1


def _on_2(trial_args: list[str]) -> int:
    """Run trial on containerd 2.2: the modules that use a real containerd, by default.

    Without the reference binaries (and no $KUKEOND_TEST_CONTAINERD2_SOCKET)
    it prints one line and succeeds, except with ``CI=true`` where it fails.
    """
    socket = os.environ.get(ENV_SOCKET2)
    binary = os.path.join(reference.reference_dir(), "containerd")
    reason = reference.missing_reason("containerd")
    if reason and not socket:
        if reference.in_ci():
            print(f"{PART_MARK}containerd 2.2", flush=True)
            print(f"error: {reason} (CI=true: the containerd 2.2 run is required)", flush=True)
            return 1
        print(
            f"containerd 2.2 run skipped: {reason}, "
            f"or set {ENV_SOCKET2} to the socket of a running containerd 2.x",
            flush=True,
        )
        return 0
    daemon = None
    if not socket:
        daemon = PrivateContainerd(tempfile.mkdtemp(prefix="kukeond-ctrd2-"), binary=binary)
        try:
            socket = daemon.start()
        except PrivateContainerdError as e:
            print(f"{PART_MARK}containerd 2.2", flush=True)
            print(f"error: {e}", flush=True)
            daemon.stop(remove=True)
            return 1
    modules = trial_args or containerd_test_modules()
    env = dict(os.environ, **{ENV_SOCKET: socket, ENV_SOCKET2: socket, ENV_MAJOR: "2"})
    if not reason:
        env[ENV_BINARY] = binary
    print(f"{PART_MARK}containerd 2.2 ({socket}): {' '.join(modules)}", flush=True)
    try:
        return subprocess.call(
            [sys.executable, "-m", "twisted.trial", "-j2", *modules],
            env=env,
            stdin=subprocess.DEVNULL,
        )
    finally:
        if daemon is not None:
            _stop(daemon)


def main(argv: list[str] | None = None) -> int:
    """``keep DIR [--reference]`` or ``on-2 [TRIAL ARGS...]``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.containerd")
    sub = parser.add_subparsers(dest="command", required=True)
    keep = sub.add_parser("keep", help="run a private containerd until SIGTERM")
    keep.add_argument("directory")
    keep.add_argument(
        "--reference",
        action="store_true",
        help="run the reference containerd 2.2 instead of the one on PATH",
    )
    on2 = sub.add_parser("on-2", help="run trial against containerd 2.2")
    on2.add_argument("trial_args", nargs=argparse.REMAINDER)
    sub.add_parser("modules", help="list the test modules that use a real containerd")
    args = parser.parse_args(argv)
    if args.command == "keep":
        return _keep(args.directory, args.reference)
    if args.command == "modules":
        print("\n".join(containerd_test_modules()))
        return 0
    trial_args = [a for a in args.trial_args if a != "--"]
    return _on_2(trial_args)


if __name__ == "__main__":
    sys.exit(main())
