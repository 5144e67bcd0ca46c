"""``IContainerd``: what kukeond needs from containerd.

Every method returns a ``Deferred``. Failures are ``kukeond.containerd.errors``
types: ``NotFound``, ``AlreadyExists``, ``InvalidArgument`` (with
``ImageFormatError``/``DigestMismatch`` for bad archives),
``FailedPrecondition``, ``DeadlineExceeded`` and ``Unavailable`` (containerd
unreachable; the next call retries the connection). Namespaced methods take
the containerd namespace first. ``snapshotter=None`` means the provider's
default (overlayfs when containerd has it, else native).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class ISubscription(Interface):
    """A live event subscription."""

    def stop():
        """Stop delivering events; returns a Deferred that fires once stopped."""


class IContainerd(Interface):
    """The container runtime as the cell controller sees it."""

    snapshotter = Attribute("The default snapshotter name, once known (str or None).")

    def version():
        """Fire with ``model.Version``."""

    # Namespaces

    def create_namespace(name, labels=None):
        """Create a namespace; fire with None. ``AlreadyExists`` if present."""

    def ensure_namespace(name, labels=None):
        """Create a namespace unless present; fire with True if it was created."""

    def list_namespaces():
        """Fire with the sorted list of namespace names."""

    def namespace_labels(name):
        """Fire with the namespace's labels dict. ``NotFound``."""

    def delete_namespace(name):
        """Delete an empty namespace. ``NotFound``; ``FailedPrecondition`` if not empty."""

    # Images

    def import_image(namespace, source, name=None, unpack=True, snapshotter=None):
        """Import an image archive; fire with the list of ``model.ImageInfo`` recorded.

        ``source``: a directory holding an OCI image layout, the path of a tar
        (OCI layout or docker-save, gzip or not) or a binary file object of
        one. ``name`` names a single unnamed image. Blobs are verified against
        their digests and the whole import runs under a lease, so a failure
        leaves nothing behind. With ``unpack`` the layers are unpacked into
        the snapshotter. ``ImageFormatError``/``DigestMismatch`` on bad input.
        """

    def list_images(namespace):
        """Fire with the list of ``model.ImageInfo``, sorted by name."""

    def get_image(namespace, ref):
        """Fire with ``model.ImageInfo`` for the exact reference. ``NotFound``."""

    def image_runtime_config(namespace, ref, files=()):
        """Fire with ``model.ImageRuntimeConfig``: the image's config document and the
        content of the rootfs ``files`` asked for (e.g. ``/etc/passwd``), read from the
        layers without mounting anything. ``NotFound`` for a missing image."""

    def delete_image(namespace, ref, sync=True):
        """Delete an image record (``sync``: after a GC pass); fire with None. ``NotFound``."""

    # Containers

    def create_container(
        namespace,
        container_id,
        image,
        spec,
        labels=None,
        snapshotter=None,
        runtime="io.containerd.runc.v2",
    ):
        """Create a container from an image; fire with ``model.ContainerInfo``.

        The image (exact reference) is unpacked if needed, then a snapshot
        keyed by ``container_id`` is prepared from its top layer; ``spec`` is
        the OCI runtime spec as a dict. ``AlreadyExists`` (nothing created),
        ``NotFound`` for a missing image.
        """

    def get_container(namespace, container_id):
        """Fire with ``model.ContainerInfo``. ``NotFound``."""

    def list_containers(namespace, labels=None):
        """Fire with the ``model.ContainerInfo`` list (sorted by ID) whose labels
        include every ``labels`` key with that value."""

    def container_ids(namespace, ids):
        """Fire with the frozenset of those ``ids`` that name a container of ``namespace``
        (one listing, whatever their number; a namespace containerd lacks holds none)."""

    def update_container_labels(namespace, container_id, labels):
        """Set labels (a value of None removes the key); fire with ``model.ContainerInfo``."""

    def delete_container(namespace, container_id, delete_snapshot=True):
        """Delete the container record and (by default) its snapshot. ``NotFound``."""

    # Snapshots

    def snapshot_mounts(namespace, key, snapshotter=None):
        """Fire with the list of ``model.Mount`` of an active snapshot. ``NotFound``."""

    def remove_snapshot(namespace, key, snapshotter=None):
        """Remove a snapshot; fire with None. ``NotFound``."""

    def list_snapshots(namespace, snapshotter=None):
        """Fire with the list of ``model.SnapshotInfo`` (sorted by key)."""

    # Tasks

    def create_task(namespace, container_id, log_path=None):
        """Create the container's task (not started); fire with its pid.

        stdout and stderr are appended to ``log_path`` (absolute) when given,
        discarded otherwise. ``NotFound`` (no container), ``AlreadyExists``.
        """

    def start_task(namespace, container_id):
        """Start a created task; fire with its pid. ``NotFound``."""

    def kill_task(namespace, container_id, signal=15, all=True):
        """Signal the task (every process with ``all``); fire with None. ``NotFound``."""

    def wait_task(namespace, container_id, timeout=10.0):
        """Fire with ``model.ExitStatus`` when the task exits; ``DeadlineExceeded``."""

    def task_state(namespace, container_id):
        """Fire with ``model.TaskInfo``. ``NotFound``."""

    def task_pids(namespace, container_id):
        """Fire with the sorted list of pids in the task. ``NotFound``."""

    def delete_task(namespace, container_id):
        """Delete a stopped (or created) task; fire with ``model.ExitStatus``.

        ``NotFound``; ``FailedPrecondition`` if it is still running.
        """

    def list_tasks(namespace):
        """Fire with the ``model.TaskInfo`` list of the namespace, sorted by container ID."""

    # Leases and events

    def list_leases(namespace):
        """Fire with the sorted list of lease IDs in the namespace."""

    def subscribe(callback, namespace=None, topics=None, on_resubscribe=None):
        """Deliver events to ``callback(model.Event)`` in the reactor thread.

        Filters by namespace and by topic prefixes (e.g. ``["/tasks/"]``) when
        given. The subscription survives containerd restarts; after each
        re-subscription ``on_resubscribe()`` is called, since events emitted
        meanwhile are lost (run a full reconcile then). Returns an
        ``ISubscription`` (synchronously).
        """
