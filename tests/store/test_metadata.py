"""The metadata tree: atomic writes, index, locks, reference files."""

import gc
import os
import shutil
import stat
import tracemalloc

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kukeond.base import atomic
from kukeond.store.documents import copy_json, parse_document, render_document
from kukeond.store.errors import DocumentChanged, MetadataCorrupt
from kukeond.store.locks import KeyedLock
from kukeond.store.metadata import MetadataStore

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
KEYS = {
    "realm": ("default",),
    "space": ("default", "default"),
    "stack": ("default", "default", "default"),
    "cell": ("default", "default", "default", "web"),
}
NOW = "2025-07-01T12:00:00.5Z"


def fixture_bytes(kind):
    with open(os.path.join(FIXTURES, f"{kind}.metadata.json"), "rb") as fh:
        return fh.read()


def result(d):
    out = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired"
    return out[0]


class StoreTestMixin:
    watch = False
    """Whether the stores of the tests watch the tree with inotify (as the daemon's does)."""

    def make_store(self, **kw):
        self.run = self.mktemp()
        os.makedirs(self.run)
        kw.setdefault("inline", True)
        store = MetadataStore(self.run, clock=lambda: NOW, watch=self.watch, **kw)
        self.addCleanup(store.stop)
        return store

    def place(self, key, content):
        path = os.path.join(self.run, "data", *key, "metadata.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(content)
        return path


class ReferenceFileTests(StoreTestMixin, SynchronousTestCase):
    def test_reference_files_round_trip_to_the_byte(self):
        store = self.make_store()
        for kind, key in KEYS.items():
            self.place(key, fixture_bytes(kind))
        self.assertEqual(store.load(), 4)
        for kind, key in KEYS.items():
            doc = store.get(key)
            self.assertEqual(doc["kind"], kind.capitalize())
            stored = result(store.put(key, doc, stamp=False))
            self.assertEqual(stored, doc)
            with open(store.path(key), "rb") as fh:
                self.assertEqual(fh.read(), fixture_bytes(kind))

    def test_write_modes_and_layout(self):
        store = self.make_store()
        store.load()
        result(store.put(KEYS["cell"], {"kind": "Cell"}))
        path = store.path(KEYS["cell"])
        self.assertEqual(
            path, os.path.join(self.run, "data/default/default/default/web/metadata.json")
        )
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)
        mode = os.stat(os.path.dirname(path)).st_mode
        self.assertEqual(stat.S_IMODE(mode), stat.S_ISGID | 0o750)
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), b'{\n  "kind": "Cell"\n}\n')

    def test_stamping(self):
        store = self.make_store()
        store.load()
        doc = {
            "status": {
                "state": "Pending",
                "createdAt": "0001-01-01T00:00:00Z",
                "updatedAt": "0001-01-01T00:00:00Z",
                "readyAt": "0001-01-01T00:00:00Z",
            }
        }
        stored = result(store.put(("r",), doc))
        self.assertEqual(doc["status"]["createdAt"], "0001-01-01T00:00:00Z")
        self.assertEqual(
            stored["status"],
            {
                "state": "Pending",
                "createdAt": NOW,
                "updatedAt": NOW,
                "readyAt": "0001-01-01T00:00:00Z",
            },
        )
        stored["status"]["state"] = "Ready"
        stored["status"]["createdAt"] = "2020-01-01T00:00:00Z"
        again = result(store.put(("r",), stored))
        self.assertEqual(again["status"]["createdAt"], "2020-01-01T00:00:00Z")
        self.assertEqual(again["status"]["readyAt"], NOW)

    def test_parse_rules(self):
        self.assertEqual(parse_document(b'{"apiVersion":""}'), {"apiVersion": ""})
        self.assertEqual(parse_document(b'{"a":"\xff"}'), {"a": "\ufffd"})
        for bad in (b"{", b"[]", b'{"apiVersion":"v2"}', b"null"):
            self.assertRaises(ValueError, parse_document, bad)


