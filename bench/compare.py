"""Our kukeond next to the reference Go kukeond v0.5.0, in one run on one containerd 2.2.

Starts a private containerd 2.2 from the reference binaries
(``$KUKEON_REFERENCE_BIN``, default ``../shared/bin``), then both daemons on
it, each with its own socket, run path, namespace suffix, cgroup root and
realms (so their bridges differ), and measures each the same way, one after
the other:

* Ping, GetCell and ListCells (a stack of 10 stored cells): requests per
  second and per-request p50/p99 with 1, 8 and 32 connections, each a closed
  loop (``bench/rpc.py``'s client, raw Go jsonrpc framing);
* ListCells of 200 and 1000 stored cells, one connection;
* CreateCell (→ Ready), StopCell, StartCell, DeleteCell: medians over a few
  cells on the real containerd, a workload that exits on SIGTERM;
* a burst of 20 CreateCells from 4 clients: wall time;
* resident memory (VmRSS) idle and after the run.

The stored cells of the list/get figures are metadata files written before
the daemons start (as ``bench/list.py`` does), in each daemon's run path
with its own suffix and cgroup root. Prints one table: ours, the reference,
ours/reference. Without the reference binaries (or root, runc, busybox) it
prints one line and exits 0. Takes about four minutes on 2 cores.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from list import status as stored_status  # noqa: E402
from list import write as write_doc  # noqa: E402
from rpc import cpu_seconds, request, rss_kib, throughput  # noqa: E402

from tests.support import reference  # noqa: E402

CONCURRENCY = (1, 8, 32)
SECONDS = 2.0
LIST_SIZES = (200, 1000)
LIFECYCLE_CELLS = 5
BURST, BURST_CLIENTS = 20, 4
WORKLOAD = ["-c", 'trap "exit 0" TERM; sleep 300 & wait']
IMAGE = "docker.io/library/busybox:latest"


def missing() -> str | None:
    """Why the comparison cannot run here, in one line; None when it can."""
    for name in ("kuke", "containerd", "containerd-shim-runc-v2"):
        reason = reference.missing_reason(name)
        if reason:
            return reason
    if os.geteuid() != 0:
        return "needs root (containerd, cgroups, CNI)"
    if shutil.which("runc") is None:
        return "runc not installed"
    if not os.path.exists("/bin/busybox"):
        return "/bin/busybox missing (apt-get install busybox-static)"
    return None


# stored cells for the list/get figures


def populate(run_path: str, suffix: str, cgroup_root: str) -> None:
    """Realm ``bl``, space ``s``, stacks ``k10``, ``k200``, ``k1000`` of stopped cells."""
    from kukeond.api import v1beta1 as v1
    from tests.controller.reconcile_support import cell_doc

    realm, space = "bl", "s"
    ns = f"{realm}.{suffix}"
    write_doc(
        run_path,
        (realm,),
        {
            "apiVersion": "v1beta1",
            "kind": "Realm",
            "metadata": {"name": realm, "labels": {"realm.kukeon.io": ns}},
            "spec": {"namespace": ns},
            "status": stored_status(f"{cgroup_root}/{realm}"),
        },
    )
    write_doc(
        run_path,
        (realm, space),
        {
            "apiVersion": "v1beta1",
            "kind": "Space",
            "metadata": {
                "name": space,
                "labels": {"realm.kukeon.io": realm, "space.kukeon.io": space},
            },
            "spec": {"realmId": realm},
            "status": stored_status(f"{cgroup_root}/{realm}/{space}"),
        },
    )
    for n in (10, *LIST_SIZES):
        stack = f"k{n}"
        write_doc(
            run_path,
            (realm, space, stack),
            {
                "apiVersion": "v1beta1",
                "kind": "Stack",
                "metadata": {
                    "name": stack,
                    "labels": {
                        "realm.kukeon.io": realm,
                        "space.kukeon.io": space,
                        "stack.kukeon.io": stack,
                    },
                },
                "spec": {"id": stack, "realmId": realm, "spaceId": space},
                "status": stored_status(f"{cgroup_root}/{realm}/{space}/{stack}"),
            },
        )
        for i in range(n):
            key = (realm, space, stack, f"c{i:04d}")
            doc = cell_doc(key, state=v1.STOPPED)
            doc["status"].update(stored_status(f"{cgroup_root}/" + "/".join(key)))
            doc["status"]["state"] = "Stopped"
            doc["status"]["readyObserved"] = False
            write_doc(run_path, key, doc)


def where(n: int) -> dict:
    return {"RealmName": "bl", "SpaceName": "s", "StackName": f"k{n}"}


GET_CELL = {
    "Doc": {
        "metadata": {"name": "c0000"},
        "spec": {"realmId": "bl", "spaceId": "s", "stackId": "k10"},
    }
}


# measurements


def load(sock: str, frame: bytes, connections: int) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 in ms of a closed loop on ``connections``."""
    asyncio.run(throughput(sock, connections, 0.3, frame))  # warm up
    latencies: list[float] = []
    rps = asyncio.run(throughput(sock, connections, SECONDS, frame, latencies))
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return rps, statistics.median(latencies) * 1e3, p99 * 1e3


