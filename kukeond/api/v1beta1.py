"""The ``v1beta1`` document model: Realm, Space, Stack, Cell, Container and local docs.

Field tables follow the Go declaration order and JSON tags of the reference
(``pkg/api/model/v1beta1``); see :mod:`kukeond.api.gotypes` for how values are
represented. Defaulting and validation rules live in
:mod:`kukeond.api.docrules`.
"""

from __future__ import annotations

from typing import Annotated

from kukeond.api.gotypes import INT64, TIME, UINT32, Enum, Ptr
from kukeond.api.structs import OMIT, GoStruct

API_VERSION = "v1beta1"

KIND_REALM = "Realm"
KIND_SPACE = "Space"
KIND_STACK = "Stack"
KIND_CELL = "Cell"
KIND_CONTAINER = "Container"
KIND_CELL_PROFILE = "CellProfile"
KIND_SERVER_CONFIGURATION = "ServerConfiguration"
KIND_CLIENT_CONFIGURATION = "ClientConfiguration"

PENDING = "Pending"
CREATING = "Creating"
READY = "Ready"
DELETING = "Deleting"
STOPPED = "Stopped"
PAUSED = "Paused"
PAUSING = "Pausing"
FAILED = "Failed"
UNKNOWN = "Unknown"

REALM_STATE = Enum(
    "v1beta1.RealmState", "realm", (PENDING, CREATING, READY, DELETING, FAILED, UNKNOWN)
)
SPACE_STATE = Enum("v1beta1.SpaceState", "space", (PENDING, READY, FAILED, UNKNOWN))
STACK_STATE = Enum("v1beta1.StackState", "stack", (PENDING, READY, FAILED, UNKNOWN))
CELL_STATE = Enum("v1beta1.CellState", "cell", (PENDING, READY, STOPPED, FAILED, UNKNOWN))
CONTAINER_STATE = Enum(
    "v1beta1.ContainerState",
    "container",
    (PENDING, READY, STOPPED, PAUSED, PAUSING, FAILED, UNKNOWN),
)

EGRESS_ALLOW = "allow"
EGRESS_DENY = "deny"
VOLUME_BIND = "bind"
VOLUME_TMPFS = "tmpfs"


class Struct(GoStruct):
    """Base of the structs of Go package ``v1beta1``."""

    go_package = "v1beta1"


# --- Realm ------------------------------------------------------------------


class RealmMetadata(Struct):
    """Realm ``metadata``."""

    name: str
    labels: dict[str, str] | None


class RegistryCredentials(Struct):
    """Credentials for one image registry (passwords are stored and returned in clear)."""

    username: str
    password: str
    serverAddress: Annotated[str, OMIT]


class RealmSpec(Struct):
    """Realm ``spec``."""

    namespace: str
    registryCredentials: Annotated[list[RegistryCredentials] | None, OMIT]


class RealmStatus(Struct):
    """Realm ``status``."""

    state: Annotated[str, REALM_STATE]
    cgroupPath: Annotated[str, OMIT]
    subtreeControllers: Annotated[list[str] | None, OMIT]
    createdAt: Annotated[str, TIME, OMIT]
    updatedAt: Annotated[str, TIME, OMIT]
    readyAt: Annotated[str, TIME, OMIT]
    reason: Annotated[str, OMIT]
    message: Annotated[str, OMIT]
    cgroupReady: Annotated[bool, OMIT]
    containerdNamespaceReady: Annotated[bool, OMIT]


class RealmDoc(Struct):
    """A ``kind: Realm`` document."""

    apiVersion: str
    kind: str
    metadata: RealmMetadata
    spec: RealmSpec
    status: RealmStatus


# --- Container pieces ---------------------------------------------------------


class VolumeMount(Struct):
    """A bind or tmpfs mount of a container (``kind`` ``""`` means bind)."""

    kind: Annotated[str, OMIT]
    source: Annotated[str, OMIT]
    target: str
    readOnly: Annotated[bool, OMIT]
    sizeBytes: Annotated[int, INT64, OMIT]
    mode: Annotated[int, UINT32, OMIT]


class ContainerCapabilities(Struct):
    """Linux capability deltas."""

    drop: Annotated[list[str] | None, OMIT]
    add: Annotated[list[str] | None, OMIT]


class ContainerTmpfsMount(Struct):
    """A tmpfs mount declared in ``spec.tmpfs``."""

    path: str
    sizeBytes: Annotated[int, INT64, OMIT]
    options: Annotated[list[str] | None, OMIT]


class ContainerResources(Struct):
    """Resource limits; each is a nullable int64 (``None`` = unset, ``0`` is kept)."""

    memoryLimitBytes: Annotated[int | None, Ptr(INT64), OMIT]
    cpuShares: Annotated[int | None, Ptr(INT64), OMIT]
    pidsLimit: Annotated[int | None, Ptr(INT64), OMIT]


class ContainerSecret(Struct):
    """A secret reference (values are never stored)."""

    name: str
    fromFile: Annotated[str, OMIT]
    fromEnv: Annotated[str, OMIT]
    mountPath: Annotated[str, OMIT]


