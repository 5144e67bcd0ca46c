"""ApplyDocuments: parsing rules, ordering, created/updated/unchanged, failures (fakes)."""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kukeond import errors
from kukeond.api import kukeonv1, yamldoc
from kukeond.api import v1beta1 as v1
from kukeond.controller import cells
from kukeond.handlers import apply
from tests.support.runtime import fake_runtime, load_busybox

STACK = """
apiVersion: v1beta1
kind: Stack
metadata: {name: k1}
spec: {realmId: r1, spaceId: s1}
"""
REALM = """
kind: Realm
metadata:
  name: r1
  labels: {team: a}
"""
SPACE = """
kind: Space
metadata: {name: s1}
spec: {realmId: r1}
"""
CELL = """
kind: Cell
metadata: {name: c1}
spec:
  realmId: r1
  spaceId: s1
  stackId: k1
  containers:
    - id: web
      image: docker.io/library/busybox:latest
      command: sleep
      args: ["300"]
    - id: side
      image: docker.io/library/busybox:latest
      command: sleep
      args: ["301"]
"""


def blob(*docs):
    return "\n---\n".join(docs).encode()


class ParseTests(SynchronousTestCase):
    def fails(self, raw):
        with self.assertRaises(errors.KukeonError) as caught:
            yamldoc.parse_documents(raw)
        return str(caught.exception)

    def rejected(self, raw):
        _, bad = yamldoc.parse_documents(raw)
        return "\n".join(str(e) for e in bad)

    def test_split(self):
        self.assertEqual(yamldoc.split_documents("a: 1\n  ---  \n\n---\nb: 2\n"), ["a: 1", "b: 2"])
        self.assertEqual(
            self.fails(b"\n---\n  \n"), "failed to parse YAML: no documents found in input"
        )

    def test_reference_messages(self):
        raw = (
            b"kind: Foo\n---\nkind: Realm\nmetadata: {name: ok}\n---\nkind: Space\n"
            b"metadata: {name: s}\n"
        )
        self.assertEqual(
            self.rejected(raw),
            "document 0 (): document 0: unknown kind: Foo\n"
            'document 2 (Space "s"): spec.realmId is required',
        )
        good, _ = yamldoc.parse_documents(raw)
        self.assertEqual([(p.index, p.kind, p.name) for p in good], [(1, "Realm", "ok")])
        self.assertIn(
            "document 0 (): document 0: failed to parse kind: yaml: line 1:",
            self.rejected(b"a: b: c"),
        )
        self.assertEqual(
            self.rejected(b"apiVersion: v9\nkind: Realm\nmetadata: {name: r}"),
            "document 0 (Realm): unsupported apiVersion: v9 (expected v1beta1)",
        )
        self.assertEqual(
            self.rejected(
                b"kind: Cell\nmetadata: {name: c}\nspec: {realmId: r, spaceId: s, stackId: k}"
            ),
            'document 0 (Cell "c"): spec.containers is required and cannot be empty',
        )
        self.assertIn(
            "cannot unmarshal !!map into string",
            self.rejected(b"kind: Realm\nmetadata: {name: {a: 1}}"),
        )

    def test_yaml_v3_coercions(self):
        (doc,), _ = yamldoc.parse_documents(
            b"kind: Cell\nmetadata: {name: c, labels: {n: 08}}\nspec:\n  realmId: r\n"
            b"  spaceId: s\n  stackId: k\n  autoDelete: yes\n  containers:\n"
            b"    - {id: a, image: i, args: [1, true], privileged: off,\n"
            b"       resources: {pidsLimit: 0x10}, ignored: 1}\n"
        )
        cell = doc.doc
        self.assertEqual(cell.metadata.labels, {"n": "08"})
        self.assertTrue(cell.spec.autoDelete)
        container = cell.spec.containers[0]
        self.assertEqual(container.args, ["1", "true"])
        self.assertFalse(container.privileged)
        self.assertEqual(container.resources.pidsLimit, 16)


