"""Helpers shared by the realm, space, stack and image controllers.

* Names: :func:`required` and :func:`validated` turn empty or invalid names
  into the reference's errors; :func:`safe` says whether stored names may be
  used to build a path (lookups treat an unsafe name as "not found").
* Documents: :func:`read_doc` loads a stored document as its v1beta1 class,
  :func:`as_output` stamps ``apiVersion``/``kind`` on what goes back out.
  Both read helpers decode each stored version once (the store keeps the
  decoded object) and hand out a :func:`copy_doc` of it, which is several
  times cheaper than decoding again.
* Blocking work (file scans, CNI files) runs on :func:`run_blocking`'s
  small dedicated pool, never on the reactor thread.
* Runtime clean-up shared by delete and purge paths: :func:`drain_containers`
  stops and removes containerd containers, :func:`drain_namespace` empties a
  namespace of images and snapshots.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from kukeond import errors
from kukeond.api import v1beta1
from kukeond.api.gotypes import DecodeError
from kukeond.api.structs import GoStruct
from kukeond.base import gojson, naming
from kukeond.blocking import BlockingPool
from kukeond.containerd import errors as cerrors
from kukeond.controller import stopping
from kukeond.controller.runtime import Runtime
from kukeond.host.cgroups import CgroupError
from kukeond.logs import Logger
from kukeond.store.documents import Key
from kukeond.store.errors import MetadataCorrupt

log = Logger()

D = TypeVar("D", bound=v1beta1.ResourceDoc)

BLOCKING_TIMEOUT = 60.0
"""Seconds a piece of blocking controller work may take before the call fails."""

SNAPSHOTTERS = ("overlayfs", "native")
"""Snapshotters drained when a realm namespace is emptied."""

SNAPSHOT_PASSES = 32
"""Removal passes over a snapshotter (a child must go before its parent)."""

_pools: dict[int, BlockingPool] = {}


def q(text: str) -> str:
    """Quote a name the way the reference's ``%q`` does."""
    return naming.go_quote(text)


# --- names --------------------------------------------------------------------


def required(name: str | None, sentinel: type[errors.Sentinel]) -> str:
    """Return ``name`` trimmed, or raise the bare ``sentinel`` (``realm name is required``)."""
    trimmed = (name or "").strip()
    if not trimmed:
        raise sentinel()
    return trimmed


def validated(kind: str, name: str | None) -> str:
    """Validate a name for a create path; errors as the reference reports them."""
    try:
        return naming.validate_name(kind, name)
    except naming.NameRequired as exc:
        raise errors.SENTINELS[exc.wire_kind]() from None
    except naming.InvalidName as exc:
        raise errors.KukeonError(str(exc)) from None


def safe(*names: str) -> bool:
    """Whether every name can address a directory of the run-path tree."""
    return all(naming.is_safe_path_component(n) for n in names)


# --- documents ----------------------------------------------------------------


def as_output(doc: D, kind: str) -> D:
    """Mark ``doc`` as built by the daemon: ``apiVersion: v1beta1`` and its ``kind``."""
    doc.apiVersion = v1beta1.API_VERSION
    doc.kind = kind
    return doc


def empty_doc(cls: type[D], kind: str) -> D:
    """The empty document a Get of a missing resource answers with."""
    return as_output(cls(), kind)


def decode_stored(cls: type[D], kind: str, raw: Mapping[str, Any]) -> D:
    """Decode a stored JSON document into ``cls``; ``DecodeError`` if its values are bad."""
    # from_wire returns the class it is called on; mypy widens type[D] to the bound.
    return as_output(cast(D, cls.from_wire(dict(raw))), kind)


_IMMUTABLE = frozenset((str, int, float, bool, bytes, type(None)))


