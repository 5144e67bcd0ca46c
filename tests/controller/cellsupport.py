"""Helpers for cell and container tests: parents in the store, requests, calls."""

from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from kukeond.api import kukeonv1
from kukeond.api.v1beta1 import CellDoc, ContainerDoc, ContainerSpec
from kukeond.base import gojson, naming
from kukeond.handlers import cells, containers


async def make_parents(runtime, realm="r1", space="s1", stack="k1", image=True):
    """Store realm/space/stack documents, the space network and (optionally) busybox."""
    from tests.support.runtime import load_busybox

    ns = naming.realm_namespace(realm, runtime.suffix)
    await runtime.store.put(
        (realm,),
        {
            "apiVersion": "v1beta1",
            "kind": "Realm",
            "metadata": {"name": realm, "labels": None},
            "spec": {"namespace": ns},
            "status": {"state": "Ready"},
        },
    )
    await runtime.store.put(
        (realm, space),
        {
            "apiVersion": "v1beta1",
            "kind": "Space",
            "metadata": {"name": space, "labels": None},
            "spec": {"realmId": realm},
            "status": {"state": "Ready"},
        },
    )
    await runtime.store.put(
        (realm, space, stack),
        {
            "apiVersion": "v1beta1",
            "kind": "Stack",
            "metadata": {"name": stack, "labels": None},
            "spec": {"id": stack, "realmId": realm, "spaceId": space},
            "status": {"state": "Ready", "cgroupPath": ""},
        },
    )
    runtime.network.ensure_space_network(realm, space)
    await runtime.containerd.ensure_namespace(ns)
    if image:
        await load_busybox(runtime, realm)
    return ns


def cell_doc(name, containers=(), realm="r1", space="s1", stack="k1", **spec):
    """A CreateCell request document."""
    doc = CellDoc()
    doc.metadata.name = name
    doc.spec.realmId, doc.spec.spaceId, doc.spec.stackId = realm, space, stack
    doc.spec.containers = list(containers)
    for key, value in spec.items():
        setattr(doc.spec, key, value)
    return doc


def workload(cid, *args, image="docker.io/library/busybox:latest", **fields):
    """A workload container running ``sh -c <args>`` (or ``args`` as given)."""
    spec = ContainerSpec(id=cid, image=image, **fields)
    if args:
        spec.command, spec.args = "sh", ["-c", *args]
    return spec


def container_doc(name, cell="c1", realm="r1", space="s1", stack="k1", **spec):
    """A container request document."""
    doc = ContainerDoc()
    doc.metadata.name = name
    doc.spec = ContainerSpec(realmId=realm, spaceId=space, stackId=stack, cellId=cell, **spec)
    return doc


class Calls:
    """Call handlers by method name, as the dispatcher does (errors raised).

    The reply is read back from its wire text, as a client reads it (a reply
    may carry kept wire text rather than structs).
    """

    def __init__(self, runtime):
        self.table = {**cells.handlers(runtime), **containers.handlers(runtime)}

    async def __call__(self, method, **fields):
        args_type, reply_type = kukeonv1.METHODS[method]
        reply = await self.table[method](args_type(**fields))
        return reply_type.from_wire(json.loads(gojson.dumps(reply.to_wire())))


async def wait_for(predicate, timeout=20.0):
    """Poll ``predicate`` (a plain function) every 50 ms until true or ``timeout``."""
    from twisted.internet import reactor, task

    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        await task.deferLater(reactor, 0.05, lambda: None)
    return predicate()


class RealCellTestCase(TestCase):
    """Cell tests on the real runtime: ``self.rt``, ``self.call``, a reconcile service on demand."""

    timeout = 120

    def setUp(self):
        from tests.support.runtime import real_runtime

        self.rt = real_runtime(self)
        self.call = Calls(self.rt)
        self.addCleanup(self.rt.network.remove_space_network, "r1", "s1")

    async def start_service(self):
        """A reconcile service whose long interval leaves the start-up pass, events and wake-ups."""
        from twisted.internet import reactor

        from kukeond.controller.reconcile import Reconciler
        from kukeond.controller.reconcile_service import ReconcileService

        svc = ReconcileService(Reconciler(self.rt), 3600, clock=reactor)
        svc.startService()
        self.addCleanup(svc.stopService)
        await svc.idle()
        return svc
