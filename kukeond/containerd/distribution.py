"""What an OCI distribution registry answers, as a puller reads it.

The media types of manifests and indexes (OCI and Docker schema 2), the
``WWW-Authenticate`` challenges of a 401 answer, the choice of an index
entry for a platform, and reading a header or a JSON body of an answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.web.iweb import IResponse

from kukeond.containerd.errors import PullError, RegistryNotFound

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST})
MANIFEST_TYPES = frozenset({MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST})


def parse_challenges(values: list[str]) -> list[tuple[str, dict[str, str]]]:
    """Parse ``WWW-Authenticate`` headers into ``(scheme, params)`` pairs (scheme lower-cased)."""
    out = []
    for value in values:
        match = re.match(r"\s*([A-Za-z][A-Za-z0-9_-]*)\s*(.*)", value)
        if not match:
            continue
        params = {
            key.lower(): quoted if quoted or not bare else bare
            for key, quoted, bare in re.findall(
                r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', match.group(2)
            )
        }
        out.append((match.group(1).lower(), params))
    return out


def choose_platform(manifests: list[dict[str, Any]], platform: tuple[str, str]) -> dict[str, Any]:
    """The first index entry for ``platform`` (``(os, arch)``), or the only entry."""
    want_os, want_arch = platform
    for entry in manifests:
        plat = entry.get("platform") or {}
        if plat.get("os") == want_os and plat.get("architecture") == want_arch:
            return entry
    if len(manifests) == 1 and not manifests[0].get("platform"):
        return manifests[0]
    raise RegistryNotFound(f"no manifest for platform {want_os}/{want_arch}")


def header_value(response: IResponse, name: bytes) -> str:
    """The first value of header ``name`` in ``response``, or ``""``."""
    values = response.headers.getRawHeaders(name) or [b""]
    return values[0].decode("latin-1")


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """``body`` as a JSON object; :class:`PullError` naming ``what`` when it is not one."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise PullError(f"{what} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PullError(f"{what} is not a JSON object")
    return doc
