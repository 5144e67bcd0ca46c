"""The ``KukeonV1`` wire types: the Args and Reply structs of the 40 methods.

All keys are Go field names (PascalCase), nothing is ``omitempty``; the
Result structs inside the replies are in :mod:`kukeond.api.wire_results`.
Every Reply has an ``Err`` (``None`` or :class:`APIError`) last;
``ReplyCls()`` is the zero reply and ``ReplyCls.failure(exc)`` the zero reply
carrying ``exc`` as its ``Err``. :data:`METHODS` maps each bare method name
to its ``(ArgsCls, ReplyCls)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from kukeond.api import v1beta1 as v1
from kukeond.api import wire_results
from kukeond.api.wire_results import WireStruct
from kukeond.errors import UNKNOWN, KukeonError


class APIError(WireStruct):
    """The wire error: ``{"Kind": ..., "Message": ...}``."""

    Kind: str
    Message: str


def to_api_error(exc: BaseException) -> APIError:
    """Map any exception to the wire ``APIError``.

    A :class:`~kukeond.errors.KukeonError` gives its ``kind`` (deterministic
    by :data:`~kukeond.errors.KIND_PRIORITY`) and full message; anything else
    is ``Unknown`` with the exception's text (its class name when empty).
    """
    if isinstance(exc, KukeonError):
        return APIError(Kind=exc.kind, Message=exc.message)
    return APIError(Kind=UNKNOWN, Message=str(exc) or type(exc).__name__)


class Reply(WireStruct):
    """Base of every Reply struct (each declares an ``Err`` field last)."""

    if TYPE_CHECKING:
        Err: APIError | None

    @classmethod
    def failure(cls, exc: BaseException) -> Self:
        """Return the zero reply with ``Err`` set from ``exc`` (see :func:`to_api_error`)."""
        reply = cls()
        reply.Err = to_api_error(exc)
        return reply


class PingArgs(WireStruct):
    """Arguments of ``KukeonV1.Ping`` (none)."""


class PingReply(Reply):
    """Ping's reply (not wrapped in a Result)."""

    OK: bool
    Version: str
    Err: APIError | None


class CreateRealmArgs(WireStruct):
    """Arguments of ``KukeonV1.CreateRealm``."""

    Doc: v1.RealmDoc


class CreateRealmReply(Reply):
    """Reply of ``KukeonV1.CreateRealm``."""

    Result: wire_results.CreateRealmResult
    Err: APIError | None


class GetRealmArgs(WireStruct):
    """Arguments of ``KukeonV1.GetRealm``."""

    Doc: v1.RealmDoc


class GetRealmReply(Reply):
    """Reply of ``KukeonV1.GetRealm``."""

    Result: wire_results.GetRealmResult
    Err: APIError | None


class DeleteRealmArgs(WireStruct):
    """Arguments of ``KukeonV1.DeleteRealm``."""

    Doc: v1.RealmDoc
    Force: bool
    Cascade: bool


class DeleteRealmReply(Reply):
    """Reply of ``KukeonV1.DeleteRealm``."""

    Result: wire_results.DeleteRealmResult
    Err: APIError | None


class PurgeRealmArgs(WireStruct):
    """Arguments of ``KukeonV1.PurgeRealm``."""

    Doc: v1.RealmDoc
    Force: bool
    Cascade: bool


class PurgeRealmReply(Reply):
    """Reply of ``KukeonV1.PurgeRealm``."""

    Result: wire_results.PurgeRealmResult
    Err: APIError | None


class CreateSpaceArgs(WireStruct):
    """Arguments of ``KukeonV1.CreateSpace``."""

    Doc: v1.SpaceDoc


class CreateSpaceReply(Reply):
    """Reply of ``KukeonV1.CreateSpace``."""

    Result: wire_results.CreateSpaceResult
    Err: APIError | None


class GetSpaceArgs(WireStruct):
    """Arguments of ``KukeonV1.GetSpace``."""

    Doc: v1.SpaceDoc


class GetSpaceReply(Reply):
    """Reply of ``KukeonV1.GetSpace``."""

    Result: wire_results.GetSpaceResult
    Err: APIError | None


class DeleteSpaceArgs(WireStruct):
    """Arguments of ``KukeonV1.DeleteSpace``."""

    Doc: v1.SpaceDoc
    Force: bool
    Cascade: bool


class DeleteSpaceReply(Reply):
    """Reply of ``KukeonV1.DeleteSpace``."""

    Result: wire_results.DeleteSpaceResult
    Err: APIError | None


