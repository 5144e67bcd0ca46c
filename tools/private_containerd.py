"""A private containerd: own root, state, socket and config under one directory.

Used by ``make run`` when no containerd answers on the configured socket,
and by the tests and benchmarks, so none of them touches the host's
containerd. The CRI plugin is disabled; nothing listens on TCP.

By default it runs the ``containerd`` on ``PATH`` (Debian's 1.6). The tests
also run another build, e.g. containerd 2.2: ``PrivateContainerd(d,
binary=".../containerd")`` runs that binary with its directory first on
``PATH`` (containerd finds ``containerd-shim-runc-v2`` there) and writes the
config format its major version reads (``version = 2`` for 1.x, ``version =
3`` for 2.x, where CRI is three plugins and NRI would open a socket under
``/var/run/nri``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence

CONFIG = CONFIG_V2 = """version = 2
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

CONFIG_V3 = """version = 3
root = "{root}/root"
state = "{root}/state"
imports = []
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime",
  "io.containerd.nri.v1.nri",
  "io.containerd.podsandbox.controller.v1.podsandbox",
]

[grpc]
  address = "{root}/containerd.sock"
  tcp_address = ""

[ttrpc]
  address = "{root}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{root}/opt"
"""

_VERSION = re.compile(r"\s(v?\d+\.\d+\.\d+\S*)")


def containerd_version(binary: str = "containerd", env: dict[str, str] | None = None) -> str:
    """The version ``binary --version`` prints (``"1.6.20~ds1"``, ``"2.2.0+unknown"``)."""
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, env=env
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise PrivateContainerdError(f"cannot run {binary} --version: {e}") from None
    m = _VERSION.search(done.stdout)
    if m is None:
        raise PrivateContainerdError(f"{binary} --version printed no version: {done.stdout!r}")
    return m.group(1).lstrip("v")


def _accepts(path: str) -> bool:
    """Whether something listens on the unix socket ``path`` (bound is not enough)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


class PrivateContainerdError(Exception):
    """The private containerd could not be started; the message has its log's tail."""


class PrivateContainerd:
    """One containerd process living under ``directory``.

    ``binary`` is the containerd to run (default: ``containerd`` on ``PATH``);
    ``bin_dir`` goes first on its ``PATH`` so that it finds its shim there
    (default: the directory of an explicit ``binary``, else nothing added).
    ``version`` is the binary's version once ``start`` has run. ``wrapper`` is an
    argv prefix containerd runs under, e.g. ``nsenter --net=/var/run/netns/N --``
    to give it (and every host-network container) a network namespace of its own.
    """

    def __init__(
        self,
        directory: str,
        binary: str | None = None,
        bin_dir: str | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.directory = os.path.abspath(directory)
        self.socket = os.path.join(self.directory, "containerd.sock")
        self.log_path = os.path.join(self.directory, "containerd.log")
        self.binary = binary or "containerd"
        if bin_dir is None and binary is not None:
            bin_dir = os.path.dirname(os.path.abspath(binary))
        self.bin_dir = bin_dir
        self.wrapper = list(wrapper)
        self.version: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.bin_dir:
            env["PATH"] = os.pathsep.join([self.bin_dir, env.get("PATH", os.defpath)])
        return env

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> str:
        """Start containerd and wait for its socket; return the socket path."""
        env = self._env()
        binary = shutil.which(self.binary, path=env["PATH"])
        if binary is None:
            raise PrivateContainerdError(f"{self.binary} is not installed")
        if self.version is None:
            try:
                self.version = containerd_version(binary, env)
            except PrivateContainerdError:
                self.version = "unknown"  # then the 1.x config, as before builds were chosen
        major = self.version.split(".")[0]
        template = CONFIG_V3 if major.isdigit() and int(major) >= 2 else CONFIG_V2
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        config = os.path.join(self.directory, "config.toml")
        with open(config, "w") as f:
            f.write(template.format(root=self.directory))
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [*self.wrapper, binary, "-c", config],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not _accepts(self.socket):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise PrivateContainerdError(
                    f"private containerd did not start: {self._log_tail()}"
                )
            time.sleep(0.05)
        return self.socket

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return "(no log)"

    def stop(self, remove: bool = False) -> None:
        """Stop containerd (SIGTERM, then SIGKILL); with ``remove`` delete its directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if remove:
            subprocess.run(
                ["umount", "-R", os.path.join(self.directory, "root")], capture_output=True
            )
            shutil.rmtree(self.directory, ignore_errors=True)
