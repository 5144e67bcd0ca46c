"""Docker-style image reference normalisation and OCI digest helpers."""

from __future__ import annotations

import hashlib
import platform

DEFAULT_DOMAIN = "docker.io"


def normalize_reference(ref: str) -> str:
    """Return the fully qualified form of an image reference.

    ``busybox`` → ``docker.io/library/busybox:latest``; ``a.b/c:d`` is kept.
    """
    ref = ref.strip()
    if not ref:
        raise ValueError("empty image reference")
    first, sep, rest = ref.partition("/")
    if not sep:
        ref = f"{DEFAULT_DOMAIN}/library/{ref}"
    elif not ("." in first or ":" in first or first == "localhost"):
        ref = f"{DEFAULT_DOMAIN}/{ref}"
    last = ref.rsplit("/", 1)[1]
    if "@" not in last and ":" not in last:
        ref += ":latest"
    return ref


def sha256_digest(data: bytes) -> str:
    """Digest string (``sha256:<hex>``) of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Chain IDs of a layer stack: chain(0) = diff(0); chain(n) = sha256("chain(n-1) diff(n)")."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if chains:
            chains.append(sha256_digest(f"{chains[-1]} {diff_id}".encode()))
        else:
            chains.append(diff_id)
    return chains


def host_platform() -> tuple[str, str]:
    """The (os, architecture) pair of this host, in OCI terms."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
    return "linux", arch.get(machine, machine)
