"""Typed daemon errors and their mapping to the wire ``APIError`` kinds.

The reference daemon builds errors as Go wrap chains around sentinel errors
and derives the wire ``Kind`` from the sentinels found in the chain. Here an
error carries its full message and the set of *registered* sentinel kinds its
chain contains:

* ``RealmNameRequired()`` → ``realm name is required``;
* ``ResourceHasDependencies('realm "demo" has 1 space(s). …')`` → the sentinel
  text, ``": "``, then the detail (Go's ``fmt.Errorf("%w: %s", Err, detail)``);
* ``CellNotFound.after('cell "x" not found')`` → the detail first
  (``fmt.Errorf("%s: %w", detail, Err)``);
* ``err.wrap("failed to delete realm")`` prefixes a plain context (the kinds
  are kept), while ``CreateRealm.around(err)`` prefixes the *sentinel*
  ``failed to create realm`` and adds its kind to the chain.

Errors whose kind is ``Unknown`` in the reference are plain
``KukeonError(message)``.

Choosing one ``Kind`` when a chain holds several registered sentinels: the
reference picks one at random (Go map order). We decide deterministically by
:data:`KIND_PRIORITY` — the first listed kind present in the chain wins:
``*NameRequired``, ``*NotFound``, ``ContainerExists``,
``ResourceHasDependencies``, ``AttachNotSupported``, ``ConversionFailed``,
then ``Create*``. Every choice among the candidates is wire-compatible.
"""

from __future__ import annotations

from typing import ClassVar

UNKNOWN = "Unknown"

KIND_PRIORITY: tuple[str, ...] = (
    "RealmNameRequired",
    "SpaceNameRequired",
    "StackNameRequired",
    "CellNameRequired",
    "ContainerNameRequired",
    "RealmNotFound",
    "SpaceNotFound",
    "StackNotFound",
    "CellNotFound",
    "ContainerNotFound",
    "NetworkNotFound",
    "ImageNotFound",
    "ContainerExists",
    "ResourceHasDependencies",
    "AttachNotSupported",
    "ConversionFailed",
    "CreateRealm",
    "CreateSpace",
    "CreateStack",
    "CreateCell",
)
"""Registered wire kinds, most specific first (see the module docstring)."""

_RANK = {kind: i for i, kind in enumerate(KIND_PRIORITY)}


class KukeonError(Exception):
    """A daemon error: a full message plus the registered kinds in its chain.

    ``KukeonError(message)`` is an error of kind ``Unknown``. Subclasses stand
    for the registered sentinels; see the module docstring for how to build
    and wrap them.
    """

    kind_name: ClassVar[str] = UNKNOWN
    text: ClassVar[str] = ""

    def __init__(self, message: str = "", *, kinds: frozenset[str] = frozenset()) -> None:
        super().__init__(message)
        self.message = message
        self.kinds = kinds

    @property
    def kind(self) -> str:
        """The wire ``Kind``: the highest-priority registered kind in the chain, or ``Unknown``."""
        if not self.kinds:
            return UNKNOWN
        return min(self.kinds, key=_RANK.__getitem__)

    def is_kind(self, kind: str | type[KukeonError]) -> bool:
        """Tell whether the chain contains ``kind`` (a kind name or a sentinel class)."""
        name = kind if isinstance(kind, str) else kind.kind_name
        return name in self.kinds

    def wrap(self, prefix: str) -> KukeonError:
        """Return this error behind a plain context prefix, kinds kept (``"prefix: msg"``)."""
        out = KukeonError.__new__(type(self))
        KukeonError.__init__(out, f"{prefix}: {self.message}", kinds=self.kinds)
        return out

    def __str__(self) -> str:
        return self.message


def kinds_of(exc: BaseException) -> frozenset[str]:
    """Return the registered kinds carried by ``exc`` (none for foreign exceptions)."""
    return exc.kinds if isinstance(exc, KukeonError) else frozenset()


def wrap(exc: BaseException, prefix: str) -> KukeonError:
    """Prefix any exception with a plain context, keeping kinds (``fmt.Errorf("p: %w")``)."""
    if isinstance(exc, KukeonError):
        return exc.wrap(prefix)
    return KukeonError(f"{prefix}: {exc}")


