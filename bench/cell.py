"""Cell latencies of a real kukeond next to the raw containerd floor, and a concurrent burst.

Runs the daemon (``python -m kukeond.cli serve``) on the private test
containerd (real cgroups, real CNI) and drives it through its unix socket:

* medians over N cells (root + one workload) of CreateCell → Ready, StopCell,
  StartCell and DeleteCell;
* the same containerd work done directly (two containers, the workload
  joined to the root's namespaces; create+start, then kill+delete), measured
  in the same run: the floor the daemon adds to;
* StartCell of a networked cell next to a host-network one;
* wall time to create M cells from 8 concurrent clients;
* CreateCell while 8 other cells are being stopped and wait out their grace
  period (their workloads ignore SIGTERM): what slow stops cost the others;
* containerd round trips (unary calls and streams) per CreateCell, StopCell,
  StartCell and DeleteCell: the daemon runs with a counter around its
  ``SyncContainerd`` (``bench/cell.py serve …``) that writes its totals on
  SIGUSR1.

Needs root. ``BENCH_CELLS`` (10) and ``BENCH_BURST`` (100) size the runs.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kukeond.client import BlockingClient  # noqa: E402
from kukeond.containerd.spec import Namespace, SpecOptions, build_spec  # noqa: E402
from kukeond.containerd.sync import SyncContainerd  # noqa: E402
from kukeond.host.cgroups import detect_cgroups  # noqa: E402
from tests.support.containerd import get_containerd_socket  # noqa: E402
from tests.support.image import busybox_image  # noqa: E402

CELLS = int(os.environ.get("BENCH_CELLS", "10"))
BURST = int(os.environ.get("BENCH_BURST", "100"))
CLIENTS = 8
REALM, SPACE, STACK = "bench", "s", "k"
IMAGE = "docker.io/library/busybox:latest"
WORKLOAD = ["-c", 'trap "exit 0" TERM; sleep 300 & wait']
STUBBORN = ["-c", 'trap "" TERM; sleep 300 & wait']


def start_daemon_with(
    directory: str, containerd: str, cgroup_root: str, suffix: str
) -> tuple[subprocess.Popen, str]:
    """Start kukeond on ``containerd``; return the process and its socket once it listens."""
    sock = os.path.join(directory, "kukeond.sock")
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "serve",
            "--configuration",
            os.path.join(directory, "none.yaml"),
            "serve",
            "--socket",
            sock,
            "--run-path",
            os.path.join(directory, "run"),
            "--containerd-socket",
            containerd,
            "--reconcile-interval",
            "0",
            "--log-level",
            "warn",
            "--cgroup-root",
            cgroup_root,
            "--containerd-namespace-suffix",
            suffix,
        ],
        cwd=ROOT,
        env=dict(
            os.environ, PYTHONPATH=ROOT, BENCH_CALLS_FILE=os.path.join(directory, "calls.json")
        ),
    )
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(directory, "kukeond.pid")):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("daemon did not start")
        time.sleep(0.05)
    return proc, sock


def serve_counting(argv: list[str]) -> int:
    """Run the daemon with every containerd round trip counted by method name.

    On SIGUSR1 the totals so far are written to ``$BENCH_CALLS_FILE``.
    """
    from kukeond import cli

    counts: dict[str, int] = {}
    lock = threading.Lock()

    def counting(original):
        def method(self, name, *args, **kwargs):
            with lock:
                counts[name] = counts.get(name, 0) + 1
            return original(self, name, *args, **kwargs)

        return method

    SyncContainerd.call = counting(SyncContainerd.call)
    SyncContainerd.stream = counting(SyncContainerd.stream)
    target = os.environ["BENCH_CALLS_FILE"]

    def dump(signum, frame) -> None:
        with lock:
            text = json.dumps(counts)
        with open(target + ".tmp", "w") as f:
            f.write(text)
        os.rename(target + ".tmp", target)

    signal.signal(signal.SIGUSR1, dump)
    return cli.main(argv)


def daemon_calls(proc: subprocess.Popen, directory: str) -> dict[str, int]:
    """The daemon's containerd call totals so far, by method name."""
    path = os.path.join(directory, "calls.json")
    if os.path.exists(path):
        os.unlink(path)
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit("daemon did not report its call counts")
        time.sleep(0.01)
    with open(path) as f:
        return json.load(f)


