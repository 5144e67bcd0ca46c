"""The Result structs of the ``KukeonV1`` replies, and the structs inside them.

Keys are Go field names (PascalCase), nothing is ``omitempty``; each class
lists its fields in the reference's declaration order.
"""

from __future__ import annotations

from typing import Annotated

from kukeond.api import v1beta1 as v1
from kukeond.api.gotypes import INT64, TIME
from kukeond.api.structs import GoStruct


class WireStruct(GoStruct):
    """Base of the structs of Go package ``kukeonv1``."""

    go_package = "kukeonv1"


class ImageInfo(WireStruct):
    """One image as listed by ListImages/GetImage (``Size`` -1 = unknown)."""

    Name: str
    Size: Annotated[int, INT64]
    CreatedAt: Annotated[str, TIME]
    Digest: str
    MediaType: str
    Labels: dict[str, str] | None


class ApplyResourceResult(WireStruct):
    """The outcome of one document of ApplyDocuments."""

    Index: int
    Kind: str
    Name: str
    Action: str
    Error: str
    Changes: list[str] | None
    Details: dict[str, str] | None


class ContainerCreationOutcome(WireStruct):
    """Per requested container of CreateCell: did it exist before/after, was it created."""

    Name: str
    ExistsPre: bool
    ExistsPost: bool
    Created: bool


class CreateRealmResult(WireStruct):
    """What ``KukeonV1.CreateRealm`` reports."""

    Realm: v1.RealmDoc
    MetadataExistsPre: bool
    MetadataExistsPost: bool
    CgroupExistsPre: bool
    CgroupExistsPost: bool
    CgroupCreated: bool
    ContainerdNamespaceExistsPre: bool
    ContainerdNamespaceExistsPost: bool
    ContainerdNamespaceCreated: bool
    Created: bool


class CreateSpaceResult(WireStruct):
    """What ``KukeonV1.CreateSpace`` reports."""

    Space: v1.SpaceDoc
    MetadataExistsPre: bool
    MetadataExistsPost: bool
    CgroupExistsPre: bool
    CgroupExistsPost: bool
    CgroupCreated: bool
    CNINetworkExistsPre: bool
    CNINetworkExistsPost: bool
    CNINetworkCreated: bool
    Created: bool


class CreateStackResult(WireStruct):
    """What ``KukeonV1.CreateStack`` reports."""

    Stack: v1.StackDoc
    MetadataExistsPre: bool
    MetadataExistsPost: bool
    CgroupExistsPre: bool
    CgroupExistsPost: bool
    CgroupCreated: bool
    Created: bool


class CreateCellResult(WireStruct):
    """What ``KukeonV1.CreateCell`` reports."""

    Cell: v1.CellDoc
    MetadataExistsPre: bool
    MetadataExistsPost: bool
    CgroupExistsPre: bool
    CgroupExistsPost: bool
    CgroupCreated: bool
    RootContainerExistsPre: bool
    RootContainerExistsPost: bool
    RootContainerCreated: bool
    StartedPre: bool
    StartedPost: bool
    Started: bool
    Created: bool
    Containers: list[ContainerCreationOutcome] | None


class CreateContainerResult(WireStruct):
    """What ``KukeonV1.CreateContainer`` reports."""

    Container: v1.ContainerDoc
    CellMetadataExistsPre: bool
    CellMetadataExistsPost: bool
    ContainerExistsPre: bool
    ContainerExistsPost: bool
    ContainerCreated: bool
    Started: bool


class GetRealmResult(WireStruct):
    """What ``KukeonV1.GetRealm`` reports."""

    Realm: v1.RealmDoc
    MetadataExists: bool
    CgroupExists: bool
    ContainerdNamespaceExists: bool


class GetSpaceResult(WireStruct):
    """What ``KukeonV1.GetSpace`` reports."""

    Space: v1.SpaceDoc
    MetadataExists: bool
    CgroupExists: bool
    CNINetworkExists: bool


class GetStackResult(WireStruct):
    """What ``KukeonV1.GetStack`` reports."""

    Stack: v1.StackDoc
    MetadataExists: bool
    CgroupExists: bool


class GetCellResult(WireStruct):
    """What ``KukeonV1.GetCell`` reports."""

    Cell: v1.CellDoc
    MetadataExists: bool
    CgroupExists: bool
    RootContainerExists: bool


class GetContainerResult(WireStruct):
    """What ``KukeonV1.GetContainer`` reports."""

    Container: v1.ContainerDoc
    CellMetadataExists: bool
    ContainerExists: bool


class StartCellResult(WireStruct):
    """What ``KukeonV1.StartCell`` reports."""

    Cell: v1.CellDoc
    Started: bool


class StartContainerResult(WireStruct):
    """What ``KukeonV1.StartContainer`` reports."""

    Container: v1.ContainerDoc
    Started: bool


class StopCellResult(WireStruct):
    """What ``KukeonV1.StopCell`` reports."""

    Cell: v1.CellDoc
    Stopped: bool


