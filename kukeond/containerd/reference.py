"""Docker-style image references (normalised and parsed), OCI digest helpers, the host platform."""

from __future__ import annotations

import hashlib
import platform
import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


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


@dataclass(frozen=True)
class ImageReference:
    """A parsed, normalised image reference (``docker.io/library/busybox:latest``)."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """The full name as containerd records it."""
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    @property
    def api_host(self) -> str:
        """``host[:port]`` of the registry API (Docker Hub's API lives elsewhere)."""
        return DOCKER_HUB_API if self.registry == DEFAULT_DOMAIN else self.registry

    @property
    def manifest_ref(self) -> str:
        """What to put after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag


def parse_reference(ref: str) -> ImageReference:
    """Normalise ``ref`` (``busybox``, ``host:5000/a/b:t``, ``x@sha256:…``) and split it."""
    full = normalize_reference(ref)
    registry, _, remainder = full.partition("/")
    digest = ""
    if "@" in remainder:
        remainder, _, digest = remainder.partition("@")
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ValueError(f"unsupported digest in image reference {ref!r}")
    tag = ""
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
    if not remainder or remainder != remainder.lower():
        raise ValueError(f"invalid repository in image reference {ref!r}")
    return ImageReference(registry, remainder, tag, digest)


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
