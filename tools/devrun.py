"""``make run``: the daemon in the foreground with its socket and state under the checkout.

If no containerd answers on the configured socket (``KUKEON_CONTAINERD_SOCKET``
or the default), containerd and runc are installed from apt when absent and a
private containerd is started under ``<run-dir>/containerd`` for the run; it
is stopped when the daemon exits. Extra arguments go to ``kukeond serve``.

Once the daemon answers, the run starts from what ``kuke init`` leaves: the
realm, space and stack ``default`` (realm namespace ``default.<suffix>``,
labelled as ``kuke init`` labels them), created over the API and left alone
when they exist. So ``kuke image load … --realm default`` and the other
commands of the README work on a fresh machine. The system realm
(``kuke-system``) is not made: it holds the daemon's own cell under
``kuke init``, and here the daemon runs on the host. ``kukeond serve``
itself never creates anything, as the reference daemon does not either.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from kukeond.client import APIError, BlockingClient, ClientError
from tools.private_containerd import PrivateContainerd, PrivateContainerdError

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


DEFAULT = "default"
REALM_LABEL, SPACE_LABEL, STACK_LABEL = "realm.kukeon.io", "space.kukeon.io", "stack.kukeon.io"


def default_documents(suffix: str = "kukeon.io") -> list[tuple[str, dict]]:
    """``(method, args)`` creating realm, space and stack ``default`` as ``kuke init`` does."""
    namespace = f"{DEFAULT}.{suffix}"
    return [
        ("CreateRealm", {"Doc": {
            "apiVersion": "v1beta1", "kind": "Realm",
            "metadata": {"name": DEFAULT, "labels": {REALM_LABEL: namespace}},
            "spec": {"namespace": namespace}}}),
        ("CreateSpace", {"Doc": {
            "apiVersion": "v1beta1", "kind": "Space",
            "metadata": {"name": DEFAULT, "labels": {REALM_LABEL: DEFAULT, SPACE_LABEL: DEFAULT}},
            "spec": {"realmId": DEFAULT}}}),
        ("CreateStack", {"Doc": {
            "apiVersion": "v1beta1", "kind": "Stack",
            "metadata": {"name": DEFAULT, "labels": {
                REALM_LABEL: DEFAULT, SPACE_LABEL: DEFAULT, STACK_LABEL: DEFAULT}},
            "spec": {"id": DEFAULT, "realmId": DEFAULT, "spaceId": DEFAULT}}}),
    ]  # fmt: skip


def instance_suffix(run_path: str) -> str:
    """The namespace suffix the daemon recorded in ``<run_path>/.kukeon-instance.json``."""
    try:
        with open(os.path.join(run_path, ".kukeon-instance.json")) as f:
            return json.load(f).get("containerdNamespaceSuffix") or "kukeon.io"
    except (OSError, ValueError):
        return "kukeon.io"


def bootstrap_default(
    sock: str, run_path: str, proc: subprocess.Popen, timeout: float = 60.0
) -> bool:
    """Wait for the daemon on ``sock``, then create the default hierarchy; False if it died."""
    deadline = time.monotonic() + timeout
    while not answers(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    client = BlockingClient(f"unix://{sock}")
    try:
        for method, args in default_documents(instance_suffix(run_path)):
            client.call(method, args)
    except (APIError, ClientError) as e:
        print(f"warning: could not create the default realm, space and stack: {e}", file=sys.stderr)
        return True
    finally:
        client.close()
    print("realm, space and stack 'default' are ready", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the daemon for development; return its exit status."""
    parser = argparse.ArgumentParser(prog="python -m tools.devrun")
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
        bootstrap_default(sock, os.path.join(run_dir, "state"), proc)
        return proc.wait()
    except KeyboardInterrupt:
        return proc.wait()
    finally:
        if private is not None:
            private.stop()


if __name__ == "__main__":
    sys.exit(main())