class IndexTests(StoreTestMixin, SynchronousTestCase):
    def test_corrupt_skipped_rest_served(self):
        store = self.make_store()
        self.place(("a",), b'{"kind":"Realm"}')
        bad = self.place(("b",), b'{"kind":')
        self.place(("c",), b'{"apiVersion":"v9"}')
        self.place(("a", "s"), b'{"kind":"Space"}')
        os.makedirs(os.path.join(self.run, "data", "d", "nometa"))
        self.assertEqual(store.load(), 2)
        self.assertEqual(store.children(), ["a"])
        self.assertEqual(store.children(("a",)), ["s"])
        self.assertEqual(store.get(("a", "s")), {"kind": "Space"})
        self.assertIsNone(store.get(("d",)))
        with self.assertRaises(MetadataCorrupt) as ctx:
            store.get(("b",))
        self.assertEqual(ctx.exception.wire_kind, "ConversionFailed")
        self.assertIn(bad, str(ctx.exception))
        self.assertEqual(sorted(store.corrupt()), [("b",), ("c",)])
        result(store.put(("b",), {"kind": "Realm"}))
        self.assertEqual(store.children(), ["a", "b"])
        self.assertEqual(sorted(store.corrupt()), [("c",)])

    def test_reads_follow_other_writers(self):
        store = self.make_store()
        store.load()
        result(store.put(("r",), {"n": 1}))
        result(store.put(("r", "s"), {"n": 2}))
        self.assertEqual(store.children(("r",)), ["s"])
        # Another writer replaces, adds and removes files behind the store's back.
        self.place(("r",), b'{"n": 10}')
        self.place(("r", "t"), b'{"n": 3}')
        os.unlink(store.path(("r", "s")))
        self.assertEqual(store.get(("r",)), {"n": 10})
        self.assertEqual(store.children(("r",)), ["t"])
        self.assertFalse(store.exists(("r", "s")))
        self.assertEqual(store.keys(2), [("r", "t")])
        shutil.rmtree(os.path.join(self.run, "data"))
        self.assertIsNone(store.get(("r",)))
        self.assertEqual((store.children(), store.keys(4)), ([], []))

    def test_write_never_replaces_a_change_it_did_not_see(self):
        store = self.make_store()
        store.load()
        result(store.put(("r",), {"n": 1}))
        self.place(("r",), b'{"n": 2}')
        failure = result(store.put(("r",), {"n": 3}))
        failure.trap(DocumentChanged)
        with open(store.path(("r",)), "rb") as fh:
            self.assertEqual(fh.read(), b'{"n": 2}')
        # Read it, and the write goes through.
        self.assertEqual(store.get(("r",)), {"n": 2})
        result(store.put(("r",), {"n": 3}))
        self.assertEqual(store.get(("r",)), {"n": 3})

    def test_a_vanished_document_is_not_recreated(self):
        store = self.make_store()
        store.load()
        result(store.put(("r", "s"), {"n": 1}))
        seen = store.version(("r", "s"))
        shutil.rmtree(os.path.join(self.run, "data", "r", "s"))
        result(store.put(("r", "s"), {"n": 2}, expect=seen)).trap(DocumentChanged)
        result(store.put(("r", "s"), {"n": 2})).trap(DocumentChanged)
        self.assertFalse(os.path.exists(store.path(("r", "s"))))
        self.assertIsNone(store.get(("r", "s")))
        # Seen as absent now: a create is a create.
        result(store.put(("r", "s"), {"n": 3}))
        self.assertEqual(store.get(("r", "s")), {"n": 3})

    def test_explicit_expectation(self):
        store = self.make_store()
        store.load()
        result(store.put(("r",), {"n": 1}))
        seen = store.version(("r",))
        result(store.put(("r",), {"n": 2}))
        result(store.put(("r",), {"n": 3}, expect=seen)).trap(DocumentChanged)
        result(store.put(("r", "x"), {"n": 1}, expect=seen)).trap(DocumentChanged)
        self.assertEqual(store.get(("r",)), {"n": 2})
        result(store.put(("r",), {"n": 4}, expect=store.version(("r",))))
        self.assertEqual(store.get(("r",)), {"n": 4})

    def test_queued_writes_expect_their_predecessors(self):
        store = self.make_store(inline=False)
        store.load()
        store.start()
        self.addCleanup(store.stop)
        writes = [store.put(("r",), {"n": n}) for n in range(5)]
        return defer.gatherResults(writes).addCallback(
            lambda _: self.assertEqual(store.get(("r",)), {"n": 4})
        )

    def test_returned_documents_are_copies(self):
        store = self.make_store()
        store.load()
        result(store.put(("r",), {"n": [1]}))
        store.get(("r",))["n"].append(2)
        self.assertEqual(store.get(("r",)), {"n": [1]})

    def test_index_matches_disk_after_writes(self):
        store = self.make_store()
        store.load()
        for key in [
            ("r",),
            ("r", "s"),
            ("r", "s", "k"),
            ("r", "s", "k", "c1"),
            ("r", "s", "k", "c0"),
            ("r2",),
        ]:
            result(store.put(key, {"key": list(key)}))
        self.assertEqual(store.children(("r", "s", "k")), ["c0", "c1"])
        self.assertTrue(result(store.delete(("r", "s", "k", "c1"))))
        self.assertFalse(result(store.delete(("r", "s", "k", "c1"))))
        self.assertFalse(os.path.exists(os.path.join(self.run, "data/r/s/k/c1")))
        result(store.purge(("r", "s")))
        self.assertFalse(os.path.exists(os.path.join(self.run, "data/r/s")))
        self.assertEqual(store.keys(4), [])
        fresh = MetadataStore(self.run, inline=True)
        fresh.load()
        for depth in (1, 2, 3, 4):
            self.assertEqual(fresh.keys(depth), store.keys(depth))
        self.assertEqual(store.keys(1), [("r",), ("r2",)])

    def test_children_follow_every_change(self):
        store = self.make_store()
        self.place(("a",), b"{}")
        self.place(("a", "x"), b"{}")
        self.place(("a", "y"), b"[]")
        store.load()

        def on_disk():
            found = set()
            for directory, _dirs, names in os.walk(os.path.join(self.run, "data")):
                if "metadata.json" in names:
                    with open(os.path.join(directory, "metadata.json"), "rb") as fh:
                        if fh.read().startswith(b"{"):
                            rel = os.path.relpath(directory, os.path.join(self.run, "data"))
                            found.add(tuple(rel.split(os.sep)))
            return found

        def check():
            everything = on_disk()
            for parent in [(), ("a",), ("a", "x"), ("a", "x", "k"), ("b",), ("b", "s"), ("z",)]:
                wanted = sorted(
                    k[-1] for k in everything if len(k) == len(parent) + 1 and k[:-1] == parent
                )
                self.assertEqual(store.children(parent), wanted, parent)

        check()
        self.assertEqual(store.children(("a",)), ["x"])
        steps = [
            lambda: store.put(("a", "y"), {}),
            lambda: store.put(("a", "x", "k"), {}),
            lambda: store.put(("a", "x", "k", "c2"), {}),
            lambda: store.put(("a", "x", "k", "c1"), {}),
            lambda: store.put(("a", "x", "k", "c1"), {"again": True}),
            lambda: store.put(("b",), {}),
            lambda: store.put(("b", "s"), {}),
            lambda: store.delete(("a", "x", "k", "c2")),
            lambda: store.delete(("a", "x", "k", "c2")),
            lambda: store.delete(("b",)),
            lambda: store.purge(("a", "x")),
            lambda: store.purge(("b",)),
            lambda: store.put(("a", "x"), {}),
        ]
        for step in steps:
            result(step())
            check()
        self.assertEqual(store.children(()), ["a"])
        self.assertEqual(store.children(("a",)), ["x", "y"])
        self.assertEqual(store.children(("a", "x")), [])

    def test_keys_under_a_prefix(self):
        store = self.make_store()
        store.load()
        for key in [("r", "s", "k", "c"), ("r", "s", "k2", "c"), ("r", "t", "k", "c"), ("q",)]:
            result(store.put(key, {}))
        self.assertEqual(
            store.keys(4, under=("r", "s")), [("r", "s", "k", "c"), ("r", "s", "k2", "c")]
        )
        self.assertEqual(store.keys(4, under=("r", "s", "k", "c")), [("r", "s", "k", "c")])
        self.assertEqual(store.keys(4, under=("r", "x")), [])
        self.assertEqual(store.keys(1, under=("q",)), [("q",)])
        self.assertEqual(len(store.keys(4)), 3)

    def test_delete_keeps_nonempty_dir(self):
        store = self.make_store()
        store.load()
        result(store.put(("r", "s", "k", "c"), {}))
        os.makedirs(os.path.join(self.run, "data/r/s/k/c/root"))
        result(store.delete(("r", "s", "k", "c")))
        self.assertTrue(os.path.isdir(os.path.join(self.run, "data/r/s/k/c/root")))
        self.assertFalse(store.exists(("r", "s", "k", "c")))

    def test_rejects_bad_keys(self):
        store = self.make_store()
        for key in [(), ("..",), ("a/b",), ("r", "s", "k", "c", "x"), ("",)]:
            self.assertRaises(ValueError, store.put, key, {})
        self.assertRaises(ValueError, store.children, ("a", "b", "c", "d", "e"))


