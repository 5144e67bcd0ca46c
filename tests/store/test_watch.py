"""The store trusting inotify: no stat for what did not change, every change still seen."""

import json
import os
import shutil

from twisted.trial.unittest import SynchronousTestCase

from kukeond.store import index, watch
from kukeond.store.documents import render_document
from kukeond.store.metadata import MetadataStore


def cell(name, image="busybox"):
    return {"apiVersion": "v1beta1", "kind": "Cell", "metadata": {"name": name},
            "spec": {"image": image}}  # fmt: skip


def image_of(doc):
    return doc["spec"]["image"]


class WatchedStoreTests(SynchronousTestCase):
    def setUp(self):
        self.run = self.mktemp()
        self.store = self.watched()

    def watched(self):
        store = MetadataStore(self.run, inline=True, watch=True)
        self.addCleanup(store.stop)
        return store

    def write(self, key, doc, raw=None):
        path = os.path.join(self.run, "data", *key, "metadata.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(raw if raw is not None else render_document(doc))
        return path

    def populate(self, stacks=("k1", "k2"), cells=5):
        for stack in stacks:
            for i in range(cells):
                self.write(("r", "s", stack, f"c{i}"), cell(f"c{i}"))

    def listed(self, store=None, under=()):
        store = store or self.store
        return [(k, v) for k, v in store.decoded_keys(4, under, image_of)]

    def on_disk(self, under=()):
        """What a store that trusts nothing reads now."""
        return self.listed(MetadataStore(self.run, inline=True), under)

    def count_stats(self):
        calls = []
        real = os.stat

        def counting(path, *args, **kwargs):
            calls.append(path)
            return real(path, *args, **kwargs)

        self.patch(os, "stat", counting)
        return calls

    def test_unchanged_documents_cost_no_stat(self):
        self.populate(cells=20)
        self.assertEqual(len(self.listed()), 40)
        stats = self.count_stats()
        self.assertEqual(len(self.listed()), 40)
        self.assertEqual(self.store.get(("r", "s", "k1", "c3")), cell("c3"))
        self.assertEqual(stats, [])
        # Nothing changed: the very same listing is handed out again.
        listing = self.store.decoded_keys(4, ("r",), image_of)
        self.assertIs(self.store.decoded_keys(4, ("r",), image_of), listing)
        # One document rewritten in place: it alone is looked at again.
        self.write(("r", "s", "k1", "c3"), cell("c3", image="alpine"))
        stats.clear()  # the writing above stats too
        self.assertEqual(dict(self.listed())[("r", "s", "k1", "c3")], "alpine")
        self.assertEqual(stats, [self.store.path(("r", "s", "k1", "c3"))])
        self.assertIsNot(self.store.decoded_keys(4, ("r",), image_of), listing)

    def test_every_change_of_another_writer_is_seen_at_once(self):
        self.populate()
        data = os.path.join(self.run, "data")

        def rename(*names):
            os.rename(os.path.join(data, *names[0]), os.path.join(data, *names[1]))

        def replace(key, doc):  # write a temp file, rename it over the document
            path = self.write(key, doc)
            temp = path + ".new"
            os.rename(path, temp)
            os.rename(temp, path)

        def move_realm_and_make_a_new_one():
            rename(("r",), ("r-old",))
            self.write(("r", "s", "k1", "c0"), cell("c0", image="fresh"))

        def same_size_same_tick():
            path = self.store.path(("r", "s", "k1", "c1"))
            before = os.stat(path)
            with open(path, "r+b") as fh:
                content = fh.read().replace(b"busybox", b"busyboy")
                fh.seek(0)
                fh.write(content)
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

        changes = [
            ("rewrite in place", lambda: self.write(("r", "s", "k1", "c0"), cell("c0", "alpine"))),
            ("same size, same mtime", same_size_same_tick),
            ("replace by rename", lambda: replace(("r", "s", "k1", "c2"), cell("c2", "nginx"))),
            ("unlink a document", lambda: os.unlink(self.store.path(("r", "s", "k1", "c3")))),
            ("remove a cell", lambda: shutil.rmtree(os.path.join(data, "r", "s", "k1", "c4"))),
            ("add a cell", lambda: self.write(("r", "s", "k1", "c9"), cell("c9"))),
            ("corrupt a document", lambda: self.write(("r", "s", "k2", "c0"), None, b"{")),
            ("rename a stack", lambda: rename(("r", "s", "k2"), ("r", "s", "k3"))),
            ("rename it back", lambda: rename(("r", "s", "k3"), ("r", "s", "k2"))),
            ("replace a cell directory", lambda: (
                shutil.rmtree(os.path.join(data, "r", "s", "k2", "c1")),
                self.write(("r", "s", "k2", "c1"), cell("c1", "redis")),
            )),
            ("move a realm away, make a new one", move_realm_and_make_a_new_one),
            ("change the new one", lambda: self.write(("r", "s", "k1", "c0"), cell("c0", "x"))),
            ("change the old one", lambda: self.write(("r-old", "s", "k1", "c1"), cell("c1"))),
            ("remove everything", lambda: shutil.rmtree(data)),
            ("start again", lambda: self.populate(stacks=("k7",), cells=2)),
        ]  # fmt: skip
        self.assertEqual(self.listed(), self.on_disk())
        for what, change in changes:
            change()
            self.assertEqual(self.listed(), self.on_disk(), what)
            self.assertEqual(self.listed(under=("r", "s")), self.on_disk(("r", "s")), what)
            for key, image in self.on_disk():
                self.assertEqual(self.store.get(key)["spec"]["image"], image, what)
        self.assertEqual([k[2:] for k, _ in self.listed()], [("k7", "c0"), ("k7", "c1")])

    def test_a_tree_made_after_the_store_is_found(self):
        self.assertEqual(self.listed(), [])
        self.assertIsNone(self.store.get(("r",)))
        self.populate(stacks=("k",), cells=2)
        self.write(("r",), cell("r"))
        self.assertEqual(len(self.listed()), 2)
        self.assertEqual(self.store.get(("r",)), cell("r"))

    def test_an_overflowed_queue_trusts_nothing(self):
        self.populate(cells=3)
        self.listed()
        self.assertEqual(len(self.store._fresh), 6)
        tree = self.store._watch
        self.patch(tree, "_events", lambda: iter([(-1, watch.IN_Q_OVERFLOW, b"")]))
        with open(os.path.join(self.run, "data", "r", "unrelated"), "w"):
            pass  # something is queued, read as the overflow
        self.store.get(("r", "s", "k1", "c0"))
        self.assertEqual(self.store._fresh, {("r", "s", "k1", "c0")})

    def test_without_inotify_the_store_stats(self):
        def unavailable(root):
            raise OSError(24, "Too many open files")

        self.patch(index, "TreeWatch", unavailable)
        store = self.watched()
        self.populate(cells=2)
        self.assertEqual(self.listed(store), self.on_disk())
        self.write(("r", "s", "k1", "c0"), cell("c0", "alpine"))
        self.assertEqual(dict(self.listed(store))[("r", "s", "k1", "c0")], "alpine")
        self.assertIsNone(store._watch)

    def test_own_writes_are_read_back_without_parsing(self):
        from twisted.internet.defer import Deferred

        def done(d: Deferred):
            out = []
            d.addBoth(out.append)
            return out[0]

        done(self.store.put(("r",), cell("r")))
        first = self.store.decoded(("r",), json.dumps)
        done(self.store.put(("r",), cell("r", image="alpine")))
        second = self.store.decoded(("r",), json.dumps)
        self.assertNotEqual(first, second)
        self.assertIn("alpine", second)
        self.assertIs(self.store.decoded(("r",), json.dumps), second)

    def test_stop_closes_the_watch(self):
        self.populate(cells=1)
        self.listed()
        tree = self.store._watch
        self.assertGreater(len(tree), 0)
        self.store.stop()
        self.assertEqual((tree.fd, len(tree)), (-1, 0))
        self.write(("r", "s", "k1", "c0"), cell("c0", "after"))
        self.assertEqual(dict(self.listed())[("r", "s", "k1", "c0")], "after")