class TtyStage(Struct):
    """One ``onInit`` script."""

    script: Annotated[str, OMIT]


class ContainerTty(Struct):
    """Terminal settings of an attachable container."""

    prompt: Annotated[str, OMIT]
    onInit: Annotated[list[TtyStage] | None, OMIT]
    logFile: Annotated[str, OMIT]

    def is_empty(self) -> bool:
        """Tell whether no tty field is really set (empty scripts do not count)."""
        if self.prompt or self.logFile:
            return False
        return not any(stage.script for stage in self.onInit or ())


class ContainerSpec(Struct):
    """A container's spec: inside ``CellSpec.containers`` and as a ContainerDoc ``spec``."""

    id: str
    containerdId: Annotated[str, OMIT]
    realmId: str
    spaceId: str
    stackId: str
    cellId: str
    root: Annotated[bool, OMIT]
    image: str
    command: str
    args: list[str] | None
    workingDir: Annotated[str, OMIT]
    env: list[str] | None
    ports: list[str] | None
    volumes: list[VolumeMount] | None
    networks: list[str] | None
    networksAliases: list[str] | None
    privileged: bool
    hostNetwork: Annotated[bool, OMIT]
    hostPID: Annotated[bool, OMIT]
    hostCgroup: Annotated[bool, OMIT]
    user: Annotated[str, OMIT]
    readOnlyRootFilesystem: Annotated[bool, OMIT]
    capabilities: Annotated[ContainerCapabilities | None, OMIT]
    securityOpts: Annotated[list[str] | None, OMIT]
    tmpfs: Annotated[list[ContainerTmpfsMount] | None, OMIT]
    resources: Annotated[ContainerResources | None, OMIT]
    secrets: Annotated[list[ContainerSecret] | None, OMIT]
    cniConfigPath: Annotated[str, OMIT]
    restartPolicy: str
    attachable: Annotated[bool, OMIT]
    tty: Annotated[ContainerTty | None, OMIT]


class ContainerStatus(Struct):
    """A container's status (nothing omitted)."""

    name: str
    id: str
    state: Annotated[str, CONTAINER_STATE]
    restartCount: int
    restartTime: Annotated[str, TIME]
    startTime: Annotated[str, TIME]
    finishTime: Annotated[str, TIME]
    exitCode: int
    exitSignal: str


class ContainerMetadata(Struct):
    """Container ``metadata``."""

    name: str
    labels: dict[str, str] | None


class ContainerDoc(Struct):
    """A ``kind: Container`` document (API only, never persisted)."""

    apiVersion: str
    kind: str
    metadata: ContainerMetadata
    spec: ContainerSpec
    status: ContainerStatus


# --- Space ------------------------------------------------------------------


class SpaceMetadata(Struct):
    """Space ``metadata``."""

    name: str
    labels: dict[str, str] | None


class EgressAllowRule(Struct):
    """One permitted egress destination (exactly one of host/cidr)."""

    host: Annotated[str, OMIT]
    cidr: Annotated[str, OMIT]
    ports: Annotated[list[int] | None, OMIT]


class EgressPolicy(Struct):
    """Egress policy of a space bridge."""

    default: str
    allow: Annotated[list[EgressAllowRule] | None, OMIT]


class SpaceNetwork(Struct):
    """Network policy of a space."""

    egress: Annotated[EgressPolicy | None, OMIT]


class SpaceContainerDefaults(Struct):
    """Isolation defaults inherited (shallowly) by containers of a space."""

    user: Annotated[str, OMIT]
    readOnlyRootFilesystem: Annotated[bool | None, OMIT]
    capabilities: Annotated[ContainerCapabilities | None, OMIT]
    securityOpts: Annotated[list[str] | None, OMIT]
    tmpfs: Annotated[list[ContainerTmpfsMount] | None, OMIT]
    resources: Annotated[ContainerResources | None, OMIT]


class SpaceDefaults(Struct):
    """Defaults declared on a space."""

    container: Annotated[SpaceContainerDefaults | None, OMIT]


class SpaceSpec(Struct):
    """Space ``spec``."""

    realmId: str
    cniConfigPath: Annotated[str, OMIT]
    network: Annotated[SpaceNetwork | None, OMIT]
    defaults: Annotated[SpaceDefaults | None, OMIT]


class SpaceStatus(Struct):
    """Space ``status``."""

    state: Annotated[str, SPACE_STATE]
    cgroupPath: Annotated[str, OMIT]
    subtreeControllers: Annotated[list[str] | None, OMIT]
    createdAt: Annotated[str, TIME, OMIT]
    updatedAt: Annotated[str, TIME, OMIT]
    readyAt: Annotated[str, TIME, OMIT]
    reason: Annotated[str, OMIT]
    message: Annotated[str, OMIT]
    cgroupReady: Annotated[bool, OMIT]


class SpaceDoc(Struct):
    """A ``kind: Space`` document."""

    apiVersion: str
    kind: str
    metadata: SpaceMetadata
    spec: SpaceSpec
    status: SpaceStatus


# --- Stack ------------------------------------------------------------------


class StackMetadata(Struct):
    """Stack ``metadata``."""

    name: str
    labels: dict[str, str] | None


