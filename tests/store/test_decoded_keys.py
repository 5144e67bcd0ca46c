import os

from twisted.trial.unittest import SynchronousTestCase

from kukeond.store import versions
from kukeond.store.documents import render_document
from kukeond.store.metadata import MetadataStore


def cell(name, image="busybox"):
    return {"apiVersion": "v1beta1", "kind": "Cell", "metadata": {"name": name},
            "spec": {"image": image}}  # fmt: skip


class DecodedKeysTests(SynchronousTestCase):
    def setUp(self):
        self.run = self.mktemp()
        self.patch(versions, "RACY_NS", 0)  # files written just now are trusted
        self.store = MetadataStore(self.run, inline=True)
        self.calls = []

    def write(self, key, doc):
        path = self.store.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(render_document(doc))

    def decode(self, doc):
        self.calls.append(doc["metadata"]["name"])
        return doc["spec"]["image"]

    def test_once_per_version_and_sees_other_writers(self):
        for name in ("b", "a"):
            self.write(("r", "s", "k", name), cell(name))
        self.write(("r", "s", "k2", "c"), cell("c"))
        a, b, c = ("r", "s", "k", "a"), ("r", "s", "k", "b"), ("r", "s", "k2", "c")
        found = self.store.decoded_keys(4, ("r",), self.decode)
        self.assertEqual([k for k, _ in found], [a, b, c])
        found = self.store.decoded_keys(4, ("r", "s", "k"), self.decode)
        self.assertEqual(found, [(a, "busybox"), (b, "busybox")])
        self.assertEqual(sorted(self.calls), ["a", "b", "c"])
        # another writer replaces one document and removes another
        self.write(a, cell("a", image="alpine:3.20"))
        os.unlink(self.store.path(b))
        found = self.store.decoded_keys(4, ("r", "s", "k"), self.decode)
        self.assertEqual(found, [(a, "alpine:3.20")])
        self.assertEqual(sorted(self.calls), ["a", "a", "b", "c"])

    def test_full_key(self):
        self.write(("r",), cell("r"))
        self.assertEqual(self.store.decoded_keys(1, ("r",), self.decode), [(("r",), "busybox")])
        self.assertEqual(self.store.decoded_keys(1, ("x",), self.decode), [])
