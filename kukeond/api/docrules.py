"""Rules the daemon applies to incoming documents: version check, validation, defaults.

* :func:`check_api_version` — ``""``/``v1beta1`` only, else ``ConversionFailed``
  (``conversion failed: unsupported apiVersion for Realm: v2``).
* :func:`validate_container_spec`, :func:`validate_cell_spec` — tty and root
  container rules; failures are ``ConversionFailed`` with the reference texts.
* ``default_*`` / :func:`resolve_root_container` — the derived values of the
  reference (namespace, ownership labels, ids, root container).

Name character rules are not here: they belong to :mod:`kukeond.base.naming`.
"""

from __future__ import annotations

from typing import Protocol

from kukeond.api.v1beta1 import (
    API_VERSION,
    CellDoc,
    CellSpec,
    ContainerDoc,
    ContainerSpec,
    RealmDoc,
    ResourceDoc,
    SpaceDoc,
    StackDoc,
)
from kukeond.errors import ConversionFailed


class Labelled(Protocol):
    """Any document metadata: it has labels."""

    labels: dict[str, str] | None


LABEL_REALM = "realm.kukeon.io"
LABEL_SPACE = "space.kukeon.io"
LABEL_STACK = "stack.kukeon.io"
LABEL_CELL = "cell.kukeon.io"
DEFAULT_NAMESPACE_SUFFIX = "kukeon.io"

IMPLICIT_ROOT_ID = "root"
IMPLICIT_ROOT_IMAGE = "docker.io/library/busybox:latest"
IMPLICIT_ROOT_COMMAND = "sleep"
IMPLICIT_ROOT_ARGS = ("infinity",)


def _go_list(items: list[str]) -> str:
    """Format a string slice like Go's ``%v``: ``[a b]``."""
    return "[" + " ".join(items) + "]"