def copy_doc(value: Any) -> Any:
    """A deep copy of a decoded document (or any value inside one).

    Walks the structs, lists and dicts and shares the immutable leaves, so
    it costs a fraction of ``clone()`` (which encodes and decodes again);
    other values fall back to :func:`copy.deepcopy`.
    """
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    # Leaves are tested inline: a call per string would double the cost.
    if kind is list:
        return [v if type(v) in _IMMUTABLE else copy_doc(v) for v in value]
    if kind is dict:
        return {k: v if type(v) in _IMMUTABLE else copy_doc(v) for k, v in value.items()}
    if isinstance(value, GoStruct):
        out = object.__new__(kind)
        out.__dict__.update(
            {k: v if type(v) in _IMMUTABLE else copy_doc(v) for k, v in value.__dict__.items()}
        )
        return out
    return copy.deepcopy(value)


_decoders: dict[tuple[type, str], Callable[[Any], Any]] = {}


def stored_decoder(cls: type[D], kind: str) -> Callable[[Any], D]:
    """The one decoder of ``cls`` documents used with ``MetadataStore.decoded``."""
    decoder = _decoders.get((cls, kind))
    if decoder is None:

        def decoder(raw: Any) -> D:
            return decode_stored(cls, kind, raw)

        _decoders[(cls, kind)] = decoder
    return decoder


def peek_doc(runtime: Runtime, key: Key, cls: type[D], kind: str) -> D | None:
    """The store's shared decoded document under ``key`` (``None`` when absent).

    Read-only: the same object is handed to every caller until the document
    is rewritten, so it must never be modified (:func:`copy_doc` it first).
    Raises ``MetadataCorrupt`` and ``DecodeError`` as they come.
    """
    return runtime.store.decoded(key, stored_decoder(cls, kind))


def read_doc(runtime: Runtime, key: Key, cls: type[D], kind: str) -> D | None:
    """The stored document under ``key``, ``None`` when absent (or ``key`` is unsafe).

    An unusable file raises ``ConversionFailed`` (``failed to get <kind>:
    conversion failed: <path>: <reason>``).
    """
    if not safe(*key):
        return None
    word = kind.lower()
    try:
        doc = peek_doc(runtime, key, cls, kind)
    except MetadataCorrupt as exc:
        raise errors.ConversionFailed(f"{exc.path}: {exc.reason}").wrap(
            f"failed to get {word}"
        ) from None
    except DecodeError as exc:
        path = runtime.store.path(key)
        raise errors.ConversionFailed(f"{path}: {exc}").wrap(f"failed to get {word}") from None
    return None if doc is None else copy_doc(doc)


