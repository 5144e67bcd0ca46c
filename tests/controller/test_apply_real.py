"""ApplyDocuments against the private containerd: a whole hierarchy, then a re-apply."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from kukeond.api import kukeonv1
from kukeond.api import v1beta1 as v1
from kukeond.handlers import apply
from tests.support.runtime import load_busybox, real_runtime

YAML = b"""
apiVersion: v1beta1
kind: Cell
metadata: {name: c1}
spec:
  realmId: r1
  spaceId: s1
  stackId: k1
  containers:
    - id: web
      image: docker.io/library/busybox:latest
      command: sleep
      args: ["300"]
    - id: worker
      image: docker.io/library/busybox:latest
      command: sleep
      args: ["301"]
---
kind: Stack
metadata: {name: k1}
spec: {realmId: r1, spaceId: s1}
---
kind: Space
metadata: {name: s1}
spec: {realmId: r1}
---
kind: Realm
metadata: {name: r1}
"""


class RealApplyTests(TestCase):
    timeout = 120

    def setUp(self):
        self.rt = real_runtime(self)
        self.addCleanup(self.rt.network.remove_space_network, "r1", "s1")
        self.handler = apply.handlers(self.rt)["ApplyDocuments"]

    async def apply(self, raw):
        reply = await self.handler(kukeonv1.ApplyDocumentsArgs(RawYAML=raw))
        return [(r.Kind, r.Action, r.Error) for r in reply.Result.Resources]

    async def test_apply_hierarchy_then_unchanged(self):
        await load_busybox(self.rt, "r1")
        self.assertEqual(
            await self.apply(YAML),
            [
                ("Realm", "created", ""),
                ("Space", "created", ""),
                ("Stack", "created", ""),
                ("Cell", "created", ""),
            ],
        )
        ns = f"r1.{self.rt.suffix}"
        tasks = {t.container_id: t.status for t in await self.rt.containerd.list_tasks(ns)}
        self.assertEqual(
            tasks,
            {
                "s1_k1_c1_root": "running",
                "s1_k1_c1_web": "running",
                "s1_k1_c1_worker": "running",
            },
        )
        cell = v1.CellDoc.from_wire(self.rt.store.get(("r1", "s1", "k1", "c1")))
        self.assertEqual(cell.status.state, v1.READY)
        self.assertEqual([a for _, a, _ in await self.apply(YAML)], ["unchanged"] * 4)
        changed = YAML.replace(b'args: ["301"]', b'args: ["302"]')
        self.assertEqual((await self.apply(changed))[3], ("Cell", "updated", ""))
        tasks = {t.container_id: t.status for t in await self.rt.containerd.list_tasks(ns)}
        self.assertEqual(tasks["s1_k1_c1_worker"], "running")
