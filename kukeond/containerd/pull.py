"""Pull an image from an OCI distribution registry into an OCI image-layout directory.

The HTTP side runs on the reactor with :class:`twisted.web.client.Agent`;
blob bodies are streamed (the transport is paused while a chunk is written),
hashed and written on a small dedicated thread pool
(:mod:`kukeond.containerd.httpbody`), so neither the reactor thread nor
memory ever holds a whole layer. Anonymous, basic and bearer-token
authentication are supported; an image index (or Docker manifest list) is
resolved to the host platform.

The result is a layout directory (``oci-layout``, ``index.json``,
``blobs/sha256/…``) whose single ``index.json`` entry carries the full image
name in ``io.containerd.image.name`` and the tag in
``org.opencontainers.image.ref.name``. When the image is an index, only the
chosen platform's manifest and blobs are fetched, and the index stays the
image's target (as containerd records a pull). :func:`pull_image` hands the
directory to ``IContainerd.import_image``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RedirectAgent,
    RequestGenerationFailed,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseFailed,
)
from twisted.web.error import Error as WebError
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from kukeond.blocking import BlockingPool
from kukeond.containerd.distribution import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MEDIA_OCI_INDEX,
    choose_platform,
    header_value,
    json_object,
    parse_challenges,
)
from kukeond.containerd.errors import (
    ContentMismatch,
    PullError,
    RegistryNotFound,
    RegistryUnauthorized,
)
from kukeond.containerd.httpbody import BlobSink, Collector
from kukeond.containerd.reference import ImageReference, host_platform, parse_reference
from kukeond.logs import Logger

NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

MAX_MANIFEST_BYTES = 4 << 20
_PROGRESS_EVERY = 16 << 20


_TRANSPORT_FAILURES = (
    ConnectError,
    ConnectionClosed,
    ResponseFailed,
    RequestGenerationFailed,
    RequestTransmissionFailed,
    RequestNotSent,
    WebError,
    SchemeNotSupported,
    defer.CancelledError,
    OSError,
)
"""How a request to a registry fails on the way (refused, reset, TLS, redirects, timeout)."""


@dataclass(frozen=True)
class Credentials:
    """Username and password (or token) for one registry."""

    username: str
    password: str

    def basic(self) -> bytes:
        """The value of a ``Authorization: Basic`` header."""
        pair = f"{self.username}:{self.password}".encode()
        return b"Basic " + base64.b64encode(pair)


@dataclass(frozen=True)
class PullResult:
    """What :meth:`RegistryPuller.pull` wrote."""

    name: str
    layout_dir: str
    target: dict[str, Any]
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]
    bytes_fetched: int


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    return name in ("localhost", "::1") or name.startswith("127.")


class RegistryPuller:
    """Pull images over HTTP(S) into OCI layout directories.

    ``plain_http`` decides per ``host[:port]`` whether to use ``http://``;
    by default loopback registries are spoken to in plain HTTP and the rest
    over HTTPS. Blob writes run on a private bounded pool, each with a
    deadline, stopped by :meth:`close` or at reactor shutdown.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        agent: IAgent | None = None,
        platform: tuple[str, str] | None = None,
        plain_http: Callable[[str], bool] = _is_loopback,
        request_timeout: float = 60.0,
        idle_timeout: float = 60.0,
        parallel_blobs: int = 3,
    ) -> None:
        self._reactor = reactor
        if agent is None:
            self._pool: HTTPConnectionPool | None = HTTPConnectionPool(reactor, persistent=True)
            agent = Agent(reactor, pool=self._pool)
        else:
            self._pool = None
        self._agent = RedirectAgent(agent)
        self._threads = BlockingPool(reactor, "kukeond-pull")
        self._platform = platform or host_platform()
        self._plain_http = plain_http
        self._request_timeout = request_timeout
        self._idle_timeout = idle_timeout
        self._parallel = parallel_blobs
        self._auth: dict[tuple[str, str], bytes] = {}

    def close(self) -> Deferred[None]:
        """Stop the private thread pool and close pooled connections."""
        self._threads.stop()
        if self._pool is not None:
            return self._pool.closeCachedConnections()
        return defer.succeed(None)

    def pull(
        self, ref: str, layout_dir: str, credentials: Credentials | None = None
    ) -> Deferred[PullResult]:
        """Fetch ``ref`` into ``layout_dir`` (created; must not hold another layout)."""
        return Deferred.fromCoroutine(self._pull(parse_reference(ref), layout_dir, credentials))

    async def _pull(
        self, ref: ImageReference, layout_dir: str, credentials: Credentials | None
    ) -> PullResult:
        self.log.info("pulling {image}", image=ref.name)
        blob_dir = os.path.join(layout_dir, "blobs", "sha256")
        await self._in_thread(os.makedirs, blob_dir, exist_ok=True)
        session = _Session(self, ref, credentials)

        body, media_type = await session.manifest(ref.manifest_ref)
        target_digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.digest and target_digest != ref.digest:
            raise ContentMismatch(f"manifest of {ref.name} has digest {target_digest}")
        target = {"mediaType": media_type, "digest": target_digest, "size": len(body)}
        await self._write_blob(blob_dir, target_digest, body)

        if media_type in INDEX_TYPES:
            entries = json_object(body, "image index").get("manifests") or []
            chosen = choose_platform(entries, self._platform)
            body, media_type = await session.manifest(chosen["digest"])
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if digest != chosen["digest"]:
                raise ContentMismatch(f"manifest {chosen['digest']} has digest {digest}")
            await self._write_blob(blob_dir, digest, body)
        manifest_digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if media_type not in MANIFEST_TYPES:
            raise PullError(f"unsupported manifest media type {media_type!r}")
        manifest = json_object(body, "image manifest")
        config = manifest.get("config") or {}
        layers = manifest.get("layers") or []
        wanted = [config, *layers]

        seen: set[str] = set()
        semaphore = defer.DeferredSemaphore(self._parallel)
        jobs = []
        for desc in wanted:
            if desc.get("digest") in seen:
                continue
            seen.add(desc.get("digest"))
            jobs.append(semaphore.run(session.blob, desc, blob_dir))
        # Let every download finish (or fail) before reporting, so nothing still
        # writes into the layout once the caller sees the outcome.
        outcomes = await defer.DeferredList(jobs, consumeErrors=True)
        for ok, value in outcomes:
            if not ok:
                value.raiseException()
        fetched = sum(value for _, value in outcomes)

        annotations = {NAME_ANNOTATION: ref.name}
        if ref.tag:
            annotations[REF_ANNOTATION] = ref.tag
        entry = dict(target, annotations=annotations)
        index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [entry]}
        await self._in_thread(_write_layout_files, layout_dir, index)
        self.log.info(
            "pulled {image} ({digest}, {bytes} bytes)",
            image=ref.name,
            digest=target_digest,
            bytes=fetched,
        )
        return PullResult(
            name=ref.name,
            layout_dir=layout_dir,
            target=entry,
            manifest_digest=manifest_digest,
            config_digest=config.get("digest", ""),
            layer_digests=tuple(layer["digest"] for layer in layers),
            bytes_fetched=fetched,
        )

    def _in_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        return self._threads.run(fn, *args, **kwargs)

    async def _write_blob(self, blob_dir: str, digest: str, body: bytes) -> None:
        path = os.path.join(blob_dir, digest.split(":", 1)[1])
        await self._in_thread(_write_file, path, body)


