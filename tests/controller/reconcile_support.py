"""Helpers for reconcile tests: cells recorded in the store with fake containerd objects."""

from __future__ import annotations

from twisted.internet import defer

from kukeond.api import v1beta1 as v1
from kukeond.base import naming
from kukeond.controller.reconcile import Key

IMAGE = "docker.io/library/busybox:latest"


def cell_doc(key: Key, workloads=("app",), state=v1.READY, **spec) -> dict:
    """A cell document with an explicit root and the given workload containers."""
    realm, space, stack, cell = key
    containers = [
        v1.ContainerSpec(
            id="root",
            containerdId=naming.root_containerd_id(space, stack, cell),
            root=True,
            image=IMAGE,
            realmId=realm,
            spaceId=space,
            stackId=stack,
            cellId=cell,
        )
    ]
    for name in workloads:
        containers.append(
            v1.ContainerSpec(
                id=name,
                containerdId=naming.containerd_id(space, stack, cell, name),
                image=IMAGE,
                realmId=realm,
                spaceId=space,
                stackId=stack,
                cellId=cell,
            )
        )
    doc = v1.CellDoc(apiVersion="v1beta1", kind="Cell")
    doc.metadata.name = cell
    doc.spec = v1.CellSpec(
        id=cell,
        realmId=realm,
        spaceId=space,
        stackId=stack,
        rootContainerId="root",
        containers=containers,
        **spec,
    )
    doc.status.state = state
    doc.status.readyObserved = state == v1.READY
    doc.status.containers = [
        v1.ContainerStatus(name=c.id, id=c.id, state=v1.READY if state == v1.READY else v1.PENDING)
        for c in containers
    ]
    return doc.to_wire()


def namespace(runtime, realm: str) -> str:
    return naming.realm_namespace(realm, runtime.suffix)


@defer.inlineCallbacks
def seed_cell(runtime, key: Key, workloads=("app",), running=True, cgroup=True, **spec):
    """Record a cell, create its containers (and running tasks) in the fake containerd."""
    raw = cell_doc(key, workloads, **spec)
    if not runtime.store.exists(key[:1]):
        realm = v1.RealmDoc(apiVersion="v1beta1", kind="Realm")
        realm.metadata.name = key[0]
        realm.spec.namespace = namespace(runtime, key[0])
        realm.status.state = v1.READY
        yield runtime.store.put(key[:1], realm.to_wire())
    yield runtime.store.put(key, raw)
    ns = namespace(runtime, key[0])
    doc = v1.CellDoc.from_wire(raw)
    for container in doc.spec.containers:
        yield runtime.containerd.create_container(ns, container.containerdId, IMAGE, {})
        if running:
            yield runtime.containerd.create_task(ns, container.containerdId)
            yield runtime.containerd.start_task(ns, container.containerdId)
    if cgroup:
        runtime.cgroups.create(naming.cgroup_path(runtime.cgroup_root, *key))
    return doc


class CountingContainerd:
    """Forwards to a containerd client and counts the calls by method name."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name):
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return target(*args, **kwargs)

        return call

    def total(self) -> int:
        return sum(self.calls.values())


def load_image(runtime, realm: str):
    """Import the busybox test image into ``realm``'s namespace."""
    from tests.support.runtime import load_busybox

    return load_busybox(runtime, realm)
