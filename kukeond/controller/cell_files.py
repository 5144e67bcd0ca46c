"""Files a cell owns under the run path, written off the reactor thread.

``etc-hostname`` and ``etc-hosts`` are rendered as the reference does and
rewritten in place (truncate + write, same inode) so running containers see
a new address through their bind mount. Removing a cell directory, checking
volume sources and reading seccomp profiles also live here. Everything runs
on one small dedicated thread pool, started on first use and stopped when
the reactor shuts down; every call has a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from kukeond.api.v1beta1 import VOLUME_BIND, VOLUME_TMPFS, ContainerSpec
from kukeond.blocking import BlockingPool

HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::\tip6-localnet\n"
    "ff00::\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
FILE_MODE = 0o644
DIR_MODE = 0o750


def render_etc_hostname(cell: str) -> bytes:
    """``<cell name>\\n``."""
    return f"{cell}\n".encode()


def render_etc_hosts(cell: str, ipv4: str | None = None) -> bytes:
    """The localhost block, plus ``<IPv4>\\t<cell>`` once CNI gave the cell an address."""
    text = HOSTS_HEADER + (f"{ipv4}\t{cell}\n" if ipv4 else "")
    return text.encode()


def write_in_place(path: str, data: bytes) -> None:
    """Create or truncate-and-write ``path`` (0644), keeping its inode."""
    os.makedirs(os.path.dirname(path), mode=DIR_MODE, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, FILE_MODE)


def check_volumes(container: ContainerSpec) -> None:
    """Validate ``spec.volumes`` as the reference does; raises ``ValueError`` with its text."""
    for i, volume in enumerate(container.volumes or []):
        if not volume.target:
            raise ValueError(f"volume target is required (volume[{i}])")
        if not os.path.isabs(volume.target):
            raise ValueError(
                f"volume target must be an absolute path (volume[{i}] target "
                f"{json.dumps(volume.target)})"
            )
        if volume.kind == VOLUME_TMPFS:
            if volume.source:
                raise ValueError(f"tmpfs volume must not have a source (volume[{i}])")
            continue
        if volume.kind not in ("", VOLUME_BIND):
            raise ValueError(
                f"unsupported volume kind (volume[{i}] kind {json.dumps(volume.kind)})"
            )
        source = volume.source
        if not source:
            raise ValueError(f"volume source is required (volume[{i}])")
        if not os.path.isabs(source):
            what = (
                "named volumes are not supported"
                if "/" not in source
                else "volume source must be an absolute path"
            )
            raise ValueError(f"{what} (volume[{i}] source {json.dumps(source)})")
        if not os.path.exists(source):
            raise ValueError(
                f"volume source does not exist (volume[{i}] source {json.dumps(source)})"
            )


def read_json_file(path: str) -> Any:
    """Parse a JSON file (seccomp profiles)."""
    with open(path, "rb") as handle:
        return json.load(handle)


def remove_tree(path: str) -> bool:
    """``rm -rf path``; True if something was there."""
    if not os.path.lexists(path):
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


class FileWork(BlockingPool):
    """Runs file-system work for cells on its own bounded pool, each call with a deadline."""

    def __init__(self, reactor: Any, max_threads: int = 2) -> None:
        super().__init__(reactor, "kukeond-cellfs", max_threads)