class StackSpec(Struct):
    """Stack ``spec``."""

    id: str
    realmId: str
    spaceId: str


class StackStatus(Struct):
    """Stack ``status`` (``cgroupPath`` always emitted)."""

    state: Annotated[str, STACK_STATE]
    cgroupPath: str
    subtreeControllers: Annotated[list[str] | None, OMIT]
    createdAt: Annotated[str, TIME, OMIT]
    updatedAt: Annotated[str, TIME, OMIT]
    readyAt: Annotated[str, TIME, OMIT]
    reason: Annotated[str, OMIT]
    message: Annotated[str, OMIT]
    cgroupReady: Annotated[bool, OMIT]


class StackDoc(Struct):
    """A ``kind: Stack`` document."""

    apiVersion: str
    kind: str
    metadata: StackMetadata
    spec: StackSpec
    status: StackStatus


# --- Cell -------------------------------------------------------------------


class CellMetadata(Struct):
    """Cell ``metadata``."""

    name: str
    labels: dict[str, str] | None


class CellTty(Struct):
    """Cell-level attach settings."""

    default: Annotated[str, OMIT]


class CellSpec(Struct):
    """Cell ``spec`` (containers embedded)."""

    id: str
    realmId: str
    spaceId: str
    stackId: str
    rootContainerId: Annotated[str, OMIT]
    tty: Annotated[CellTty | None, OMIT]
    containers: list[ContainerSpec] | None
    autoDelete: Annotated[bool, OMIT]
    nestedCgroupRuntime: Annotated[bool, OMIT]


class CellNetworkStatus(Struct):
    """The bridge a cell is attached to."""

    bridgeName: Annotated[str, OMIT]


class CellStatus(Struct):
    """Cell ``status`` (``network`` always emitted)."""

    state: Annotated[str, CELL_STATE]
    cgroupPath: str
    subtreeControllers: Annotated[list[str] | None, OMIT]
    network: Annotated[CellNetworkStatus, OMIT]
    containers: list[ContainerStatus] | None
    readyObserved: Annotated[bool, OMIT]
    createdAt: Annotated[str, TIME, OMIT]
    updatedAt: Annotated[str, TIME, OMIT]
    readyAt: Annotated[str, TIME, OMIT]
    reason: Annotated[str, OMIT]
    message: Annotated[str, OMIT]
    cgroupReady: Annotated[bool, OMIT]


class CellDoc(Struct):
    """A ``kind: Cell`` document."""

    apiVersion: str
    kind: str
    metadata: CellMetadata
    spec: CellSpec
    status: CellStatus


# --- Local-only documents -----------------------------------------------------


class CellProfileMetadata(Struct):
    """CellProfile ``metadata`` (labels omitted when empty)."""

    name: str
    labels: Annotated[dict[str, str] | None, OMIT]


class CellProfileParameter(Struct):
    """A declared profile parameter (``default`` ``None`` differs from ``""``)."""

    name: str
    description: Annotated[str, OMIT]
    default: Annotated[str | None, OMIT]
    required: Annotated[bool, OMIT]


class CellProfileSpec(Struct):
    """CellProfile ``spec``."""

    realm: Annotated[str, OMIT]
    space: Annotated[str, OMIT]
    stack: Annotated[str, OMIT]
    prefix: Annotated[str, OMIT]
    parameters: Annotated[list[CellProfileParameter] | None, OMIT]
    cell: CellSpec


class CellProfileDoc(Struct):
    """A ``kind: CellProfile`` document (client-side file, never sent to the daemon)."""

    apiVersion: str
    kind: str
    metadata: CellProfileMetadata
    spec: CellProfileSpec


class ServerConfigurationMetadata(Struct):
    """ServerConfiguration ``metadata``."""

    name: str
    labels: Annotated[dict[str, str] | None, OMIT]


class ServerConfigurationSpec(Struct):
    """Daemon settings; every field empty means the built-in default."""

    socket: Annotated[str, OMIT]
    socketGID: Annotated[int, OMIT]
    runPath: Annotated[str, OMIT]
    containerdSocket: Annotated[str, OMIT]
    logLevel: Annotated[str, OMIT]
    reconcileInterval: Annotated[str, OMIT]
    kukeondImage: Annotated[str, OMIT]
    containerdNamespaceSuffix: Annotated[str, OMIT]
    cgroupRoot: Annotated[str, OMIT]


class ServerConfigurationDoc(Struct):
    """A ``kind: ServerConfiguration`` document (the daemon's config file)."""

    apiVersion: str
    kind: str
    metadata: ServerConfigurationMetadata
    spec: ServerConfigurationSpec


ResourceDoc = RealmDoc | SpaceDoc | StackDoc | CellDoc | ContainerDoc
"""Any server-side resource document."""

DOC_TYPES: dict[str, type[ResourceDoc]] = {
    KIND_REALM: RealmDoc,
    KIND_SPACE: SpaceDoc,
    KIND_STACK: StackDoc,
    KIND_CELL: CellDoc,
    KIND_CONTAINER: ContainerDoc,
}
"""Document class of each server-side resource kind."""