class DecodedTests(StoreTestMixin, SynchronousTestCase):
    def setUp(self):
        self.store = self.make_store()
        self.store.load()
        self.calls = []

    def decode(self, raw):
        self.calls.append(raw["n"])
        return {"decoded": raw["n"]}

    def test_decoded_once_per_stored_version(self):
        store = self.store
        result(store.put(("r",), {"n": 1}))
        first = store.decoded(("r",), self.decode)
        self.assertIs(store.decoded(("r",), self.decode), first)
        self.assertEqual((first, self.calls), ({"decoded": 1}, [1]))
        result(store.put(("r",), {"n": 2}))
        second = store.decoded(("r",), self.decode)
        self.assertEqual((second, self.calls), ({"decoded": 2}, [1, 2]))
        self.assertIsNot(store.decoded(("r",), self.decode), first)
        self.assertEqual(self.calls, [1, 2])

    def test_each_decoder_has_its_own_result(self):
        result(self.store.put(("r",), {"n": 3}))
        self.assertEqual(self.store.decoded(("r",), self.decode), {"decoded": 3})
        self.assertEqual(self.store.decoded(("r",), lambda raw: raw["n"] * 2), 6)
        first = self.store.decoded(("r",), self.decode)
        self.assertIs(self.store.decoded(("r",), self.decode), first)
        self.assertEqual(self.calls, [3])

    def test_absent_removed_and_purged(self):
        store = self.store
        self.assertIsNone(store.decoded(("r",), self.decode))
        result(store.put(("r",), {"n": 1}))
        result(store.put(("r", "s"), {"n": 2}))
        store.decoded(("r",), self.decode)
        store.decoded(("r", "s"), self.decode)
        result(store.delete(("r", "s")))
        self.assertIsNone(store.decoded(("r", "s"), self.decode))
        result(store.purge(("r",)))
        self.assertIsNone(store.decoded(("r",), self.decode))
        self.assertEqual(store._files, {})

    def test_failures_propagate_and_are_not_cached(self):
        self.place(("bad",), b"{")
        result(self.store.put(("r",), {"m": 1}))
        self.store.load()
        self.assertRaises(MetadataCorrupt, self.store.decoded, ("bad",), self.decode)
        self.assertRaises(KeyError, self.store.decoded, ("r",), self.decode)
        self.assertRaises(KeyError, self.store.decoded, ("r",), self.decode)
        self.assertRaises(ValueError, self.store.decoded, ("..",), self.decode)

    def test_load_forgets_decoded(self):
        result(self.store.put(("r",), {"n": 1}))
        first = self.store.decoded(("r",), self.decode)
        self.store.load()
        self.assertIsNot(self.store.decoded(("r",), self.decode), first)
        self.assertEqual(self.calls, [1, 1])

    def test_copy_json(self):
        doc = {"a": [1, {"b": None, "c": 2.5}], "d": "x", "e": True, "t": (1, [2])}
        copied = copy_json(doc)
        self.assertEqual(copied, doc)
        copied["a"][1]["b"] = 3
        copied["a"].append(4)
        copied["t"][1].append(5)
        self.assertEqual(doc, {"a": [1, {"b": None, "c": 2.5}], "d": "x", "e": True, "t": (1, [2])})