class ApplyTests(TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.rt = fake_runtime(self)
        yield load_busybox(self.rt, "r1")
        self.handler = apply.handlers(self.rt)["ApplyDocuments"]

    def apply(self, raw):
        args = kukeonv1.ApplyDocumentsArgs(RawYAML=raw)
        return defer.Deferred.fromCoroutine(self.handler(args))

    def actions(self, reply):
        return [(r.Index, r.Kind, r.Name, r.Action, r.Error) for r in reply.Result.Resources]

    @defer.inlineCallbacks
    def test_order_create_and_reapply_unchanged(self):
        raw = blob(CELL, STACK, REALM, SPACE)
        reply = yield self.apply(raw)
        self.assertIsNone(reply.Err)
        self.assertEqual(
            self.actions(reply),
            [
                (2, "Realm", "r1", "created", ""),
                (3, "Space", "s1", "created", ""),
                (1, "Stack", "k1", "created", ""),
                (0, "Cell", "c1", "created", ""),
            ],
        )
        wire = reply.to_wire()["Result"]["Resources"][0]
        self.assertEqual((wire["Changes"], wire["Details"]), (None, None))
        cell = v1.CellDoc.from_wire(self.rt.store.get(("r1", "s1", "k1", "c1")))
        self.assertEqual(cell.status.state, v1.READY)
        again = yield self.apply(raw)
        self.assertEqual({r.Action for r in again.Result.Resources}, {"unchanged"})

    @defer.inlineCallbacks
    def test_updates_report_changes(self):
        yield self.apply(blob(REALM, SPACE, STACK, CELL))
        changed = CELL.replace('args: ["301"]', 'args: ["302"]').replace(
            "    - id: web",
            "    - id: extra\n      image: docker.io/library/busybox:latest\n"
            "      command: sleep\n    - id: web",
        )
        reply = yield self.apply(blob(REALM.replace("team: a", "team: b"), changed))
        realm, cell = reply.Result.Resources
        self.assertEqual((realm.Action, realm.Changes), ("updated", ["metadata.labels"]))
        self.assertEqual(realm.Details, {"metadata.labels": "labels changed"})
        self.assertEqual(cell.Action, "updated")
        self.assertEqual(
            cell.Changes, ['container "extra" added', 'container "side" updated: args']
        )
        stored = v1.CellDoc.from_wire(self.rt.store.get(("r1", "s1", "k1", "c1")))
        self.assertEqual([c.id for c in stored.spec.containers], ["root", "extra", "web", "side"])
        labels = v1.RealmDoc.from_wire(self.rt.store.get(("r1",))).metadata.labels
        self.assertEqual(labels["team"], "b")
        self.assertIn("realm.kukeon.io", labels)
        removed = yield self.apply(blob(CELL.split("    - id: side")[0]))
        self.assertEqual(
            removed.Result.Resources[0].Changes,
            ['container "extra" removed', 'container "side" removed'],
        )

    @defer.inlineCallbacks
    def test_breaking_and_failed_documents(self):
        yield self.apply(blob(REALM))
        reply = yield self.apply(
            blob(
                REALM + "spec: {namespace: other}\n",
                "kind: Container\nmetadata: {name: x}\nspec: {realmId: r1, spaceId: s1, "
                "stackId: k1, cellId: nope, image: i}",
            )
        )
        realm, container = reply.Result.Resources
        self.assertEqual(realm.Action, "failed")
        self.assertEqual(
            realm.Error,
            'realm "r1" has breaking changes: [spec.namespace]. Delete the realm and '
            "recreate it with the new spec",
        )
        self.assertEqual(realm.Details, {})
        self.assertEqual(container.Action, "failed")
        self.assertTrue(container.Error.startswith('parent cell "nope" not found'))

    @defer.inlineCallbacks
    def test_invalid_document_fails_alone(self):
        reply = yield defer.Deferred.fromCoroutine(
            self.handler(kukeonv1.ApplyDocumentsArgs(RawYAML=blob(REALM, "kind: Foo")))
        )
        self.assertIsNone(reply.Err)
        outcome = [(r.Index, r.Kind, r.Action, r.Error) for r in reply.Result.Resources]
        self.assertEqual(
            outcome,
            [
                (1, "", "failed", "document 1 (): document 1: unknown kind: Foo"),
                (0, "Realm", "created", ""),
            ],
        )
        self.assertTrue(self.rt.store.exists(("r1",)))

    @defer.inlineCallbacks
    def test_empty_input_is_an_error(self):
        reply = yield defer.Deferred.fromCoroutine(
            self.handler(kukeonv1.ApplyDocumentsArgs(RawYAML=b"\n---\n"))
        ).addErrback(lambda f: f.value)
        self.assertIsInstance(reply, errors.KukeonError)

    @defer.inlineCallbacks
    def test_stopped_cell_is_rematerialized(self):
        yield self.apply(blob(REALM, SPACE, STACK, CELL))
        key = ("r1", "s1", "k1", "c1")
        yield defer.Deferred.fromCoroutine(cells.stop_cell(self.rt, key))
        reply = yield self.apply(blob(CELL))
        (cell,) = reply.Result.Resources
        self.assertEqual(cell.Action, "updated")
        self.assertEqual(
            cell.Changes,
            [
                "runtime stopped: containers re-materialized",
                'container "web" re-materialized',
                'container "side" re-materialized',
            ],
        )
        self.assertIsNone(cell.Details)
        stored = v1.CellDoc.from_wire(self.rt.store.get(key))
        self.assertEqual(stored.status.state, v1.READY)
