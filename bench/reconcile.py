"""Wall time, longest reactor stall and containerd calls of a reconcile pass (10-1000 cells).

How the cells are built: every cell is a metadata document in the store
(one realm, one stack; writes on the store's own thread, as in the daemon),
with a root and one workload container, recorded in the store's index
exactly as the cell controller writes them.
containerd is ``FakeContainerd`` behind a counting proxy: for each cell the
two containers exist and their tasks run, so the pass finds every cell
steady and writes nothing (the common case), then a second table has every
workload exited, so every cell is wound down (killed, persisted Stopped).
Cgroups are ``FakeCgroups``. Figures are for the reconciler's own work
(document decode, decisions, locks, store writes); real containerd adds
the cost of its two list calls per namespace.

"stall" is the longest the reactor went without running anything else
during the pass: a probe re-arms ``callLater(0)`` throughout and the
widest gap between two of its runs is printed. It is the longest an RPC
arriving mid-pass waits (it includes ``FakeContainerd`` building its listing
of the namespace, which real containerd does on the other side of a socket).
Steady figures are medians of ``ROUNDS`` passes; the wind-down is one pass,
and its time is mostly the cell stops' own containerd calls and store writes.

Run: ``.venv/bin/python bench/reconcile.py``
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from kukeond.base import naming  # noqa: E402
from kukeond.controller.reconcile import Reconciler  # noqa: E402
from kukeond.controller.runtime import Runtime  # noqa: E402
from kukeond.store.metadata import MetadataStore  # noqa: E402
from tests.controller.reconcile_support import (  # noqa: E402
    IMAGE,
    CountingContainerd,
    cell_doc,
)
from tests.support.fake_cgroups import FakeCgroups  # noqa: E402
from tests.support.fake_containerd import FakeContainerd  # noqa: E402
from tests.support.fake_network import FakeNetwork  # noqa: E402
from tests.support.image import busybox_image  # noqa: E402
from tests.support.runtime import test_config  # noqa: E402

SIZES = (10, 100, 1000)
ROUNDS = 5


class StallProbe:
    """Runs on every reactor turn and records the widest gap between two turns."""

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.widest = 0.0
        self.last = 0.0
        self.call = None

    def start(self) -> None:
        self.widest = 0.0
        self.last = time.perf_counter()
        self.call = self.reactor.callLater(0, self._turn)

    def _turn(self) -> None:
        now = time.perf_counter()
        self.widest = max(self.widest, now - self.last)
        self.last = now
        self.call = self.reactor.callLater(0, self._turn)

    def stop(self) -> float:
        self._turn()
        self.call.cancel()
        return self.widest


async def build(cells: int, run_path: str, reactor) -> tuple[Runtime, CountingContainerd]:
    config = test_config(run_path)
    store = MetadataStore(run_path, reactor=reactor)
    store.start()
    store.load()
    fake = FakeContainerd()
    counter = CountingContainerd(fake)
    runtime = Runtime(config, store, counter, FakeCgroups(), FakeNetwork(run_path), reactor)
    ns = naming.realm_namespace("r", runtime.suffix)
    await fake.import_image(ns, busybox_image().oci_tar)
    await store.put(
        ("r",),
        {
            "apiVersion": "v1beta1",
            "kind": "Realm",
            "metadata": {"name": "r", "labels": None},
            "spec": {"namespace": ns},
            "status": {"state": "Ready"},
        },
    )
    for i in range(cells):
        key = ("r", "s", "k", f"c{i}")
        await store.put(key, cell_doc(key))
        for cid in (f"s_k_c{i}_root", f"s_k_c{i}_app"):
            await fake.create_container(ns, cid, IMAGE, {})
            await fake.create_task(ns, cid)
            await fake.start_task(ns, cid)
        runtime.cgroups.create(naming.cgroup_path(runtime.cgroup_root, *key))
    return runtime, counter


async def measure(
    reconciler: Reconciler, counter: CountingContainerd, probe: StallProbe
) -> tuple[float, float, int, object]:
    """One pass: (wall seconds, widest reactor stall, containerd calls, report)."""
    counter.calls.clear()
    probe.start()
    start = time.perf_counter()
    report = await reconciler.run_pass()
    wall = time.perf_counter() - start
    return wall, probe.stop(), counter.total(), report


async def main(reactor) -> None:
    probe = StallProbe(reactor)
    print(f"{'cells':>6} {'steady pass':>12} {'stall':>9} {'calls':>6}   "
          f"{'all wound down':>15} {'stall':>9} {'calls':>6}")  # fmt: skip
    for cells in SIZES:
        run_path = tempfile.mkdtemp(prefix="kb-reconcile-")
        runtime = None
        try:
            runtime, counter = await build(cells, run_path, reactor)
            reconciler = Reconciler(runtime)
            walls, stalls = [], []
            for _ in range(ROUNDS):
                wall, stall, steady_calls, report = await measure(reconciler, counter, probe)
                assert report.cells_scanned == cells and report.cells_updated == 0, report
                walls.append(wall)
                stalls.append(stall)
            steady, steady_stall = statistics.median(walls), statistics.median(stalls)
            ns = naming.realm_namespace("r", runtime.suffix)
            for i in range(cells):
                counter._inner.exit_task(ns, f"s_k_c{i}_app")
            wind, wind_stall, wind_calls, report = await measure(reconciler, counter, probe)
            assert report.cells_updated == cells, report
            print(f"{cells:>6} {steady * 1000:>10.1f}ms {steady_stall * 1000:>7.1f}ms "
                  f"{steady_calls:>6}   {wind * 1000:>13.1f}ms {wind_stall * 1000:>7.1f}ms "
                  f"{wind_calls:>6}")  # fmt: skip
        finally:
            if runtime is not None:
                runtime.store.stop()
            shutil.rmtree(run_path, ignore_errors=True)


if __name__ == "__main__":
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