def calls_of(proc: subprocess.Popen, directory: str, fn, *args) -> dict[str, int]:
    """containerd calls the daemon made while ``fn(*args)`` ran, by method name."""
    before = daemon_calls(proc, directory)
    fn(*args)
    after = daemon_calls(proc, directory)
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def cell_doc(name: str, host_network: bool = False, args: list[str] = WORKLOAD) -> dict:
    workload = {
        "id": "w",
        "image": IMAGE,
        "command": "sh",
        "args": args,
        "hostNetwork": host_network,
    }
    return {
        "metadata": {"name": name},
        "spec": {"realmId": REALM, "spaceId": SPACE, "stackId": STACK, "containers": [workload]},
    }


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms"


def floor(client: SyncContainerd, ns: str, cgroup: str, i: int) -> tuple[float, float]:
    """Raw containerd: root + joined workload, create+start; then kill+delete."""
    root, work = f"f{i}_root", f"f{i}_w"
    start = time.perf_counter()
    client.create_container(
        ns,
        root,
        IMAGE,
        build_spec(
            SpecOptions(
                container_id=root,
                namespace=ns,
                args=("sleep", "infinity"),
                cgroups_path=f"{cgroup}/{root}",
            )
        ),
    )
    client.create_task(ns, root)
    pid = client.start_task(ns, root)
    join = tuple(
        Namespace(t, f"/proc/{pid}/ns/{e}")
        for t, e in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))
    )
    client.create_container(
        ns,
        work,
        IMAGE,
        build_spec(
            SpecOptions(
                container_id=work,
                namespace=ns,
                args=("sh", *WORKLOAD),
                namespaces=join,
                cgroups_path=f"{cgroup}/{work}",
            )
        ),
    )
    client.create_task(ns, work)
    client.start_task(ns, work)
    created = time.perf_counter() - start
    start = time.perf_counter()
    for cid in (work, root):
        client.kill_task(ns, cid, 9)
        client.wait_task(ns, cid, 10)
        client.delete_task(ns, cid)
        client.delete_container(ns, cid)
    return created, time.perf_counter() - start


def burst(sock: str) -> float:
    names = [f"b{i}" for i in range(BURST)]
    chunks = [names[i::CLIENTS] for i in range(CLIENTS)]
    errors: list[str] = []

    def run(chunk: list[str]) -> None:
        client = BlockingClient(f"unix://{sock}")
        for name in chunk:
            try:
                client.call("KukeonV1.CreateCell", {"Doc": cell_doc(name)})
            except Exception as exc:  # noqa: BLE001  (counted and reported)
                errors.append(f"{name}: {exc}")
        client.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        print(f"  burst errors: {len(errors)} (first: {errors[0]})")
    return wall