def cell(realm: str, name: str) -> dict:
    return {
        "Doc": {
            "metadata": {"name": name},
            "spec": {
                "realmId": realm,
                "spaceId": "s",
                "stackId": "k",
                "containers": [{"id": "w", "image": IMAGE, "command": "sh", "args": WORKLOAD}],
            },
        }
    }


def setup_lifecycle(client, realm: str, tarball: str) -> None:
    client.call("KukeonV1.CreateRealm", {"Doc": {"metadata": {"name": realm}}})
    client.call(
        "KukeonV1.CreateSpace", {"Doc": {"metadata": {"name": "s"}, "spec": {"realmId": realm}}}
    )
    client.call(
        "KukeonV1.CreateStack",
        {"Doc": {"metadata": {"name": "k"}, "spec": {"realmId": realm, "spaceId": "s"}}},
    )
    client.call("KukeonV1.LoadImage", {"Realm": realm, "Tarball": tarball})


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def lifecycle(client, realm: str) -> dict[str, float]:
    """Median seconds of CreateCell, StopCell, StartCell, DeleteCell over a few cells."""
    times: dict[str, list[float]] = {
        "CreateCell": [],
        "StopCell": [],
        "StartCell": [],
        "DeleteCell": [],
    }
    for i in range(LIFECYCLE_CELLS):
        doc = cell(realm, f"l{i}")
        for verb in times:
            times[verb].append(timed(client.call, f"KukeonV1.{verb}", doc))
    return {verb: statistics.median(values) for verb, values in times.items()}


def burst(sock: str, realm: str) -> tuple[float, int]:
    """Wall seconds for BURST CreateCells from BURST_CLIENTS clients; how many failed."""
    from kukeond.client import BlockingClient

    names = [f"b{i}" for i in range(BURST)]
    errors: list[str] = []

    def run(chunk: list[str]) -> None:
        client = BlockingClient(f"unix://{sock}", timeout=120)
        try:
            for name in chunk:
                try:
                    client.call("KukeonV1.CreateCell", cell(realm, name))
                except Exception as e:  # noqa: BLE001 - counted and reported
                    errors.append(f"{name}: {e}")
        finally:
            client.close()

    workers = [
        threading.Thread(target=run, args=(names[i::BURST_CLIENTS],)) for i in range(BURST_CLIENTS)
    ]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    if errors:
        print(f"  burst errors: {len(errors)} (first: {errors[0][:200]})", flush=True)
    return wall, len(errors)


# the run


class Side:
    """One daemon under measurement and its figures."""

    def __init__(self, name: str, daemon, realm: str) -> None:
        self.name = name
        self.daemon = daemon
        self.realm = realm
        self.figures: dict[str, float | None] = {}

    @property
    def pid(self) -> int | None:
        proc = self.daemon.process
        return proc.pid if proc is not None and proc.poll() is None else None

    def rss_mib(self) -> float | None:
        return rss_kib(self.pid) / 1024 if self.pid else None


