"""List/Get latency of realms, spaces, stacks and cells through a real kukeond socket.

For each size N in 1, 100, 1000 a fresh run path is populated with N realms,
N spaces in one realm, N stacks in one space and N cells (a root and one
workload each) in one stack, written as metadata files
in the reference's on-disk format (so nothing needs containerd to create
them); then the daemon (``python -m kukeond.cli serve``, no containerd
running) loads that tree and one client on one connection times, request
after request, ListRealms/GetRealm, ListSpaces/GetSpace and
ListStacks/GetStack, ListCells (stored documents only, no live
queries) and GetCell. GetRealm also asks containerd whether the namespace
exists, and GetCell asks for its containers' tasks and its root
container; with containerd absent those answers are "no" and cost failed
connection attempts. A call is timed from the request's send to the last
byte of its response (the client's JSON parsing is left out). Prints the
median and p99 per call, the response's size and the daemon's CPU time per
call (read from ``/proc``, steadier than wall time when other work shares
the cores; the kernel counts it in 10 ms ticks, so small calls need many
rounds).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rpc import cpu_seconds, start_daemon  # noqa: E402

from kukeond.store.documents import render_document  # noqa: E402
from tests.controller.reconcile_support import cell_doc  # noqa: E402

STAMP = "2025-06-01T10:00:00.5Z"
SIZES = tuple(int(n) for n in os.environ.get("BENCH_SIZES", "1,100,1000").split(","))


def status(cgroup: str) -> dict:
    return {"state": "Ready", "cgroupPath": cgroup, "createdAt": STAMP, "updatedAt": STAMP,
            "readyAt": STAMP}  # fmt: skip


def write(run: str, key: tuple[str, ...], doc: dict) -> None:
    path = os.path.join(run, "data", *key, "metadata.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(render_document(doc))


def populate(run: str, n: int) -> None:
    for i in range(n):
        realm = f"realm-{i:04d}"
        ns = f"{realm}.kukeon.io"
        write(run, (realm,), {
            "apiVersion": "v1beta1", "kind": "Realm",
            "metadata": {"name": realm, "labels": {"realm.kukeon.io": ns}},
            "spec": {"namespace": ns}, "status": status(f"/kukeon/{realm}")})  # fmt: skip
    for i in range(n):
        space = f"space-{i:04d}"
        write(run, ("realm-0000", space), {
            "apiVersion": "v1beta1", "kind": "Space",
            "metadata": {"name": space, "labels": {"realm.kukeon.io": "realm-0000",
                                                   "space.kukeon.io": space}},
            "spec": {"realmId": "realm-0000"},
            "status": status(f"/kukeon/realm-0000/{space}")})  # fmt: skip
    for i in range(n):
        stack = f"stack-{i:04d}"
        write(run, ("realm-0000", "space-0000", stack), {
            "apiVersion": "v1beta1", "kind": "Stack",
            "metadata": {"name": stack, "labels": {
                "realm.kukeon.io": "realm-0000", "space.kukeon.io": "space-0000",
                "stack.kukeon.io": stack}},
            "spec": {"id": stack, "realmId": "realm-0000", "spaceId": "space-0000"},
            "status": status(f"/kukeon/realm-0000/space-0000/{stack}")})  # fmt: skip
    for i in range(n):
        key = ("realm-0000", "space-0000", "stack-0000", f"cell-{i:04d}")
        doc = cell_doc(key)
        doc["status"].update(status("/kukeon/" + "/".join(key)))
        write(run, key, doc)


class Connection:
    """One persistent client connection sending one request at a time."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buffer = b""
        self.next_id = 0

    def call(self, method: str, params: dict) -> dict:
        return self.check(method, self.call_raw(method, params))

    def call_raw(self, method: str, params: dict) -> bytes:
        """Send one request and return its response line, unparsed."""
        line = json.dumps({"method": f"KukeonV1.{method}", "params": [params],
                           "id": self.next_id}).encode() + b"\n"  # fmt: skip
        self.next_id += 1
        self.sock.sendall(line)
        chunks = [self.buffer]
        while not chunks[-1].endswith(b"\n") and b"\n" not in chunks[-1]:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("daemon closed the connection")
            chunks.append(chunk)
        raw, _, self.buffer = b"".join(chunks).partition(b"\n")
        return raw

    @staticmethod
    def check(method: str, raw: bytes) -> dict:
        reply = json.loads(raw)
        if reply["error"] is not None or reply["result"].get("Err") is not None:
            raise SystemExit(f"{method} failed: {raw[:300]!r}")
        return reply["result"]


def timed(
    conn: Connection, method: str, params: dict, rounds: int, pid: int
) -> tuple[float, float, int, float]:
    """Median and p99 ms, reply bytes, and the daemon's CPU ms per call."""
    conn.call(method, params)
    samples = []
    size = 0
    cpu = cpu_seconds(pid)
    for _ in range(rounds):
        start = time.perf_counter()
        raw = conn.call_raw(method, params)
        samples.append(time.perf_counter() - start)
        size = len(raw)
        conn.check(method, raw)
    cpu = (cpu_seconds(pid) - cpu) * 1e3 / rounds
    samples.sort()
    return statistics.median(samples) * 1e3, samples[int(len(samples) * 0.99)] * 1e3, size, cpu


CALLS = (
    ("ListRealms", {}, "Realms"),
    ("GetRealm", {"Doc": {"metadata": {"name": "realm-0000"}}}, None),
    ("ListSpaces", {"RealmName": "realm-0000"}, "Spaces"),
    ("GetSpace", {"Doc": {"metadata": {"name": "space-0000"},
                          "spec": {"realmId": "realm-0000"}}}, None),
    ("ListStacks", {"RealmName": "realm-0000", "SpaceName": "space-0000"}, "Stacks"),
    ("GetStack", {"Doc": {"metadata": {"name": "stack-0000"},
                          "spec": {"realmId": "realm-0000", "spaceId": "space-0000"}}}, None),
    ("ListCells", {"RealmName": "realm-0000", "SpaceName": "space-0000",
                   "StackName": "stack-0000"}, "Cells"),
    ("GetCell", {"Doc": {"metadata": {"name": "cell-0000"},
                         "spec": {"realmId": "realm-0000", "spaceId": "space-0000",
                                  "stackId": "stack-0000"}}}, None),
)  # fmt: skip


def main() -> None:
    print(f"{'call':<11} {'N':>5} {'median ms':>10} {'p99 ms':>8} {'reply bytes':>12} "
          f"{'CPU ms':>7}")  # fmt: skip
    for n in SIZES:
        directory = tempfile.mkdtemp(prefix="kl-")
        try:
            populate(os.path.join(directory, "run"), n)
            proc, sock = start_daemon(directory)
            try:
                conn = Connection(sock)
                for method, params, items in CALLS:
                    rounds = 50 if (items and n >= 1000) else 200
                    median, p99, size, cpu = timed(conn, method, params, rounds, proc.pid)
                    if items:
                        count = len(conn.call(method, params)[items])
                        assert count == n, (method, count)
                    print(f"{method:<11} {n:>5} {median:>10.3f} {p99:>8.3f} {size:>12} "
                          f"{cpu:>7.2f}")  # fmt: skip
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
