"""Resident memory of an idle kukeond, with 0 and 1000 stored cells, and where it goes.

Prints three tables:

* import stages: VmRSS of a fresh interpreter after each group of imports
  the daemon makes, in the daemon's order (the reactor is installed as
  ``kukeond.cli`` installs it), and which TLS, YAML and archive modules the
  whole daemon import left loaded;
* the metadata index: Python heap held by ``MetadataStore.load()`` of the
  stored cells (tracemalloc), and by the wire text ListCells keeps per
  stored version;
* the daemon (``python -m kukeond.cli serve``) as a process: VmRSS, RssAnon
  and RssFile idle after start with 0 and with 1000 stored cells (one
  realm, space and stack; cells stored Stopped, written before the start as
  ``bench/list.py`` writes them), then after one ListCells of the 1000 and
  after 20 more.

By default no containerd runs (the daemon serves anyway), the reconcile loop
is off and the figures are reproducible on any machine; ``--containerd``
starts a private containerd (root, ``containerd`` on ``PATH``) and
``--reconcile-interval 30s`` turns the loop on as in production (its first
pass, at start-up, decodes every stored cell).

Run: ``.venv/bin/python bench/memory.py [--containerd] [--reconcile-interval 30s]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from list import status, write  # noqa: E402

CELLS = int(os.environ.get("BENCH_CELLS", "1000"))
SETTLE = 1.0  # seconds after the pid file before the idle figure
REALM, SPACE, STACK = "mem", "s", "k"

STAGES = (
    ("interpreter", ()),
    ("twisted.logger", ("twisted.logger",)),
    ("reactor", ("kukeond.startup",)),  # the child runs install_reactor()
    ("twisted.application", ("twisted.application.service", "twisted.python.usage")),
    ("grpc", ("grpc",)),
    ("protobuf runtime", ("google.protobuf.descriptor_pool", "google.protobuf.message_factory")),
    ("containerd _pb stubs", ("kukeond.containerd.stubs",)),
    ("kukeond.containerd", ("kukeond.containerd.grpc",)),
    ("kukeond.api", ("kukeond.api.v1beta1", "kukeond.api.kukeonv1")),
    ("kukeond.controller", ("kukeond.controller.registry", "kukeond.controller.reconcile")),
    ("kukeond.daemon, cli", ("kukeond.daemon", "kukeond.cli")),
)
WATCHED = ("OpenSSL", "cryptography", "service_identity", "yaml", "tarfile", "twisted.web.client")

STAGE_CHILD = """
import importlib, json, sys
def rss():
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) for k, _, v in (l.partition(":") for l in f)
                if k in ("VmRSS", "RssAnon", "RssFile")}
out = []
for label, modules in json.loads(sys.argv[1]):
    for name in modules:
        if name == "kukeond.startup":
            try:
                importlib.import_module(name).install_reactor()
            except ImportError:  # a checkout from before it: the plain reactor
                importlib.import_module("twisted.internet.reactor")
        else:
            importlib.import_module(name)
    out.append((label, rss(), len(sys.modules)))