class Unreadable:
    """A stored version that does not decode as its kind, and why (kept with the version)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_wire_encoders: dict[tuple[type, str], Callable[[Any], Any]] = {}


def stored_wire(cls: type[D], kind: str) -> Callable[[Any], gojson.RawJSON | Unreadable]:
    """The one encoder of stored ``cls`` documents to their wire text, for ``store.decoded``.

    The document is decoded, marked as output (:func:`as_output`) and
    encoded once per stored version; Get and List replies
    splice the text. A document that does not decode gives :class:`Unreadable`.
    """
    encoder = _wire_encoders.get((cls, kind))
    if encoder is None:

        def encoder(raw: Any) -> gojson.RawJSON | Unreadable:
            try:
                doc = decode_stored(cls, kind, raw)
            except DecodeError as exc:
                return Unreadable(str(exc))
            return gojson.raw(doc.to_wire())

        _wire_encoders[(cls, kind)] = encoder
    return encoder


def list_wire(
    runtime: Runtime,
    parent: Key,
    cls: type[D],
    kind: str,
) -> list[gojson.RawJSON]:
    """Every readable document directly below ``parent``, by name, as its wire text.

    Bad documents are skipped with a warning; see :func:`stored_wire`.
    """
    if not safe(*parent):
        return []
    found = runtime.store.decoded_keys(len(parent) + 1, parent, stored_wire(cls, kind))
    return _readable(found, warn=True)


def _select(found: Any, wanted: tuple[str, ...], prefix: tuple[str, ...]) -> Any:
    """The ``(key, value)`` pairs of ``found`` that every name of ``wanted`` matches."""
    if not any(wanted[len(prefix) :]):  # the walk below the prefix found only those
        return found
    return [
        (key, value) for key, value in found
        if not any(w and w != k for w, k in zip(wanted, key, strict=False))
    ]  # fmt: skip


_arrays: dict[tuple[int, int, tuple[str, ...], Any, Any], tuple[Any, bytes]] = {}


def matching_array(
    runtime: Runtime,
    depth: int,
    wanted: tuple[str, ...],
    decode: Callable[[Any], Any],
    wire: Callable[[Any], gojson.RawJSON],
) -> bytes:
    """The JSON array of ``wire(value)`` for ``decode`` of every matching stored document.

    The array is kept while the store hands out the same listing (nothing
    in the tree changed), so listing again copies one text.
    """
    prefix = _prefix(wanted)
    found = runtime.store.decoded_keys(depth, prefix, decode)
    key = (id(runtime.store), depth, wanted, decode, wire)
    kept = _arrays.get(key)
    if kept is not None and kept[0] is found:
        return kept[1]
    readable = _readable(_select(found, wanted, prefix), warn=False)
    array = b"[" + b",".join([wire(v).data for v in readable]) + b"]"
    if len(_arrays) >= 16:
        _arrays.clear()
    _arrays[key] = (found, array)  # the listing is kept alive with it: its id stays unique
    return array


def _readable(found: Any, *, warn: bool) -> list[Any]:
    out = []
    for key, value in found:
        if type(value) is Unreadable:
            if warn:
                log.warn("skipping unreadable metadata {key}: {error}", key=key, error=value.reason)
        else:
            out.append(value)
    return out


def _prefix(wanted: tuple[str, ...]) -> tuple[str, ...]:
    prefix: tuple[str, ...] = ()
    for name in wanted:
        if not name or not safe(name):
            break
        prefix += (name,)
    return prefix


def matching_keys(runtime: Runtime, depth: int, wanted: tuple[str, ...]) -> list[Key]:
    """Stored keys of ``depth`` names matching the ``wanted`` names ('' matches any), sorted.

    The names given from the top down narrow the walk of the tree.
    """
    return [
        key
        for key in runtime.store.keys(depth, under=_prefix(wanted))
        if not any(w and w != k for w, k in zip(wanted, key, strict=False))
    ]


# --- blocking work --------------------------------------------------------------


def _pool(reactor: Any) -> BlockingPool:
    pool = _pools.get(id(reactor))
    if pool is None:
        pool = _pools[id(reactor)] = BlockingPool(reactor, "kukeond-controller")
    return pool


async def run_blocking(
    runtime: Runtime, fn: Callable[..., Any], *args: Any, timeout: float = BLOCKING_TIMEOUT
) -> Any:
    """Run ``fn(*args)`` on the controllers' thread pool; fail after ``timeout`` seconds."""
    return await _pool(runtime.reactor).run(fn, *args, timeout=timeout)


# --- cgroups ----------------------------------------------------------------------


def cgroup_of(runtime: Runtime, stored_path: str, *names: str) -> str:
    """The group to act on: the stored ``status.cgroupPath``, else the computed default."""
    return stored_path or naming.cgroup_path(runtime.cgroup_root, *names)


def remove_cgroup(runtime: Runtime, group: str, *, fatal: bool) -> bool:
    """Remove ``group``; a failure raises when ``fatal``, else it is only logged."""
    try:
        return runtime.cgroups.delete(group)
    except (CgroupError, OSError, ValueError) as exc:
        if fatal:
            raise errors.KukeonError(f"failed to delete cgroup {group}: {exc}") from None
        log.warn("failed to delete cgroup {group}: {error}", group=group, error=str(exc))
        return False


# --- containerd clean-up ----------------------------------------------------------


