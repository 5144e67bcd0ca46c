"""A bug is not an API error: it is logged once with its traceback and answered ``Unknown``.

Requests go through the daemon's own handler table (``collect_handlers``, so
with its host-failure reporting) and the real dispatcher. A ``TypeError``
injected into cgroup creation stands for a programming error; the resource
it interrupted must be completed by the next create of the same name.
"""

from __future__ import annotations

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from kukeond.containerd.errors import Unavailable
from kukeond.errors import KukeonError
from kukeond.handlers.registry import collect_handlers
from kukeond.host.cgroups import CgroupError
from kukeond.rpc.codec import Request
from kukeond.rpc.dispatch import Dispatcher
from tests.controller.cellsupport import cell_doc, make_parents
from tests.controller.resource_calls import err, realm_doc, space_doc, stack_doc
from tests.support.runtime import fake_runtime


class UnexpectedErrorTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.dispatcher = Dispatcher(collect_handlers(self.rt))
        self.failures = []

        def observe(event):
            if "log_failure" in event:
                self.failures.append(event["log_failure"])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.real_create = self.rt.cgroups.create

    async def call(self, method: str, params: dict) -> dict:
        result, error = await self.dispatcher.dispatch(Request(f"KukeonV1.{method}", [params], "0"))
        self.assertIsNone(error)
        return result

    def break_cgroups(self, exc: Exception) -> None:
        def create(group, all_controllers=False):
            raise exc

        self.rt.cgroups.create = create

    def mend_cgroups(self) -> None:
        self.rt.cgroups.create = self.real_create

    def assert_bug_logged_once(self, reply: dict) -> None:
        self.assertEqual(err(reply), ("Unknown", "injected bug"))
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        logged = [f for f in self.failures if f.check(TypeError)]
        self.assertEqual(len(logged), 1)
        self.assertIn("injected bug", logged[0].getTraceback())

    def assert_nothing_logged(self) -> None:
        self.assertEqual(self.failures, [])

    def state(self, *key: str) -> str:
        return self.rt.store.get(key)["status"]["state"]

    async def test_realm_bug_is_unknown_logged_once_and_next_create_repairs(self):
        self.break_cgroups(TypeError("injected bug"))
        self.assert_bug_logged_once(await self.call("CreateRealm", realm_doc("demo")))
        self.assertEqual(self.state("demo"), "Failed")

        self.mend_cgroups()
        reply = await self.call("CreateRealm", realm_doc("demo"))
        self.assertIsNone(reply["Err"])
        self.assertEqual(reply["Result"]["Realm"]["status"]["state"], "Ready")
        self.assertEqual(self.state("demo"), "Ready")
        self.assertTrue(self.rt.cgroups.exists(f"{self.rt.cgroup_root}/demo"))

    async def test_realm_left_creating_is_completed_by_the_next_create(self):
        # What a daemon that died (or hit a bug) between the two writes leaves behind.
        await self.rt.store.put(
            ("demo",),
            {
                "apiVersion": "v1beta1",
                "kind": "Realm",
                "metadata": {"name": "demo", "labels": None},
                "spec": {"namespace": f"demo.{self.rt.suffix}"},
                "status": {"state": "Creating"},
            },
        )
        reply = await self.call("CreateRealm", realm_doc("demo"))
        self.assertIsNone(reply["Err"])
        self.assertEqual(self.state("demo"), "Ready")
        self.assertIn(f"demo.{self.rt.suffix}", await self.rt.containerd.list_namespaces())
        self.assertTrue(self.rt.cgroups.exists(f"{self.rt.cgroup_root}/demo"))

    async def test_space_bug_is_unknown_logged_once_and_next_create_repairs(self):
        self.assertIsNone((await self.call("CreateRealm", realm_doc("r")))["Err"])
        self.break_cgroups(TypeError("injected bug"))
        self.assert_bug_logged_once(await self.call("CreateSpace", space_doc("r", "s")))
        self.assertEqual(self.state("r", "s"), "Failed")

        self.mend_cgroups()
        reply = await self.call("CreateSpace", space_doc("r", "s"))
        self.assertIsNone(reply["Err"])
        self.assertEqual(self.state("r", "s"), "Ready")

    async def test_stack_bug_is_unknown_logged_once_and_next_create_repairs(self):
        self.assertIsNone((await self.call("CreateRealm", realm_doc("r")))["Err"])
        self.assertIsNone((await self.call("CreateSpace", space_doc("r", "s")))["Err"])
        self.break_cgroups(TypeError("injected bug"))
        self.assert_bug_logged_once(await self.call("CreateStack", stack_doc("r", "s", "k")))
        self.assertEqual(self.state("r", "s", "k"), "Failed")

        self.mend_cgroups()
        reply = await self.call("CreateStack", stack_doc("r", "s", "k"))
        self.assertIsNone(reply["Err"])
        self.assertEqual(self.state("r", "s", "k"), "Ready")

    async def test_cell_bug_is_unknown_logged_once_and_next_create_repairs(self):
        await make_parents(self.rt)
        params = {"Doc": cell_doc("c1").to_wire()}
        self.break_cgroups(TypeError("injected bug"))
        self.assert_bug_logged_once(await self.call("CreateCell", params))
        self.assertEqual(self.state("r1", "s1", "k1", "c1"), "Failed")

        self.mend_cgroups()
        reply = await self.call("CreateCell", params)
        self.assertIsNone(reply["Err"])
        self.assertEqual(self.state("r1", "s1", "k1", "c1"), "Ready")

    async def test_host_failure_is_an_api_error_without_traceback(self):
        self.break_cgroups(CgroupError("create cgroup demo: Permission denied"))
        reply = await self.call("CreateRealm", realm_doc("demo"))
        self.assertEqual(
            err(reply),
            (
                "CreateRealm",
                "failed to create realm: failed to create realm cgroup: "
                "create cgroup demo: Permission denied",
            ),
        )
        self.assert_nothing_logged()
        self.assertEqual(self.state("demo"), "Failed")

    async def test_containerd_failure_is_an_api_error_without_traceback(self):
        async def unreachable(namespace, labels=None):
            raise Unavailable("containerd is unavailable")

        self.rt.containerd.ensure_namespace = unreachable
        reply = await self.call("CreateRealm", realm_doc("demo"))
        self.assertEqual(
            err(reply),
            (
                "CreateRealm",
                "failed to create realm: failed to create realm namespace: "
                "containerd is unavailable",
            ),
        )
        self.assert_nothing_logged()

    async def test_kukeon_error_is_not_logged(self):
        async def refuse(namespace, labels=None):
            raise KukeonError("no namespaces today")

        self.rt.containerd.ensure_namespace = refuse
        reply = await self.call("CreateRealm", realm_doc("demo"))
        self.assertEqual(err(reply), ("CreateRealm", "failed to create realm: no namespaces today"))
        self.assert_nothing_logged()
