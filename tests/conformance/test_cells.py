"""Conformance of cells, containers, apply, run, log and refresh: the real kuke on both daemons.

Every step runs on the Go kukeond and on ours (see
``tests.conformance.harness``); a difference fails the test unless
``doc/compatibility.md`` lists it. Workloads, root containers included, exit
on SIGTERM so that the reference's stop and delete do not wait out its grace
period.
"""

from __future__ import annotations

import json

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from tests.conformance.harness import Pair
from tests.support.containerd import get_containerd2_socket
from tests.support.image import busybox_image

IMAGE = "docker.io/library/busybox:latest"
LOOP = "trap 'exit 0' TERM; while :; do sleep 0.2; done"
SAY = "echo hello-from-w; trap 'exit 0' TERM; while :; do sleep 0.2; done"
R, S, K = "cf", "s", "k"
WHERE = ("--realm", R, "--space", S, "--stack", K)


def container(cid: str, script: str = LOOP, **extra) -> dict:
    return {"id": cid, "image": IMAGE, "command": "sh", "args": ["-c", script], **extra}


def cell(name: str, *containers: dict, **spec) -> dict:
    """A Cell document whose root container exits on SIGTERM."""
    root = container("root", root=True)
    return {
        "apiVersion": "v1beta1",
        "kind": "Cell",
        "metadata": {"name": name},
        "spec": {
            "id": name,
            "realmId": R,
            "spaceId": S,
            "stackId": K,
            "rootContainerId": "root",
            "containers": [root, *containers],
            **spec,
        },
    }


def stack(name: str) -> dict:
    return {
        "apiVersion": "v1beta1",
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": {"id": name, "realmId": R, "spaceId": S},
    }


def documents(*docs: dict | str) -> str:
    """A multi-document YAML stream (JSON documents are YAML)."""
    return "---\n".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in docs)


class ConformanceTestCase(TestCase):
    timeout = 300

    def setUp(self):
        self.pair = Pair(self, get_containerd2_socket())

    def ok(self, name, *args, **kwargs):
        """A step the reference must succeed at (the scenario relies on it)."""
        ref, _ours = self.pair.step(name, *args, **kwargs)
        self.assertEqual(ref.code, 0, f"reference failed {name}: {ref.stdout} {ref.stderr}")
        return ref

    def hierarchy(self):
        self.ok("create realm", "create", "realm", R)
        self.ok("create space", "create", "space", S, "--realm", R)
        self.ok("create stack", "create", "stack", K, "--realm", R, "--space", S)
        self.ok("image load", "image", "load", busybox_image().oci_tar, "--realm", R)


