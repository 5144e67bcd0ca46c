"""Names of resources and every identifier or path derived from them.

This is the only module that composes containerd namespaces and IDs,
cgroup paths, CNI network and bridge names and run-path locations, and the
only one that decides whether a user-supplied name is acceptable.

Name rules (applied by create paths to realm, space, stack, cell and
container names, after trimming surrounding whitespace):

1. not empty (per-kind "required" error, as the reference reports it);
2. no ``_`` and no ``/`` (the reference rule, with its exact messages);
3. at most :data:`MAX_NAME_LENGTH` characters;
4. ASCII letters and digits, optionally joined by single ``.`` or ``-``
   (so no ``.``/``..``, no leading/trailing separator, no whitespace,
   control characters or NUL);
5. not one of :data:`RESERVED_NAMES`, the fixed file names that share a
   directory with child resources in the run-path tree.

Rules 3-5 go beyond the reference, which leaves them to containerd and the
file system, and so can half-create a resource before failing. They are the
reference's own effective limits made explicit: every name ends up inside a
containerd identifier (``R.<suffix>`` namespaces, ``S_K_C_X`` container and
snapshot IDs), which containerd restricts to ``[A-Za-z0-9]+([._-][A-Za-z0-9]+)*``
of at most 76 characters. Each name may have up to 63 characters (a DNS
label, so it is always a valid host name, cgroup directory and path
component); the composed ``S_K_C_X`` ID is checked by
:func:`check_containerd_id` where a cell or container is created, so a long
name fails with a message that says which ID is too long instead of every
name being held to a quarter of 76.
"""

from __future__ import annotations

import os
import re

MAX_NAME_LENGTH = 63
"""Longest accepted resource name (a DNS label)."""

CONTAINERD_ID_MAX_LENGTH = 76
"""containerd's identifier length limit (namespaces, containers, snapshots)."""

METADATA_FILE = "metadata.json"
DATA_DIR = "data"
INSTANCE_FILE = ".kukeon-instance.json"
NETWORK_CONFLIST_FILE = "network.conflist"
NETWORK_STATE_FILE = "network.json"
ETC_HOSTS_FILE = "etc-hosts"
ETC_HOSTNAME_FILE = "etc-hostname"
CONTAINER_LOG_FILE = "log"
CONTAINER_TTY_DIR = "tty"
TTY_SOCKET_FILE = "socket"
TTY_CAPTURE_FILE = "capture"
TTY_LOG_FILE = "log"
KUKETTY_METADATA_FILE = "kuketty-metadata.json"
KUKETTY_BINARY = "kuketty"
ROOT_CONTAINER_NAME = "root"
PAYLOAD_CGROUP = "_payload"
SECRETS_ROOT = "/run/kukeon/secrets"
DEFAULT_SUFFIX = "kukeon.io"
DEFAULT_CGROUP_ROOT = "/kukeon"
DEFAULT_RUN_PATH = "/opt/kukeon"

RESERVED_NAMES = frozenset(
    {
        METADATA_FILE,
        NETWORK_CONFLIST_FILE,
        NETWORK_STATE_FILE,
        ETC_HOSTS_FILE,
        ETC_HOSTNAME_FILE,
    }
)
"""File names living next to child resource directories; never valid names."""

KINDS = ("realm", "space", "stack", "cell", "container")

_NAME_GRAMMAR = re.compile(r"[A-Za-z0-9]+(?:[.-][A-Za-z0-9]+)*\Z")
_CONTAINERD_ID = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*\Z")

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193

_GO_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


