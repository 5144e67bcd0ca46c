"""The ``KukeonV1`` wire types: Args, Reply and Result structs of the 40 methods.

All keys are Go field names (PascalCase), nothing is ``omitempty``. Every
Reply has an ``Err`` (``None`` or :class:`APIError`); ``ReplyCls()`` is the
zero reply and ``ReplyCls.failure(exc)`` the zero reply carrying ``exc`` as
its ``Err``. :data:`METHODS` maps each bare method name to its
``(ArgsCls, ReplyCls)``.

The structs are generated from tables (one line per Go struct) so that the
shapes read like the reference's declarations.
"""

from __future__ import annotations

from typing import Any

from kukeond.api import v1beta1 as v1
from kukeond.api.structs import BOOL, BYTES, INT, INT64, STRING, TIME, GoStruct, Map, Ptr, Slice
from kukeond.errors import UNKNOWN, KukeonError

_STRINGS = Slice(STRING)


class APIError(GoStruct):
    """The wire error: ``{"Kind": ..., "Message": ...}``."""

    go_name = "kukeonv1.APIError"
    fields = (("Kind", STRING), ("Message", STRING))


def to_api_error(exc: BaseException) -> APIError:
    """Map any exception to the wire ``APIError``.

    A :class:`~kukeond.errors.KukeonError` gives its ``kind`` (deterministic
    by :data:`~kukeond.errors.KIND_PRIORITY`) and full message; anything else
    is ``Unknown`` with the exception's text (its class name when empty).
    """
    if isinstance(exc, KukeonError):
        return APIError(Kind=exc.kind, Message=exc.message)
    return APIError(Kind=UNKNOWN, Message=str(exc) or type(exc).__name__)


class Reply(GoStruct):
    """Base of every Reply struct (each declares an ``Err`` field last)."""

    @classmethod
    def failure(cls, exc: BaseException) -> Any:
        """Return the zero reply with ``Err`` set from ``exc`` (see :func:`to_api_error`)."""
        reply = cls()
        reply.Err = to_api_error(exc)
        return reply


class ImageInfo(GoStruct):
    """One image as listed by ListImages/GetImage (``Size`` -1 = unknown)."""

    go_name = "kukeonv1.ImageInfo"
    fields = (
        ("Name", STRING),
        ("Size", INT64),
        ("CreatedAt", TIME),
        ("Digest", STRING),
        ("MediaType", STRING),
        ("Labels", Map(STRING)),
    )


class ApplyResourceResult(GoStruct):
    """The outcome of one document of ApplyDocuments."""

    go_name = "kukeonv1.ApplyResourceResult"
    fields = (
        ("Index", INT),
        ("Kind", STRING),
        ("Name", STRING),
        ("Action", STRING),
        ("Error", STRING),
        ("Changes", _STRINGS),
        ("Details", Map(STRING)),
    )


class ContainerCreationOutcome(GoStruct):
    """Per requested container of CreateCell: did it exist before/after, was it created."""

    go_name = "kukeonv1.ContainerCreationOutcome"
    fields = (("Name", STRING), ("ExistsPre", BOOL), ("ExistsPost", BOOL), ("Created", BOOL))


class PingReply(Reply):
    """Ping's reply (not wrapped in a Result)."""

    go_name = "kukeonv1.PingReply"
    fields = (("OK", BOOL), ("Version", STRING), ("Err", Ptr(APIError)))


def _make(name: str, fields: tuple, doc: str, base: type[GoStruct] = GoStruct) -> type:
    cls = type(name, (base,), {"go_name": "kukeonv1." + name, "fields": fields, "__doc__": doc})
    cls.__module__ = __name__
    return cls


def _flags(*names: str) -> tuple:
    return tuple((n, BOOL) for n in names)


