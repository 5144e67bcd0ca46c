"""The ``v1beta1`` document model: Realm, Space, Stack, Cell, Container and local docs.

Field tables follow the Go declaration order and JSON tags of the reference
(``pkg/api/model/v1beta1``); see :mod:`kukeond.api.structs` for how values are
represented. Defaulting and validation rules live in
:mod:`kukeond.api.docrules`.
"""

from __future__ import annotations

from kukeond.api.structs import (
    BOOL,
    INT,
    INT64,
    STRING,
    TIME,
    UINT32,
    Enum,
    GoStruct,
    Map,
    Ptr,
    Slice,
)

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

_LABELS = Map(STRING)
_STRINGS = Slice(STRING)
OMIT = True


# --- Realm ------------------------------------------------------------------


class RealmMetadata(GoStruct):
    """Realm ``metadata``."""

    go_name = "v1beta1.RealmMetadata"
    fields = (("name", STRING), ("labels", _LABELS))


class RegistryCredentials(GoStruct):
    """Credentials for one image registry (passwords are stored and returned in clear)."""

    go_name = "v1beta1.RegistryCredentials"
    fields = (("username", STRING), ("password", STRING), ("serverAddress", STRING, OMIT))


class RealmSpec(GoStruct):
    """Realm ``spec``."""

    go_name = "v1beta1.RealmSpec"
    fields = (("namespace", STRING), ("registryCredentials", Slice(RegistryCredentials), OMIT))


class RealmStatus(GoStruct):
    """Realm ``status``."""

    go_name = "v1beta1.RealmStatus"
    fields = (
        ("state", REALM_STATE),
        ("cgroupPath", STRING, OMIT),
        ("subtreeControllers", _STRINGS, OMIT),
        ("createdAt", TIME, OMIT),
        ("updatedAt", TIME, OMIT),
        ("readyAt", TIME, OMIT),
        ("reason", STRING, OMIT),
        ("message", STRING, OMIT),
        ("cgroupReady", BOOL, OMIT),
        ("containerdNamespaceReady", BOOL, OMIT),
    )


class RealmDoc(GoStruct):
    """A ``kind: Realm`` document."""

    go_name = "v1beta1.RealmDoc"
    fields = (
        ("apiVersion", STRING),
        ("kind", STRING),
        ("metadata", RealmMetadata),
        ("spec", RealmSpec),
        ("status", RealmStatus),
    )


# --- Container pieces ---------------------------------------------------------


class VolumeMount(GoStruct):
    """A bind or tmpfs mount of a container (``kind`` ``""`` means bind)."""

    go_name = "v1beta1.VolumeMount"
    fields = (
        ("kind", STRING, OMIT),
        ("source", STRING, OMIT),
        ("target", STRING),
        ("readOnly", BOOL, OMIT),
        ("sizeBytes", INT64, OMIT),
        ("mode", UINT32, OMIT),
    )


class ContainerCapabilities(GoStruct):
    """Linux capability deltas."""

    go_name = "v1beta1.ContainerCapabilities"
    fields = (("drop", _STRINGS, OMIT), ("add", _STRINGS, OMIT))


class ContainerTmpfsMount(GoStruct):
    """A tmpfs mount declared in ``spec.tmpfs``."""

    go_name = "v1beta1.ContainerTmpfsMount"
    fields = (("path", STRING), ("sizeBytes", INT64, OMIT), ("options", _STRINGS, OMIT))


class ContainerResources(GoStruct):
    """Resource limits; each is a nullable int64 (``None`` = unset, ``0`` is kept)."""

    go_name = "v1beta1.ContainerResources"
    fields = (
        ("memoryLimitBytes", Ptr(INT64), OMIT),
        ("cpuShares", Ptr(INT64), OMIT),
        ("pidsLimit", Ptr(INT64), OMIT),
    )


class ContainerSecret(GoStruct):
    """A secret reference (values are never stored)."""

    go_name = "v1beta1.ContainerSecret"
    fields = (
        ("name", STRING),
        ("fromFile", STRING, OMIT),
        ("fromEnv", STRING, OMIT),
        ("mountPath", STRING, OMIT),
    )


class TtyStage(GoStruct):
    """One ``onInit`` script."""

    go_name = "v1beta1.TtyStage"
    fields = (("script", STRING, OMIT),)