class Sentinel(KukeonError):
    """Base of the registered sentinel errors; ``text`` is the reference sentinel text."""

    def __init__(self, detail: str | None = None) -> None:
        message = self.text if detail is None else f"{self.text}: {detail}"
        super().__init__(message, kinds=frozenset((self.kind_name,)))

    @classmethod
    def after(cls, detail: str) -> Sentinel:
        """Build ``"<detail>: <sentinel text>"``."""
        err = cls()
        err.message = f"{detail}: {cls.text}"
        err.args = (err.message,)
        return err

    @classmethod
    def around(cls, exc: BaseException) -> Sentinel:
        """Build ``"<sentinel text>: <exc>"``, adding this kind to ``exc``'s chain."""
        err = cls(str(exc))
        err.kinds = err.kinds | kinds_of(exc)
        return err


def _sentinel(kind: str, text: str, doc: str) -> type[Sentinel]:
    return type(kind, (Sentinel,), {"kind_name": kind, "text": text, "__doc__": doc})


CellNotFound = _sentinel("CellNotFound", "cell not found", "A cell does not exist.")
RealmNotFound = _sentinel("RealmNotFound", "realm not found", "A realm does not exist.")
SpaceNotFound = _sentinel("SpaceNotFound", "space not found", "A space does not exist.")
StackNotFound = _sentinel("StackNotFound", "stack not found", "A stack does not exist.")
ContainerNotFound = _sentinel(
    "ContainerNotFound", "container not found", "A container does not exist."
)
NetworkNotFound = _sentinel("NetworkNotFound", "network not found", "A network does not exist.")
CellNameRequired = _sentinel(
    "CellNameRequired", "cell name is required", "A cell name or cellId is empty."
)
RealmNameRequired = _sentinel(
    "RealmNameRequired", "realm name is required", "A realm name or realmId is empty."
)
SpaceNameRequired = _sentinel(
    "SpaceNameRequired", "space name is required", "A space name or spaceId is empty."
)
StackNameRequired = _sentinel(
    "StackNameRequired", "stack name is required", "A stack name or stackId is empty."
)
ContainerNameRequired = _sentinel(
    "ContainerNameRequired", "container name is required", "A container name or id is empty."
)
ResourceHasDependencies = _sentinel(
    "ResourceHasDependencies",
    "resource has child resources",
    "Delete/purge refused because children exist.",
)
CreateCell = _sentinel("CreateCell", "failed to create cell", "Cell provisioning failed.")
CreateRealm = _sentinel("CreateRealm", "failed to create realm", "Realm provisioning failed.")
CreateSpace = _sentinel("CreateSpace", "failed to create space", "Space provisioning failed.")
CreateStack = _sentinel("CreateStack", "failed to create stack", "Stack provisioning failed.")
ContainerExists = _sentinel(
    "ContainerExists", "container already exists", "A containerd container already exists."
)
ConversionFailed = _sentinel(
    "ConversionFailed", "conversion failed", "A document could not be converted or validated."
)
AttachNotSupported = _sentinel(
    "AttachNotSupported",
    "container is not attachable; recreate with attachable=true",
    "Attach was asked of a container that is not attachable.",
)
ImageNotFound = _sentinel("ImageNotFound", "image not found", "An image does not exist.")

SENTINELS: dict[str, type[Sentinel]] = {
    cls.kind_name: cls
    for cls in (
        CellNotFound,
        RealmNotFound,
        SpaceNotFound,
        StackNotFound,
        ContainerNotFound,
        NetworkNotFound,
        CellNameRequired,
        RealmNameRequired,
        SpaceNameRequired,
        StackNameRequired,
        ContainerNameRequired,
        ResourceHasDependencies,
        CreateCell,
        CreateRealm,
        CreateSpace,
        CreateStack,
        ContainerExists,
        ConversionFailed,
        AttachNotSupported,
        ImageNotFound,
    )
}
"""The 20 registered wire kinds and their sentinel classes."""
