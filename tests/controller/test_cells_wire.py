"""Cell and container RPCs through a real socket, in the shapes the Go client sends.

The daemon's own handler table serves a listener on a temporary socket; one
blocking connection (in a thread) carries a sequence of requests with
increasing ids, as one ``kuke`` command does. Requests are the whole
zero-valued documents the Go client encodes (``"labels":{}``,
``"containers":[]``, ``"status":{"state":"Pending",…}``, empty arrays in
container specs, wire-api §5.4/§5.10). Replies are checked byte for byte
where the specification pins them: key order, ``null`` versus ``[]``, the
zero-valued result that accompanies an ``Err``, error kinds and messages,
result booleans, the ``containerdId`` rule (§6 item 9) and the hard-coded
``Ready`` of DeleteContainer/PurgeContainer (§6 item 13). Host-dependent
values (timestamps, subtree controllers, the run path and bridge hash) are
normalised before comparing with the §5.4 example. The runtime is the fake
one, configured with the reference's defaults.
"""

from __future__ import annotations

import json
import os
import re
import socket

from twisted.internet import reactor, threads
from twisted.trial.unittest import TestCase

from kukeond.base import naming
from kukeond.daemon import build_handlers
from kukeond.listener import ListenerService
from kukeond.rpc.dispatch import Dispatcher
from kukeond.rpc.protocol import KukeonFactory
from tests.controller.resource_calls import Caller
from tests.support.runtime import fake_runtime, load_busybox, short_tmpdir

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "api", "fixtures")
ZERO = "0001-01-01T00:00:00Z"
BUSYBOX = "docker.io/library/busybox:latest"
ZERO_STATUS = {
    "name": "",
    "id": "",
    "state": "Pending",
    "restartCount": 0,
    "restartTime": ZERO,
    "startTime": ZERO,
    "finishTime": ZERO,
    "exitCode": 0,
    "exitSignal": "",
}


def fixture(name: str) -> list[dict]:
    with open(os.path.join(FIXTURES, name)) as fh:
        return json.load(fh)


def zero_doc(kind: str) -> str:
    """The §7 encoding of a zero-valued ``CellDoc`` / ``ContainerDoc``."""
    return next(e["json"] for e in fixture("zero_values.json") if e["type"] == kind)


def fill(template: str, value: str) -> str:
    """``template`` with its ``@@`` replaced by ``value``."""
    return template.replace("@@", value)


def wire_example(section: str, method: str) -> dict:
    return next(
        e
        for e in fixture("wire_examples.json")
        if e["section"] == section and f'"KukeonV1.{method}"' in e["request"]
    )


def cell_request(name: str, containers: list | None = None, **extra) -> dict:
    """A cell command's params as the Go client encodes them."""
    doc = {
        "apiVersion": "",
        "kind": "",
        "metadata": {"name": name, "labels": {}},
        "spec": {
            "id": "",
            "realmId": "default",
            "spaceId": "default",
            "stackId": "default",
            "containers": containers or [],
        },
        "status": {
            "state": "Pending",
            "cgroupPath": "",
            "network": {},
            "containers": None,
            "createdAt": ZERO,
            "updatedAt": ZERO,
            "readyAt": ZERO,
        },
    }
    return {"Doc": doc, **extra}


def container_spec(cid: str = "", cell: str = "web", image: str = "", **fields) -> dict:
    """A ContainerSpec as the Go client encodes it (every non-omitempty key, empty arrays)."""
    spec = {
        "id": cid,
        "realmId": "default",
        "spaceId": "default",
        "stackId": "default",
        "cellId": cell,
        "image": image,
        "command": "",
        "args": [],
        "env": [],
        "ports": [],
        "volumes": [],
        "networks": [],
        "networksAliases": [],
        "privileged": False,
        "restartPolicy": "",
    }
    spec.update(fields)
    return spec