class ContainerTty(GoStruct):
    """Terminal settings of an attachable container."""

    go_name = "v1beta1.ContainerTty"
    fields = (
        ("prompt", STRING, OMIT),
        ("onInit", Slice(TtyStage), OMIT),
        ("logFile", STRING, OMIT),
    )

    def is_empty(self) -> bool:
        """Tell whether no tty field is really set (empty scripts do not count)."""
        if self.prompt or self.logFile:
            return False
        return not any(stage.script for stage in self.onInit or ())


class ContainerSpec(GoStruct):
    """A container's spec: inside ``CellSpec.containers`` and as a ContainerDoc ``spec``."""

    go_name = "v1beta1.ContainerSpec"
    fields = (
        ("id", STRING),
        ("containerdId", STRING, OMIT),
        ("realmId", STRING),
        ("spaceId", STRING),
        ("stackId", STRING),
        ("cellId", STRING),
        ("root", BOOL, OMIT),
        ("image", STRING),
        ("command", STRING),
        ("args", _STRINGS),
        ("workingDir", STRING, OMIT),
        ("env", _STRINGS),
        ("ports", _STRINGS),
        ("volumes", Slice(VolumeMount)),
        ("networks", _STRINGS),
        ("networksAliases", _STRINGS),
        ("privileged", BOOL),
        ("hostNetwork", BOOL, OMIT),
        ("hostPID", BOOL, OMIT),
        ("hostCgroup", BOOL, OMIT),
        ("user", STRING, OMIT),
        ("readOnlyRootFilesystem", BOOL, OMIT),
        ("capabilities", Ptr(ContainerCapabilities), OMIT),
        ("securityOpts", _STRINGS, OMIT),
        ("tmpfs", Slice(ContainerTmpfsMount), OMIT),
        ("resources", Ptr(ContainerResources), OMIT),
        ("secrets", Slice(ContainerSecret), OMIT),
        ("cniConfigPath", STRING, OMIT),
        ("restartPolicy", STRING),
        ("attachable", BOOL, OMIT),
        ("tty", Ptr(ContainerTty), OMIT),
    )


class ContainerStatus(GoStruct):
    """A container's status (nothing omitted)."""

    go_name = "v1beta1.ContainerStatus"
    fields = (
        ("name", STRING),
        ("id", STRING),
        ("state", CONTAINER_STATE),
        ("restartCount", INT),
        ("restartTime", TIME),
        ("startTime", TIME),
        ("finishTime", TIME),
        ("exitCode", INT),
        ("exitSignal", STRING),
    )


class ContainerMetadata(GoStruct):
    """Container ``metadata``."""

    go_name = "v1beta1.ContainerMetadata"
    fields = (("name", STRING), ("labels", _LABELS))


class ContainerDoc(GoStruct):
    """A ``kind: Container`` document (API only, never persisted)."""

    go_name = "v1beta1.ContainerDoc"
    fields = (
        ("apiVersion", STRING),
        ("kind", STRING),
        ("metadata", ContainerMetadata),
        ("spec", ContainerSpec),
        ("status", ContainerStatus),
    )


# --- Space ------------------------------------------------------------------


class SpaceMetadata(GoStruct):
    """Space ``metadata``."""

    go_name = "v1beta1.SpaceMetadata"
    fields = (("name", STRING), ("labels", _LABELS))


class EgressAllowRule(GoStruct):
    """One permitted egress destination (exactly one of host/cidr)."""

    go_name = "v1beta1.EgressAllowRule"
    fields = (("host", STRING, OMIT), ("cidr", STRING, OMIT), ("ports", Slice(INT), OMIT))


class EgressPolicy(GoStruct):
    """Egress policy of a space bridge."""

    go_name = "v1beta1.EgressPolicy"
    fields = (("default", STRING), ("allow", Slice(EgressAllowRule), OMIT))


class SpaceNetwork(GoStruct):
    """Network policy of a space."""

    go_name = "v1beta1.SpaceNetwork"
    fields = (("egress", Ptr(EgressPolicy), OMIT),)