class PurgeSpaceArgs(WireStruct):
    """Arguments of ``KukeonV1.PurgeSpace``."""

    Doc: v1.SpaceDoc
    Force: bool
    Cascade: bool


class PurgeSpaceReply(Reply):
    """Reply of ``KukeonV1.PurgeSpace``."""

    Result: wire_results.PurgeSpaceResult
    Err: APIError | None


class CreateStackArgs(WireStruct):
    """Arguments of ``KukeonV1.CreateStack``."""

    Doc: v1.StackDoc


class CreateStackReply(Reply):
    """Reply of ``KukeonV1.CreateStack``."""

    Result: wire_results.CreateStackResult
    Err: APIError | None


class GetStackArgs(WireStruct):
    """Arguments of ``KukeonV1.GetStack``."""

    Doc: v1.StackDoc


class GetStackReply(Reply):
    """Reply of ``KukeonV1.GetStack``."""

    Result: wire_results.GetStackResult
    Err: APIError | None


class DeleteStackArgs(WireStruct):
    """Arguments of ``KukeonV1.DeleteStack``."""

    Doc: v1.StackDoc
    Force: bool
    Cascade: bool


class DeleteStackReply(Reply):
    """Reply of ``KukeonV1.DeleteStack``."""

    Result: wire_results.DeleteStackResult
    Err: APIError | None


class PurgeStackArgs(WireStruct):
    """Arguments of ``KukeonV1.PurgeStack``."""

    Doc: v1.StackDoc
    Force: bool
    Cascade: bool


class PurgeStackReply(Reply):
    """Reply of ``KukeonV1.PurgeStack``."""

    Result: wire_results.PurgeStackResult
    Err: APIError | None


class CreateCellArgs(WireStruct):
    """Arguments of ``KukeonV1.CreateCell``."""

    Doc: v1.CellDoc


class CreateCellReply(Reply):
    """Reply of ``KukeonV1.CreateCell``."""

    Result: wire_results.CreateCellResult
    Err: APIError | None


class GetCellArgs(WireStruct):
    """Arguments of ``KukeonV1.GetCell``."""

    Doc: v1.CellDoc


class GetCellReply(Reply):
    """Reply of ``KukeonV1.GetCell``."""

    Result: wire_results.GetCellResult
    Err: APIError | None


class DeleteCellArgs(WireStruct):
    """Arguments of ``KukeonV1.DeleteCell``."""

    Doc: v1.CellDoc


class DeleteCellReply(Reply):
    """Reply of ``KukeonV1.DeleteCell``."""

    Result: wire_results.DeleteCellResult
    Err: APIError | None


class PurgeCellArgs(WireStruct):
    """Arguments of ``KukeonV1.PurgeCell``."""

    Doc: v1.CellDoc
    Force: bool
    Cascade: bool


class PurgeCellReply(Reply):
    """Reply of ``KukeonV1.PurgeCell``."""

    Result: wire_results.PurgeCellResult
    Err: APIError | None


class CreateContainerArgs(WireStruct):
    """Arguments of ``KukeonV1.CreateContainer``."""

    Doc: v1.ContainerDoc


class CreateContainerReply(Reply):
    """Reply of ``KukeonV1.CreateContainer``."""

    Result: wire_results.CreateContainerResult
    Err: APIError | None


class GetContainerArgs(WireStruct):
    """Arguments of ``KukeonV1.GetContainer``."""

    Doc: v1.ContainerDoc


class GetContainerReply(Reply):
    """Reply of ``KukeonV1.GetContainer``."""

    Result: wire_results.GetContainerResult
    Err: APIError | None


class DeleteContainerArgs(WireStruct):
    """Arguments of ``KukeonV1.DeleteContainer``."""

    Doc: v1.ContainerDoc


class DeleteContainerReply(Reply):
    """Reply of ``KukeonV1.DeleteContainer``."""

    Result: wire_results.DeleteContainerResult
    Err: APIError | None


class PurgeContainerArgs(WireStruct):
    """Arguments of ``KukeonV1.PurgeContainer``."""

    Doc: v1.ContainerDoc


class PurgeContainerReply(Reply):
    """Reply of ``KukeonV1.PurgeContainer``."""

    Result: wire_results.PurgeContainerResult
    Err: APIError | None


class StartCellArgs(WireStruct):
    """Arguments of ``KukeonV1.StartCell``."""

    Doc: v1.CellDoc