class CellConformanceTests(ConformanceTestCase):
    def test_lifecycle(self):
        return threads.deferToThread(self.lifecycle)

    def lifecycle(self):
        p = self.pair
        self.hierarchy()
        self.ok(
            "apply a cell",
            "apply",
            "-f",
            "-",
            input=documents(cell("c1", container("w", SAY), container("v"))),
        )
        for what, extra in (("table", ()), ("json", ("-o", "json")), ("yaml", ("-o", "yaml"))):
            p.step(f"get cell {what}", "get", "cell", "c1", *WHERE, *extra)
            p.step(f"get cells {what}", "get", "cell", *WHERE, *extra)
            p.step(f"get containers {what}", "get", "container", *WHERE, "--cell", "c1", *extra)
        p.step("get container json", "get", "container", "w", *WHERE, "--cell", "c1", "-o", "json")
        p.step("get container not found", "get", "container", "nope", *WHERE, "--cell", "c1")
        p.step("get cell not found", "get", "cell", "nope", *WHERE)
        p.step("log", "log", "c1", *WHERE, "--container", "w")

        self.ok("stop container", "stop", "container", "w", *WHERE, "--cell", "c1")
        p.step(
            "get container after stop",
            "get",
            "container",
            "w",
            *WHERE,
            "--cell",
            "c1",
            "-o",
            "json",
        )
        p.step("stop container again", "stop", "container", "w", *WHERE, "--cell", "c1")
        self.ok("start container", "start", "container", "w", *WHERE, "--cell", "c1")
        p.step(
            "get container after start",
            "get",
            "container",
            "w",
            *WHERE,
            "--cell",
            "c1",
            "-o",
            "json",
        )
        p.step("kill container", "kill", "container", "v", *WHERE, "--cell", "c1")
        p.step("get containers after kill", "get", "container", *WHERE, "--cell", "c1")
        p.step("start container not found", "start", "container", "nope", *WHERE, "--cell", "c1")

        self.ok("stop cell", "stop", "cell", "c1", *WHERE)
        p.step("get cell after stop", "get", "cell", "c1", *WHERE, "-o", "json")
        self.ok("start cell", "start", "cell", "c1", *WHERE)
        p.step("get cell after start", "get", "cell", "c1", *WHERE, "-o", "json")
        p.step("kill cell", "kill", "cell", "c1", *WHERE)
        p.step("get cells after kill", "get", "cell", *WHERE)
        p.step("start cell not found", "start", "cell", "nope", *WHERE)
        p.step("stop cell not found", "stop", "cell", "nope", *WHERE)

        p.step("delete container", "delete", "container", "v", *WHERE, "--cell", "c1")
        p.step("delete container not found", "delete", "container", "v", *WHERE, "--cell", "c1")
        p.step("delete stack with a cell", "delete", "stack", K, "--realm", R, "--space", S)
        p.step("delete cell", "delete", "cell", "c1", *WHERE)
        p.step("delete cell not found", "delete", "cell", "c1", *WHERE)
        p.step("get cells at the end", "get", "cell", *WHERE)
        p.check()

    def test_create_and_cascade(self):
        return threads.deferToThread(self.create_and_cascade)

    def create_and_cascade(self):
        p = self.pair
        self.hierarchy()
        self.ok("create cell", "create", "cell", "c2", *WHERE)
        p.step("create cell again", "create", "cell", "c2", *WHERE)
        p.step("create cell with an invalid name", "create", "cell", "bad_name", *WHERE)
        p.step(
            "create cell in a missing stack",
            "create",
            "cell",
            "c3",
            "--realm",
            R,
            "--space",
            S,
            "--stack",
            "nope",
        )
        p.step("get created cell", "get", "cell", "c2", *WHERE, "-o", "json")
        p.step(
            "create container",
            "create",
            "container",
            "x",
            *WHERE,
            "--cell",
            "c2",
            "--image",
            "busybox",
            "--command",
            "sh",
            "--args",
            "-c",
            "--args",
            LOOP,
        )
        p.step(
            "create container again",
            "create",
            "container",
            "x",
            *WHERE,
            "--cell",
            "c2",
            "--image",
            "busybox",
        )
        p.step(
            "create container in a missing cell",
            "create",
            "container",
            "y",
            *WHERE,
            "--cell",
            "nope",
            "--image",
            "busybox",
        )
        p.step(
            "get containers of created cell",
            "get",
            "container",
            *WHERE,
            "--cell",
            "c2",
            "-o",
            "json",
        )
        p.step("start created cell", "start", "cell", "c2", *WHERE)
        p.step("get created cell after start", "get", "cell", "c2", *WHERE, "-o", "yaml")
        p.step("delete realm with a cell", "delete", "realm", R)
        p.step("delete realm cascade", "delete", "realm", R, "--cascade")
        p.step("get realms at the end", "get", "realm")
        p.check()


class ApplyConformanceTests(ConformanceTestCase):
    def test_apply_and_run(self):
        return threads.deferToThread(self.apply_and_run)

    def apply_and_run(self):
        p = self.pair
        self.hierarchy()
        two = documents(stack("k2"), cell("a1", container("w")))
        self.ok("apply two documents", "apply", "-f", "-", input=two)
        p.step("apply the same again", "apply", "-f", "-", input=two)
        p.step("apply the same again json", "apply", "-f", "-", "-o", "json", input=two)
        changed = documents(stack("k2"), cell("a1", container("w", SAY)))
        p.step("apply a changed spec", "apply", "-f", "-", input=changed)
        p.step("get cell after change", "get", "cell", "a1", *WHERE, "-o", "json")
        p.step(
            "run detached",
            "run",
            "-f",
            "-",
            "-d",
            "-o",
            "json",
            input=documents(cell("a3", container("w"))),
        )
        p.step(
            "run detached again",
            "run",
            "-f",
            "-",
            "-d",
            input=documents(cell("a3", container("w"))),
        )
        p.step(
            "run with a diverging spec",
            "run",
            "-f",
            "-",
            "-d",
            input=documents(cell("a3", container("w", SAY))),
        )
        p.step("get cells after run", "get", "cell", *WHERE, "-o", "yaml")
        # Last, since they leave the two run paths apart on purpose (doc/compatibility.md):
        # RefreshAll, a cell of a missing image, bad documents in an apply.
        p.step("refresh", "refresh")
        p.step(
            "missing image: apply",
            "apply",
            "-f",
            "-",
            input=documents(cell("a2", {"id": "w", "image": "docker.io/library/nope:1"})),
        )
        p.step("missing image: get", "get", "cell", "a2", *WHERE, "-o", "json")
        p.step("apply with a bad document: unparsable", "apply", "-f", "-", input="kind: [\n")
        p.step(
            "apply with a bad document: unknown kind",
            "apply",
            "-f",
            "-",
            input=documents({"apiVersion": "v1beta1", "kind": "Gadget", "metadata": {"name": "g"}}),
        )
        p.step(
            "apply with a bad document: one among good",
            "apply",
            "-f",
            "-",
            "-o",
            "yaml",
            input=documents(
                stack("k3"),
                {
                    "apiVersion": "v1beta1",
                    "kind": "Cell",
                    "metadata": {"name": "bad_name"},
                    "spec": {},
                },
            ),
        )
        p.check()