class SpaceContainerDefaults(GoStruct):
    """Isolation defaults inherited (shallowly) by containers of a space."""

    go_name = "v1beta1.SpaceContainerDefaults"
    fields = (
        ("user", STRING, OMIT),
        ("readOnlyRootFilesystem", Ptr(BOOL), OMIT),
        ("capabilities", Ptr(ContainerCapabilities), OMIT),
        ("securityOpts", _STRINGS, OMIT),
        ("tmpfs", Slice(ContainerTmpfsMount), OMIT),
        ("resources", Ptr(ContainerResources), OMIT),
    )


class SpaceDefaults(GoStruct):
    """Defaults declared on a space."""

    go_name = "v1beta1.SpaceDefaults"
    fields = (("container", Ptr(SpaceContainerDefaults), OMIT),)


class SpaceSpec(GoStruct):
    """Space ``spec``."""

    go_name = "v1beta1.SpaceSpec"
    fields = (
        ("realmId", STRING),
        ("cniConfigPath", STRING, OMIT),
        ("network", Ptr(SpaceNetwork), OMIT),
        ("defaults", Ptr(SpaceDefaults), OMIT),
    )


class SpaceStatus(GoStruct):
    """Space ``status``."""

    go_name = "v1beta1.SpaceStatus"
    fields = (
        ("state", SPACE_STATE),
        ("cgroupPath", STRING, OMIT),
        ("subtreeControllers", _STRINGS, OMIT),
        ("createdAt", TIME, OMIT),
        ("updatedAt", TIME, OMIT),
        ("readyAt", TIME, OMIT),
        ("reason", STRING, OMIT),
        ("message", STRING, OMIT),
        ("cgroupReady", BOOL, OMIT),
    )


class SpaceDoc(GoStruct):
    """A ``kind: Space`` document."""

    go_name = "v1beta1.SpaceDoc"
    fields = (
        ("apiVersion", STRING),
        ("kind", STRING),
        ("metadata", SpaceMetadata),
        ("spec", SpaceSpec),
        ("status", SpaceStatus),
    )


# --- Stack ------------------------------------------------------------------


class StackMetadata(GoStruct):
    """Stack ``metadata``."""

    go_name = "v1beta1.StackMetadata"
    fields = (("name", STRING), ("labels", _LABELS))


class StackSpec(GoStruct):
    """Stack ``spec``."""

    go_name = "v1beta1.StackSpec"
    fields = (("id", STRING), ("realmId", STRING), ("spaceId", STRING))


class StackStatus(GoStruct):
    """Stack ``status`` (``cgroupPath`` always emitted)."""

    go_name = "v1beta1.StackStatus"
    fields = (
        ("state", STACK_STATE),
        ("cgroupPath", STRING),
        ("subtreeControllers", _STRINGS, OMIT),
        ("createdAt", TIME, OMIT),
        ("updatedAt", TIME, OMIT),
        ("readyAt", TIME, OMIT),
        ("reason", STRING, OMIT),
        ("message", STRING, OMIT),
        ("cgroupReady", BOOL, OMIT),
    )


class StackDoc(GoStruct):
    """A ``kind: Stack`` document."""

    go_name = "v1beta1.StackDoc"
    fields = (
        ("apiVersion", STRING),
        ("kind", STRING),
        ("metadata", StackMetadata),
        ("spec", StackSpec),
        ("status", StackStatus),
    )


# --- Cell -------------------------------------------------------------------


class CellMetadata(GoStruct):
    """Cell ``metadata``."""

    go_name = "v1beta1.CellMetadata"
    fields = (("name", STRING), ("labels", _LABELS))


class CellTty(GoStruct):
    """Cell-level attach settings."""

    go_name = "v1beta1.CellTty"
    fields = (("default", STRING, OMIT),)


class CellSpec(GoStruct):
    """Cell ``spec`` (containers embedded)."""

    go_name = "v1beta1.CellSpec"
    fields = (
        ("id", STRING),
        ("realmId", STRING),
        ("spaceId", STRING),
        ("stackId", STRING),
        ("rootContainerId", STRING, OMIT),
        ("tty", Ptr(CellTty), OMIT),
        ("containers", Slice(ContainerSpec)),
        ("autoDelete", BOOL, OMIT),
        ("nestedCgroupRuntime", BOOL, OMIT),
    )


