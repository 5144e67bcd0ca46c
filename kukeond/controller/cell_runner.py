"""The cell lifecycle on containerd, cgroups and CNI: provision, start, stop, kill, delete.

A :class:`CellRunner` works on ``CellDoc`` objects whose store lock the
caller already holds (RPC handlers in :mod:`kukeond.controller.cells` and
:mod:`kukeond.controller.containers` take it; so must the reconciler).
Every method persists what it changed.

How a cell runs (see the reference behaviour in the module docstring of
:mod:`kukeond.controller.cells`): the root container (``S_K_C_root``) starts
first with no stdio; its ``/proc/<pid>/ns/{net,ipc,uts}`` are joined by every
workload container (``S_K_C_X``), whose stdout/stderr the shim appends to
``DATA/R/S/K/C/X/log``. A non-host-network root gets one CNI interface
(``eth0``) on the space bridge, and its address goes into the cell's
``etc-hosts``. Start is destructive (containers are recreated from the
stored spec) unless everything already runs; stop and kill remove the
containers, so a stopped cell holds no containerd objects.

Two deliberate differences from the reference: the synthesized busybox root
(``sleep infinity`` as PID 1, which ignores SIGTERM) is stopped with SIGKILL
right away instead of waiting out a grace period, and a workload whose task
had already exited is removed on stop instead of being left behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from kukeond.api import docrules
from kukeond.api.v1beta1 import (
    FAILED,
    PENDING,
    READY,
    STOPPED,
    CellDoc,
    ContainerSpec,
)
from kukeond.base import naming
from kukeond.containerd import errors as cerrors
from kukeond.containerd.model import ImageRuntimeConfig
from kukeond.controller import cellspec, secrets, stopping
from kukeond.controller.cell_basics import CellBasics
from kukeond.controller.cell_files import (
    DIR_MODE,
    read_json_file,
    remove_tree,
)
from kukeond.controller.cell_state import (
    REASON_CREATE,
    REASON_START,
    as_kukeon_error,
    cell_key,
    containerd_id_of,
    flatten_message,
    gather,
    root_container,
    statuses_from,
    workloads,
)
from kukeond.controller.cellspec import CellContext, CellSpecError, Kuketty
from kukeond.controller.failures import EXPECTED_FAILURES, log_step_failure
from kukeond.controller.kuketty import (
    KukettyNotFound,
    hand_over,
    prepare_tty_dir,
    render_terminal_doc,
    write_metadata,
)
from kukeond.controller.kuketty import stage as stage_kuketty
from kukeond.controller.stopping import DELETE_GRACE, STOP_GRACE
from kukeond.errors import KukeonError
from kukeond.host.cgroups import CgroupError
from kukeond.host.cni import CNIError


class CellRunner(CellBasics):
    """Runs cells for one daemon (see the module docstring): the runtime's ``cells``."""

    async def provision(self, doc: CellDoc) -> bool:
        """Make a new cell's cgroup and files and persist it. True if the cgroup was created.

        ``doc`` has its root container and containerd IDs already. Failures
        after the first write mark the cell Failed (``CreateCellFailed``).
        """
        doc.status.state = PENDING
        doc.status.network.bridgeName = naming.bridge_name(doc.spec.realmId, doc.spec.spaceId)
        doc.status.cgroupPath = self.cgroup_path(doc)
        stored = await self.save(doc)
        doc.status = stored.status
        try:
            created = self.ensure_cgroup(doc)
            await self.render_etc_files(doc)
            await self.check_images(doc, self.namespace(doc.spec.realmId))
        except Exception as exc:
            await self.mark_failed(doc, REASON_CREATE, exc)
            if not isinstance(exc, EXPECTED_FAILURES):
                raise  # a bug: the dispatcher logs it; the Failed cell is repaired by a create
            raise as_kukeon_error(exc) from exc
        return created

    # --- start ---------------------------------------------------------------------

    async def start(self, doc: CellDoc) -> CellDoc:
        """Run the cell: a no-op when all tasks run, else recreate every container."""
        ns = self.namespace(doc.spec.realmId)
        if root_container(doc) is None:
            docrules.ensure_root_container(doc)
        if await self.all_running(doc, ns):
            self.log.info(
                "cell tasks already running, StartCell is a no-op", cell=doc.metadata.name
            )
            return await self.mark_ready(doc, ns)
        try:
            self.ensure_cgroup(doc)
            await self.recreate(doc, ns)
        except Exception as exc:
            await self.mark_failed(doc, REASON_START, exc)
            if not isinstance(exc, EXPECTED_FAILURES):
                raise  # a bug: the dispatcher logs it; the Failed cell is repaired by a start
            raise as_kukeon_error(exc) from exc
        # A fresh start counts restarts (and on-failure:N limits) from zero.
        doc.status.containers = []
        return await self.mark_ready(doc, ns)

    async def mark_ready(self, doc: CellDoc, namespace: str) -> CellDoc:
        """State Ready, ``readyObserved``, fresh statuses; persist."""
        doc.status.state = READY
        doc.status.readyObserved = True
        doc.status.reason = ""
        doc.status.message = ""
        doc.status.containers = await self.live_statuses(doc, namespace)
        return await self.save(doc)

    async def image_configs(
        self, namespace: str, containers: list[ContainerSpec], realm: str
    ) -> dict[str, ImageRuntimeConfig]:
        """Image config (and passwd/group when a user name needs them) per container id."""
        client = self.rt.containerd
        bases: dict[str, ImageRuntimeConfig] = {}
        for image in dict.fromkeys(c.image for c in containers):
            try:
                bases[image] = await client.image_runtime_config(namespace, image)
            except cerrors.NotFound:
                # Deleted since the cell was created: pull it again if it can be had.
                await self.ensure_image(image, realm, namespace)
                bases[image] = await client.image_runtime_config(namespace, image)
        out = {}
        for container in containers:
            base = bases[container.image]
            wanted = cellspec.rootfs_files_needed(container, base.config)
            out[container.id] = (
                (await client.image_runtime_config(namespace, container.image, wanted))
                if wanted
                else base
            )
        return out

    async def recreate(self, doc: CellDoc, namespace: str) -> None:
        """Remove whatever runs, then create and start root and workloads from the spec."""
        ctx = self.context(doc, namespace)
        containers = list(doc.spec.containers or [])
        # Reading image configs does not depend on the old containers being gone.
        _, images = await gather(
            [
                self.teardown(doc, namespace, graceful=False),
                self.image_configs(namespace, containers, ctx.realm),
            ]
        )
        root = root_container(doc)
        assert root is not None
        await self.render_etc_files(doc)
        root_cid = containerd_id_of(doc, root)
        pid = await self.create_container_and_task(ctx, root, root_cid, images[root.id], None)
        if not pid:
            raise KukeonError(f"task of {root_cid} created with pid 0")
        join = cellspec.namespace_paths(pid)
        others = [(c, containerd_id_of(doc, c)) for c in workloads(doc)]
        # A created task already owns its namespaces, under the pid it keeps once
        # started. So the root's start, its CNI attach and the creation (not the
        # start) of the workload tasks overlap; no workload process runs before
        # eth0 and etc-hosts exist.
        await gather(
            [
                self.start_created(ctx, root_cid),
                self.attach_root(ctx, doc, root_cid, pid),
                *(
                    self.create_container_and_task(ctx, c, cid, images[c.id], join)
                    for c, cid in others
                ),
            ]
        )
        await gather(self.start_created(ctx, cid) for _, cid in others)

    async def attach_root(self, ctx: CellContext, doc: CellDoc, root_cid: str, pid: int) -> None:
        """CNI ADD of ``eth0`` into the root's network namespace, then its etc-hosts line."""
        if self.host_network(doc):
            self.log.info("skipping CNI attach for host-network root container", cell=ctx.cell)
            return
        try:
            result = await self.rt.network.attach(
                root_cid, f"/proc/{pid}/ns/net", ctx.conflist_path, "eth0"
            )
        except CNIError as exc:
            raise KukeonError(str(exc)) from exc
        try:
            await self.render_etc_files(doc, result.ipv4)
        except OSError as exc:
            self.log.warn("could not write etc-hosts: {error}", error=exc)

    async def create_and_start(
        self,
        ctx: CellContext,
        doc: CellDoc,
        container: ContainerSpec,
        cid: str,
        image: ImageRuntimeConfig,
        join: dict[str, str] | None,
    ) -> int:
        """Create one containerd container and start its task; return the task pid."""
        await self.create_container_and_task(ctx, container, cid, image, join)
        return await self.start_created(ctx, cid)

    async def create_container_and_task(
        self,
        ctx: CellContext,
        container: ContainerSpec,
        cid: str,
        image: ImageRuntimeConfig,
        join: dict[str, str] | None,
    ) -> int:
        """Create one containerd container and its task, not started yet; return its pid.

        ``join`` None means the root container.
        """
        root = join is None
        names = (ctx.realm, ctx.space, ctx.stack, ctx.cell, container.id)
        profile = None
        path = cellspec.seccomp_profile_path(container)
        if path:
            profile = await self.files.run(read_json_file, path)
        kuketty = None
        if container.attachable and not root:
            kuketty = await self.files.run(self.prepare_tty, names)
        staged = None
        if container.secrets:
            staged = await self.files.run(
                secrets.resolve, container, cid, self.rt.config.secrets_dir, os.environ
            )
        try:
            spec, argv = cellspec.build_container_spec(
                ctx,
                container,
                cid,
                root,
                image,
                join,
                profile,
                kuketty,
                secret_env=staged.env if staged else (),
                secret_mounts=staged.mounts if staged else (),
            )
            if staged is not None:
                user = spec["process"].get("user") or {}
                await self.files.run(
                    secrets.give_to, staged, user.get("uid", 0), user.get("gid", 0)
                )
        except CellSpecError as exc:
            await self.forget_secrets(cid)
            raise KukeonError(f"container {container.id}: {exc}") from exc
        except BaseException:
            await self.forget_secrets(cid)
            raise
        group = self.rt.config.socket_gid
        if kuketty is not None:
            document = render_terminal_doc(container, argv, names, group)
            await self.files.run(write_metadata, kuketty.metadata, document)
        client = self.rt.containerd
        labels = cellspec.containerd_labels(ctx, container, root)
        try:
            await client.create_container(ctx.namespace, cid, container.image, spec, labels)
        except cerrors.AlreadyExists as exc:
            raise KukeonError(f"container already exists: {cid}") from exc
        except cerrors.NotFound:
            raise self.missing_image(container.image, ctx.realm, ctx.namespace) from None
        if kuketty is not None:
            # The helper runs as the container's user: it reads the metadata
            # file and creates its socket and capture file in the tty dir.
            uid = (spec["process"].get("user") or {}).get("uid", 0)
            await self.files.run(hand_over, kuketty.tty_dir, kuketty.metadata, uid, group)
        return await client.create_task(
            ctx.namespace, cid, await self.log_path(ctx, container, root)
        )

    async def log_path(self, ctx: CellContext, container: ContainerSpec, root: bool) -> str | None:
        """Where a workload's stdout/stderr go (its directory made); None for the root
        and attachable containers, whose output is not logged to a file."""
        if root or container.attachable:
            return None
        path = naming.container_log_path(
            self.rt.run_path, ctx.realm, ctx.space, ctx.stack, ctx.cell, container.id
        )
        await self.files.run(os.makedirs, os.path.dirname(path), DIR_MODE, True)
        return path

    async def restart_workload(self, doc: CellDoc, container: ContainerSpec) -> int:
        """Run an exited workload again, joined to the running root; return the new pid.

        The caller holds the cell's lock. The container is kept (its writable
        layer survives, as with ``docker restart``) and gets a new task,
        unless it is gone or joins the namespaces of an older root, in which
        case it is recreated from the spec as StartContainer does.
        """
        ns = self.namespace(doc.spec.realmId)
        ctx = self.context(doc, ns)
        client = self.rt.containerd
        root = root_container(doc)
        root_task = None
        if root is not None:
            try:
                root_task = await client.task_state(ns, containerd_id_of(doc, root))
            except cerrors.NotFound:
                pass
        if root_task is None or root_task.status != "running" or not root_task.pid:
            raise KukeonError(f"root container of cell {ctx.cell} is not running")
        join = cellspec.namespace_paths(root_task.pid)
        cid = containerd_id_of(doc, container)
        try:
            info = await client.get_container(ns, cid)
        except cerrors.NotFound:
            info = None
        if info is not None and _joins(info.spec, join):
            try:
                await client.delete_task(ns, cid)
            except cerrors.NotFound:
                pass
            await client.create_task(ns, cid, await self.log_path(ctx, container, False))
        else:
            await self.remove_container(ns, cid, 0.0)
            images = await self.image_configs(ns, [container], ctx.realm)
            await self.create_container_and_task(ctx, container, cid, images[container.id], join)
        return await self.start_created(ctx, cid)

    async def start_created(self, ctx: CellContext, cid: str) -> int:
        """Start the created task of ``cid``; return its pid."""
        pid = await self.rt.containerd.start_task(ctx.namespace, cid)
        if not pid:
            raise KukeonError(f"task of {cid} started with pid 0")
        self.move_to_payload(ctx, cid)
        return pid

    def prepare_tty(self, names: tuple[str, ...]) -> Kuketty:
        """Stage the terminal helper and create an attachable container's tty dir (blocking).

        Fails, naming every place looked at, when no helper binary is found.
        """
        run = self.rt.run_path
        try:
            binary = stage_kuketty(run, self.rt.config.kuketty_binary)
        except (KukettyNotFound, OSError) as exc:
            raise KukeonError(f"attachable container {names[-1]}: {exc}") from exc
        tty = naming.tty_dir(run, *names)
        prepare_tty_dir(tty, self.rt.config.socket_gid)
        return Kuketty(binary, tty, naming.kuketty_metadata_path(run, *names))

    def move_to_payload(self, ctx: CellContext, cid: str) -> None:
        """cgroup v2: move the task's PIDs into ``<cell>/<cid>/_payload`` (WARN on failure)."""
        if self.rt.cgroups.version != 2:
            return
        group = naming.container_cgroup_path(ctx.cgroup_path, cid)
        try:
            self.rt.cgroups.move_to_payload(group)
        except CgroupError as exc:
            self.log.warn(
                "could not move {cid} into its payload cgroup: {error}", cid=cid, error=exc
            )

    # --- stop / kill / delete --------------------------------------------------------

    async def remove_container(self, namespace: str, cid: str, grace: float) -> bool:
        """Stop ``cid``'s task, delete task, container, snapshot and staged secrets.

        False if there was no such container.
        """
        removed = await stopping.remove_container(
            self.rt.containerd, self.rt.reactor, namespace, cid, grace
        )
        await self.forget_secrets(cid)
        return removed

    async def forget_secrets(self, cid: str) -> None:
        """Remove the secret files staged for ``cid``, if any."""
        staged = secrets.staging_dir(self.rt.config.secrets_dir, cid)
        # A stat on the reactor: most containers have nothing staged.
        if os.path.lexists(staged):
            await self.files.run(secrets.remove_staged, self.rt.config.secrets_dir, cid)

    async def detach_root(self, doc: CellDoc, namespace: str) -> None:
        """CNI DEL for the root while its task still runs (failures only logged)."""
        if self.host_network(doc):
            return
        realm, space, stack, cell = cell_key(doc)
        cid = naming.root_containerd_id(space, stack, cell)
        try:
            task = await self.rt.containerd.task_state(namespace, cid)
        except cerrors.ContainerdError:
            return
        if task.status != "running" or not task.pid:
            return
        try:
            await self.rt.network.detach(
                cid, f"/proc/{task.pid}/ns/net", self.conflist_path(realm, space), "eth0"
            )
        except (CNIError, OSError) as exc:
            self.log.warn("CNI detach of {cid} failed: {error}", cid=cid, error=exc)

    async def scrub_network(self, doc: CellDoc, cids: Iterable[str]) -> None:
        """Forget IPAM leases and cached results of ``cids`` (failures only logged)."""
        network = naming.network_name(doc.spec.realmId, doc.spec.spaceId)

        async def scrub(cid: str) -> None:
            try:
                await self.rt.network.scrub(cid, network)
            except (CNIError, OSError) as exc:
                self.log.warn("CNI scrub of {cid} failed: {error}", cid=cid, error=exc)

        await gather(scrub(cid) for cid in dict.fromkeys(cids))

    async def teardown(
        self, doc: CellDoc, namespace: str, graceful: bool, grace: float = STOP_GRACE
    ) -> None:
        """Remove every container of the cell; detach and scrub the root's address.

        The workloads' tasks end first. Then, with no workload process left,
        their deletion overlaps the root's CNI detach and removal; the root's
        address is scrubbed once detached; strays with the cell's ID prefix
        go last. One listing of the namespace tells which containers exist,
        so absent ones cost no calls.
        """
        realm, space, stack, cell = cell_key(doc)
        wait = grace if graceful else 0.0
        present = {c.id for c in await self.rt.containerd.list_containers(namespace)}
        work = [cid for cid in (containerd_id_of(doc, c) for c in workloads(doc)) if cid in present]
        client, clock = self.rt.containerd, self.rt.reactor
        had_tasks = await gather(
            stopping.stop_if_running(client, clock, namespace, cid, wait) for cid in work
        )
        root = root_container(doc)
        root_cid = naming.root_containerd_id(space, stack, cell)
        explicit_root = root is not None and root.image != docrules.IMPLICIT_ROOT_IMAGE

        async def root_side() -> None:
            if root_cid in present:
                await self.detach_root(doc, namespace)
                await gather(
                    [
                        self.remove_container(namespace, root_cid, wait if explicit_root else 0.0),
                        self.scrub_network(doc, [root_cid]),
                    ]
                )
            else:
                await self.scrub_network(doc, [root_cid])

        await gather(
            [
                *(
                    stopping.delete_stopped(client, namespace, cid, had)
                    for cid, had in zip(work, had_tasks, strict=True)
                ),
                root_side(),
            ]
        )
        prefix = f"{space}_{stack}_{cell}_"
        known = {root_cid, *work}
        strays = sorted(cid for cid in present if cid.startswith(prefix) and cid not in known)
        await gather(self.remove_container(namespace, cid, 0.0) for cid in strays)
        await gather(
            self.forget_secrets(containerd_id_of(doc, c))
            for c in doc.spec.containers or []
            if c.secrets
        )

    async def stop(self, doc: CellDoc, kill: bool = False) -> CellDoc:
        """Stop (SIGTERM, grace, SIGKILL) or kill every container and remove them; persist."""
        ns = self.namespace(doc.spec.realmId)
        try:
            await self.teardown(doc, ns, graceful=not kill)
        except cerrors.ContainerdError as exc:
            raise as_kukeon_error(exc) from exc
        doc.status.state = STOPPED
        # A teardown that returned has removed every container of the cell.
        doc.status.containers = statuses_from(doc, (), {})
        return await self.save(doc)

    async def mark_failed(self, doc: CellDoc, reason: str, exc: BaseException) -> CellDoc:
        """Best-effort kill, then state Failed with ``reason`` and the one-line message."""
        ns = self.namespace(doc.spec.realmId)
        try:
            await self.teardown(doc, ns, graceful=False)
        except Exception as cleanup:  # noqa: BLE001  (best effort; the cause is reported)
            log_step_failure(self.log, cleanup, "cleanup after a failed cell start failed")
        doc.status.state = FAILED
        doc.status.reason = reason
        doc.status.message = flatten_message(str(as_kukeon_error(exc)))
        try:
            doc.status.containers = await self.live_statuses(doc, ns)
        except Exception as error:  # noqa: BLE001  (statuses are informative only)
            if not isinstance(error, EXPECTED_FAILURES):
                self.log.failure("cannot read the statuses of a failed cell")
            doc.status.containers = []
        return await self.save(doc)

    async def delete(self, doc: CellDoc) -> bool:
        """Remove containers, cgroup, metadata and files; True if the cell had containers.

        A container that cannot be removed fails the delete and keeps the
        cgroup and metadata (``failed to delete cell: …``).
        """
        ns = self.namespace(doc.spec.realmId)
        realm, space, stack, cell = cell_key(doc)
        cids = [containerd_id_of(doc, c) for c in doc.spec.containers or []]
        try:
            await self.teardown(doc, ns, graceful=True, grace=DELETE_GRACE)
            await self.scrub_network(doc, cids)
        except EXPECTED_FAILURES as exc:
            raise KukeonError(f"failed to delete cell: {as_kukeon_error(exc)}") from exc
        await self.remove_leftovers(doc)
        await self.rt.store.delete(cell_key(doc))
        return bool(doc.spec.containers)

    async def remove_leftovers(self, doc: CellDoc) -> None:
        """rmdir the cell cgroup (WARN only) and ``rm -rf`` the cell directory."""
        for group in dict.fromkeys(
            [self.cgroup_path(doc), naming.cgroup_path(self.rt.cgroup_root, *cell_key(doc))]
        ):
            try:
                self.rt.cgroups.delete(group)
            except CgroupError as exc:
                self.log.warn(
                    "could not remove cell cgroup {group}: {error}", group=group, error=exc
                )
        await self.files.run(remove_tree, naming.resource_dir(self.rt.run_path, *cell_key(doc)))

    async def purge(self, doc: CellDoc) -> list[str]:
        """Delete, tolerating failures; then scrub and remove everything. Returns errors."""
        problems = []
        try:
            await self.delete(doc)
        except KukeonError as exc:
            problems.append(str(exc))
            try:
                ns = self.namespace(doc.spec.realmId)
                await self.teardown(doc, ns, graceful=False)
            except Exception as again:  # noqa: BLE001  (purge goes on regardless)
                log_step_failure(self.log, again, "purge: second teardown failed")
        cids = [containerd_id_of(doc, c) for c in doc.spec.containers or []]
        await self.scrub_network(doc, cids)
        await self.remove_leftovers(doc)
        await self.rt.store.purge(cell_key(doc))
        return problems


def _joins(spec: dict[str, Any] | None, join: dict[str, str]) -> bool:
    """Whether an OCI runtime spec joins exactly the namespace paths of ``join``."""
    namespaces = ((spec or {}).get("linux") or {}).get("namespaces") or []
    paths = {ns.get("type"): ns.get("path") for ns in namespaces}
    return all(paths.get(kind) == path for kind, path in join.items())