def _q(text: str) -> str:
    """Quote like Go's ``%q`` for plain names."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_api_version(doc: ResourceDoc, kind: str) -> None:
    """Raise ``ConversionFailed`` unless ``doc.apiVersion`` is ``""`` or ``v1beta1``."""
    version = doc.apiVersion
    if version not in ("", API_VERSION):
        raise ConversionFailed(f"unsupported apiVersion for {kind}: {version}")


def validate_container_spec(spec: ContainerSpec) -> None:
    """Reject tty settings on a container that is not attachable."""
    if not spec.attachable and spec.tty is not None and not spec.tty.is_empty():
        raise ConversionFailed(f"container {_q(spec.id)}: tty fields require attachable: true")


def resolve_root_container(spec: CellSpec) -> str:
    """Return the root container id named by ``rootContainerId`` / ``root: true``, or ``""``.

    ``""`` means the daemon must add the implicit root container. Raises
    ``ConversionFailed`` when several containers are marked root, when
    ``rootContainerId`` names no container, or when the two disagree.
    """
    containers = spec.containers or []
    marked = [c.id for c in containers if c.root]
    if len(marked) > 1:
        raise ConversionFailed(
            f"only one container in a cell may have root: true: {_go_list(marked)}"
        )
    wanted = spec.rootContainerId
    if wanted:
        if not any(c.id == wanted for c in containers):
            raise ConversionFailed(f"rootContainerId {_q(wanted)} not found in containers array")
        if marked and marked[0] != wanted:
            raise ConversionFailed(
                "rootContainerId disagrees with container marked root: true: "
                f"rootContainerId is {_q(wanted)} but container {_q(marked[0])} has root: true"
            )
        return wanted
    return marked[0] if marked else ""


def validate_cell_spec(spec: CellSpec) -> None:
    """Apply the container tty, cell ``tty.default`` and root container rules, in that order."""
    containers = spec.containers or []
    for container in containers:
        validate_container_spec(container)
    default = spec.tty.default if spec.tty is not None else ""
    if default:
        for container in containers:
            if container.id == default:
                if not container.attachable:
                    raise ConversionFailed(
                        f"cell tty.default {_q(default)} references container "
                        "that is not attachable"
                    )
                break
        else:
            raise ConversionFailed(
                f"cell tty.default {_q(default)} does not match any container in this cell"
            )
    resolve_root_container(spec)


def normalize_request_doc(doc: ResourceDoc) -> None:
    """Run the checks every typed RPC applies to its ``Doc`` before anything else."""
    if isinstance(doc, RealmDoc):
        check_api_version(doc, "Realm")
    elif isinstance(doc, SpaceDoc):
        check_api_version(doc, "Space")
    elif isinstance(doc, StackDoc):
        check_api_version(doc, "Stack")
    elif isinstance(doc, CellDoc):
        check_api_version(doc, "Cell")
        validate_cell_spec(doc.spec)
    elif isinstance(doc, ContainerDoc):
        check_api_version(doc, "Container")
        validate_container_spec(doc.spec)
    else:
        raise TypeError(f"not a resource document: {type(doc).__name__}")


def default_namespace(realm: str, suffix: str = DEFAULT_NAMESPACE_SUFFIX) -> str:
    """Return the containerd namespace of a realm: ``<realm>.<suffix>``."""
    return f"{realm}.{suffix}"


def _add_labels(meta: Labelled, labels: dict[str, str]) -> None:
    current = dict(meta.labels or {})
    for key, value in labels.items():
        current.setdefault(key, value)
    meta.labels = current


def default_realm(doc: RealmDoc, suffix: str = DEFAULT_NAMESPACE_SUFFIX) -> None:
    """Fill ``spec.namespace`` and the ``realm.kukeon.io`` (= namespace) label if absent."""
    if not doc.spec.namespace:
        doc.spec.namespace = default_namespace(doc.metadata.name, suffix)
    _add_labels(doc.metadata, {LABEL_REALM: doc.spec.namespace})


def default_space(doc: SpaceDoc) -> None:
    """Add the realm and space ownership labels if absent."""
    _add_labels(doc.metadata, {LABEL_REALM: doc.spec.realmId, LABEL_SPACE: doc.metadata.name})


def default_stack(doc: StackDoc) -> None:
    """Add ownership labels and default ``spec.id`` to the name."""
    if not doc.spec.id:
        doc.spec.id = doc.metadata.name
    _add_labels(
        doc.metadata,
        {
            LABEL_REALM: doc.spec.realmId,
            LABEL_SPACE: doc.spec.spaceId,
            LABEL_STACK: doc.metadata.name,
        },
    )


def default_cell(doc: CellDoc) -> None:
    """Add ownership labels, default ``spec.id`` and stamp each container with the cell's ids."""
    spec = doc.spec
    if not spec.id:
        spec.id = doc.metadata.name
    # ``kuke create cell`` sends neither; the reference stores both.
    doc.apiVersion = doc.apiVersion or API_VERSION
    doc.kind = doc.kind or "Cell"
    _add_labels(
        doc.metadata,
        {
            LABEL_REALM: spec.realmId,
            LABEL_SPACE: spec.spaceId,
            LABEL_STACK: spec.stackId,
            LABEL_CELL: doc.metadata.name,
        },
    )
    for container in spec.containers or []:
        container.realmId = spec.realmId
        container.spaceId = spec.spaceId
        container.stackId = spec.stackId
        container.cellId = doc.metadata.name


def implicit_root_container(doc: CellDoc) -> ContainerSpec:
    """Build the implicit root container of a cell (host network if any container uses it)."""
    spec = doc.spec
    host_network = any(c.hostNetwork for c in spec.containers or [])
    return ContainerSpec(
        id=IMPLICIT_ROOT_ID,
        realmId=spec.realmId,
        spaceId=spec.spaceId,
        stackId=spec.stackId,
        cellId=doc.metadata.name,
        root=True,
        image=IMPLICIT_ROOT_IMAGE,
        command=IMPLICIT_ROOT_COMMAND,
        args=list(IMPLICIT_ROOT_ARGS),
        hostNetwork=host_network,
    )


def ensure_root_container(doc: CellDoc) -> ContainerSpec:
    """Make the cell's root explicit and return it.

    The container named by ``rootContainerId`` or marked ``root: true`` gets
    both markers; without either, the implicit root is appended.
    """
    spec = doc.spec
    root_id = resolve_root_container(spec)
    if spec.containers is None:
        spec.containers = []
    if not root_id:
        root = implicit_root_container(doc)
        spec.containers.append(root)
        spec.rootContainerId = root.id
        return root
    spec.rootContainerId = root_id
    for container in spec.containers:
        if container.id == root_id:
            container.root = True
            return container
    raise AssertionError("resolved root container vanished")