class InvalidName(ValueError):
    """A resource name a create path refuses.

    ``kind`` is one of :data:`KINDS`; ``name`` the trimmed name. ``str()`` is
    the message the reference sends (wire Kind ``Unknown``).
    """

    wire_kind = "Unknown"

    def __init__(self, kind: str, name: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name


class NameRequired(InvalidName):
    """An empty (or all-whitespace) name: ``<kind> name is required``.

    ``wire_kind`` is the reference's sentinel kind, e.g. ``RealmNameRequired``.
    """

    def __init__(self, kind: str) -> None:
        super().__init__(kind, "", f"{kind} name is required")
        self.wire_kind = f"{kind.capitalize()}NameRequired"


def go_quote(text: str) -> str:
    """Quote ``text`` the way Go's ``%q`` verb (``strconv.Quote``) does."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_SHORT_ESCAPES:
            out.append(_GO_SHORT_ESCAPES[ch])
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _invalid(kind: str, name: str, reason: str) -> InvalidName:
    if kind == "realm":
        message = f"realm name is invalid: {go_quote(name)} {reason}"
    else:
        message = f"name is invalid: {kind} name {go_quote(name)} {reason}"
    return InvalidName(kind, name, message)


def validate_name(kind: str, name: str | None) -> str:
    """Check a ``kind`` resource name for a create path and return it trimmed.

    Raises :class:`NameRequired` when empty, :class:`InvalidName` otherwise
    (reference checks first, so shared inputs give the reference's message).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}")
    trimmed = (name or "").strip()
    if not trimmed:
        raise NameRequired(kind)
    if "_" in trimmed or "/" in trimmed:
        raise _invalid(kind, trimmed, "contains disallowed character (must not contain '_' or '/')")
    if len(trimmed) > MAX_NAME_LENGTH:
        raise _invalid(kind, trimmed, f"is too long (at most {MAX_NAME_LENGTH} characters)")
    if not _NAME_GRAMMAR.match(trimmed):
        raise _invalid(
            kind,
            trimmed,
            "must be ASCII letters and digits, optionally joined by single '.' or '-'",
        )
    if trimmed in RESERVED_NAMES:
        raise _invalid(kind, trimmed, "is reserved")
    return trimmed


def validate_realm_name(name: str | None) -> str:
    """:func:`validate_name` for realms."""
    return validate_name("realm", name)


def is_containerd_identifier(text: str) -> bool:
    """Whether containerd would accept ``text`` as a namespace/container/snapshot ID."""
    return len(text) <= CONTAINERD_ID_MAX_LENGTH and bool(_CONTAINERD_ID.match(text))


def is_safe_path_component(name: str) -> bool:
    """Whether ``name`` names exactly one directory entry (for reads of stored names)."""
    return (
        bool(name)
        and name not in (".", "..")
        and "/" not in name
        and "\x00" not in name
        and len(name.encode("utf-8", "surrogatepass")) <= 255
    )


# containerd namespaces and identifiers


def realm_namespace(realm: str, suffix: str = DEFAULT_SUFFIX, explicit: str | None = None) -> str:
    """containerd namespace of ``realm``: ``explicit`` if set, else ``<realm>.<suffix>``."""
    if explicit:
        return explicit
    return f"{realm}.{suffix.strip().lstrip('.')}"


def root_containerd_id(space: str, stack: str, cell: str) -> str:
    """containerd ID (and snapshot key) of a cell's root container: ``S_K_C_root``."""
    return containerd_id(space, stack, cell, ROOT_CONTAINER_NAME)


def containerd_id(space: str, stack: str, cell: str, container: str) -> str:
    """containerd ID (and snapshot key) of a container: ``S_K_C_X``."""
    parts = [p.strip() for p in (space, stack, cell, container)]
    for kind, part in zip(("space", "stack", "cell", "container"), parts, strict=True):
        if not part:
            raise ValueError(f"{kind} name cannot be empty")
    return "_".join(parts)


def check_containerd_id(cid: str) -> str:
    """Return ``cid`` if containerd accepts it, else raise :class:`InvalidName` saying why."""
    if len(cid) > CONTAINERD_ID_MAX_LENGTH:
        raise InvalidName(
            "container",
            cid,
            f"containerd ID {go_quote(cid)} is {len(cid)} characters long; containerd allows "
            f"{CONTAINERD_ID_MAX_LENGTH}: shorten the space, stack, cell or container name",
        )
    return cid


def split_containerd_id(cid: str) -> tuple[str, str, str, str] | None:
    """Split ``S_K_C_X`` back into its four names, or ``None`` if it is not one of ours."""
    parts = cid.split("_")
    if len(parts) != 4 or not all(parts):
        return None
    return parts[0], parts[1], parts[2], parts[3]


# cgroups


def normalize_cgroup_root(cgroup_root: str) -> str:
    """The cgroup root as stored and compared: trimmed, trailing ``/`` removed."""
    return cgroup_root.strip().rstrip("/")


def cgroup_path(cgroup_root: str, realm: str, *names: str) -> str:
    """Cgroup of a realm or of a space/stack/cell under it: ``CGROOT/R[/S[/K[/C]]]``."""
    if len(names) > 3:
        raise ValueError("a cgroup path has at most realm/space/stack/cell")
    return "/".join([normalize_cgroup_root(cgroup_root), realm, *names])


def container_cgroup_path(cell_cgroup: str, cid: str) -> str:
    """OCI ``linux.cgroupsPath`` of a container task: ``<cell cgroup>/<containerd ID>``."""
    return f"{cell_cgroup.rstrip('/')}/{cid}"


def payload_cgroup_path(container_cgroup: str) -> str:
    """Leaf receiving a container's PIDs once its task runs: ``<container cgroup>/_payload``."""
    return f"{container_cgroup.rstrip('/')}/{PAYLOAD_CGROUP}"


# CNI


def fnv1a32(text: str) -> int:
    """32-bit FNV-1a of the UTF-8 bytes of ``text``."""
    value = _FNV32_OFFSET
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return value


def network_name(realm: str, space: str) -> str:
    """CNI network name of a space: ``R-S``."""
    return f"{realm.strip()}-{space.strip()}"


def bridge_name(realm: str, space: str) -> str:
    """Linux bridge of a space: ``k-`` + 8 hex of FNV-1a over the network name (11 chars)."""
    return f"k-{fnv1a32(network_name(realm, space)):08x}"


def egress_chain_name(realm: str, space: str) -> str:
    """iptables chain of a space's egress policy: ``KUKE-EGR-`` + 8 hex of FNV-1a over ``R/S``."""
    return f"KUKE-EGR-{fnv1a32(f'{realm}/{space}'):08x}"


# run-path tree


def instance_file_path(run_path: str) -> str:
    """``RUN/.kukeon-instance.json``."""
    return os.path.join(run_path, INSTANCE_FILE)


def data_dir(run_path: str) -> str:
    """``RUN/data``: root of the metadata tree."""
    return os.path.join(run_path, DATA_DIR)


def resource_dir(run_path: str, *names: str) -> str:
    """Directory of a realm/space/stack/cell or container: ``RUN/data/R[/S[/K[/C[/X]]]]``."""
    if not 1 <= len(names) <= 5:
        raise ValueError("a resource path has between one and five names")
    return os.path.join(data_dir(run_path), *names)


def metadata_path(run_path: str, *names: str) -> str:
    """``metadata.json`` of a realm/space/stack/cell: ``RUN/data/R[/S[/K[/C]]]/metadata.json``."""
    if len(names) > 4:
        raise ValueError("containers have no metadata file of their own")
    return os.path.join(resource_dir(run_path, *names), METADATA_FILE)


def network_conflist_path(run_path: str, realm: str, space: str) -> str:
    """``RUN/data/R/S/network.conflist``: the space's CNI conflist."""
    return os.path.join(resource_dir(run_path, realm, space), NETWORK_CONFLIST_FILE)


def network_state_path(run_path: str, realm: str, space: str) -> str:
    """``RUN/data/R/S/network.json``: the space's subnet allocation."""
    return os.path.join(resource_dir(run_path, realm, space), NETWORK_STATE_FILE)


def etc_hosts_path(run_path: str, realm: str, space: str, stack: str, cell: str) -> str:
    """``RUN/data/R/S/K/C/etc-hosts``: bind-mounted at ``/etc/hosts``."""
    return os.path.join(resource_dir(run_path, realm, space, stack, cell), ETC_HOSTS_FILE)


def etc_hostname_path(run_path: str, realm: str, space: str, stack: str, cell: str) -> str:
    """``RUN/data/R/S/K/C/etc-hostname``: bind-mounted at ``/etc/hostname``."""
    return os.path.join(resource_dir(run_path, realm, space, stack, cell), ETC_HOSTNAME_FILE)


def container_dir(
    run_path: str, realm: str, space: str, stack: str, cell: str, container: str
) -> str:
    """``RUN/data/R/S/K/C/X``: per-container files (log, tty, kuketty metadata)."""
    return resource_dir(run_path, realm, space, stack, cell, container)


def container_log_path(
    run_path: str, realm: str, space: str, stack: str, cell: str, container: str
) -> str:
    """``RUN/data/R/S/K/C/X/log``: stdout+stderr appended by the containerd shim."""
    return os.path.join(
        container_dir(run_path, realm, space, stack, cell, container), CONTAINER_LOG_FILE
    )


def tty_dir(run_path: str, realm: str, space: str, stack: str, cell: str, container: str) -> str:
    """``RUN/data/R/S/K/C/X/tty``: bound at ``/run/kukeon/tty`` in attachable containers."""
    return os.path.join(
        container_dir(run_path, realm, space, stack, cell, container), CONTAINER_TTY_DIR
    )


def tty_socket_path(
    run_path: str, realm: str, space: str, stack: str, cell: str, container: str
) -> str:
    """``…/X/tty/socket``: terminal socket of an attachable container."""
    return os.path.join(tty_dir(run_path, realm, space, stack, cell, container), TTY_SOCKET_FILE)


def tty_capture_path(
    run_path: str, realm: str, space: str, stack: str, cell: str, container: str
) -> str:
    """``…/X/tty/capture``: full terminal transcript of an attachable container."""
    return os.path.join(tty_dir(run_path, realm, space, stack, cell, container), TTY_CAPTURE_FILE)


def tty_log_path(
    run_path: str, realm: str, space: str, stack: str, cell: str, container: str
) -> str:
    """``…/X/tty/log``: log of the terminal wrapper of an attachable container."""
    return os.path.join(tty_dir(run_path, realm, space, stack, cell, container), TTY_LOG_FILE)


def kuketty_metadata_path(
    run_path: str, realm: str, space: str, stack: str, cell: str, container: str
) -> str:
    """``…/X/kuketty-metadata.json``: the workload argv of an attachable container."""
    return os.path.join(
        container_dir(run_path, realm, space, stack, cell, container), KUKETTY_METADATA_FILE
    )


def kuketty_binary_path(run_path: str) -> str:
    """``RUN/bin/kuketty``: the staged terminal wrapper binary."""
    return os.path.join(run_path, "bin", KUKETTY_BINARY)


def secrets_dir(cid: str) -> str:
    """``/run/kukeon/secrets/<containerd ID>``: staged secret files of a container."""
    return os.path.join(SECRETS_ROOT, cid)