def container_request(name: str, cell: str = "web", labels: dict | None = None, **fields) -> dict:
    """A container command's params as the Go client encodes them."""
    return {
        "Doc": {
            "apiVersion": "",
            "kind": "",
            "metadata": {"name": name, "labels": {} if labels is None else labels},
            "spec": container_spec(cell=cell, **fields),
            "status": dict(ZERO_STATUS),
        }
    }


class Connection:
    """One blocking client connection; ``call`` is run in a thread."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buffer = b""
        self.next_id = 0

    def send_line(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("daemon closed the connection")
            self.buffer += chunk
        reply, self.buffer = self.buffer.split(b"\n", 1)
        return reply.decode()

    def call(self, method: str, params: dict) -> str:
        line = json.dumps(
            {"method": f"KukeonV1.{method}", "params": [params], "id": self.next_id},
            separators=(",", ":"),
        )
        self.next_id += 1
        return self.send_line(line)


class CellWireTests(TestCase):
    async def setUp(self):
        self.rt = fake_runtime(self)
        self.rt.config.namespace_suffix = "kukeon.io"
        self.rt.config.cgroup_root = "/kukeon"
        self.run = self.rt.run_path
        caller = Caller(self.rt)
        await caller.create_realm("default")
        await caller.create_space("default", "default")
        await caller.create_stack("default", "default", "default")
        await load_busybox(self.rt, "default")
        sock_dir = short_tmpdir(self, "kc-")
        path = os.path.join(sock_dir, "kukeond.sock")
        factory = KukeonFactory(Dispatcher(build_handlers(self.rt)))
        svc = ListenerService(reactor, factory, path, os.path.join(sock_dir, "pid"))
        svc.privilegedStartService()
        svc.startService()
        self.addCleanup(svc.stopService)
        self.conn = await threads.deferToThread(Connection, path)
        self.addCleanup(self.conn.sock.close)

    async def raw(self, method: str, params: dict) -> str:
        """The reply line (``{"id":…,"result":…,"error":null}``) as bytes on the wire."""
        return await threads.deferToThread(self.conn.call, method, params)

    async def result(self, method: str, params: dict) -> tuple[str, dict]:
        """``(raw result text, decoded result)``; protocol errors fail the test."""
        line = await self.raw(method, params)
        match = re.fullmatch(r'\{"id":\d+,"result":(.*),"error":null\}', line)
        self.assertIsNotNone(match, line)
        return match.group(1), json.loads(match.group(1))

    async def ok(self, method: str, params: dict) -> dict:
        _, reply = await self.result(method, params)
        self.assertIsNone(reply["Err"], reply["Err"])
        return reply

    async def failed(
        self, method: str, params: dict, expected_text: str, kind: str, message: str
    ) -> None:
        """The reply is exactly ``expected_text`` (zero values) with that Err."""
        text, _ = await self.result(method, params)
        err = json.dumps({"Kind": kind, "Message": message}, separators=(",", ":"))
        self.assertEqual(text, expected_text.replace("@ERR@", err))

    def cell_error(self, result_fields: str) -> str:
        return '{"Result":{"Cell":' + zero_doc("CellDoc") + f',{result_fields}}},"Err":@ERR@}}'

    def container_error(self, result_fields: str) -> str:
        return (
            '{"Result":{"Container":'
            + zero_doc("ContainerDoc")
            + f',{result_fields}}},"Err":@ERR@}}'
        )

    def normalised(self, text: str) -> str:
        """Host-dependent values replaced by those of the §5.4 example."""
        text = re.sub(r'"(createdAt|updatedAt|readyAt)":"[^"]*"', rf'"\1":"{ZERO}"', text)
        text = re.sub(r'"subtreeControllers":\[[^\]]*\],', "", text)
        text = text.replace(naming.bridge_name("default", "default"), "k-1a2b3c4d")
        return text.replace(self.run, "/opt/kukeon")

    def path(self, *parts: str) -> str:
        return os.path.join(self.run, "data", "default", "default", "default", *parts)

    def stage_kuketty(self) -> None:
        binary = naming.kuketty_binary_path(self.run)
        os.makedirs(os.path.dirname(binary), exist_ok=True)
        with open(binary, "w") as fh:
            fh.write("#!/bin/sh\n")
        os.chmod(binary, 0o755)

    # --- cells -----------------------------------------------------------------------

    async def test_create_cell_5_4_byte_exact(self):
        example = wire_example("5.4", "CreateCell")
        line = await threads.deferToThread(self.conn.send_line, example["request"])
        self.assertEqual(self.normalised(line), example["response"])

    async def test_create_cell_with_containers(self):
        app = container_spec("app", cell="", image=BUSYBOX, command="sleep", args=["60"])
        reply = await self.ok("CreateCell", cell_request("web", [app]))
        result = reply["Result"]
        self.assertEqual(
            result["Containers"],
            [{"Name": "app", "ExistsPre": False, "ExistsPost": True, "Created": True}],
        )
        self.assertEqual(
            [
                (c["id"], c.get("root", False), c["cellId"], c["containerdId"])
                for c in result["Cell"]["spec"]["containers"]
            ],
            [
                ("app", False, "web", "default_default_web_app"),
                ("root", True, "web", "default_default_web_root"),
            ],
        )
        self.assertEqual(
            [(s["id"], s["state"]) for s in result["Cell"]["status"]["containers"]],
            [("app", "Ready"), ("root", "Ready")],
        )
        self.assertEqual(
            {k: v for k, v in result.items() if k not in ("Cell", "Containers")},
            {
                "MetadataExistsPre": False,
                "MetadataExistsPost": True,
                "CgroupExistsPre": False,
                "CgroupExistsPost": True,
                "CgroupCreated": True,
                "RootContainerExistsPre": False,
                "RootContainerExistsPost": True,
                "RootContainerCreated": True,
                "StartedPre": False,
                "StartedPost": True,
                "Started": True,
                "Created": True,
            },
        )
        # Create is not update: a container only in the request is not added.
        extra = container_spec("extra", cell="", image=BUSYBOX)
        again = (await self.ok("CreateCell", cell_request("web", [app, extra])))["Result"]
        self.assertEqual(
            again["Containers"],
            [
                {"Name": "app", "ExistsPre": True, "ExistsPost": True, "Created": False},
                {"Name": "extra", "ExistsPre": False, "ExistsPost": False, "Created": False},
            ],
        )
        self.assertEqual(
            (
                again["Created"],
                again["MetadataExistsPre"],
                again["CgroupCreated"],
                again["RootContainerCreated"],
                again["StartedPre"],
                again["Started"],
            ),
            (False, True, False, False, False, True),
        )
        self.assertEqual([c["id"] for c in again["Cell"]["spec"]["containers"]], ["app", "root"])

    async def test_create_cell_request_errors(self):
        fields = (
            '"MetadataExistsPre":false,"MetadataExistsPost":false,'
            '"CgroupExistsPre":false,"CgroupExistsPost":false,"CgroupCreated":false,'
            '"RootContainerExistsPre":false,"RootContainerExistsPost":false,'
            '"RootContainerCreated":false,"StartedPre":false,"StartedPost":false,'
            '"Started":false,"Created":false,"Containers":null'
        )
        expected = self.cell_error(fields)
        await self.failed(
            "CreateCell", cell_request(""), expected, "CellNameRequired", "cell name is required"
        )
        no_stack = cell_request("web")
        no_stack["Doc"]["spec"]["stackId"] = " "
        await self.failed(
            "CreateCell", no_stack, expected, "StackNameRequired", "stack name is required"
        )
        await self.failed(
            "CreateCell",
            cell_request("web", [container_spec("", cell="")]),
            expected,
            "ContainerNameRequired",
            "container name is required",
        )
        await self.failed(
            "CreateCell",
            cell_request("bad_name"),
            expected,
            "Unknown",
            'name is invalid: cell name "bad_name" contains disallowed character '
            "(must not contain '_' or '/')",
        )
        wrong = cell_request("web")
        wrong["Doc"]["apiVersion"] = "v2"
        await self.failed(
            "CreateCell",
            wrong,
            expected,
            "ConversionFailed",
            "conversion failed: unsupported apiVersion for Cell: v2",
        )
        two_roots = cell_request(
            "web",
            [
                container_spec("a", cell="", image=BUSYBOX, root=True),
                container_spec("b", cell="", image=BUSYBOX, root=True),
            ],
        )
        text, reply = await self.result("CreateCell", two_roots)
        self.assertEqual(reply["Err"]["Kind"], "ConversionFailed")
        self.assertTrue(reply["Err"]["Message"].startswith("conversion failed: "))
        self.assertEqual(
            text, expected.replace("@ERR@", json.dumps(reply["Err"], separators=(",", ":")))
        )
        self.assertEqual(
            (await self.ok("ListCells", {"RealmName": "", "SpaceName": "", "StackName": ""}))[
                "Cells"
            ],
            [],
        )

    async def test_get_and_list_cells(self):
        missing_text, missing = await self.result("GetCell", cell_request("web"))
        self.assertIsNone(missing["Err"])
        self.assertEqual(
            {k: v for k, v in missing["Result"].items() if k != "Cell"},
            {"MetadataExists": False, "CgroupExists": False, "RootContainerExists": False},
        )
        self.assertEqual(missing["Result"]["Cell"]["spec"]["containers"], [])
        await self.ok("CreateCell", cell_request("web"))
        await self.ok("CreateCell", cell_request("db"))
        got = (await self.ok("GetCell", cell_request("web")))["Result"]
        self.assertEqual(
            (got["MetadataExists"], got["CgroupExists"], got["RootContainerExists"]),
            (True, True, True),
        )
        self.assertEqual(got["Cell"]["status"]["containers"][0]["state"], "Ready")
        self.assertNotEqual(got["Cell"]["status"]["createdAt"], ZERO)
        listed = (
            await self.ok(
                "ListCells",
                {"RealmName": "default", "SpaceName": "default", "StackName": "default"},
            )
        )["Cells"]
        self.assertEqual([c["metadata"]["name"] for c in listed], ["db", "web"])
        self.assertEqual(listed[1], got["Cell"])
        text, _ = await self.result(
            "ListCells", {"RealmName": "other", "SpaceName": "", "StackName": ""}
        )
        self.assertEqual(text, '{"Cells":[],"Err":null}')
        no_realm = cell_request("web")
        no_realm["Doc"]["spec"]["realmId"] = ""
        fields = '"MetadataExists":false,"CgroupExists":false,"RootContainerExists":false'
        await self.failed(
            "GetCell",
            no_realm,
            self.cell_error(fields),
            "RealmNameRequired",
            "realm name is required",
        )

    async def test_start_stop_kill_cell(self):
        await self.ok("CreateCell", cell_request("web"))
        refused = self.cell_error('"Started":false')
        await self.failed(
            "StartCell",
            cell_request("web"),
            refused,
            "Unknown",
            'cell "web" has running containers and must first be stopped',
        )
        stopped = (await self.ok("StopCell", cell_request("web")))["Result"]
        self.assertTrue(stopped["Stopped"])
        self.assertEqual(stopped["Cell"]["status"]["state"], "Stopped")
        self.assertEqual(stopped["Cell"]["status"]["containers"][0]["state"], "Stopped")
        started = (await self.ok("StartCell", cell_request("web")))["Result"]
        self.assertTrue(started["Started"])
        self.assertEqual(
            (started["Cell"]["status"]["state"], started["Cell"]["status"]["readyObserved"]),
            ("Ready", True),
        )
        killed = (await self.ok("KillCell", cell_request("web")))["Result"]
        self.assertEqual((killed["Killed"], killed["Cell"]["status"]["state"]), (True, "Stopped"))
        missing = 'cell "nope" not found in realm "default", space "default", stack "default"'
        for method, field in (
            ("StartCell", "Started"),
            ("StopCell", "Stopped"),
            ("KillCell", "Killed"),
        ):
            await self.failed(
                method,
                cell_request("nope"),
                self.cell_error(f'"{field}":false'),
                "Unknown",
                missing,
            )

    async def test_failed_cell_is_reported_and_restartable(self):
        app = container_spec("app", cell="", image="docker.io/library/absent:1")
        _, reply = await self.result("CreateCell", cell_request("web", [app]))
        # The chain holds CreateCell and ImageNotFound; the more specific kind wins.
        self.assertEqual(reply["Err"]["Kind"], "ImageNotFound")
        self.assertTrue(
            reply["Err"]["Message"].startswith(
                "failed to create cell: image not found: docker.io/library/absent:1 "
            )
        )
        self.assertFalse(reply["Result"]["Created"])
        cell = (await self.ok("GetCell", cell_request("web")))["Result"]["Cell"]
        self.assertEqual(
            (cell["status"]["state"], cell["status"]["reason"]), ("Failed", "CreateCellFailed")
        )
        self.assertIn("docker.io/library/absent:1", cell["status"]["message"])
        self.assertNotIn("\n", cell["status"]["message"])
        self.assertEqual([s["state"] for s in cell["status"]["containers"]], ["Stopped", "Stopped"])
        ns = naming.realm_namespace("default", "kukeon.io")
        self.assertEqual(await self.rt.containerd.list_containers(ns), [])
        # A Failed cell has no live containers, so a plain StartCell is allowed.
        _, again = await self.result("StartCell", cell_request("web"))
        self.assertEqual(again["Err"]["Kind"], reply["Err"]["Kind"])
        cell = (await self.ok("GetCell", cell_request("web")))["Result"]["Cell"]
        self.assertEqual(
            (cell["status"]["state"], cell["status"]["reason"]), ("Failed", "StartCellFailed")
        )

    async def test_delete_and_purge_cell(self):
        app = container_spec("app", cell="", image=BUSYBOX)
        await self.ok("CreateCell", cell_request("web", [app]))
        await self.ok("CreateCell", cell_request("db"))
        deleted = (await self.ok("DeleteCell", cell_request("web")))["Result"]
        self.assertEqual(
            {k: v for k, v in deleted.items() if k != "Cell"},
            {"ContainersDeleted": True, "CgroupDeleted": True, "MetadataDeleted": True},
        )
        self.assertEqual(deleted["Cell"]["metadata"]["name"], "web")
        self.assertFalse(os.path.exists(self.path("web")))
        missing = 'cell "web" not found in realm "default", space "default", stack "default"'
        await self.failed(
            "DeleteCell",
            cell_request("web"),
            self.cell_error(
                '"ContainersDeleted":false,"CgroupDeleted":false,"MetadataDeleted":false'
            ),
            "Unknown",
            missing,
        )
        text, purged = await self.result("PurgeCell", cell_request("db", Force=True, Cascade=False))
        self.assertIsNone(purged["Err"])
        self.assertTrue(
            text.endswith(
                ',"ContainersDeleted":true,"CgroupDeleted":true,"MetadataDeleted":true,'
                '"PurgeSucceeded":true,"Force":true,"Cascade":false,'
                '"Deleted":["containers","cgroup","metadata"],'
                '"Purged":["cni-resources","orphaned-containers","all-metadata"]},"Err":null}'
            )
        )
        self.assertFalse(os.path.exists(self.path("db")))
        await self.failed(
            "PurgeCell",
            cell_request("db", Force=False, Cascade=True),
            self.cell_error(
                '"ContainersDeleted":false,"CgroupDeleted":false,'
                '"MetadataDeleted":false,"PurgeSucceeded":false,"Force":false,'
                '"Cascade":false,"Deleted":null,"Purged":null'
            ),
            "Unknown",
            missing.replace('"web"', '"db"'),
        )

    # --- containers ---------------------------------------------------------------------

    async def running_cell(self) -> None:
        self.stage_kuketty()
        containers = [
            container_spec("app", cell="", image=BUSYBOX, attachable=True),
            container_spec("job", cell="", image=BUSYBOX, command="sleep", args=["60"]),
        ]
        await self.ok("CreateCell", cell_request("web", containers))

    def container_reply(self, name: str, spec: dict, state: str, labels="{}") -> str:
        """A ContainerDoc as the daemon assembles it (no ``containerdId``)."""
        spec = {k: v for k, v in spec.items() if k != "containerdId"}
        status = dict(ZERO_STATUS, name=name, id=name, state=state)
        return json.dumps(
            {
                "apiVersion": "v1beta1",
                "kind": "Container",
                "metadata": {"name": name, "labels": json.loads(labels)},
                "spec": spec,
                "status": status,
            },
            separators=(",", ":"),
        )

    async def stored_spec(self, name: str) -> dict:
        """The container's spec as ListContainers returns it (with ``containerdId``)."""
        listed = (
            await self.ok(
                "ListContainers",
                {
                    "RealmName": "default",
                    "SpaceName": "default",
                    "StackName": "default",
                    "CellName": "web",
                },
            )
        )["Containers"]
        return next(c for c in listed if c["id"] == name)

    async def test_list_get_and_containerd_id_rule(self):
        await self.running_cell()
        text, _ = await self.result(
            "ListContainers",
            {
                "RealmName": "default",
                "SpaceName": "default",
                "StackName": "default",
                "CellName": "web",
            },
        )
        listed = json.loads(text)["Containers"]
        self.assertEqual(
            [(c["id"], c.get("root", False), c["containerdId"]) for c in listed],
            [
                ("app", False, "default_default_web_app"),
                ("job", False, "default_default_web_job"),
                ("root", True, "default_default_web_root"),
            ],
        )
        text, _ = await self.result(
            "ListContainers",
            {
                "RealmName": "default",
                "SpaceName": "default",
                "StackName": "default",
                "CellName": "nope",
            },
        )
        self.assertEqual(text, '{"Containers":[],"Err":null}')
        text, _ = await self.result("GetContainer", container_request("job"))
        expected = self.container_reply("job", listed[1], "Ready")
        self.assertEqual(
            text,
            fill(
                '{"Result":{"Container":@@,"CellMetadataExists":true,'
                '"ContainerExists":true},"Err":null}',
                expected,
            ),
        )
        self.assertNotIn("containerdId", text)
        fields = '"CellMetadataExists":false,"ContainerExists":false'
        await self.failed(
            "GetContainer",
            container_request("zz"),
            self.container_error(fields),
            "Unknown",
            f'container "zz" not found in cell "web" at run-path "{self.run}"',
        )
        await self.failed(
            "GetContainer",
            container_request("zz", cell="qq"),
            self.container_error(fields),
            "Unknown",
            'failed to get cell "qq": cell not found',
        )
        # Get does not fall back to spec.id.
        await self.failed(
            "GetContainer",
            container_request("", cid="job"),
            self.container_error(fields),
            "ContainerNameRequired",
            "container name is required",
        )

    async def test_create_container(self):
        await self.running_cell()
        request = container_request(
            "extra",
            image=BUSYBOX,
            command="sleep",
            args=["5"],
            env=["DROPPED=1"],
            ports=["80"],
            privileged=True,
            workingDir="/tmp",
        )
        text, reply = await self.result("CreateContainer", request)
        self.assertIsNone(reply["Err"])
        stored = await self.stored_spec("extra")
        self.assertEqual(
            (stored["env"], stored["ports"], stored["privileged"], stored.get("workingDir")),
            (None, None, False, None),
        )
        self.assertEqual(
            (stored["command"], stored["args"], stored["containerdId"]),
            ("sleep", ["5"], "default_default_web_extra"),
        )
        self.assertEqual(
            text,
            fill(
                '{"Result":{"Container":@@,"CellMetadataExistsPre":true,'
                '"CellMetadataExistsPost":true,"ContainerExistsPre":false,'
                '"ContainerExistsPost":true,"ContainerCreated":true,'
                '"Started":true},"Err":null}',
                self.container_reply("extra", stored, "Ready"),
            ),
        )
        again = (await self.ok("CreateContainer", request))["Result"]
        self.assertEqual(
            (again["ContainerExistsPre"], again["ContainerCreated"], again["Started"]),
            (True, False, True),
        )
        # The name falls back to spec.id on create.
        by_id = (
            await self.ok("CreateContainer", container_request("", cid="other", image=BUSYBOX))
        )["Result"]
        self.assertEqual(
            (by_id["Container"]["metadata"]["name"], by_id["Container"]["spec"]["id"]),
            ("other", "other"),
        )
        fields = (
            '"CellMetadataExistsPre":false,"CellMetadataExistsPost":false,'
            '"ContainerExistsPre":false,"ContainerExistsPost":false,'
            '"ContainerCreated":false,"Started":false'
        )
        await self.failed(
            "CreateContainer",
            container_request("x"),
            self.container_error(fields),
            "Unknown",
            "invalid image reference",
        )
        await self.failed(
            "CreateContainer",
            container_request("x", cell="qq", image=BUSYBOX),
            self.container_error(fields),
            "Unknown",
            'cell "qq" not found',
        )
        await self.failed(
            "CreateContainer",
            container_request("x", cell="", image=BUSYBOX),
            self.container_error(fields),
            "CellNameRequired",
            "cell name is required",
        )
        await self.failed(
            "CreateContainer",
            container_request("", image=BUSYBOX),
            self.container_error(fields),
            "ContainerNameRequired",
            "container name is required",
        )

    async def test_start_stop_kill_container(self):
        await self.running_cell()
        job = await self.stored_spec("job")
        text, _ = await self.result("StopContainer", container_request("job"))
        self.assertEqual(
            text,
            fill(
                '{"Result":{"Container":@@,"Stopped":true},"Err":null}',
                self.container_reply("job", job, "Stopped"),
            ),
        )
        text, _ = await self.result("StartContainer", container_request("job"))
        self.assertEqual(
            text,
            fill(
                '{"Result":{"Container":@@,"Started":true},"Err":null}',
                self.container_reply("job", job, "Ready"),
            ),
        )
        text, _ = await self.result("KillContainer", container_request("", cid="job"))
        self.assertEqual(
            text,
            fill(
                '{"Result":{"Container":@@,"Killed":true},"Err":null}',
                self.container_reply("job", job, "Stopped"),
            ),
        )
        # Stopping a name that is not in the spec echoes the request document.
        ghost = container_request("ghost")
        _, reply = await self.result("StopContainer", ghost)
        echoed = reply["Result"]["Container"]
        self.assertEqual(
            (echoed["metadata"], echoed["spec"], echoed["status"]),
            (ghost["Doc"]["metadata"], ghost["Doc"]["spec"], ghost["Doc"]["status"]),
        )
        for method, field, verb in (
            ("StartContainer", "Started", "start"),
            ("KillContainer", "Killed", "kill"),
        ):
            await self.failed(
                method,
                container_request("ghost"),
                self.container_error(f'"{field}":false'),
                "Unknown",
                'container "ghost" not found in cell "web"',
            )
            past = {"start": "started", "kill": "killed"}[verb]
            await self.failed(
                method,
                container_request("root"),
                self.container_error(f'"{field}":false'),
                "Unknown",
                f"root container cannot be {past} directly, {verb} the cell "
                f"instead using 'kuke {verb} cell web'",
            )
        await self.failed(
            "StopContainer",
            container_request("job", cell="qq"),
            self.container_error('"Stopped":false'),
            "Unknown",
            'cell "qq" not found in realm "default", space "default", stack "default"',
        )

    async def test_delete_and_purge_container(self):
        await self.running_cell()
        job = await self.stored_spec("job")
        text, _ = await self.result("DeleteContainer", container_request("job"))
        self.assertEqual(
            text,
            fill(
                '{"Result":{"Container":@@,"CellMetadataExists":true,'
                '"ContainerExists":true,"Deleted":["container","task"]},'
                '"Err":null}',
                self.container_reply("job", job, "Ready"),
            ),
        )
        fields = '"CellMetadataExists":false,"ContainerExists":false,"Deleted":null'
        await self.failed(
            "DeleteContainer",
            container_request("job"),
            self.container_error(fields),
            "Unknown",
            'container "job" not found in cell "web"',
        )
        await self.failed(
            "DeleteContainer",
            container_request("root"),
            self.container_error(fields),
            "Unknown",
            "root container cannot be deleted directly, delete the cell "
            "instead using 'kuke delete cell web'",
        )
        # A hand-written request without labels gets them echoed as null.
        app = await self.stored_spec("app")
        request = container_request("app")
        request["Doc"]["metadata"]["labels"] = None
        text, _ = await self.result("PurgeContainer", request)
        self.assertEqual(
            text,
            fill(
                '{"Result":{"Container":@@,"CellMetadataExists":true,'
                '"ContainerExists":true,"Deleted":["container","task"],'
                '"Purged":["cni-resources","ipam-allocation","cache-entries"]},'
                '"Err":null}',
                self.container_reply("app", app, "Ready", labels="null"),
            ),
        )
        remaining = (
            await self.ok(
                "ListContainers",
                {"RealmName": "", "SpaceName": "", "StackName": "", "CellName": ""},
            )
        )["Containers"]
        self.assertEqual([c["id"] for c in remaining], ["root"])
        _, ghost = await self.result("PurgeContainer", container_request("", cid="ghost"))
        self.assertIsNone(ghost["Err"])
        self.assertEqual(
            (
                ghost["Result"]["ContainerExists"],
                ghost["Result"]["Deleted"],
                ghost["Result"]["Container"]["status"]["state"],
            ),
            (False, None, "Ready"),
        )
        await self.failed(
            "PurgeContainer",
            container_request("job", cell="qq"),
            self.container_error(
                '"CellMetadataExists":false,"ContainerExists":false,"Deleted":null,"Purged":null'
            ),
            "Unknown",
            'cell "qq" not found in realm "default", space "default", stack "default"',
        )

    async def test_log_and_attach(self):
        await self.running_cell()
        text, _ = await self.result("LogContainer", container_request("job"))
        self.assertEqual(
            text,
            fill(
                '{"Result":{"HostCapturePath":"","HostLogPath":"@@"},"Err":null}',
                self.path("web", "job", "log"),
            ),
        )
        text, _ = await self.result("LogContainer", container_request("app"))
        self.assertEqual(
            text,
            fill(
                '{"Result":{"HostCapturePath":"@@","HostLogPath":""},"Err":null}',
                self.path("web", "app", "tty", "capture"),
            ),
        )
        await self.failed(
            "LogContainer",
            container_request("ghost"),
            '{"Result":{"HostCapturePath":"","HostLogPath":""},"Err":@ERR@}',
            "Unknown",
            f'container "ghost" not found in cell "web" at run-path "{self.run}"',
        )
        example = wire_example("5.10", "AttachContainer")
        line = await threads.deferToThread(self.conn.send_line, example["request"])
        socket_path = self.path("web", "app", "tty", "socket")
        self.assertEqual(
            line,
            fill(
                '{"id":9,"result":{"Result":{"HostSocketPath":"@@"},"Err":null},"error":null}',
                socket_path,
            ),
        )
        await self.failed(
            "AttachContainer",
            container_request("job"),
            '{"Result":{"HostSocketPath":""},"Err":@ERR@}',
            "AttachNotSupported",
            "container is not attachable; recreate with attachable=true",
        )