class _Session:
    """One pull: the URLs, credentials and cached authorization for one repository."""

    def __init__(
        self, puller: RegistryPuller, ref: ImageReference, credentials: Credentials | None
    ) -> None:
        self._puller = puller
        self._ref = ref
        self._credentials = credentials
        scheme = "http" if puller._plain_http(ref.api_host) else "https"
        self._base = f"{scheme}://{ref.api_host}/v2/{ref.repository}"
        self._auth_key = (ref.api_host, ref.repository)

    async def manifest(self, reference: str) -> tuple[bytes, str]:
        accept = ", ".join(sorted(INDEX_TYPES | MANIFEST_TYPES))
        response = await self._get(f"{self._base}/manifests/{reference}", accept)
        body = await self._read(response, MAX_MANIFEST_BYTES)
        self._check_status(response, body, f"manifest {reference}")
        media_type = header_value(response, b"content-type").split(";", 1)[0].strip()
        if media_type not in INDEX_TYPES | MANIFEST_TYPES:
            media_type = json_object(body, "manifest").get("mediaType") or media_type
        header_digest = header_value(response, b"docker-content-digest")
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if header_digest and header_digest != actual:
            raise ContentMismatch(f"manifest {reference}: registry says {header_digest}")
        return body, media_type

    async def blob(self, desc: dict[str, Any], blob_dir: str) -> int:
        digest = desc["digest"]
        algorithm, _, hexpart = digest.partition(":")
        if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
            raise PullError(f"unsupported blob digest {digest!r}")
        puller = self._puller
        response = await self._get(f"{self._base}/blobs/{digest}", "*/*")
        if response.code != 200:
            body = await self._read(response, 64 << 10)
            self._check_status(response, body, f"blob {digest}")
        final = os.path.join(blob_dir, hexpart)
        temp = final + ".part"
        done: Deferred[tuple[int, str]] = Deferred()
        state = {"next": _PROGRESS_EVERY, "bytes": 0}

        def progress(size: int) -> None:
            state["bytes"] += size
            if state["bytes"] >= state["next"]:
                state["next"] += _PROGRESS_EVERY
                puller.log.debug(
                    "blob {digest}: {bytes} of {total} bytes",
                    digest=digest,
                    bytes=state["bytes"],
                    total=desc.get("size"),
                )

        response.deliverBody(
            BlobSink(puller._reactor, temp, puller._in_thread, puller._idle_timeout, done, progress)
        )
        try:
            size, hexdigest = await done
            if hexdigest != hexpart:
                raise ContentMismatch(f"blob {digest} has digest sha256:{hexdigest}")
            if desc.get("size") is not None and size != desc["size"]:
                raise ContentMismatch(f"blob {digest} has {size} bytes, expected {desc['size']}")
            await puller._in_thread(os.replace, temp, final)
        except BaseException:
            await puller._in_thread(_remove, temp)
            raise
        puller.log.info("fetched blob {digest} ({bytes} bytes)", digest=digest, bytes=size)
        return size

    async def _get(self, url: str, accept: str) -> IResponse:
        response = await self._send(url, accept)
        if response.code != 401:
            return response
        challenges = response.headers.getRawHeaders(b"www-authenticate") or []
        await self._read(response, 64 << 10)
        self._puller._auth[self._auth_key] = await self._authenticate(
            [c.decode("latin-1") for c in challenges], url
        )
        response = await self._send(url, accept)
        if response.code == 401:
            await self._read(response, 64 << 10)
            raise RegistryUnauthorized(f"GET {url}: unauthorized")
        return response

    async def _send(self, url: str, accept: str) -> IResponse:
        puller = self._puller
        headers = Headers({b"Accept": [accept.encode()], b"User-Agent": [b"kukeond"]})
        auth = puller._auth.get(self._auth_key)
        if auth is not None:
            headers.addRawHeader(b"Authorization", auth)
        request = puller._agent.request(b"GET", url.encode(), headers)
        request.addTimeout(puller._request_timeout, puller._reactor)
        try:
            return await request
        except defer.TimeoutError:
            raise PullError(f"GET {url}: no answer in {puller._request_timeout:g}s") from None
        except _TRANSPORT_FAILURES as exc:
            raise PullError(f"GET {url}: {exc}") from exc

    async def _authenticate(self, challenges: list[str], url: str) -> bytes:
        parsed = dict(parse_challenges(challenges))
        creds = self._credentials
        if "bearer" in parsed:
            return await self._token(parsed["bearer"])
        if "basic" in parsed:
            if creds is None:
                raise RegistryUnauthorized(f"GET {url}: registry requires credentials")
            return creds.basic()
        raise RegistryUnauthorized(f"GET {url}: unsupported authentication {challenges!r}")

    async def _token(self, params: dict[str, str]) -> bytes:
        realm = params.get("realm")
        if not realm:
            raise RegistryUnauthorized("bearer challenge without realm")
        query = {"scope": params.get("scope") or f"repository:{self._ref.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = Headers({b"User-Agent": [b"kukeond"]})
        if self._credentials is not None:
            headers.addRawHeader(b"Authorization", self._credentials.basic())
        request = self._puller._agent.request(b"GET", url.encode(), headers)
        request.addTimeout(self._puller._request_timeout, self._puller._reactor)
        try:
            response = await request
        except _TRANSPORT_FAILURES as exc:
            raise RegistryUnauthorized(f"token request to {realm}: {exc}") from exc
        body = await self._read(response, 1 << 20)
        if response.code != 200:
            raise RegistryUnauthorized(f"token request to {realm}: HTTP {response.code}")
        answer = json_object(body, "token response")
        token = answer.get("token") or answer.get("access_token")
        if not token:
            raise RegistryUnauthorized(f"token request to {realm}: no token in the answer")
        return b"Bearer " + token.encode()

    async def _read(self, response: IResponse, limit: int) -> bytes:
        done: Deferred[bytes] = Deferred()
        response.deliverBody(Collector(done, limit))
        done.addTimeout(self._puller._request_timeout, self._puller._reactor)
        return await done

    def _check_status(self, response: IResponse, body: bytes, what: str) -> None:
        if response.code == 200:
            return
        detail = body[:200].decode("utf-8", "replace")
        if response.code == 404:
            raise RegistryNotFound(f"{self._ref.name}: {what} not found")
        if response.code in (401, 403):
            raise RegistryUnauthorized(f"{self._ref.name}: {what}: HTTP {response.code}")
        raise PullError(f"{self._ref.name}: {what}: HTTP {response.code} {detail}")


async def pull_image(
    containerd: Any,
    puller: RegistryPuller,
    namespace: str,
    ref: str,
    workdir: str | None = None,
    credentials: Credentials | None = None,
    unpack: bool = True,
) -> Any:
    """Pull ``ref`` into a temporary layout under ``workdir`` and import it into ``namespace``.

    ``containerd`` is an ``IContainerd``; fires with what its
    ``import_image`` returns. The layout directory is removed afterwards.
    """
    layout = await puller._in_thread(tempfile.mkdtemp, prefix="kukeond-pull-", dir=workdir)
    try:
        result = await puller.pull(ref, layout, credentials)
        return await containerd.import_image(namespace, layout, name=result.name, unpack=unpack)
    finally:
        await puller._in_thread(shutil.rmtree, layout, True)


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _write_layout_files(layout_dir: str, index: dict[str, Any]) -> None:
    _write_file(os.path.join(layout_dir, "oci-layout"), b'{"imageLayoutVersion":"1.0.0"}')
    _write_file(os.path.join(layout_dir, "index.json"), json.dumps(index).encode())
