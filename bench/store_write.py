"""Cost of one metadata write (temp file, fsync, rename, dir fsync) and of a store get.

Prints the median and 95th percentile write time inline and through the
store's thread pool, and the in-memory read time, on the disk holding the
temp directory (set TMPDIR to measure another one).
"""

import os
import shutil
import statistics
import tempfile
import time

from twisted.internet import defer, task

from kukeond.base import atomic
from kukeond.store.documents import render_document
from kukeond.store.metadata import MetadataStore

ROUNDS = 200
DOC = {
    "apiVersion": "v1beta1",
    "kind": "Cell",
    "metadata": {"name": "web", "labels": {f"label{i}": "value" for i in range(10)}},
    "spec": {
        "containers": [{"id": f"c{i}", "image": "busybox", "args": ["x"] * 5} for i in range(4)]
    },
    "status": {"state": "Ready"},
}


def figures(label, samples):
    samples = sorted(samples)
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(
        f"{label}: median {statistics.median(samples) * 1e3:.3f} ms, "
        f"p95 {p95 * 1e3:.3f} ms over {len(samples)}"
    )


async def main(reactor):
    base = tempfile.mkdtemp(prefix="kukeond-bench-")
    try:
        path = os.path.join(base, "data", "r", "metadata.json")
        data = render_document(DOC)
        inline = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            atomic.atomic_write(path, data)
            inline.append(time.perf_counter() - start)
        figures("atomic write, inline", inline)

        store = MetadataStore(base)
        store.load()
        store.start()
        try:
            threaded = []
            for i in range(ROUNDS):
                start = time.perf_counter()
                await store.put(("r", "s", "k", f"c{i % 20}"), DOC)
                threaded.append(time.perf_counter() - start)
            figures("store.put via thread pool", threaded)
        finally:
            store.stop()
        reads = []
        for i in range(ROUNDS):
            start = time.perf_counter()
            store.get(("r", "s", "k", f"c{i % 20}"))
            reads.append(time.perf_counter() - start)
        figures("store.get from the index", reads)
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