def create_during_slow_stops(sock: str) -> float:
    """CreateCell latency while CLIENTS StopCells wait out the grace of a stubborn workload."""
    docs = [{"Doc": cell_doc(f"slow{i}", args=STUBBORN)} for i in range(CLIENTS)]
    client = BlockingClient(f"unix://{sock}")
    for doc in docs:
        client.call("KukeonV1.CreateCell", doc)

    def stop(doc: dict) -> None:
        own = BlockingClient(f"unix://{sock}")
        own.call("KukeonV1.StopCell", doc)
        own.close()

    threads = [threading.Thread(target=stop, args=(d,)) for d in docs]
    for t in threads:
        t.start()
    time.sleep(0.5)  # every stop is inside its grace period by now
    doc = {"Doc": cell_doc("during")}
    took = timed(client.call, "KukeonV1.CreateCell", doc)
    for t in threads:
        t.join()
    for d in [*docs, doc]:
        client.call("KukeonV1.DeleteCell", d)
    client.close()
    return took


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench/cell.py needs root")
    containerd = get_containerd_socket()
    token = secrets.token_hex(3)
    cgroup_root = f"/kukeon-bench-{token}"
    directory = tempfile.mkdtemp(prefix="kb-")
    proc, sock = start_daemon_with(directory, containerd, cgroup_root, f"b{token}.kukeon.bench")
    client = BlockingClient(f"unix://{sock}")
    sync = SyncContainerd(containerd)
    ns = f"{REALM}.b{token}.kukeon.bench"
    try:
        client.call("KukeonV1.CreateRealm", {"Doc": {"metadata": {"name": REALM}}})
        client.call(
            "KukeonV1.CreateSpace",
            {"Doc": {"metadata": {"name": SPACE}, "spec": {"realmId": REALM}}},
        )
        client.call(
            "KukeonV1.CreateStack",
            {"Doc": {"metadata": {"name": STACK}, "spec": {"realmId": REALM, "spaceId": SPACE}}},
        )
        with open(busybox_image().oci_tar, "rb") as f:
            tarball = base64.b64encode(f.read()).decode()
        client.call("KukeonV1.LoadImage", {"Realm": REALM, "Tarball": tarball})

        create, stop, start, delete, host_start = [], [], [], [], []
        for i in range(CELLS):
            name = f"c{i}"
            doc = {"Doc": cell_doc(name)}
            create.append(timed(client.call, "KukeonV1.CreateCell", doc))
            stop.append(timed(client.call, "KukeonV1.StopCell", doc))
            start.append(timed(client.call, "KukeonV1.StartCell", doc))
            delete.append(timed(client.call, "KukeonV1.DeleteCell", doc))
            hdoc = {"Doc": cell_doc(f"h{i}", host_network=True)}
            client.call("KukeonV1.CreateCell", hdoc)
            client.call("KukeonV1.StopCell", hdoc)
            host_start.append(timed(client.call, "KukeonV1.StartCell", hdoc))
            client.call("KukeonV1.DeleteCell", hdoc)
        # Counted after the timed cells: the steady state, the image already prepared.
        doc = {"Doc": cell_doc("counted")}
        counted = [
            (verb, calls_of(proc, directory, client.call, f"KukeonV1.{verb}", doc))
            for verb in ("CreateCell", "StopCell", "StartCell", "DeleteCell")
        ]
        floor_cgroup = f"{cgroup_root}/floor"
        floors = [floor(sync, ns, floor_cgroup, i) for i in range(CELLS)]

        print(
            f"cells: {CELLS} (root + one workload each), containerd 1.6, runc, cgroup "
            f"v{detect_cgroups().version}"
        )
        print(
            f"  CreateCell -> Ready   {median_ms(create)}   "
            f"(raw containerd create+start floor {median_ms([f[0] for f in floors])})"
        )
        print(
            f"  StopCell              {median_ms(stop)}   "
            f"(raw kill+delete floor {median_ms([f[1] for f in floors])})"
        )
        print(f"  StartCell (CNI)       {median_ms(start)}")
        print(f"  StartCell (host net)  {median_ms(host_start)}")
        print(f"  DeleteCell (stopped)  {median_ms(delete)}")
        wall = burst(sock)
        print(
            f"  {BURST} CreateCell from {CLIENTS} clients: {wall:6.2f} s wall "
            f"({BURST / wall:5.1f} cells/s)"
        )
        for i in range(BURST):
            client.call("KukeonV1.DeleteCell", {"Doc": cell_doc(f"b{i}")})
        during = create_during_slow_stops(sock)
        print(
            f"  CreateCell while {CLIENTS} StopCells wait out a grace period: "
            f"{during * 1000:7.1f} ms"
        )
        for verb, calls in counted:
            detail = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
            print(f"  containerd calls per {verb}: {sum(calls.values())}  ({detail})")
    finally:
        client.close()
        proc.terminate()
        proc.wait(30)
        cleanup(sync, ns, cgroup_root, directory)


def cleanup(sync: SyncContainerd, ns: str, cgroup_root: str, directory: str) -> None:
    for task in sync.list_tasks(ns):
        try:
            sync.kill_task(ns, task.container_id, 9)
            sync.wait_task(ns, task.container_id, 10)
        except Exception:  # noqa: BLE001, S110  (best-effort cleanup)
            pass
        sync.delete_task(ns, task.container_id)
    for container in sync.list_containers(ns):
        sync.delete_container(ns, container.id)
    for image in sync.list_images(ns):
        sync.delete_image(ns, image.name)
    try:
        sync.delete_namespace(ns)
    except Exception:  # noqa: BLE001, S110  (a leftover namespace is harmless here)
        pass
    cgroups = detect_cgroups()
    if cgroups.exists(cgroup_root):
        cgroups.delete(cgroup_root)
    subprocess.run(["ip", "link", "del", "k-" + _bridge()], check=False, stderr=subprocess.DEVNULL)
    shutil.rmtree(directory, ignore_errors=True)


def _bridge() -> str:
    from kukeond.base.naming import bridge_name

    return bridge_name(REALM, SPACE)[2:]


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        sys.exit(serve_counting(sys.argv[2:]))
    main()
