"""GrpcContainerd on a containerd that the test itself stops and starts again.

Each test runs its own ``PrivateContainerd`` (own directory, socket and
state; the suite's containerd build, see ``private_containerd``), never the
shared test containerd, since stopping that one would
break the tests running beside it. A restart keeps the directory, so
containerd comes back with the same socket, metadata and running shims.
"""

from __future__ import annotations

import os
import time

from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from kukeond.containerd import errors
from kukeond.containerd.grpc import GrpcContainerd
from tests.containerd.ocispec import minimal_spec, remove_cgroup_tree, unique_cgroup_root
from tests.support.containerd import private_containerd, unique_namespace
from tests.support.image import busybox_image
from tests.support.runtime import purge_namespace, short_tmpdir
from tools.private_containerd import PrivateContainerdError


class RestartableContainerd:
    """A private containerd for one test, stopped and started on demand.

    ``start``/``stop`` run the blocking process handling off the reactor
    thread. At cleanup containerd is started if the test left it stopped,
    every namespace is emptied (tasks killed, so no shim outlives the test)
    and the process and its directory are removed.
    """

    def __init__(self, test: unittest.TestCase) -> None:
        if os.geteuid() != 0:
            raise unittest.SkipTest("a private containerd needs root")
        self.daemon = private_containerd(os.path.join(short_tmpdir(test, "kr-"), "ctrd"))
        self.socket = self.daemon.socket
        test.addCleanup(self._cleanup)

    async def start(self) -> None:
        """Start (or start again) containerd on the same directory and socket."""
        try:
            await threads.deferToThread(self.daemon.start)
        except PrivateContainerdError as exc:
            raise unittest.SkipTest(str(exc)) from None

    async def stop(self) -> None:
        """Stop containerd (SIGTERM); its shims and their tasks keep running."""
        await threads.deferToThread(self.daemon.stop)

    async def _cleanup(self) -> None:
        if not self.daemon.running:
            # A test that failed while containerd was down: bring it back so
            # that the shims it left are reached and their tasks killed.
            try:
                await threads.deferToThread(self.daemon.start)
            except PrivateContainerdError:
                pass
        if self.daemon.running:
            client = GrpcContainerd(self.socket, reactor=reactor, call_timeout=20)
            client.start()
            try:
                for ns in await client.list_namespaces():
                    await purge_namespace(client, ns)
            finally:
                await client.stop()
        await threads.deferToThread(self.daemon.stop, True)


async def eventually(check, timeout: float = 15.0, every: float = 0.05):
    """Poll ``check()`` (plain or async) until it returns a true value, then return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = await defer.maybeDeferred(check)
        if value or time.monotonic() > deadline:
            return value
        await task.deferLater(reactor, every, lambda: None)


async def answers(client: GrpcContainerd) -> bool:
    """Whether ``client`` reaches containerd now."""
    try:
        await client.version()
    except errors.Unavailable:
        return False
    return True


class RestartTests(unittest.TestCase):
    timeout = 120

    async def setUp(self):
        self.ctrd = RestartableContainerd(self)
        await self.ctrd.start()
        self.client = GrpcContainerd(self.ctrd.socket, reactor=reactor, call_timeout=10)
        self.client.start()
        self.addCleanup(self.client.stop)

    async def test_calls_fail_with_unavailable_then_work_again(self):
        before = await self.client.version()
        await self.ctrd.stop()
        started = time.monotonic()
        with self.assertRaises(errors.Unavailable) as down:
            await self.client.list_namespaces()
        # Fails at once, well inside the call deadline, and names the socket.
        self.assertLess(time.monotonic() - started, 5)
        self.assertIn("failed to connect to containerd", down.exception.message)
        self.assertIn(self.ctrd.socket, down.exception.message)
        await self.ctrd.start()
        # The very first call on the same client object succeeds.
        after = await self.client.version()
        self.assertEqual(after, before)
        self.assertIsInstance(await self.client.list_namespaces(), list)

    async def test_events_and_running_tasks_survive_a_restart(self):
        ns = unique_namespace()
        cgroup = unique_cgroup_root()
        self.addCleanup(remove_cgroup_tree, cgroup)
        image = busybox_image()
        await self.client.ensure_namespace(ns)
        await self.client.import_image(ns, image.oci_tar)

        exits: list[tuple[str, int]] = []
        resubscribed: list[bool] = []

        def on_event(event):
            if event.topic == "/tasks/exit":
                exits.append((event.event.container_id, event.event.exit_status))

        sub = self.client.subscribe(
            on_event,
            namespace=ns,
            topics=["/tasks/"],
            on_resubscribe=lambda: resubscribed.append(True),
        )
        self.addCleanup(sub.stop)

        async def run(cid: str, args: list[str]) -> None:
            await self.client.create_container(
                ns, cid, image.ref, minimal_spec(args, f"{cgroup}/{cid}")
            )
            await self.client.create_task(ns, cid)
            await self.client.start_task(ns, cid)

        await run("before", ["sh", "-c", "exit 3"])
        self.assertTrue(await eventually(lambda: ("before", 3) in exits))
        await run("sleeper", ["sleep", "600"])

        await self.ctrd.stop()
        await self.ctrd.start()
        self.assertTrue(await eventually(lambda: resubscribed), "on_resubscribe never fired")

        # The shim kept the task running across the restart.
        state = await self.client.task_state(ns, "sleeper")
        self.assertEqual(state.status, "running")
        await run("after", ["sh", "-c", "exit 5"])
        self.assertTrue(await eventually(lambda: ("after", 5) in exits))
        await self.client.kill_task(ns, "sleeper", signal=9)
        self.assertTrue(await eventually(lambda: ("sleeper", 137) in exits))