class CrashTests(StoreTestMixin, SynchronousTestCase):
    def test_crash_before_rename_keeps_old_file(self):
        store = self.make_store()
        store.load()
        result(store.put(("r",), {"v": 1}, stamp=False))
        path = store.path(("r",))

        def crash(src, dst):
            raise OSError("power cut")

        self.patch(os, "rename", crash)
        failure = result(store.put(("r",), {"v": 2}, stamp=False))
        failure.trap(OSError)
        with open(path, "rb") as fh:
            self.assertEqual(fh.read(), b'{\n  "v": 1\n}\n')
        self.assertEqual(store.get(("r",)), {"v": 1})
        self.assertEqual(os.listdir(os.path.dirname(path)), ["metadata.json"])

    def test_leftover_temp_ignored_and_cleaned_at_load(self):
        store = self.make_store()
        path = self.place(("r",), b'{"v": 1}')
        temp = os.path.join(os.path.dirname(path), ".meta-123.tmp")
        with open(temp, "wb") as fh:
            fh.write(b'{"v": 2')
        other = os.path.join(os.path.dirname(path), "network.json")
        with open(other, "wb") as fh:
            fh.write(b"{}")
        store.load()
        self.assertEqual(store.get(("r",)), {"v": 1})
        self.assertFalse(os.path.exists(temp))
        self.assertTrue(os.path.exists(other))
        self.assertTrue(atomic.is_temp_name(".meta-x.tmp"))


