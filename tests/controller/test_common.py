"""Read helpers of the controllers: decoded once per stored version, handed out as copies."""

import json

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from kukeond import errors
from kukeond.api import v1beta1 as v1
from kukeond.controller import common
from tests.controller.reconcile_support import cell_doc
from tests.support.runtime import fake_runtime

KEY = ("r", "s", "k", "c")


def realm(name, namespace="", labels=None):
    return {
        "apiVersion": "v1beta1",
        "kind": "Realm",
        "metadata": {"name": name, "labels": labels},
        "spec": {"namespace": namespace, "registryCredentials": [{"username": "u"}]},
        "status": {"state": "Ready", "cgroupPath": f"/kukeon/{name}"},
    }


class CopyDocTests(TestCase):
    def test_equal_and_independent(self):
        doc = v1.CellDoc.from_wire(cell_doc(KEY, ("a",)))
        doc.metadata.labels = {"x": "y"}
        copied = common.copy_doc(doc)
        self.assertEqual(copied, doc)
        self.assertEqual(copied.to_wire(), doc.to_wire())
        copied.spec.containers[0].image = "other"
        copied.spec.containers.append(v1.ContainerSpec(id="z"))
        copied.status.containers[1].state = v1.STOPPED
        copied.metadata.labels["x"] = "z"
        self.assertEqual(doc.to_wire(), v1.CellDoc.from_wire(cell_doc(KEY, ("a",))).to_wire()
                         | {"metadata": {"name": "c", "labels": {"x": "y"}}})  # fmt: skip
        self.assertEqual(doc, common.copy_doc(doc))

    def test_same_as_clone(self):
        doc = v1.CellDoc.from_wire(cell_doc(KEY, ("a", "b"), autoDelete=True))
        self.assertEqual(common.copy_doc(doc), doc.clone())
        self.assertIs(type(common.copy_doc(doc.spec)), v1.CellSpec)


class ReadHelperTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)

    def read(self, name):
        return common.read_doc(self.rt, (name,), v1.RealmDoc, v1.KIND_REALM)

    @defer.inlineCallbacks
    def test_read_doc_hands_out_copies(self):
        yield self.rt.store.put(("r",), realm("r", labels={"a": "1"}))
        first = common.read_doc(self.rt, ("r",), v1.RealmDoc, v1.KIND_REALM)
        first.metadata.labels["a"] = "changed"
        first.spec.registryCredentials[0].username = "changed"
        first.status.state = v1.FAILED
        again = common.read_doc(self.rt, ("r",), v1.RealmDoc, v1.KIND_REALM)
        self.assertEqual(again.metadata.labels, {"a": "1"})
        self.assertEqual(again.spec.registryCredentials[0].username, "u")
        self.assertEqual(again.status.state, v1.READY)
        self.assertIsNot(again, first)

    @defer.inlineCallbacks
    def test_read_doc_follows_writes_and_deletes(self):
        yield self.rt.store.put(("r",), realm("r", "one"))
        self.assertEqual(self.read("r").spec.namespace, "one")
        yield self.rt.store.put(("r",), realm("r", "two"))
        self.assertEqual(self.read("r").spec.namespace, "two")
        yield self.rt.store.delete(("r",))
        self.assertIsNone(self.read("r"))

    @defer.inlineCallbacks
    def test_list_wire_sorted_and_skips_bad_documents_every_time(self):
        for name in ("b", "a"):
            yield self.rt.store.put((name,), realm(name, labels={"n": name}))
        yield self.rt.store.put(("c",), {"status": {"state": "Nonsense"}})
        for _ in range(2):
            listed = [
                json.loads(t.data)
                for t in common.list_wire(self.rt, (), v1.RealmDoc, v1.KIND_REALM)
            ]
            self.assertEqual([d["metadata"]["name"] for d in listed], ["a", "b"])
            self.assertEqual({d["kind"] for d in listed}, {v1.KIND_REALM})
        failure = self.assertRaises(errors.KukeonError, self.read, "c")
        self.assertEqual(failure.kind, "ConversionFailed")

    @defer.inlineCallbacks
    def test_realm_namespace_follows_writes(self):
        yield self.rt.store.put(("r",), realm("r", "ns-one"))
        self.assertEqual(common.realm_namespace(self.rt, "r"), "ns-one")
        yield self.rt.store.put(("r",), realm("r", "ns-two"))
        self.assertEqual(common.realm_namespace(self.rt, "r"), "ns-two")
        yield self.rt.store.put(("r",), realm("r", ""))
        self.assertEqual(common.realm_namespace(self.rt, "r"), f"r.{self.rt.suffix}")