def settle(sides: list[Side], timeout: float = 30.0) -> None:
    """Wait until every daemon is idle: under 5 ms of CPU in half a second (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [side.pid for side in sides if side.pid]
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(0.5)
        if all(cpu_seconds(pid) - cpu < 0.005 for pid, cpu in zip(pids, before, strict=True)):
            return


def measure_all(sides: list[Side], tarball: str) -> list[str]:
    """Fill every side's figures; return the figure names in table order."""
    from kukeond.client import BlockingClient

    order: list[str] = []

    def record(side: Side, name: str, value: float | None) -> None:
        if name not in order:
            order.append(name)
        side.figures[name] = value

    for side in sides:
        record(side, "RSS idle (MiB)", side.rss_mib())
    calls = (
        ("Ping", request("Ping", {})),
        ("GetCell", request("GetCell", GET_CELL)),
        ("ListCells 10", request("ListCells", where(10))),
    )
    for label, frame in calls:
        for n in CONCURRENCY:
            for side in sides:
                rps, p50, p99 = load(side.daemon.socket, frame, n)
                record(side, f"{label} x{n} req/s", rps)
                record(side, f"{label} x{n} p50 ms", p50)
                record(side, f"{label} x{n} p99 ms", p99)
            print(f"  {label} x{n} done", flush=True)
    for size in LIST_SIZES:
        frame = request("ListCells", where(size))
        for side in sides:
            rps, p50, p99 = load(side.daemon.socket, frame, 1)
            record(side, f"ListCells {size} req/s", rps)
            record(side, f"ListCells {size} p50 ms", p50)
            record(side, f"ListCells {size} p99 ms", p99)
    print("  list/get done", flush=True)
    for side in sides:
        client = BlockingClient(f"unix://{side.daemon.socket}", timeout=120)
        try:
            setup_lifecycle(client, side.realm, tarball)
            for verb, seconds in lifecycle(client, side.realm).items():
                record(side, f"{verb} median ms", seconds * 1e3)
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            print(f"  {side.name}: cell lifecycle failed: {e}", flush=True)
        finally:
            client.close()
        print(f"  {side.name}: lifecycle done", flush=True)
    for side in sides:
        wall, failed = burst(side.daemon.socket, side.realm)
        record(side, f"{BURST} CreateCell / {BURST_CLIENTS} clients s", wall)
        record(side, "  burst CreateCells failed", float(failed))
        if side.pid is None:
            print(f"  {side.name}: the daemon died during the burst", flush=True)
    for side in sides:
        record(side, "RSS after run (MiB)", side.rss_mib())
    return order


def table(sides: list[Side], order: list[str]) -> str:
    ours, ref = sides
    lines = [f"{'figure':<36} {'ours':>10} {'reference':>10} {'ours/ref':>9}", "-" * 68]

    def fmt(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"

    for name in order:
        a, b = ours.figures.get(name), ref.figures.get(name)
        ratio = f"{a / b:.2f}" if a is not None and b else "-"
        lines.append(f"{name:<36} {fmt(a):>10} {fmt(b):>10} {ratio:>9}")
    return "\n".join(lines)


def main() -> int:
    reason = missing()
    if reason:
        print(f"bench/compare.py skipped: {reason}")
        return 0

    from kukeond.base import naming
    from tests.containerd.ocispec import remove_cgroup_tree
    from tests.network.hostenv import free_parent_cidr, link_exists, remove_masquerade, sh
    from tests.support.containerd import _stop as stop_containerd
    from tests.support.daemon import OurKukeond
    from tests.support.image import busybox_image
    from tools.private_containerd import PrivateContainerd

    began = time.monotonic()
    top = tempfile.mkdtemp(prefix="kcmp-")
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        ip_forward = f.read().strip()
    containerd = PrivateContainerd(
        os.path.join(top, "ctrd"), binary=os.path.join(reference.reference_dir(), "containerd")
    )
    sides: list[Side] = []
    try:
        socket = containerd.start()
        ours_dir, go_dir = os.path.join(top, "o"), os.path.join(top, "g")
        os.makedirs(ours_dir)
        os.makedirs(go_dir)
        ours = OurKukeond(ours_dir, socket, "0", free_parent_cidr())
        ours.flags += ["--log-level", "warn"]
        go = reference.GoKukeond(
            go_dir,
            socket,
            f"g{secrets.token_hex(3)}",
            ("--reconcile-interval", "0", "--log-level", "warn"),
        )
        sides = [Side("ours", ours, "co"), Side("reference", go, "cg")]
        for side in sides:
            d = side.daemon
            populate(d.run_path, d.namespace_suffix, d.cgroup_root)
            d.start(timeout=60)
        with open(busybox_image().oci_tar, "rb") as f:
            tarball = base64.b64encode(f.read()).decode()
        # Measured one after the other, each side must not share the cores with
        # the other's start-up work (the Go daemon's goes on for seconds).
        settle(sides)
        print(f"containerd {containerd.version}, {os.cpu_count()} cores; measuring ...", flush=True)
        order = measure_all(sides, tarball)
        print()
        print(table(sides, order))
        print(f"\n(run took {time.monotonic() - began:.0f} s)")
    finally:
        for side in sides:
            side.daemon.stop()
        if containerd.running:
            stop_containerd(containerd)
        else:
            containerd.stop(remove=True)
        for side in sides:
            remove_cgroup_tree(side.daemon.cgroup_root)
            remove_masquerade(naming.network_name(side.realm, "s"))
            bridge = naming.bridge_name(side.realm, "s")
            if link_exists(bridge):
                sh("ip", "link", "delete", bridge, check=False)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(ip_forward)
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