loaded = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
print(json.dumps({"stages": out, "loaded": loaded}))
"""


def import_stages() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STAGE_CHILD, json.dumps(STAGES), json.dumps(WATCHED)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        check=True,
        text=True,
    )
    found = json.loads(done.stdout)
    head = ("import stage", "VmRSS MiB", "+MiB", "anon+", "file+", "modules")
    print("{:<24} {:>9} {:>6} {:>6} {:>6} {:>8}".format(*head))
    previous = None
    for label, rss, modules in found["stages"]:
        now = {k: v / 1024 for k, v in rss.items()}
        if previous is None:
            print(f"{label:<24} {now['VmRSS']:>9.1f} {'':>6} {'':>6} {'':>6} {modules:>8}")
        else:
            delta = {k: now[k] - previous[k] for k in now}
            print(f"{label:<24} {now['VmRSS']:>9.1f} {delta['VmRSS']:>6.1f} "
                  f"{delta['RssAnon']:>6.1f} {delta['RssFile']:>6.1f} {modules:>8}")  # fmt: skip
        previous = now
    print(f"loaded after the daemon's imports: {', '.join(found['loaded']) or 'none'} "
          f"(of {', '.join(WATCHED)})")  # fmt: skip


def populate(run: str, n: int) -> None:
    """Realm, space and stack, and ``n`` stopped cells in the stack."""
    from kukeond.api import v1beta1 as v1
    from tests.controller.reconcile_support import cell_doc

    ns = f"{REALM}.kukeon.io"
    write(run, (REALM,), {
        "apiVersion": "v1beta1", "kind": "Realm",
        "metadata": {"name": REALM, "labels": {"realm.kukeon.io": ns}},
        "spec": {"namespace": ns}, "status": status(f"/kukeon-bench/{REALM}")})  # fmt: skip
    write(run, (REALM, SPACE), {
        "apiVersion": "v1beta1", "kind": "Space",
        "metadata": {"name": SPACE, "labels": {"realm.kukeon.io": REALM,
                                               "space.kukeon.io": SPACE}},
        "spec": {"realmId": REALM},
        "status": status(f"/kukeon-bench/{REALM}/{SPACE}")})  # fmt: skip
    write(run, (REALM, SPACE, STACK), {
        "apiVersion": "v1beta1", "kind": "Stack",
        "metadata": {"name": STACK, "labels": {"realm.kukeon.io": REALM,
                                               "space.kukeon.io": SPACE,
                                               "stack.kukeon.io": STACK}},
        "spec": {"id": STACK, "realmId": REALM, "spaceId": SPACE},
        "status": status(f"/kukeon-bench/{REALM}/{SPACE}/{STACK}")})  # fmt: skip
    for i in range(n):
        key = (REALM, SPACE, STACK, f"c{i:04d}")
        doc = cell_doc(key, state=v1.STOPPED)
        doc["status"].update(status("/kukeon-bench/" + "/".join(key)))
        doc["status"]["state"] = "Stopped"
        doc["status"]["readyObserved"] = False
        write(run, key, doc)


def index_size(n: int) -> None:
    """Python heap of the store's index of ``n`` cells, and of ListCells' wire text."""
    from kukeond.api import v1beta1 as v1
    from kukeond.controller.common import stored_wire
    from kukeond.store.metadata import MetadataStore

    directory = tempfile.mkdtemp(prefix="km-")
    try:
        run = os.path.join(directory, "run")
        populate(run, n)
        files = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(run) for f in fs)
        time.sleep(0.15)  # past the store's racy window: versions are trusted
        store = MetadataStore(run, inline=True)
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            store.load()
            gc.collect()
            loaded = tracemalloc.get_traced_memory()[0] - base
            store.decoded_keys(4, (REALM, SPACE, STACK), stored_wire(v1.CellDoc, "Cell"))
            gc.collect()
            wire = tracemalloc.get_traced_memory()[0] - base - loaded
        finally:
            tracemalloc.stop()
        print(f"metadata files of {n} cells on disk: {files / 2**20:.2f} MiB")
        print(f"index after load: {loaded / 2**20:.2f} MiB ({loaded / max(n, 1):.0f} B per cell); "
              f"ListCells wire text kept: {wire / 2**20:.2f} MiB")  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def proc_status(pid: int) -> dict[str, float]:
    with open(f"/proc/{pid}/status") as f:
        return {
            k: int(v.split()[0]) / 1024
            for k, _, v in (line.partition(":") for line in f)
            if k in ("VmRSS", "RssAnon", "RssFile")
        }


def list_cells(sock: str) -> int:
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(sock)
    try:
        params = {"RealmName": REALM, "SpaceName": SPACE, "StackName": STACK}
        frame = {"method": "KukeonV1.ListCells", "params": [params], "id": 0}
        conn.sendall(json.dumps(frame).encode() + b"\n")
        chunks = []
        while not chunks or not chunks[-1].endswith(b"\n"):
            chunk = conn.recv(1 << 20)
            if not chunk:
                raise SystemExit("daemon closed the connection")
            chunks.append(chunk)
        reply = json.loads(b"".join(chunks))
        if reply["error"] or reply["result"].get("Err"):
            raise SystemExit(f"ListCells failed: {str(reply)[:300]}")
        return len(reply["result"]["Cells"])
    finally:
        conn.close()


def daemon(n: int, containerd_socket: str | None, interval: str) -> list[tuple[str, dict]]:
    """Start the daemon on ``n`` stored cells; its memory idle and after ListCells."""
    directory = tempfile.mkdtemp(prefix="km-")
    run = os.path.join(directory, "run")
    sock = os.path.join(directory, "kukeond.sock")
    try:
        populate(run, n)
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "kukeond.cli",
                "--configuration", os.path.join(directory, "none.yaml"),
                "serve", "--socket", sock, "--run-path", run,
                "--containerd-socket",
                containerd_socket or os.path.join(directory, "no-containerd.sock"),
                "--containerd-namespace-suffix", "kukeon-mem.test",
                "--reconcile-interval", interval, "--log-level", "error",
                "--cgroup-root", "/kukeon-bench-mem", "--pull-policy", "never",
            ],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(directory, "kukeond.pid")):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("daemon did not start")
                time.sleep(0.05)
            time.sleep(SETTLE)
            rows = [(f"idle, {n} cells", proc_status(proc.pid))]
            if n:
                assert list_cells(sock) == n
                time.sleep(0.2)
                rows.append((f"after 1 ListCells of {n}", proc_status(proc.pid)))
                for _ in range(20):
                    list_cells(sock)
                time.sleep(0.2)
                rows.append((f"after 21 ListCells of {n}", proc_status(proc.pid)))
            return rows
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/memory.py")
    parser.add_argument("--containerd", action="store_true", help="run a private containerd")
    parser.add_argument("--reconcile-interval", default="0")
    parser.add_argument("--skip-imports", action="store_true")
    ns = parser.parse_args()
    if not ns.skip_imports:
        import_stages()
        print()
    index_size(CELLS)
    print()
    private = None
    containerd_socket = None
    if ns.containerd:
        from tools.private_containerd import PrivateContainerd

        private = PrivateContainerd(tempfile.mkdtemp(prefix="km-ctd-"))
        containerd_socket = private.start()
    try:
        where = "a private containerd" if private else "no containerd"
        print(f"daemon with {where}, reconcile interval {ns.reconcile_interval}")
        print(f"{'daemon':<28} {'VmRSS MiB':>9} {'RssAnon':>8} {'RssFile':>8}")
        for n in (0, CELLS):
            for label, figures in daemon(n, containerd_socket, ns.reconcile_interval):
                print(f"{label:<28} {figures['VmRSS']:>9.1f} {figures['RssAnon']:>8.1f} "
                      f"{figures['RssFile']:>8.1f}")  # fmt: skip
    finally:
        if private is not None:
            private.stop(remove=True)


if __name__ == "__main__":
    main()
