"""Many clients on a few cells at once: the daemon answers every call sensibly and leaks nothing.

Under four clients creating cells at once the reference daemon v0.5.0 died
with ``fatal error: concurrent map read and map write`` or answered
``ContainerExists``. Here eight clients (over six connections, so some
connections carry two clients' calls at once) spend :data:`STRESS_SECONDS`
calling Create/Start/Stop/Kill/Delete/Purge/Get/List Cell and
Start/Stop/Kill Container on a pool of six cells, so calls on one cell
collide all the time, while the reconciler runs every two seconds.

* Every reply is a success or one of the refusals in :data:`ALLOWED_ERRORS`;
  anything else fails the test with the whole reply.
* The daemon stays up and answers Ping.
* What is left matches the documents: exactly the containers whose status
  is Ready exist, with running tasks; a Ready cell's root runs; a Stopped
  cell runs nothing but, after its workload was stopped on request, its
  root; a Failed cell runs nothing; no container lacks a document.
* Once every cell is deleted through the API, no container, task, container
  snapshot, cell cgroup, IPAM lease, CNI cache entry, bridge port, cell
  directory or masquerade chain is left.

The daemon is a real process on the test containerd, with its own socket,
run path, cgroup root, namespace suffix, CNI cache and IPAM directories and a
subnet pool no host route uses; traffic stays on the test's own bridge.
Cleanup removes all of it even when the test fails.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import random
import re
import secrets
import shutil
import threading
import time

from twisted.internet import reactor, task, threads
from twisted.python import log
from twisted.trial.unittest import TestCase

from kukeond.base import naming
from kukeond.client import APIError, BlockingClient, ClientError, KukeonClient
from kukeond.containerd.grpc import GrpcContainerd
from kukeond.host.cgroups import detect_cgroups
from kukeond.host.cninetwork import masquerade_chain
from tests.network.hostenv import (
    free_parent_cidr,
    link_exists,
    preserve_ip_forward,
    remove_masquerade,
    sh,
)
from tests.support.containerd import get_containerd_socket
from tests.support.daemon import spawn_daemon, stop_daemon_process
from tests.support.image import busybox_image
from tests.support.runtime import purge_test_namespaces, remove_cgroup_tree, short_tmpdir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "docker.io/library/busybox:latest"

STRESS_SECONDS = 60.0
"""How long the clients keep calling."""
CLIENTS = 8
CONNECTIONS = 6
"""Clients share connections round-robin: two connections carry two clients' calls at once."""
CELLS = tuple(f"c{i}" for i in range(6))
"""The pool every client picks from, small so that calls on one cell collide."""
SPACE, STACK, WORKLOAD = "web", "front", "app"
CALL_TIMEOUT = 60.0
"""No single call may take longer (a stop waits at most 10 s of grace and 5 s after SIGKILL)."""

OPERATIONS = (
    # (method, weight)
    ("CreateCell", 4),
    ("StartCell", 2),
    ("StopCell", 2),
    ("KillCell", 2),
    ("DeleteCell", 2),
    ("PurgeCell", 1),
    ("StartContainer", 2),
    ("StopContainer", 2),
    ("KillContainer", 2),
    ("GetCell", 1),
    ("ListCells", 1),
    ("ListContainers", 1),
)

_CELL = r'"c\d"'
_NOT_FOUND = rf'^cell {_CELL} not found in realm "[a-z0-9]+", space "{SPACE}", stack "{STACK}"$'
ALLOWED_ERRORS = (
    # (methods, Err.Kind, Err.Message pattern): the refusals a collision may earn.
    (
        {"StartCell", "StopCell", "KillCell", "DeleteCell", "PurgeCell",
         "StartContainer", "StopContainer", "KillContainer"},
        "Unknown",
        _NOT_FOUND,
    ),
    ({"StartCell"}, "Unknown", rf"^cell {_CELL} has running containers and must first be stopped$"),
    (
        {"StartCell"},
        "Unknown",
        rf"^cell {_CELL} is already in Ready state and must first be stopped$",
    ),
    (
        {"StartContainer"},
        "Unknown",
        rf"^root container of cell {_CELL} is not running; start the cell first "
        rf"using 'kuke start cell c\d'$",
    ),
)  # fmt: skip

REFUSALS = ("cell not found", "running", "already Ready", "root not running")


def allowed(method: str, error: APIError) -> int | None:
    """The index in ALLOWED_ERRORS of ``error`` as a refusal of ``method``, else None."""
    for index, (methods, kind, pattern) in enumerate(ALLOWED_ERRORS):
        if method in methods and error.kind == kind and re.match(pattern, error.message):
            return index
    return None


