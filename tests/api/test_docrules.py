"""Request document checks and defaults."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kukeond import errors
from kukeond.api import docrules, v1beta1
from kukeond.api.v1beta1 import CellDoc, ContainerSpec, ContainerTty, TtyStage


def _cell(*containers: ContainerSpec, **spec) -> CellDoc:
    doc = CellDoc()
    doc.metadata.name = "web"
    doc.spec = v1beta1.CellSpec(
        realmId="r", spaceId="s", stackId="t", containers=list(containers), **spec
    )
    return doc


class ValidationTests(SynchronousTestCase):
    def assertConversion(self, doc, message: str) -> None:
        with self.assertRaises(errors.ConversionFailed) as ctx:
            docrules.normalize_request_doc(doc)
        self.assertEqual(str(ctx.exception), message)
        self.assertEqual(ctx.exception.kind, "ConversionFailed")

    def test_api_version(self) -> None:
        doc = v1beta1.RealmDoc(apiVersion="v2")
        self.assertConversion(doc, "conversion failed: unsupported apiVersion for Realm: v2")
        for ok in ("", "v1beta1"):
            docrules.normalize_request_doc(v1beta1.StackDoc(apiVersion=ok))
        self.assertConversion(
            v1beta1.ContainerDoc(apiVersion="x"),
            "conversion failed: unsupported apiVersion for Container: x",
        )

    def test_container_tty_requires_attachable(self) -> None:
        doc = v1beta1.ContainerDoc()
        doc.spec.id = "app"
        doc.spec.tty = ContainerTty(prompt="$ ")
        self.assertConversion(
            doc, 'conversion failed: container "app": tty fields require attachable: true'
        )
        doc.spec.tty = ContainerTty(onInit=[TtyStage()])
        docrules.normalize_request_doc(doc)  # empty scripts do not count
        doc.spec.tty = ContainerTty(logFile="/l")
        doc.spec.attachable = True
        docrules.normalize_request_doc(doc)

    def test_cell_tty_default(self) -> None:
        doc = _cell(ContainerSpec(id="a"), tty=v1beta1.CellTty(default="b"))
        self.assertConversion(
            doc, 'conversion failed: cell tty.default "b" does not match any container in this cell'
        )
        doc.spec.tty.default = "a"
        self.assertConversion(
            doc,
            'conversion failed: cell tty.default "a" references container that is not attachable',
        )
        doc.spec.containers[0].attachable = True
        docrules.normalize_request_doc(doc)

    def test_root_rules(self) -> None:
        doc = _cell(ContainerSpec(id="a", root=True), ContainerSpec(id="b", root=True))
        self.assertConversion(
            doc, "conversion failed: only one container in a cell may have root: true: [a b]"
        )
        doc = _cell(ContainerSpec(id="a"), rootContainerId="z")
        self.assertConversion(
            doc, 'conversion failed: rootContainerId "z" not found in containers array'
        )
        doc = _cell(ContainerSpec(id="a"), ContainerSpec(id="b", root=True), rootContainerId="a")
        self.assertConversion(
            doc,
            "conversion failed: rootContainerId disagrees with container marked root: true:"
            ' rootContainerId is "a" but container "b" has root: true',
        )


class DefaultTests(SynchronousTestCase):
    def test_realm(self) -> None:
        doc = v1beta1.RealmDoc()
        doc.metadata.name = "demo"
        docrules.default_realm(doc)
        self.assertEqual(doc.spec.namespace, "demo.kukeon.io")
        self.assertEqual(doc.metadata.labels, {"realm.kukeon.io": "demo.kukeon.io"})
        doc = v1beta1.RealmDoc()
        doc.metadata.name = "demo"
        doc.metadata.labels = {"realm.kukeon.io": "mine"}
        docrules.default_realm(doc, "example.org")
        self.assertEqual(doc.spec.namespace, "demo.example.org")
        self.assertEqual(doc.metadata.labels, {"realm.kukeon.io": "mine"})

    def test_stack(self) -> None:
        doc = v1beta1.StackDoc()
        doc.metadata.name = "k"
        doc.spec.realmId, doc.spec.spaceId = "r", "s"
        docrules.default_stack(doc)
        self.assertEqual(doc.spec.id, "k")
        self.assertEqual(
            doc.metadata.labels,
            {"realm.kukeon.io": "r", "space.kukeon.io": "s", "stack.kukeon.io": "k"},
        )

    def test_cell_ownership_and_implicit_root(self) -> None:
        doc = _cell(ContainerSpec(id="app", realmId="x", hostNetwork=True))
        docrules.default_cell(doc)
        self.assertEqual(doc.spec.id, "web")
        self.assertEqual(doc.metadata.labels["cell.kukeon.io"], "web")
        app = doc.spec.containers[0]
        self.assertEqual(
            (app.realmId, app.spaceId, app.stackId, app.cellId), ("r", "s", "t", "web")
        )
        root = docrules.ensure_root_container(doc)
        self.assertEqual(
            (root.id, root.image, root.command, root.args, root.root, root.hostNetwork),
            ("root", "docker.io/library/busybox:latest", "sleep", ["infinity"], True, True),
        )
        self.assertIs(doc.spec.containers[-1], root)
        self.assertEqual(root.cellId, "web")

    def test_explicit_root(self) -> None:
        doc = _cell(ContainerSpec(id="a"), ContainerSpec(id="b", root=True))
        root = docrules.ensure_root_container(doc)
        self.assertEqual(root.id, "b")
        self.assertEqual(doc.spec.rootContainerId, "b")
        self.assertEqual(len(doc.spec.containers), 2)
        doc = _cell(ContainerSpec(id="a"), rootContainerId="a")
        self.assertTrue(docrules.ensure_root_container(doc).root)