class StartCellReply(Reply):
    """Reply of ``KukeonV1.StartCell``."""

    Result: wire_results.StartCellResult
    Err: APIError | None


class StartContainerArgs(WireStruct):
    """Arguments of ``KukeonV1.StartContainer``."""

    Doc: v1.ContainerDoc


class StartContainerReply(Reply):
    """Reply of ``KukeonV1.StartContainer``."""

    Result: wire_results.StartContainerResult
    Err: APIError | None


class StopCellArgs(WireStruct):
    """Arguments of ``KukeonV1.StopCell``."""

    Doc: v1.CellDoc


class StopCellReply(Reply):
    """Reply of ``KukeonV1.StopCell``."""

    Result: wire_results.StopCellResult
    Err: APIError | None


class StopContainerArgs(WireStruct):
    """Arguments of ``KukeonV1.StopContainer``."""

    Doc: v1.ContainerDoc


class StopContainerReply(Reply):
    """Reply of ``KukeonV1.StopContainer``."""

    Result: wire_results.StopContainerResult
    Err: APIError | None


class KillCellArgs(WireStruct):
    """Arguments of ``KukeonV1.KillCell``."""

    Doc: v1.CellDoc


class KillCellReply(Reply):
    """Reply of ``KukeonV1.KillCell``."""

    Result: wire_results.KillCellResult
    Err: APIError | None


class KillContainerArgs(WireStruct):
    """Arguments of ``KukeonV1.KillContainer``."""

    Doc: v1.ContainerDoc


class KillContainerReply(Reply):
    """Reply of ``KukeonV1.KillContainer``."""

    Result: wire_results.KillContainerResult
    Err: APIError | None


class AttachContainerArgs(WireStruct):
    """Arguments of ``KukeonV1.AttachContainer``."""

    Doc: v1.ContainerDoc


class AttachContainerReply(Reply):
    """Reply of ``KukeonV1.AttachContainer``."""

    Result: wire_results.AttachContainerResult
    Err: APIError | None


class LogContainerArgs(WireStruct):
    """Arguments of ``KukeonV1.LogContainer``."""

    Doc: v1.ContainerDoc


class LogContainerReply(Reply):
    """Reply of ``KukeonV1.LogContainer``."""

    Result: wire_results.LogContainerResult
    Err: APIError | None


class ListRealmsArgs(WireStruct):
    """Arguments of ``KukeonV1.ListRealms``."""


class ListRealmsReply(Reply):
    """Reply of ``KukeonV1.ListRealms``."""

    Realms: list[v1.RealmDoc] | None
    Err: APIError | None


class ListSpacesArgs(WireStruct):
    """Arguments of ``KukeonV1.ListSpaces``."""

    RealmName: str


class ListSpacesReply(Reply):
    """Reply of ``KukeonV1.ListSpaces``."""

    Spaces: list[v1.SpaceDoc] | None
    Err: APIError | None


class ListStacksArgs(WireStruct):
    """Arguments of ``KukeonV1.ListStacks``."""

    RealmName: str
    SpaceName: str


class ListStacksReply(Reply):
    """Reply of ``KukeonV1.ListStacks``."""

    Stacks: list[v1.StackDoc] | None
    Err: APIError | None


class ListCellsArgs(WireStruct):
    """Arguments of ``KukeonV1.ListCells``."""

    RealmName: str
    SpaceName: str
    StackName: str


class ListCellsReply(Reply):
    """Reply of ``KukeonV1.ListCells``."""

    Cells: list[v1.CellDoc] | None
    Err: APIError | None


class ListContainersArgs(WireStruct):
    """Arguments of ``KukeonV1.ListContainers``."""

    RealmName: str
    SpaceName: str
    StackName: str
    CellName: str


class ListContainersReply(Reply):
    """Reply of ``KukeonV1.ListContainers``."""

    Containers: list[v1.ContainerSpec] | None
    Err: APIError | None


class RefreshAllArgs(WireStruct):
    """Arguments of ``KukeonV1.RefreshAll``."""


class RefreshAllReply(Reply):
    """Reply of ``KukeonV1.RefreshAll``."""

    Result: wire_results.RefreshAllResult
    Err: APIError | None


class ApplyDocumentsArgs(WireStruct):
    """Arguments of ``KukeonV1.ApplyDocuments``."""

    RawYAML: bytes | None