class ThreadedStoreTests(StoreTestMixin, TestCase):
    def test_writes_on_thread_pool(self):
        store = self.make_store(inline=False)
        store.load()
        self.assertRaises(RuntimeError, store.put, ("r",), {})
        store.start()
        self.addCleanup(store.stop)

        async def go():
            await defer.gatherResults([store.put(("r", f"s{i}"), {"i": i}) for i in range(5)])
            await store.put(("r",), {"n": 1})
            return store.children(("r",))

        d = Deferred.fromCoroutine(go())
        d.addCallback(self.assertEqual, [f"s{i}" for i in range(5)])
        return d


class KeyedLockTests(SynchronousTestCase):
    def test_same_key_serialised_other_keys_parallel(self):
        locks = KeyedLock()
        order = []
        gates = {name: Deferred() for name in ("a1", "a2", "b")}

        async def worker(name, key):
            async with locks(key):
                order.append(f"{name}+")
                await gates[name]
                order.append(f"{name}-")

        runs = [
            Deferred.fromCoroutine(worker("a1", ("r", "a"))),
            Deferred.fromCoroutine(worker("a2", ("r", "a"))),
            Deferred.fromCoroutine(worker("b", ("r", "b"))),
        ]
        self.assertEqual(order, ["a1+", "b+"])
        self.assertTrue(locks.locked(("r", "a")))
        gates["b"].callback(None)
        self.assertEqual(order, ["a1+", "b+", "b-"])
        self.assertFalse(locks.locked(("r", "b")))
        gates["a1"].callback(None)
        self.assertEqual(order, ["a1+", "b+", "b-", "a1-", "a2+"])
        gates["a2"].callback(None)
        self.assertEqual(order[-1], "a2-")
        for run in runs:
            self.assertIsNone(result(run))
        self.assertEqual(len(locks), 0)

    def test_released_on_error_and_cancel(self):
        locks = KeyedLock()

        async def fail():
            async with locks("k"):
                raise ValueError("boom")

        result(Deferred.fromCoroutine(fail())).trap(ValueError)
        self.assertEqual(len(locks), 0)
        held = locks.acquire("k")
        waiting = locks.acquire("k")
        waiting.cancel()
        result(waiting).trap(defer.CancelledError)
        self.assertIsNotNone(result(held))
        locks.release("k")
        self.assertEqual(len(locks), 0)

    def test_store_lock(self):
        store = MetadataStore("/nonexistent", inline=True)
        first = store.lock(("r",))
        result(Deferred.fromCoroutine(first.__aenter__()))
        second = Deferred.fromCoroutine(store.lock(("r",)).__aenter__())
        self.assertFalse(second.called)
        result(Deferred.fromCoroutine(first.__aexit__(None, None, None)))
        self.assertTrue(second.called)
        self.assertRaises(ValueError, store.lock, ("..",))


class FootprintTests(StoreTestMixin, SynchronousTestCase):
    """The index keeps versions and digests; the documents stay on the disk."""

    def test_index_holds_no_documents(self):
        store = self.make_store()
        cell = parse_document(fixture_bytes("cell"))
        for i in range(200):
            cell["metadata"]["name"] = f"c{i:03d}"
            self.place(("r", "s", "k", f"c{i:03d}"), render_document(cell))
        gc.collect()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before = tracemalloc.get_traced_memory()[0]
        self.assertEqual(store.load(), 200)
        self.assertEqual(len(store.keys(4)), 200)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        # A parsed cell document alone takes several KiB; the index entry under 1.5.
        self.assertLess(held / 200, 1536, f"{held / 200:.0f} bytes per document")

    def test_get_reads_the_disk(self):
        store = self.make_store()
        path = self.place(("r",), b'{"n": 1}\n')
        old = (1_700_000_000_000_000_000, 1_700_000_000_000_000_000)
        os.utime(path, ns=old)  # long past: the version is trusted
        self.assertEqual(store.load(), 1)
        self.assertEqual(store.get(("r",)), {"n": 1})
        with open(path, "r+b") as fh:  # same inode, size and mtime: a version that looks alike
            fh.write(b'{"n": 2}\n')
        os.utime(path, ns=old)
        self.assertEqual(store.get(("r",)), {"n": 2})
        first = store.get(("r",))
        first["n"] = 3
        self.assertEqual(store.get(("r",)), {"n": 2})


class WatchedIndexTests(IndexTests):
    """The index tests, the store trusting inotify instead of a stat per read."""

    watch = True


class WatchedDecodedTests(DecodedTests):
    watch = True


class WatchedCrashTests(CrashTests):
    watch = True
