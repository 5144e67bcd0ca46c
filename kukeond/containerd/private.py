"""A private containerd: own root, state, socket and config under one directory.

Used by ``make run`` when no containerd answers on the configured socket,
and by the tests and benchmarks, so none of them touches the host's
containerd. The CRI plugin is disabled; nothing listens on TCP.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

CONFIG = """version = 2
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
    """One containerd process living under ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        self.socket = os.path.join(self.directory, "containerd.sock")
        self.log_path = os.path.join(self.directory, "containerd.log")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> str:
        """Start containerd and wait for its socket; return the socket path."""
        if shutil.which("containerd") is None:
            raise PrivateContainerdError("containerd is not installed")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        config = os.path.join(self.directory, "config.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(root=self.directory))
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                ["containerd", "-c", config],
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
