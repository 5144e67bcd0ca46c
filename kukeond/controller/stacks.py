"""The stack level: a metadata document and a cgroup.

A stack is ``RUN/data/R/S/K/metadata.json`` and a cgroup ``CGROOT/R/S/K``;
its children are cells. Creating one requires the parent space to exist (the
reference creates a stack under a missing space).
"""

from __future__ import annotations

from kukeond import errors
from kukeond.api import docrules
from kukeond.api import v1beta1 as v1
from kukeond.base import naming
from kukeond.controller import cells, common
from kukeond.controller.common import q
from kukeond.controller.hierarchy import ChildLevel
from kukeond.store.documents import Key


class StackLevel(ChildLevel[v1.StackDoc]):
    """Stacks: children of a space; their children are cells."""

    kind = "stack"
    child_word = "cell"
    doc_type = v1.StackDoc
    status_type = v1.StackStatus
    name_required = errors.StackNameRequired
    create_step = errors.CreateStack

    def parents(self, doc: v1.StackDoc) -> tuple[str, ...]:
        """The realm and the space, required."""
        realm = common.required(doc.spec.realmId, errors.RealmNameRequired)
        return realm, common.required(doc.spec.spaceId, errors.SpaceNameRequired)

    def apply_defaults(self, doc: v1.StackDoc, key: Key) -> None:
        """Write the realm and space back and default the ID and labels."""
        doc.spec.realmId, doc.spec.spaceId = key[0], key[1]
        docrules.default_stack(doc)

    def check_parent(self, key: Key) -> None:
        """The space must be stored."""
        if not common.safe(*key[:2]) or not self.rt.store.exists(key[:2]):
            raise errors.CreateStack.around(
                errors.SpaceNotFound.after(
                    f"space {q(key[1])} not found at run-path {q(self.rt.run_path)}"
                )
            )

    def not_found(self, key: Key) -> errors.KukeonError:
        """``stack "K" not found in realm "R", space "S"``."""
        realm, space, name = key
        return errors.KukeonError(
            f"stack {q(name)} not found in realm {q(realm)}, space {q(space)}"
        )

    async def remove(self, key: Key) -> None:
        """The cgroup (best effort), the document and its directory."""
        common.remove_cgroup(self.rt, self.stored_cgroup(key), fatal=False)
        await self.rt.store.delete(key)
        await self.rt.store.purge(key)

    async def delete_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Delete one cell of the stack (a cell has no children: the flags do not apply)."""
        realm, space, stack, cell = key
        await cells.delete_cell(self.rt, (realm, space, stack, cell))

    async def purge_child(self, key: Key, force: bool, cascade: bool) -> None:
        """Purge one cell of the stack; what it could not remove fails the cascade."""
        realm, space, stack, cell = key
        problems = await cells.purge_cell(self.rt, (realm, space, stack, cell))
        if problems:
            raise errors.KukeonError("; ".join(problems))

    async def purge_leftovers(self, key: Key) -> None:
        """Labelled containers, the default cgroup, the directory."""
        rt = self.rt
        realm, space, stack = key
        await common.drain_containers(
            rt,
            common.realm_namespace(rt, realm),
            {"kukeon.io/realm": realm, "kukeon.io/space": space, "kukeon.io/stack": stack},
        )
        common.remove_cgroup(rt, naming.cgroup_path(rt.cgroup_root, *key), fatal=False)
        await rt.store.purge(key)