class ConcurrencyTests(TestCase):
    timeout = 240

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("the concurrency test needs root")
        self.containerd_socket = get_containerd_socket()
        self.dir = short_tmpdir(self, "kc-")
        token = secrets.token_hex(3)
        self.realm = f"z{token}"
        self.suffix = f"t{token}.kukeon.test"
        self.ns = f"{self.realm}.{self.suffix}"
        self.cgroot = f"/kukeon-test-{token}"
        self.sock = os.path.join(self.dir, "kukeond.sock")
        self.run_path = os.path.join(self.dir, "run")
        self.ipam_dir = os.path.join(self.dir, "cni-ipam")
        self.cache_dir = os.path.join(self.dir, "cni-cache")
        self.network = naming.network_name(self.realm, SPACE)
        self.bridge = naming.bridge_name(self.realm, SPACE)
        self.flags = [
            "--configuration", os.path.join(self.dir, "absent.yaml"),
            "--socket", self.sock,
            "--run-path", self.run_path,
            "--containerd-socket", self.containerd_socket,
            "--containerd-namespace-suffix", self.suffix,
            "--cgroup-root", self.cgroot,
            "--reconcile-interval", "2s",
            "--pull-policy", "never",
            "--cni-cache-dir", self.cache_dir,
            "--cni-ipam-dir", self.ipam_dir,
            "--cni-subnet-pool", free_parent_cidr(),
        ]  # fmt: skip
        preserve_ip_forward(self)
        self.containerd = GrpcContainerd(self.containerd_socket, reactor=reactor)
        self.containerd.start()
        self.addCleanup(self.cleanup_host)
        self.proc = None
        self.client = None

    # --- the daemon and the host ------------------------------------------------------

    def start_daemon(self):
        self.proc = spawn_daemon(self.flags, os.path.join(self.dir, "daemon.log"))
        self.client = KukeonClient(reactor, f"unix://{self.sock}")

    async def stop_daemon(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None:
            await stop_daemon_process(self.proc, 30)

    async def cleanup_host(self):
        await self.stop_daemon()
        await purge_test_namespaces(self.containerd, self.suffix)
        await self.containerd.stop()
        remove_cgroup_tree(detect_cgroups(), self.cgroot)
        remove_masquerade(self.network)
        if link_exists(self.bridge):
            sh("ip", "link", "delete", self.bridge, check=False)

    def root_cids(self):
        return [naming.root_containerd_id(SPACE, STACK, cell) for cell in CELLS]

    def nat_rules(self):
        return sh("iptables", "-w", "-t", "nat", "-S", check=False)

    def daemon_log(self):
        """The log's tail; the whole log is kept in the trial directory for a failure."""
        path = os.path.join(self.dir, "daemon.log")
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            return ""
        kept = os.path.abspath(f"concurrency-daemon-{self.realm}.log")
        shutil.copyfile(path, kept)
        return f"daemon log: {kept}\n{text[-6000:]}"

    async def call(self, method, **args):
        for _ in range(200):  # the daemon may still be starting
            if os.path.exists(os.path.join(self.dir, "kukeond.pid")):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        return await self.client.call(method, args)

    # --- requests -----------------------------------------------------------------------

    def cell_doc(self, name, containers=None):
        spec = {"realmId": self.realm, "spaceId": SPACE, "stackId": STACK}
        if containers is not None:
            spec["containers"] = containers
        return {"metadata": {"name": name}, "spec": spec}

    def container_doc(self, cell):
        return {
            "metadata": {"name": WORKLOAD},
            "spec": {"realmId": self.realm, "spaceId": SPACE, "stackId": STACK, "cellId": cell},
        }

    def request(self, method, cell):
        if method == "CreateCell":
            workload = {
                "id": WORKLOAD, "image": IMAGE, "command": "sh",
                "args": ["-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"],
            }  # fmt: skip
            return {"Doc": self.cell_doc(cell, [workload])}
        if method.endswith("Container"):
            return {"Doc": self.container_doc(cell)}
        if method in ("ListCells", "ListContainers"):
            return {"RealmName": self.realm, "SpaceName": SPACE, "StackName": STACK, "CellName": ""}
        return {"Doc": self.cell_doc(cell)}

    # --- the stress -----------------------------------------------------------------------

    def stress(self):
        """Run the clients for STRESS_SECONDS (in threads); return counts and failures."""
        deadline = time.monotonic() + STRESS_SECONDS
        counts: collections.Counter = collections.Counter()
        failures: list[str] = []
        lock = threading.Lock()
        methods = [m for m, _ in OPERATIONS]
        weights = [w for _, w in OPERATIONS]
        seed = secrets.randbits(32)

        connections = [
            BlockingClient(f"unix://{self.sock}", timeout=CALL_TIMEOUT) for _ in range(CONNECTIONS)
        ]

        def client_loop(index):
            rng = random.Random(seed + index)
            client = connections[index % CONNECTIONS]
            while time.monotonic() < deadline:
                with lock:
                    if failures:
                        return
                method = rng.choices(methods, weights)[0]
                cell = rng.choice(CELLS)
                started = time.monotonic()
                try:
                    client.call(method, self.request(method, cell))
                    outcome = "ok"
                except APIError as exc:
                    refusal = allowed(method, exc)
                    if refusal is None:
                        with lock:
                            failures.append(
                                f"{method} {cell}: unexpected reply "
                                f"{json.dumps(exc.reply, sort_keys=True)}"
                            )
                        return
                    outcome = f"refused ({REFUSALS[refusal]})"
                except ClientError as exc:
                    with lock:
                        failures.append(f"{method} {cell}: no reply: {exc}")
                    return
                took = time.monotonic() - started
                with lock:
                    counts[(method, outcome)] += 1
                    counts[("longest", method)] = max(counts[("longest", method)], took)

        def client(index):
            try:
                client_loop(index)
            except Exception as exc:  # noqa: BLE001  (reported as the test's failure)
                with lock:
                    failures.append(f"client {index} broke: {exc!r}")

        workers = [
            threading.Thread(target=client, args=(i,), name=f"stress-{i}", daemon=True)
            for i in range(CLIENTS)
        ]
        for worker in workers:
            worker.start()
        while any(w.is_alive() for w in workers):
            if self.proc.poll() is not None:
                with lock:
                    failures.append(f"the daemon exited with {self.proc.returncode}")
                break
            time.sleep(0.2)
        for worker in workers:
            worker.join(CALL_TIMEOUT + 5)
        for client in connections:
            client.close()
        return counts, failures, seed

    # --- what is left ---------------------------------------------------------------------

    def stored_cells(self):
        """``{cell: document}`` as the run path holds them."""
        out = {}
        for cell in CELLS:
            path = naming.metadata_path(self.run_path, self.realm, SPACE, STACK, cell)
            try:
                with open(path) as f:
                    out[cell] = json.load(f)
            except FileNotFoundError:
                continue
        return out

    async def live_objects(self):
        """``{cid: task status or None}`` of every container in the realm namespace."""
        containers = await self.containerd.list_containers(self.ns)
        tasks = {t.container_id: t.status for t in await self.containerd.list_tasks(self.ns)}
        live = {c.id: tasks.pop(c.id, None) for c in containers}
        for cid, status in tasks.items():
            live[f"task-without-container:{cid}"] = status
        return live

    def inconsistencies(self, docs, live):
        """What the documents and containerd disagree on, one line each."""
        problems = []
        seen = set()
        for cell, doc in docs.items():
            state = doc["status"].get("state")
            root = naming.root_containerd_id(SPACE, STACK, cell)
            app = naming.containerd_id(SPACE, STACK, cell, WORKLOAD)
            prefix = f"{SPACE}_{STACK}_{cell}_"
            mine = {cid: status for cid, status in live.items() if cid.startswith(prefix)}
            seen.update(mine)
            statuses = {s.get("id"): s.get("state") for s in doc["status"].get("containers") or []}
            # Exactly the containers whose status is Ready run; the others have no object.
            wanted = {
                root if name == "root" else app
                for name, status in statuses.items()
                if status == "Ready"
            }
            if state == "Ready":
                if statuses.get("root") != "Ready":
                    problems.append(f"{cell}: Ready, but its root is {statuses.get('root')}")
            elif state == "Stopped":
                # A workload stopped on request leaves the root running (doc/reconcile.md).
                if wanted and wanted != {root}:
                    problems.append(f"{cell}: Stopped, but statuses say {statuses}")
            elif state == "Failed":
                if wanted:
                    problems.append(f"{cell}: Failed, but statuses say {statuses}")
            else:
                problems.append(f"{cell}: left in state {state!r}")
            if set(mine) != wanted:
                problems.append(
                    f"{cell}: state {state}, statuses {statuses}: containerd holds "
                    f"{sorted(mine)}, expected {sorted(wanted)}"
                )
            for cid, status in mine.items():
                if cid in wanted and status != "running":
                    problems.append(f"{cell}: {cid} has task status {status!r}, not running")
        for cid in sorted(set(live) - seen):
            problems.append(f"no document explains {cid} ({live[cid]})")
        return problems

    async def leaks(self):
        """Everything a cell leaves behind once no cell document exists, one line each."""
        found = [
            f"containerd object {cid} ({status})"
            for cid, status in (await self.live_objects()).items()
        ]
        for snap in await self.containerd.list_snapshots(self.ns):
            if snap.kind != "committed" or snap.key.startswith(f"{SPACE}_{STACK}_"):
                found.append(f"snapshot {snap.key} ({snap.kind})")
        cgroups = detect_cgroups()
        stack_group = naming.cgroup_path(self.cgroot, self.realm, SPACE, STACK)
        if cgroups.exists(stack_group):
            found += [f"cgroup {stack_group}/{child}" for child in cgroups.children(stack_group)]
        leases = os.path.join(self.ipam_dir, self.network)
        if os.path.isdir(leases):
            found += [
                f"IPAM file {name}"
                for name in sorted(os.listdir(leases))
                if name not in ("lock",) and not name.startswith("last_reserved_ip")
            ]
        results = os.path.join(self.cache_dir, "results")
        if os.path.isdir(results):
            found += [f"CNI cache entry {name}" for name in sorted(os.listdir(results))]
        ports = sh("ip", "-o", "link", "show", "master", self.bridge, check=False).strip()
        if ports:
            found.append(f"ports left on {self.bridge}: {ports}")
        rules = self.nat_rules()
        for cid in self.root_cids():
            chain = masquerade_chain(self.network, cid)
            if chain in rules:
                found.append(f"masquerade chain {chain} of {cid}")
        cells_dir = naming.resource_dir(self.run_path, self.realm, SPACE, STACK)
        if os.path.isdir(cells_dir):
            found += [
                f"cell directory {name}"
                for name in sorted(os.listdir(cells_dir))
                if name != "metadata.json"
            ]
        return found

    # --- the test ---------------------------------------------------------------------------

    async def test_eight_clients_on_six_cells(self):
        self.start_daemon()
        await self.call("CreateRealm", Doc={"metadata": {"name": self.realm}})
        await self.call(
            "CreateSpace", Doc={"metadata": {"name": SPACE}, "spec": {"realmId": self.realm}}
        )
        await self.call(
            "CreateStack",
            Doc={"metadata": {"name": STACK}, "spec": {"realmId": self.realm, "spaceId": SPACE}},
        )
        with open(busybox_image().oci_tar, "rb") as f:
            tarball = base64.b64encode(f.read()).decode()
        loaded = await self.call("LoadImage", Realm=self.realm, Tarball=tarball)
        self.assertEqual(loaded["Result"]["Images"], [IMAGE])

        counts, failures, seed = await threads.deferToThread(self.stress)
        summary = ", ".join(
            f"{m} {o}: {n:.1f}s" if m == "longest" else f"{m} {o}: {n}"
            for (m, o), n in sorted(counts.items())
        )
        log.msg(f"concurrency: seed {seed}; {summary}")
        self.expect_none(failures, f"seed {seed}; {summary}")
        self.expect_none([] if self.proc.poll() is None else ["the daemon exited"], "")
        ping = await self.call("Ping")
        self.assertTrue(ping["OK"])
        done = sum(n for (m, _), n in counts.items() if m != "longest")
        self.assertGreater(done, 8 * CLIENTS, summary)

        settled = await self.settled()
        self.expect_none(settled["Errors"], f"the reconcile pass after the stress: {settled}")
        docs = self.stored_cells()
        problems = self.inconsistencies(docs, await self.live_objects())
        self.expect_none(problems, f"seed {seed}; {summary}")

        for cell in sorted(docs):
            await self.call("DeleteCell", Doc=self.cell_doc(cell))
        listed = await self.call("ListCells", RealmName=self.realm, SpaceName="", StackName="")
        self.assertEqual(listed["Cells"], [])
        self.expect_none(await self.leaks(), "left after every cell was deleted")

        await self.call(
            "DeleteRealm", Doc={"metadata": {"name": self.realm}}, Force=False, Cascade=True
        )
        self.assertFalse(link_exists(self.bridge))
        self.expect_none([] if self.proc.poll() is None else ["the daemon exited"], "")
        self.assertTrue((await self.call("Ping"))["OK"])

    async def settled(self):
        """The report of a reconcile pass that started once the clients were done.

        Settles started by containerd events during the stress have finished
        by then, so what is on disk is what the daemon means to keep.
        """
        passes = []
        for _ in range(200):
            reconcile = (await self.call("Status"))["Result"]["Reconcile"]
            if not passes or reconcile["LastPassAt"] != passes[-1]["LastPassAt"]:
                passes.append(reconcile)
            if len(passes) == 3:
                return reconcile
            await task.deferLater(reactor, 0.1, lambda: None)
        self.fail(f"no two reconcile passes within 20 s: {passes}")

    def expect_none(self, problems, context):
        """Fail with every problem, ``context`` and the daemon's log unless there are none."""
        if problems:
            self.fail("\n".join([*problems, context, self.daemon_log()]))