def realm_namespace(runtime: Runtime, realm: str) -> str:
    """The containerd namespace of a stored realm (its ``spec.namespace``), else the default."""
    explicit = ""
    if safe(realm):
        try:
            explicit = runtime.store.decoded((realm,), _stored_namespace) or ""
        except MetadataCorrupt:
            pass  # an unusable realm document names no namespace
    return naming.realm_namespace(realm, runtime.suffix, explicit.strip() or None)


def _stored_namespace(raw: Mapping[str, Any]) -> str:
    return (raw.get("spec") or {}).get("namespace") or ""


async def drain_containers(
    runtime: Runtime, namespace: str, labels: Mapping[str, str] | None = None
) -> list[str]:
    """Stop and remove every container of ``namespace`` carrying ``labels``; return their IDs.

    A namespace containerd does not know holds nothing. Failures of single
    containers are collected and raised together after the others were tried.
    """
    if not naming.is_containerd_identifier(namespace):
        return []
    try:
        containers = await runtime.containerd.list_containers(namespace, labels=labels)
    except cerrors.NotFound:
        return []
    removed, failures = [], []
    for info in containers:
        try:
            await stopping.remove_container(
                runtime.containerd, runtime.reactor, namespace, info.id, stopping.DELETE_GRACE
            )
            removed.append(info.id)
        except cerrors.ContainerdError as exc:
            failures.append(f"{info.id}: {exc}")
    if failures:
        raise errors.KukeonError("failed to remove containers: " + "; ".join(failures))
    return removed


async def drain_namespace(runtime: Runtime, namespace: str) -> None:
    """Remove every image and snapshot of ``namespace`` (containers must be gone first)."""
    containerd = runtime.containerd
    try:
        images = await containerd.list_images(namespace)
    except cerrors.NotFound:
        images = []
    for image in images:
        try:
            await containerd.delete_image(namespace, image.name, sync=True)
        except cerrors.NotFound:
            pass
    for snapshotter in SNAPSHOTTERS:
        await _drain_snapshots(runtime, namespace, snapshotter)


async def _drain_snapshots(runtime: Runtime, namespace: str, snapshotter: str) -> None:
    containerd = runtime.containerd
    for _ in range(SNAPSHOT_PASSES):
        try:
            snapshots = await containerd.list_snapshots(namespace, snapshotter=snapshotter)
        except (cerrors.NotFound, cerrors.InvalidArgument, cerrors.Unimplemented):
            return
        if not snapshots:
            return
        parents = {s.parent for s in snapshots}
        for snap in snapshots:
            if snap.key in parents:
                continue
            try:
                await containerd.remove_snapshot(namespace, snap.key, snapshotter=snapshotter)
            except (cerrors.NotFound, cerrors.FailedPrecondition):
                pass


async def delete_namespace(runtime: Runtime, namespace: str) -> bool:
    """Delete ``namespace``; ``False`` when it did not exist.

    When containerd refuses because objects remain, the error names the
    residual containers as the reference does.
    """
    if not naming.is_containerd_identifier(namespace):
        return False
    try:
        await runtime.containerd.delete_namespace(namespace)
    except cerrors.NotFound:
        return False
    except cerrors.ContainerdError as exc:
        try:
            left = [c.id for c in await runtime.containerd.list_containers(namespace)]
        except cerrors.ContainerdError:
            left = []
        residual = f" (residual containers: {', '.join(left)})" if left else ""
        raise errors.KukeonError(
            f"failed to delete containerd namespace {q(namespace)}{residual}: {exc}"
        ) from None
    return True


def mark_ready(status: Any) -> None:
    """Set a status to Ready, clearing the reason and message of an earlier state."""
    if status.state != v1beta1.READY:
        status.state = v1beta1.READY
        status.reason = status.message = ""


async def save_if_changed(
    runtime: Runtime, key: Key, doc: D, before: Any, cls: type[D], kind: str
) -> D:
    """Persist ``doc`` when its wire form differs from ``before``; return the stored document."""
    if doc.to_wire() == before:
        return doc
    return decode_stored(cls, kind, await runtime.store.put(key, doc.to_wire()))