class ApplyDocumentsReply(Reply):
    """Reply of ``KukeonV1.ApplyDocuments``."""

    Result: wire_results.ApplyDocumentsResult
    Err: APIError | None


class LoadImageArgs(WireStruct):
    """Arguments of ``KukeonV1.LoadImage``."""

    Realm: str
    Tarball: bytes | None


class LoadImageReply(Reply):
    """Reply of ``KukeonV1.LoadImage``."""

    Result: wire_results.LoadImageResult
    Err: APIError | None


class ListImagesArgs(WireStruct):
    """Arguments of ``KukeonV1.ListImages``."""

    Realm: str


class ListImagesReply(Reply):
    """Reply of ``KukeonV1.ListImages``."""

    Result: wire_results.ListImagesResult
    Err: APIError | None


class GetImageArgs(WireStruct):
    """Arguments of ``KukeonV1.GetImage``."""

    Realm: str
    Ref: str


class GetImageReply(Reply):
    """Reply of ``KukeonV1.GetImage``."""

    Result: wire_results.GetImageResult
    Err: APIError | None


class DeleteImageArgs(WireStruct):
    """Arguments of ``KukeonV1.DeleteImage``."""

    Realm: str
    Ref: str


class DeleteImageReply(Reply):
    """Reply of ``KukeonV1.DeleteImage``."""

    Result: wire_results.DeleteImageResult
    Err: APIError | None


METHODS: dict[str, tuple[type[WireStruct], type[Reply]]] = {
    "Ping": (PingArgs, PingReply),
    "CreateRealm": (CreateRealmArgs, CreateRealmReply),
    "GetRealm": (GetRealmArgs, GetRealmReply),
    "DeleteRealm": (DeleteRealmArgs, DeleteRealmReply),
    "PurgeRealm": (PurgeRealmArgs, PurgeRealmReply),
    "CreateSpace": (CreateSpaceArgs, CreateSpaceReply),
    "GetSpace": (GetSpaceArgs, GetSpaceReply),
    "DeleteSpace": (DeleteSpaceArgs, DeleteSpaceReply),
    "PurgeSpace": (PurgeSpaceArgs, PurgeSpaceReply),
    "CreateStack": (CreateStackArgs, CreateStackReply),
    "GetStack": (GetStackArgs, GetStackReply),
    "DeleteStack": (DeleteStackArgs, DeleteStackReply),
    "PurgeStack": (PurgeStackArgs, PurgeStackReply),
    "CreateCell": (CreateCellArgs, CreateCellReply),
    "GetCell": (GetCellArgs, GetCellReply),
    "DeleteCell": (DeleteCellArgs, DeleteCellReply),
    "PurgeCell": (PurgeCellArgs, PurgeCellReply),
    "CreateContainer": (CreateContainerArgs, CreateContainerReply),
    "GetContainer": (GetContainerArgs, GetContainerReply),
    "DeleteContainer": (DeleteContainerArgs, DeleteContainerReply),
    "PurgeContainer": (PurgeContainerArgs, PurgeContainerReply),
    "StartCell": (StartCellArgs, StartCellReply),
    "StartContainer": (StartContainerArgs, StartContainerReply),
    "StopCell": (StopCellArgs, StopCellReply),
    "StopContainer": (StopContainerArgs, StopContainerReply),
    "KillCell": (KillCellArgs, KillCellReply),
    "KillContainer": (KillContainerArgs, KillContainerReply),
    "AttachContainer": (AttachContainerArgs, AttachContainerReply),
    "LogContainer": (LogContainerArgs, LogContainerReply),
    "ListRealms": (ListRealmsArgs, ListRealmsReply),
    "ListSpaces": (ListSpacesArgs, ListSpacesReply),
    "ListStacks": (ListStacksArgs, ListStacksReply),
    "ListCells": (ListCellsArgs, ListCellsReply),
    "ListContainers": (ListContainersArgs, ListContainersReply),
    "RefreshAll": (RefreshAllArgs, RefreshAllReply),
    "ApplyDocuments": (ApplyDocumentsArgs, ApplyDocumentsReply),
    "LoadImage": (LoadImageArgs, LoadImageReply),
    "ListImages": (ListImagesArgs, ListImagesReply),
    "GetImage": (GetImageArgs, GetImageReply),
    "DeleteImage": (DeleteImageArgs, DeleteImageReply),
}
"""Bare method name → ``(ArgsCls, ReplyCls)`` for all 40 ``KukeonV1`` methods."""