_RESULTS: dict[str, tuple] = {
    "CreateRealmResult": (("Realm", v1.RealmDoc),)
    + _flags(
        "MetadataExistsPre",
        "MetadataExistsPost",
        "CgroupExistsPre",
        "CgroupExistsPost",
        "CgroupCreated",
        "ContainerdNamespaceExistsPre",
        "ContainerdNamespaceExistsPost",
        "ContainerdNamespaceCreated",
        "Created",
    ),
    "CreateSpaceResult": (("Space", v1.SpaceDoc),)
    + _flags(
        "MetadataExistsPre",
        "MetadataExistsPost",
        "CgroupExistsPre",
        "CgroupExistsPost",
        "CgroupCreated",
        "CNINetworkExistsPre",
        "CNINetworkExistsPost",
        "CNINetworkCreated",
        "Created",
    ),
    "CreateStackResult": (("Stack", v1.StackDoc),)
    + _flags(
        "MetadataExistsPre",
        "MetadataExistsPost",
        "CgroupExistsPre",
        "CgroupExistsPost",
        "CgroupCreated",
        "Created",
    ),
    "CreateCellResult": (("Cell", v1.CellDoc),)
    + _flags(
        "MetadataExistsPre",
        "MetadataExistsPost",
        "CgroupExistsPre",
        "CgroupExistsPost",
        "CgroupCreated",
        "RootContainerExistsPre",
        "RootContainerExistsPost",
        "RootContainerCreated",
        "StartedPre",
        "StartedPost",
        "Started",
        "Created",
    )
    + (("Containers", Slice(ContainerCreationOutcome)),),
    "CreateContainerResult": (("Container", v1.ContainerDoc),)
    + _flags(
        "CellMetadataExistsPre",
        "CellMetadataExistsPost",
        "ContainerExistsPre",
        "ContainerExistsPost",
        "ContainerCreated",
        "Started",
    ),
    "GetRealmResult": (("Realm", v1.RealmDoc),)
    + _flags("MetadataExists", "CgroupExists", "ContainerdNamespaceExists"),
    "GetSpaceResult": (("Space", v1.SpaceDoc),)
    + _flags("MetadataExists", "CgroupExists", "CNINetworkExists"),
    "GetStackResult": (("Stack", v1.StackDoc),) + _flags("MetadataExists", "CgroupExists"),
    "GetCellResult": (("Cell", v1.CellDoc),)
    + _flags("MetadataExists", "CgroupExists", "RootContainerExists"),
    "GetContainerResult": (("Container", v1.ContainerDoc),)
    + _flags("CellMetadataExists", "ContainerExists"),
    "StartCellResult": (("Cell", v1.CellDoc), ("Started", BOOL)),
    "StartContainerResult": (("Container", v1.ContainerDoc), ("Started", BOOL)),
    "StopCellResult": (("Cell", v1.CellDoc), ("Stopped", BOOL)),
    "StopContainerResult": (("Container", v1.ContainerDoc), ("Stopped", BOOL)),
    "KillCellResult": (("Cell", v1.CellDoc), ("Killed", BOOL)),
    "KillContainerResult": (("Container", v1.ContainerDoc), ("Killed", BOOL)),
    "DeleteRealmResult": (("Realm", v1.RealmDoc), ("Deleted", _STRINGS))
    + _flags("MetadataDeleted", "CgroupDeleted", "ContainerdNamespaceDeleted"),
    "DeleteSpaceResult": (("Space", v1.SpaceDoc), ("SpaceName", STRING), ("RealmName", STRING))
    + _flags("MetadataDeleted", "CgroupDeleted", "CNINetworkDeleted")
    + (("Deleted", _STRINGS),),
    "DeleteStackResult": (
        ("Stack", v1.StackDoc),
        ("StackName", STRING),
        ("RealmName", STRING),
        ("SpaceName", STRING),
    )
    + _flags("MetadataDeleted", "CgroupDeleted")
    + (("Deleted", _STRINGS),),
    "DeleteCellResult": (("Cell", v1.CellDoc),)
    + _flags("ContainersDeleted", "CgroupDeleted", "MetadataDeleted"),
    "DeleteContainerResult": (("Container", v1.ContainerDoc),)
    + _flags("CellMetadataExists", "ContainerExists")
    + (("Deleted", _STRINGS),),
    "PurgeRealmResult": (("Realm", v1.RealmDoc),)
    + _flags("RealmDeleted", "PurgeSucceeded", "Force", "Cascade")
    + (("Deleted", _STRINGS), ("Purged", _STRINGS)),
    "PurgeSpaceResult": (("Space", v1.SpaceDoc),)
    + _flags(
        "MetadataDeleted",
        "CgroupDeleted",
        "CNINetworkDeleted",
        "PurgeSucceeded",
        "Force",
        "Cascade",
    )
    + (("Deleted", _STRINGS), ("Purged", _STRINGS)),
    "PurgeStackResult": (("Stack", v1.StackDoc), ("Deleted", _STRINGS), ("Purged", _STRINGS)),
    "PurgeCellResult": (("Cell", v1.CellDoc),)
    + _flags(
        "ContainersDeleted",
        "CgroupDeleted",
        "MetadataDeleted",
        "PurgeSucceeded",
        "Force",
        "Cascade",
    )
    + (("Deleted", _STRINGS), ("Purged", _STRINGS)),
    "PurgeContainerResult": (("Container", v1.ContainerDoc),)
    + _flags("CellMetadataExists", "ContainerExists")
    + (("Deleted", _STRINGS), ("Purged", _STRINGS)),
    "AttachContainerResult": (("HostSocketPath", STRING),),
    "LogContainerResult": (("HostCapturePath", STRING), ("HostLogPath", STRING)),
    "RefreshAllResult": tuple(
        (n, _STRINGS)
        for n in (
            "RealmsFound",
            "SpacesFound",
            "StacksFound",
            "CellsFound",
            "ContainersFound",
            "RealmsUpdated",
            "SpacesUpdated",
            "StacksUpdated",
            "CellsUpdated",
            "ContainersUpdated",
            "Errors",
        )
    ),
    "ApplyDocumentsResult": (("Resources", Slice(ApplyResourceResult)),),
    "LoadImageResult": (("Realm", STRING), ("Namespace", STRING), ("Images", _STRINGS)),
    "ListImagesResult": (("Realm", STRING), ("Namespace", STRING), ("Images", Slice(ImageInfo))),
    "GetImageResult": (("Realm", STRING), ("Namespace", STRING), ("Image", ImageInfo)),
    "DeleteImageResult": (("Realm", STRING), ("Namespace", STRING), ("Ref", STRING)),
}