class StopContainerResult(WireStruct):
    """What ``KukeonV1.StopContainer`` reports."""

    Container: v1.ContainerDoc
    Stopped: bool


class KillCellResult(WireStruct):
    """What ``KukeonV1.KillCell`` reports."""

    Cell: v1.CellDoc
    Killed: bool


class KillContainerResult(WireStruct):
    """What ``KukeonV1.KillContainer`` reports."""

    Container: v1.ContainerDoc
    Killed: bool


class DeleteRealmResult(WireStruct):
    """What ``KukeonV1.DeleteRealm`` reports."""

    Realm: v1.RealmDoc
    Deleted: list[str] | None
    MetadataDeleted: bool
    CgroupDeleted: bool
    ContainerdNamespaceDeleted: bool


class DeleteSpaceResult(WireStruct):
    """What ``KukeonV1.DeleteSpace`` reports."""

    Space: v1.SpaceDoc
    SpaceName: str
    RealmName: str
    MetadataDeleted: bool
    CgroupDeleted: bool
    CNINetworkDeleted: bool
    Deleted: list[str] | None


class DeleteStackResult(WireStruct):
    """What ``KukeonV1.DeleteStack`` reports."""

    Stack: v1.StackDoc
    StackName: str
    RealmName: str
    SpaceName: str
    MetadataDeleted: bool
    CgroupDeleted: bool
    Deleted: list[str] | None


class DeleteCellResult(WireStruct):
    """What ``KukeonV1.DeleteCell`` reports."""

    Cell: v1.CellDoc
    ContainersDeleted: bool
    CgroupDeleted: bool
    MetadataDeleted: bool


class DeleteContainerResult(WireStruct):
    """What ``KukeonV1.DeleteContainer`` reports."""

    Container: v1.ContainerDoc
    CellMetadataExists: bool
    ContainerExists: bool
    Deleted: list[str] | None


class PurgeRealmResult(WireStruct):
    """What ``KukeonV1.PurgeRealm`` reports."""

    Realm: v1.RealmDoc
    RealmDeleted: bool
    PurgeSucceeded: bool
    Force: bool
    Cascade: bool
    Deleted: list[str] | None
    Purged: list[str] | None


class PurgeSpaceResult(WireStruct):
    """What ``KukeonV1.PurgeSpace`` reports."""

    Space: v1.SpaceDoc
    MetadataDeleted: bool
    CgroupDeleted: bool
    CNINetworkDeleted: bool
    PurgeSucceeded: bool
    Force: bool
    Cascade: bool
    Deleted: list[str] | None
    Purged: list[str] | None


class PurgeStackResult(WireStruct):
    """What ``KukeonV1.PurgeStack`` reports."""

    Stack: v1.StackDoc
    Deleted: list[str] | None
    Purged: list[str] | None


class PurgeCellResult(WireStruct):
    """What ``KukeonV1.PurgeCell`` reports."""

    Cell: v1.CellDoc
    ContainersDeleted: bool
    CgroupDeleted: bool
    MetadataDeleted: bool
    PurgeSucceeded: bool
    Force: bool
    Cascade: bool
    Deleted: list[str] | None
    Purged: list[str] | None


class PurgeContainerResult(WireStruct):
    """What ``KukeonV1.PurgeContainer`` reports."""

    Container: v1.ContainerDoc
    CellMetadataExists: bool
    ContainerExists: bool
    Deleted: list[str] | None
    Purged: list[str] | None


class AttachContainerResult(WireStruct):
    """What ``KukeonV1.AttachContainer`` reports."""

    HostSocketPath: str


class LogContainerResult(WireStruct):
    """What ``KukeonV1.LogContainer`` reports."""

    HostCapturePath: str
    HostLogPath: str


class RefreshAllResult(WireStruct):
    """What ``KukeonV1.RefreshAll`` reports."""

    RealmsFound: list[str] | None
    SpacesFound: list[str] | None
    StacksFound: list[str] | None
    CellsFound: list[str] | None
    ContainersFound: list[str] | None
    RealmsUpdated: list[str] | None
    SpacesUpdated: list[str] | None
    StacksUpdated: list[str] | None
    CellsUpdated: list[str] | None
    ContainersUpdated: list[str] | None
    Errors: list[str] | None


class ApplyDocumentsResult(WireStruct):
    """What ``KukeonV1.ApplyDocuments`` reports."""

    Resources: list[ApplyResourceResult] | None


class LoadImageResult(WireStruct):
    """What ``KukeonV1.LoadImage`` reports."""

    Realm: str
    Namespace: str
    Images: list[str] | None


class ListImagesResult(WireStruct):
    """What ``KukeonV1.ListImages`` reports."""

    Realm: str
    Namespace: str
    Images: list[ImageInfo] | None


class GetImageResult(WireStruct):
    """What ``KukeonV1.GetImage`` reports."""

    Realm: str
    Namespace: str
    Image: ImageInfo


class DeleteImageResult(WireStruct):
    """What ``KukeonV1.DeleteImage`` reports."""

    Realm: str
    Namespace: str
    Ref: str