class CellNetworkStatus(GoStruct):
    """The bridge a cell is attached to."""

    go_name = "v1beta1.CellNetworkStatus"
    fields = (("bridgeName", STRING, OMIT),)


class CellStatus(GoStruct):
    """Cell ``status`` (``network`` always emitted)."""

    go_name = "v1beta1.CellStatus"
    fields = (
        ("state", CELL_STATE),
        ("cgroupPath", STRING),
        ("subtreeControllers", _STRINGS, OMIT),
        ("network", CellNetworkStatus, OMIT),
        ("containers", Slice(ContainerStatus)),
        ("readyObserved", BOOL, OMIT),
        ("createdAt", TIME, OMIT),
        ("updatedAt", TIME, OMIT),
        ("readyAt", TIME, OMIT),
        ("reason", STRING, OMIT),
        ("message", STRING, OMIT),
        ("cgroupReady", BOOL, OMIT),
    )


class CellDoc(GoStruct):
    """A ``kind: Cell`` document."""

    go_name = "v1beta1.CellDoc"
    fields = (
        ("apiVersion", STRING),
        ("kind", STRING),
        ("metadata", CellMetadata),
        ("spec", CellSpec),
        ("status", CellStatus),
    )


# --- Local-only documents -----------------------------------------------------


class CellProfileMetadata(GoStruct):
    """CellProfile ``metadata`` (labels omitted when empty)."""

    go_name = "v1beta1.CellProfileMetadata"
    fields = (("name", STRING), ("labels", _LABELS, OMIT))


class CellProfileParameter(GoStruct):
    """A declared profile parameter (``default`` ``None`` differs from ``""``)."""

    go_name = "v1beta1.CellProfileParameter"
    fields = (
        ("name", STRING),
        ("description", STRING, OMIT),
        ("default", Ptr(STRING), OMIT),
        ("required", BOOL, OMIT),
    )


class CellProfileSpec(GoStruct):
    """CellProfile ``spec``."""

    go_name = "v1beta1.CellProfileSpec"
    fields = (
        ("realm", STRING, OMIT),
        ("space", STRING, OMIT),
        ("stack", STRING, OMIT),
        ("prefix", STRING, OMIT),
        ("parameters", Slice(CellProfileParameter), OMIT),
        ("cell", CellSpec),
    )


class CellProfileDoc(GoStruct):
    """A ``kind: CellProfile`` document (client-side file, never sent to the daemon)."""

    go_name = "v1beta1.CellProfileDoc"
    fields = (
        ("apiVersion", STRING),
        ("kind", STRING),
        ("metadata", CellProfileMetadata),
        ("spec", CellProfileSpec),
    )


class ServerConfigurationMetadata(GoStruct):
    """ServerConfiguration ``metadata``."""

    go_name = "v1beta1.ServerConfigurationMetadata"
    fields = (("name", STRING), ("labels", _LABELS, OMIT))


class ServerConfigurationSpec(GoStruct):
    """Daemon settings; every field empty means the built-in default."""

    go_name = "v1beta1.ServerConfigurationSpec"
    fields = (
        ("socket", STRING, OMIT),
        ("socketGID", INT, OMIT),
        ("runPath", STRING, OMIT),
        ("containerdSocket", STRING, OMIT),
        ("logLevel", STRING, OMIT),
        ("reconcileInterval", STRING, OMIT),
        ("kukeondImage", STRING, OMIT),
        ("containerdNamespaceSuffix", STRING, OMIT),
        ("cgroupRoot", STRING, OMIT),
    )


class ServerConfigurationDoc(GoStruct):
    """A ``kind: ServerConfiguration`` document (the daemon's config file)."""

    go_name = "v1beta1.ServerConfigurationDoc"
    fields = (
        ("apiVersion", STRING),
        ("kind", STRING),
        ("metadata", ServerConfigurationMetadata),
        ("spec", ServerConfigurationSpec),
    )


DOC_TYPES: dict[str, type[GoStruct]] = {
    KIND_REALM: RealmDoc,
    KIND_SPACE: SpaceDoc,
    KIND_STACK: StackDoc,
    KIND_CELL: CellDoc,
    KIND_CONTAINER: ContainerDoc,
}
"""Document class of each server-side resource kind."""