RESULTS: dict[str, type[GoStruct]] = {
    name: _make(name, fields, f"The ``{name}`` struct.") for name, fields in _RESULTS.items()
}
"""Result structs by Go name (``RESULTS["CreateRealmResult"]``)."""

_FORCE = (("Force", BOOL), ("Cascade", BOOL))

# method → (Args fields, Reply payload fields before Err)
_METHODS: dict[str, tuple[tuple, tuple]] = {}


def _doc_method(name: str, doc_type: type[GoStruct], extra: tuple = ()) -> None:
    _METHODS[name] = ((("Doc", doc_type),) + extra, (("Result", RESULTS[name + "Result"]),))


for _kind, _doc_type in (
    ("Realm", v1.RealmDoc),
    ("Space", v1.SpaceDoc),
    ("Stack", v1.StackDoc),
    ("Cell", v1.CellDoc),
    ("Container", v1.ContainerDoc),
):
    _doc_method("Create" + _kind, _doc_type)
    _doc_method("Get" + _kind, _doc_type)
    _doc_method("Delete" + _kind, _doc_type, _FORCE if _kind in ("Realm", "Space", "Stack") else ())
    _doc_method("Purge" + _kind, _doc_type, () if _kind == "Container" else _FORCE)
for _verb in ("Start", "Stop", "Kill"):
    _doc_method(_verb + "Cell", v1.CellDoc)
    _doc_method(_verb + "Container", v1.ContainerDoc)
_doc_method("AttachContainer", v1.ContainerDoc)
_doc_method("LogContainer", v1.ContainerDoc)

_METHODS["ListRealms"] = ((), (("Realms", Slice(v1.RealmDoc)),))
_METHODS["ListSpaces"] = ((("RealmName", STRING),), (("Spaces", Slice(v1.SpaceDoc)),))
_METHODS["ListStacks"] = (
    (("RealmName", STRING), ("SpaceName", STRING)),
    (("Stacks", Slice(v1.StackDoc)),),
)
_METHODS["ListCells"] = (
    (("RealmName", STRING), ("SpaceName", STRING), ("StackName", STRING)),
    (("Cells", Slice(v1.CellDoc)),),
)
_METHODS["ListContainers"] = (
    (("RealmName", STRING), ("SpaceName", STRING), ("StackName", STRING), ("CellName", STRING)),
    (("Containers", Slice(v1.ContainerSpec)),),
)
_METHODS["RefreshAll"] = ((), (("Result", RESULTS["RefreshAllResult"]),))
_METHODS["ApplyDocuments"] = (
    (("RawYAML", BYTES),),
    (("Result", RESULTS["ApplyDocumentsResult"]),),
)
_METHODS["LoadImage"] = (
    (("Realm", STRING), ("Tarball", BYTES)),
    (("Result", RESULTS["LoadImageResult"]),),
)
for _name in ("ListImages",):
    _METHODS[_name] = ((("Realm", STRING),), (("Result", RESULTS[_name + "Result"]),))
for _name in ("GetImage", "DeleteImage"):
    _METHODS[_name] = (
        (("Realm", STRING), ("Ref", STRING)),
        (("Result", RESULTS[_name + "Result"]),),
    )

METHODS: dict[str, tuple[type[GoStruct], type[Reply]]] = {}
"""Bare method name → ``(ArgsCls, ReplyCls)`` for all 40 ``KukeonV1`` methods."""

ARGS: dict[str, type[GoStruct]] = {}
"""Args structs by Go name (``ARGS["CreateRealmArgs"]``)."""

REPLIES: dict[str, type[Reply]] = {"PingReply": PingReply}
"""Reply structs by Go name (``REPLIES["CreateRealmReply"]``)."""

for _name, (_args, _payload) in _METHODS.items():
    ARGS[_name + "Args"] = _make(_name + "Args", _args, f"Arguments of ``KukeonV1.{_name}``.")
    REPLIES[_name + "Reply"] = _make(
        _name + "Reply",
        _payload + (("Err", Ptr(APIError)),),
        f"Reply of ``KukeonV1.{_name}``.",
        Reply,
    )
    METHODS[_name] = (ARGS[_name + "Args"], REPLIES[_name + "Reply"])
ARGS["PingArgs"] = _make("PingArgs", (), "Arguments of ``KukeonV1.Ping`` (none).")
METHODS["Ping"] = (ARGS["PingArgs"], PingReply)

globals().update(RESULTS)
globals().update(ARGS)
globals().update(REPLIES)
