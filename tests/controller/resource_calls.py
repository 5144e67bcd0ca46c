"""Calling the realm/space/stack/image handlers the way the wire does, for tests.

Requests go through the real :class:`Dispatcher` (decode of ``params[0]``,
handler, ``Err`` mapping), so a test sees exactly the reply object the
daemon would write, as a plain JSON dict read back from its wire text.
"""

from __future__ import annotations

import json
from typing import Any

from kukeond.base import gojson
from kukeond.handlers import images, realms, spaces, stacks
from kukeond.rpc.codec import Request
from kukeond.rpc.dispatch import Dispatcher
from tests.support.runtime import load_busybox

ZERO = "0001-01-01T00:00:00Z"


def dispatcher(runtime) -> Dispatcher:
    """A dispatcher over the realm, space, stack and image handlers of ``runtime``."""
    table: dict[str, Any] = {}
    for module in (realms, spaces, stacks, images):
        table.update(module.handlers(runtime))
    return Dispatcher(table)


class Caller:
    """``await caller("CreateRealm", {...})`` → the reply dict (``Result``/``Err`` ...)."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self._dispatcher = dispatcher(runtime)

    async def __call__(self, method: str, params: Any) -> dict:
        result, error = await self._dispatcher.dispatch(
            Request(f"KukeonV1.{method}", [params], "0")
        )
        if error is not None:
            raise AssertionError(f"protocol error: {error}")
        # As a client reads it: replies may carry kept wire text.
        return json.loads(gojson.dumps(result))

    async def ok(self, method: str, params: Any) -> dict:
        """Call and insist that ``Err`` is null; return the reply."""
        reply = await self(method, params)
        if reply.get("Err") is not None:
            raise AssertionError(f"{method} failed: {reply['Err']}")
        return reply

    async def create_realm(self, name: str, **spec: Any) -> dict:
        return (await self.ok("CreateRealm", realm_doc(name, **spec)))["Result"]

    async def create_space(self, realm: str, name: str, **spec: Any) -> dict:
        return (await self.ok("CreateSpace", space_doc(realm, name, **spec)))["Result"]

    async def create_stack(self, realm: str, space: str, name: str) -> dict:
        return (await self.ok("CreateStack", stack_doc(realm, space, name)))["Result"]


def realm_doc(name: str, **spec: Any) -> dict:
    return {"Doc": {"metadata": {"name": name}, "spec": dict(spec)}}


def space_doc(realm: str, name: str, **spec: Any) -> dict:
    return {"Doc": {"metadata": {"name": name}, "spec": {"realmId": realm, **spec}}}


def stack_doc(realm: str, space: str, name: str) -> dict:
    return {"Doc": {"metadata": {"name": name}, "spec": {"realmId": realm, "spaceId": space}}}


def with_flags(params: dict, force: bool = False, cascade: bool = False) -> dict:
    return {**params, "Force": force, "Cascade": cascade}


def err(reply: dict) -> tuple[str, str]:
    """``(Kind, Message)`` of a failed reply."""
    if reply["Err"] is None:
        raise AssertionError(f"expected an error, got {reply}")
    return reply["Err"]["Kind"], reply["Err"]["Message"]


async def make_cell(runtime, realm: str, space: str, stack: str, cell: str) -> str:
    """Store a cell document with one root container that exists in (fake) containerd."""
    ns = f"{realm}.{runtime.suffix}"
    cid = f"{space}_{stack}_{cell}_root"
    await load_busybox(runtime, realm)
    await runtime.containerd.create_container(
        ns,
        cid,
        "docker.io/library/busybox:latest",
        {},
        labels={
            "kukeon.io/realm": realm,
            "kukeon.io/space": space,
            "kukeon.io/stack": stack,
            "kukeon.io/cell": cell,
        },
    )
    await runtime.containerd.create_task(ns, cid)
    await runtime.containerd.start_task(ns, cid)
    doc = {
        "apiVersion": "v1beta1",
        "kind": "Cell",
        "metadata": {"name": cell, "labels": None},
        "spec": {
            "id": cell,
            "realmId": realm,
            "spaceId": space,
            "stackId": stack,
            "containers": [
                {
                    "id": "root",
                    "containerdId": cid,
                    "root": True,
                    "image": "docker.io/library/busybox:latest",
                }
            ],
        },
        "status": {"state": "Ready", "cgroupPath": "", "network": {}, "containers": None},
    }
    await runtime.store.put((realm, space, stack, cell), doc)
    return cid
