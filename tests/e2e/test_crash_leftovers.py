"""SIGKILL in the middle of writes at every level leaves nothing behind once the daemon restarts."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from kukeond.client import APIError, BlockingClient, ClientError
from tests.support.containerd import get_containerd_socket
from tests.support.daemon import start_our_kukeond
from tests.support.image import busybox_image

ROUNDS = 8
IMAGE = "docker.io/library/busybox:latest"


def leftovers(run_path: str) -> list[str]:
    """Temp files of interrupted writes (any ``.*.tmp``) anywhere under the run path."""
    return sorted(
        os.path.join(directory, name)
        for directory, _dirs, names in os.walk(run_path)
        for name in names
        if name.startswith(".") and name.endswith(".tmp")
    )


def kill_mid_write(pid: int, run_path: str, seconds: float) -> list[str]:
    """SIGKILL ``pid`` while one of its writes is under way; the temp files it was writing.

    The process is frozen (SIGSTOP) every couple of milliseconds and the tree
    looked at: a temp file there is a write caught half-way. Gives up after
    ``seconds`` and kills anyway (then the list is empty).
    """
    deadline = time.monotonic() + seconds
    while True:
        os.kill(pid, signal.SIGSTOP)
        caught = leftovers(run_path)
        if caught or time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return caught
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.002)


def churn(socket: str, stop: threading.Event, level: int, seed: int) -> None:
    """Create and delete resources of one level (1 realm ... 4 cell) until ``stop``."""
    rng = random.Random(seed)
    client = BlockingClient(f"unix://{socket}", timeout=10)
    realm = "crash"
    try:
        while not stop.is_set():
            space, stack = f"s{rng.randrange(2)}", f"k{rng.randrange(2)}"
            cell = f"c{rng.randrange(3)}"
            cell_spec = {"realmId": realm, "spaceId": "s0", "stackId": "k0"}
            steps = {
                1: [("CreateRealm", {"Doc": {"metadata": {"name": "other"}}}),
                    ("DeleteRealm", {"Doc": {"metadata": {"name": "other"}}})],
                2: [("CreateSpace", {"Doc": {"metadata": {"name": space},
                                             "spec": {"realmId": realm}}}),
                    ("DeleteSpace", {"Doc": {"metadata": {"name": space},
                                             "spec": {"realmId": realm}}, "Cascade": True})],
                3: [("CreateStack", {"Doc": {"metadata": {"name": stack},
                                             "spec": {"realmId": realm, "spaceId": "s0"}}}),
                    ("DeleteStack", {"Doc": {"metadata": {"name": stack},
                                             "spec": {"realmId": realm, "spaceId": "s0"}},
                                     "Cascade": True})],
                4: [("CreateCell", {"Doc": {"metadata": {"name": cell}, "spec": {
                        **cell_spec, "containers": [
                            {"id": "w", "image": IMAGE, "command": "sleep", "args": ["30"]}]}}}),
                    ("KillCell", {"Doc": {"metadata": {"name": cell}, "spec": cell_spec}}),
                    ("DeleteCell", {"Doc": {"metadata": {"name": cell}, "spec": cell_spec}})],
            }[level]  # fmt: skip
            for method, args in steps:
                try:
                    client.call(method, args)
                except APIError:
                    continue
    except (ClientError, OSError):
        pass  # the daemon was killed
    finally:
        try:
            client.close()
        except OSError:
            pass


class CrashLeftoverTests(TestCase):
    timeout = 300

    async def test_sigkill_mid_write_then_restart_leaves_no_temp_files(self):
        daemon = start_our_kukeond(
            self, get_containerd_socket(), spaces=tuple(("crash", f"s{i}") for i in range(2))
        )
        client = BlockingClient(f"unix://{daemon.socket}")
        try:
            client.call("CreateRealm", {"Doc": {"metadata": {"name": "crash"}}})
            client.call(
                "CreateSpace", {"Doc": {"metadata": {"name": "s0"}, "spec": {"realmId": "crash"}}}
            )
            client.call(
                "CreateStack",
                {
                    "Doc": {
                        "metadata": {"name": "k0"},
                        "spec": {"realmId": "crash", "spaceId": "s0"},
                    }
                },
            )
            with open(busybox_image().oci_tar, "rb") as f:
                import base64

                client.call(
                    "LoadImage", {"Realm": "crash", "Tarball": base64.b64encode(f.read()).decode()}
                )
        finally:
            client.close()
        caught_at: list[str] = []
        for round_ in range(ROUNDS):
            stop = threading.Event()
            level = 1 + round_ % 4
            workers = [
                threading.Thread(target=churn, args=(daemon.socket, stop, level, round_ * 4 + i))
                for i in range(3)
            ]
            for worker in workers:
                worker.start()
            caught = await threads.deferToThread(
                kill_mid_write, daemon.process.pid, daemon.run_path, 5.0
            )
            daemon.process.wait()
            stop.set()
            for worker in workers:
                await threads.deferToThread(worker.join)
            data = os.path.join(daemon.run_path, "data")
            caught_at += [os.path.relpath(os.path.dirname(p), data) for p in caught]
            await threads.deferToThread(daemon.start)
            self.assertEqual(leftovers(daemon.run_path), [], f"after restart {round_}")
        # Kills must have landed inside writes at every level, or the test proved nothing.
        depths = {len(where.split(os.sep)) for where in caught_at}
        self.assertEqual(depths, {1, 2, 3, 4}, caught_at)
        # One clean stop after the last restart, as an operator would.
        self.assertEqual(await threads.deferToThread(daemon.stop), 0, daemon.log_tail())
        self.assertEqual(leftovers(daemon.run_path), [])
        await threads.deferToThread(daemon.start)
        self.assertEqual(leftovers(daemon.run_path), [])
