"""Container RPCs on the fake runtime."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from kukeond import errors
from kukeond.api.v1beta1 import READY, STOPPED
from kukeond.base import naming
from tests.controller.cellsupport import Calls, cell_doc, container_doc, make_parents, workload
from tests.support.runtime import fake_runtime

BUSYBOX = "docker.io/library/busybox:latest"


class ContainerTests(TestCase):
    async def setUp(self):
        self.rt = fake_runtime(self)
        self.call = Calls(self.rt)
        self.ns = await make_parents(self.rt)
        await self.call("CreateCell", Doc=cell_doc("c1", [workload("web", "sleep 9")]))

    def tasks(self):
        return {c: t["status"] for c, t in self.rt.containerd._ns(self.ns).tasks.items()}

    async def fails(self, method, message, kind="Unknown", **fields):
        with self.assertRaises(errors.KukeonError) as caught:
            await self.call(method, **fields)
        self.assertEqual((caught.exception.kind, str(caught.exception)), (kind, message))

    async def test_create_keeps_only_supported_fields_and_starts(self):
        doc = container_doc(
            "job",
            image=BUSYBOX,
            command="sh",
            args=["-c", "true"],
            env=["DROPPED=1"],
            privileged=True,
        )
        result = (await self.call("CreateContainer", Doc=doc)).Result
        self.assertTrue(result.ContainerCreated and result.Started)
        self.assertEqual(result.Container.status.state, READY)
        self.assertEqual(result.Container.spec.containerdId, "")
        self.assertIsNone(result.Container.spec.env)
        self.assertFalse(result.Container.spec.privileged)
        self.assertEqual(self.tasks()["s1_k1_c1_job"], "running")
        listed = await self.call(
            "ListContainers", RealmName="r1", SpaceName="s1", StackName="k1", CellName="c1"
        )
        self.assertEqual(
            [(c.id, c.root) for c in listed.Containers],
            [("web", False), ("root", True), ("job", False)],
        )
        await self.fails(
            "CreateContainer", "invalid image reference", Doc=container_doc("x", image="")
        )
        await self.fails(
            "CreateContainer",
            'cell "zz" not found',
            Doc=container_doc("x", cell="zz", image=BUSYBOX),
        )

    async def test_get_stop_start_kill(self):
        got = (await self.call("GetContainer", Doc=container_doc("web"))).Result
        self.assertEqual((got.Container.status.state, got.ContainerExists), (READY, True))
        self.assertEqual(got.Container.metadata.labels, {})
        stopped = (await self.call("StopContainer", Doc=container_doc("web"))).Result
        self.assertEqual(stopped.Container.status.state, STOPPED)
        self.assertNotIn("s1_k1_c1_web", self.tasks())
        self.assertEqual(self.tasks()["s1_k1_c1_root"], "running")
        await self.call("StartContainer", Doc=container_doc("web"))
        self.assertEqual(self.tasks()["s1_k1_c1_web"], "running")
        killed = (await self.call("KillContainer", Doc=container_doc("web"))).Result
        self.assertTrue(killed.Killed)
        self.assertNotIn("s1_k1_c1_web", self.tasks())

    async def test_errors(self):
        await self.fails(
            "GetContainer",
            'failed to get cell "zz": cell not found',
            Doc=container_doc("web", cell="zz"),
        )
        await self.fails(
            "GetContainer",
            f'container "nope" not found in cell "c1" at run-path "{self.rt.run_path}"',
            Doc=container_doc("nope"),
        )
        await self.fails(
            "StartContainer",
            "root container cannot be started directly, start the cell instead "
            "using 'kuke start cell c1'",
            Doc=container_doc("root"),
        )
        await self.fails(
            "DeleteContainer",
            "root container cannot be deleted directly, delete the cell instead "
            "using 'kuke delete cell c1'",
            Doc=container_doc("root"),
        )
        await self.fails(
            "KillContainer", 'container "nope" not found in cell "c1"', Doc=container_doc("nope")
        )
        await self.fails(
            "GetContainer",
            "container name is required",
            "ContainerNameRequired",
            Doc=container_doc(""),
        )
        await self.fails(
            "AttachContainer",
            "container is not attachable; recreate with attachable=true",
            "AttachNotSupported",
            Doc=container_doc("web"),
        )

    async def test_start_needs_a_running_root(self):
        await self.call("StopCell", Doc=cell_doc("c1"))
        await self.fails(
            "StartContainer",
            'root container of cell "c1" is not running; start the cell first '
            "using 'kuke start cell c1'",
            Doc=container_doc("web"),
        )

    async def test_delete_and_purge(self):
        deleted = (await self.call("DeleteContainer", Doc=container_doc("web"))).Result
        self.assertEqual(deleted.Deleted, ["container", "task"])
        self.assertEqual(deleted.Container.status.state, READY)
        self.assertIsNone(deleted.Container.metadata.labels)
        cell = self.rt.store.get(("r1", "s1", "k1", "c1"))
        self.assertEqual([c["id"] for c in cell["spec"]["containers"]], ["root"])
        self.assertNotIn("s1_k1_c1_web", self.rt.containerd._ns(self.ns).containers)
        await self.call(
            "CreateContainer", Doc=container_doc("job", image=BUSYBOX, command="sleep", args=["9"])
        )
        purged = (await self.call("PurgeContainer", Doc=container_doc("job"))).Result
        self.assertEqual(purged.Purged, ["cni-resources", "ipam-allocation", "cache-entries"])
        self.assertNotIn("s1_k1_c1_job", self.rt.containerd._ns(self.ns).containers)

    async def test_log_and_attach_paths(self):
        names = ("r1", "s1", "k1", "c1", "web")
        logs = (await self.call("LogContainer", Doc=container_doc("web"))).Result
        self.assertEqual(
            (logs.HostLogPath, logs.HostCapturePath),
            (naming.container_log_path(self.rt.run_path, *names), ""),
        )
        cell = self.rt.store.get(("r1", "s1", "k1", "c1"))
        cell["spec"]["containers"][0]["attachable"] = True
        await self.rt.store.put(("r1", "s1", "k1", "c1"), cell)
        logs = (await self.call("LogContainer", Doc=container_doc("web"))).Result
        self.assertEqual(
            (logs.HostLogPath, logs.HostCapturePath),
            ("", naming.tty_capture_path(self.rt.run_path, *names)),
        )
        attach = (await self.call("AttachContainer", Doc=container_doc("web"))).Result
        self.assertEqual(attach.HostSocketPath, naming.tty_socket_path(self.rt.run_path, *names))
