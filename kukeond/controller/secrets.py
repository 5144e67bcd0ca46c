"""Container secrets: checked when a container is declared, resolved when its task is made.

A ``secrets`` entry names a value and where it comes from on the daemon's
host: a file (``fromFile``) or one of the daemon's environment variables
(``fromEnv``). Without ``mountPath`` the value becomes ``NAME=value`` in the
container's environment; with it, a read-only file at that path, bound from
``<secrets dir>/<containerd ID>/<name>`` (the directory 0700, the file 0400
and owned by the container's user, so a non-root workload can read it).

Documents only ever hold the reference, never the value: values live in the
runtime spec containerd keeps and in the staged files, which go when the
container goes. Error messages name the secret and its source, never the
value. Sources are checked when a cell or container is created (so a
missing one fails the request before anything exists) and read again each
time the container is (re)created, so a rotated file takes effect on start.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field

from kukeond.api.v1beta1 import ContainerSpec
from kukeond.base.atomic import replace_file
from kukeond.containerd.mounts import Mount
from kukeond.errors import KukeonError

FILE_MODE = 0o400
DIR_MODE = 0o700


@dataclass
class Resolved:
    """What a container's secrets add to its runtime spec, and the files staged for them."""

    env: list[str] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    index: int
    name: str
    from_file: str
    from_env: str
    mount_path: str


def _q(text: str) -> str:
    return json.dumps(text)


def _entries(container: ContainerSpec) -> list[_Entry]:
    """The container's secrets, trimmed, with the reference's checks of their form."""
    out = []
    for i, secret in enumerate(container.secrets or []):
        entry = _Entry(
            i,
            secret.name.strip(),
            secret.fromFile.strip(),
            secret.fromEnv.strip(),
            secret.mountPath.strip(),
        )
        where = f"secrets[{i}] {_q(entry.name)}"
        if not entry.name:
            raise KukeonError(f"secret name is required (secrets[{i}])")
        if not entry.from_file and not entry.from_env:
            raise KukeonError(f"secret requires exactly one of fromFile or fromEnv ({where})")
        if entry.from_file and entry.from_env:
            raise KukeonError(f"secret must not set both fromFile and fromEnv ({where})")
        if entry.mount_path and not os.path.isabs(entry.mount_path):
            raise KukeonError(
                "secret mountPath must be an absolute container path "
                f"({where} mountPath {_q(entry.mount_path)})"
            )
        if entry.mount_path and "/" in entry.name:
            raise KukeonError(f"secret name must not contain '/' ({where})")
        out.append(entry)
    return out


def _missing(entry: _Entry) -> KukeonError:
    if entry.from_file:
        return KukeonError(
            "secret fromFile path does not exist on the host "
            f"(secret {_q(entry.name)} path {_q(entry.from_file)})"
        )
    return KukeonError(
        "secret fromEnv env var is not set on the daemon host "
        f"(secret {_q(entry.name)} env {_q(entry.from_env)})"
    )


def check(container: ContainerSpec, environ: Mapping[str, str]) -> None:
    """Fail with a message naming the secret and its source unless every source is there.

    Reads no value. Blocking only for a ``stat`` per file source.
    """
    for entry in _entries(container):
        if entry.from_file:
            if not os.path.isfile(entry.from_file):
                raise _missing(entry)
        elif entry.from_env not in environ:
            raise _missing(entry)


def _value(entry: _Entry, environ: Mapping[str, str]) -> str:
    if not entry.from_file:
        if entry.from_env not in environ:
            raise _missing(entry)
        return environ[entry.from_env]
    try:
        with open(entry.from_file, "rb") as fh:
            return fh.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        raise _missing(entry) from None
    except OSError as exc:
        raise KukeonError(
            f"failed to read secret {_q(entry.name)} from {_q(entry.from_file)}: "
            f"{exc.strerror or exc}"
        ) from None


def staging_dir(secrets_dir: str, cid: str) -> str:
    """``<secrets dir>/<containerd ID>``: the staged files of one container."""
    return os.path.join(secrets_dir, cid)


def resolve(
    container: ContainerSpec, cid: str, secrets_dir: str, environ: Mapping[str, str]
) -> Resolved:
    """Read every secret of ``container`` and stage the file-mounted ones (blocking).

    On failure nothing stays staged for ``cid``.
    """
    out = Resolved()
    entries = _entries(container)
    if not entries:
        return out
    directory = staging_dir(secrets_dir, cid)
    try:
        for entry in entries:
            value = _value(entry, environ)
            if not entry.mount_path:
                out.env.append(f"{entry.name}={value}")
                continue
            if not out.files:
                os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
                os.chmod(directory, DIR_MODE)
            path = os.path.join(directory, entry.name)
            try:
                replace_file(path, value.encode("utf-8", "surrogateescape"), FILE_MODE)
            except OSError as exc:
                raise KukeonError(
                    f"failed to stage secret file for mount (secrets[{entry.index}] "
                    f"{_q(entry.name)}): {exc.strerror or exc}"
                ) from None
            out.files.append(path)
            out.mounts.append(Mount.bind(path, entry.mount_path, readonly=True))
    except BaseException:
        remove_staged(secrets_dir, cid)
        raise
    return out


def give_to(resolved: Resolved, uid: int, gid: int) -> None:
    """Hand the staged files (and their directory) to the container's user (blocking)."""
    if not resolved.files or (uid, gid) == (0, 0):
        return
    for path in resolved.files:
        os.chown(path, uid, gid)
    os.chown(os.path.dirname(resolved.files[0]), uid, gid)


def remove_staged(secrets_dir: str, cid: str) -> None:
    """Remove whatever is staged for ``cid`` (blocking; absent is fine)."""
    shutil.rmtree(staging_dir(secrets_dir, cid), ignore_errors=True)
