"""``make run``: the daemon in the foreground with its socket and state under the checkout.

If no containerd answers on the configured socket (``KUKEON_CONTAINERD_SOCKET``
or the default), containerd and runc are installed from apt when absent and a
private containerd is started under ``<run-dir>/containerd`` for the run; it
is stopped when the daemon exits. Extra arguments go to ``kukeond serve``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys

from kukeond.containerd.private import PrivateContainerd, PrivateContainerdError

DEFAULT_CONTAINERD = "/run/containerd/containerd.sock"


def answers(path: str) -> bool:
    """Tell whether something accepts connections on the unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def ensure_installed(*programs: str) -> None:
    """Install the Debian packages of missing ``programs`` (root only)."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        names = " ".join(missing)
        sys.exit(f"Error: {names} missing; install them first (apt-get install {names})")
    print(f"installing {' '.join(missing)} from apt", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    """Run the daemon for development; return its exit status."""
    parser = argparse.ArgumentParser(prog="python -m kukeond.devrun")
    parser.add_argument("--run-dir", default=os.path.abspath(".run"))
    ns, rest = parser.parse_known_args(argv)
    run_dir = os.path.abspath(ns.run_dir)
    os.makedirs(run_dir, exist_ok=True)
    containerd_socket = os.environ.get("KUKEON_CONTAINERD_SOCKET") or DEFAULT_CONTAINERD
    private = None
    if not answers(containerd_socket):
        ensure_installed("containerd", "runc")
        private = PrivateContainerd(os.path.join(run_dir, "containerd"))
        try:
            containerd_socket = private.start()
        except PrivateContainerdError as e:
            print(f"Error: {e}", file=sys.stderr)
            return 1
        print(f"started a private containerd on {containerd_socket}", file=sys.stderr)
    sock = os.path.join(run_dir, "kukeond.sock")
    command = [
        sys.executable, "-m", "kukeond.cli",
        "--configuration", os.path.join(run_dir, "kukeond.yaml"),
        "serve",
        "--socket", sock,
        "--run-path", os.path.join(run_dir, "state"),
        "--containerd-socket", containerd_socket,
        *rest,
    ]  # fmt: skip
    print(f"kukeond on unix://{sock} (kuke --host unix://{sock} ...)", file=sys.stderr)
    proc = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return proc.wait()
    finally:
        if private is not None:
            private.stop()


if __name__ == "__main__":
    sys.exit(main())
