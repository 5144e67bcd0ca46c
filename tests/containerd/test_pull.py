"""Registry pull: reference parsing, auth challenges, and pulls from registries on loopback.

The end-to-end tests run Debian's ``docker-registry`` on 127.0.0.1 (anonymous,
htpasswd basic auth, and token auth backed by a small Twisted token server)
and push the busybox test image to it with ``skopeo``; they skip when either
tool is missing. A tiny in-process fake registry covers what a real one never
does (wrong bytes, large streamed blobs).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import ResponseDone
from twisted.web.resource import Resource
from twisted.web.server import Site

from kukeond.containerd import archive
from kukeond.containerd.distribution import (
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    choose_platform,
    parse_challenges,
)
from kukeond.containerd.errors import (
    ContentMismatch,
    PullError,
    RegistryNotFound,
    RegistryUnauthorized,
)
from kukeond.containerd.httpbody import BlobSink
from kukeond.containerd.pull import Credentials, RegistryPuller, pull_image
from kukeond.containerd.reference import ImageReference, parse_reference

USER, PASSWORD = "kuke", "s3cret"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _require(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            raise SkipTest(f"{tool} is not installed (apt-get install docker-registry skopeo)")


class ReferenceTests(SynchronousTestCase):
    def test_docker_hub_short_name(self):
        ref = parse_reference("busybox")
        self.assertEqual(ref, ImageReference("docker.io", "library/busybox", "latest", ""))
        self.assertEqual(ref.api_host, "registry-1.docker.io")
        self.assertEqual(ref.name, "docker.io/library/busybox:latest")

    def test_docker_hub_user_repo(self):
        ref = parse_reference("eminwux/kukeon:v0.5.0")
        self.assertEqual(ref, ImageReference("docker.io", "eminwux/kukeon", "v0.5.0", ""))

    def test_host_port(self):
        ref = parse_reference("127.0.0.1:5000/a/b:t1")
        self.assertEqual(ref, ImageReference("127.0.0.1:5000", "a/b", "t1", ""))
        self.assertEqual(ref.api_host, "127.0.0.1:5000")
        self.assertEqual(ref.manifest_ref, "t1")

    def test_host_port_without_tag(self):
        ref = parse_reference("localhost:5000/a")
        self.assertEqual((ref.registry, ref.repository, ref.tag), ("localhost:5000", "a", "latest"))

    def test_digest(self):
        digest = "sha256:" + "ab" * 32
        ref = parse_reference(f"quay.io/x/y@{digest}")
        self.assertEqual(ref, ImageReference("quay.io", "x/y", "", digest))
        self.assertEqual(ref.manifest_ref, digest)
        self.assertEqual(ref.name, f"quay.io/x/y@{digest}")

    def test_invalid(self):
        for bad in ("", "quay.io/x@sha256:zz", "quay.io/Upper:1"):
            self.assertRaises(ValueError, parse_reference, bad)


class ChallengeTests(SynchronousTestCase):
    def test_bearer(self):
        header = (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/busybox:pull"'
        )
        self.assertEqual(
            parse_challenges([header]),
            [
                (
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull",
                    },
                )
            ],
        )

    def test_basic_and_bare_values(self):
        self.assertEqual(
            parse_challenges(['Basic realm="Registry Realm"', "Bearer realm=http://x/t"]),
            [("basic", {"realm": "Registry Realm"}), ("bearer", {"realm": "http://x/t"})],
        )

    def test_platform_choice(self):
        entries = [
            {"digest": "a", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "b", "platform": {"os": "linux", "architecture": "amd64"}},
        ]
        self.assertEqual(choose_platform(entries, ("linux", "amd64"))["digest"], "b")
        self.assertRaises(RegistryNotFound, choose_platform, entries, ("linux", "s390x"))
        self.assertEqual(choose_platform([{"digest": "c"}], ("linux", "amd64"))["digest"], "c")


class _PullTestMixin:
    """Temp dirs and a puller cleaned up after each test."""

    def make_puller(self) -> RegistryPuller:
        puller = RegistryPuller(reactor, request_timeout=30, idle_timeout=30)
        self.addCleanup(puller.close)
        return puller

    def tempdir(self) -> str:
        path = tempfile.mkdtemp(prefix="kukeond-pull-test-")
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def assert_layout(self, layout: str, name: str, tag: str) -> dict:
        with open(os.path.join(layout, "oci-layout")) as handle:
            self.assertEqual(json.load(handle), {"imageLayoutVersion": "1.0.0"})
        with open(os.path.join(layout, "index.json")) as handle:
            index = json.load(handle)
        self.assertEqual(index["schemaVersion"], 2)
        [entry] = index["manifests"]
        expected = {"io.containerd.image.name": name}
        if tag:
            expected["org.opencontainers.image.ref.name"] = tag
        self.assertEqual(entry["annotations"], expected)
        blob_dir = os.path.join(layout, "blobs", "sha256")
        for blob in os.listdir(blob_dir):
            with open(os.path.join(blob_dir, blob), "rb") as handle:
                self.assertEqual(hashlib.sha256(handle.read()).hexdigest(), blob)
        return entry


class Registry:
    """A ``docker-registry serve`` process on 127.0.0.1 with a private storage dir."""

    def __init__(self, case: TestCase, auth: dict | None = None) -> None:
        _require("docker-registry", "skopeo")
        self.dir = tempfile.mkdtemp(prefix="kukeond-registry-")
        case.addCleanup(shutil.rmtree, self.dir, True)
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": os.path.join(self.dir, "data")}},
            "http": {"addr": self.host},
        }
        if auth:
            config["auth"] = auth
        path = os.path.join(self.dir, "config.yml")
        with open(path, "w") as handle:
            json.dump(config, handle)
        log = open(os.path.join(self.dir, "registry.log"), "wb")  # noqa: SIM115
        case.addCleanup(log.close)
        self.process = subprocess.Popen(
            ["docker-registry", "serve", path], stdout=log, stderr=subprocess.STDOUT
        )
        case.addCleanup(self._stop)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"registry exited: {self.log_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"registry did not listen: {self.log_text()}")

    def log_text(self) -> str:
        with open(os.path.join(self.dir, "registry.log"), "rb") as handle:
            return handle.read().decode(errors="replace")

    def _stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    async def push(self, source: str, repo_tag: str, creds: str | None = None, all_: bool = False):
        args = ["--insecure-policy", "copy", "--dest-tls-verify=false"]
        if creds:
            args += ["--dest-creds", creds]
        if all_:
            args.append("--all")
        args += [source, f"docker://{self.host}/{repo_tag}"]
        out, err, code = await getProcessOutputAndValue(
            shutil.which("skopeo"), args, env=dict(os.environ)
        )
        if code != 0:
            raise RuntimeError(f"skopeo failed: {err.decode()} {self.log_text()}")


def _busybox():
    from tests.support.image import busybox_image

    return busybox_image()


def _multi_arch_layout(image, out: str) -> tuple[str, str]:
    """Copy the busybox layout and put it in an index beside an arm64 twin; return digests."""
    shutil.copytree(image.oci_dir, out)
    blobs = os.path.join(out, "blobs", "sha256")

    def read(digest):
        with open(os.path.join(blobs, digest.split(":")[1]), "rb") as handle:
            return handle.read()

    def write(data):
        with open(os.path.join(blobs, hashlib.sha256(data).hexdigest()), "wb") as handle:
            handle.write(data)
        return {"digest": _sha(data), "size": len(data)}

    manifest = json.loads(read(image.manifest_digest))
    config = json.loads(read(image.config_digest))
    config["architecture"] = "arm64"
    arm_config = write(json.dumps(config).encode())
    arm_manifest = dict(manifest, config=dict(manifest["config"], **arm_config))
    arm_desc = write(json.dumps(arm_manifest).encode())
    amd_raw = read(image.manifest_digest)
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [
            dict(
                arm_desc,
                mediaType=MEDIA_OCI_MANIFEST,
                platform={"os": "linux", "architecture": "arm64"},
            ),
            {
                "mediaType": MEDIA_OCI_MANIFEST,
                "digest": image.manifest_digest,
                "size": len(amd_raw),
                "platform": {"os": "linux", "architecture": "amd64"},
            },
        ],
    }
    index_desc = write(json.dumps(index).encode())
    with open(os.path.join(out, "index.json"), "w") as handle:
        json.dump(
            {"schemaVersion": 2, "manifests": [dict(index_desc, mediaType=MEDIA_OCI_INDEX)]},
            handle,
        )
    return index_desc["digest"], arm_config["digest"]


class AnonymousRegistryTests(_PullTestMixin, TestCase):
    timeout = 120

    async def _setUp(self):
        self.image = _busybox()
        self.registry = Registry(self)
        await self.registry.push(f"oci-archive:{self.image.oci_tar}", "library/busybox:latest")

    def setUp(self):
        return ensureDeferred(self._setUp())

    async def _pull(self, ref):
        layout = os.path.join(self.tempdir(), "layout")
        result = await self.make_puller().pull(ref, layout)
        return layout, result

    def test_pull_writes_verified_layout(self):
        async def go():
            ref = f"{self.registry.host}/library/busybox:latest"
            layout, result = await self._pull(ref)
            entry = self.assert_layout(layout, ref, "latest")
            self.assertEqual(result.name, ref)
            self.assertEqual(entry["digest"], result.manifest_digest)
            self.assertEqual(result.manifest_digest, self.image.manifest_digest)
            self.assertEqual(result.config_digest, self.image.config_digest)
            self.assertEqual(result.layer_digests, (self.image.layer_digest,))
            with archive.open_archive(layout) as parsed:
                [plan] = parsed.images
                self.assertEqual(plan.name, ref)
                self.assertEqual(plan.manifest.diff_ids, [self.image.diff_id])
                parsed.verify()

        return ensureDeferred(go())

    def test_pull_by_digest(self):
        async def go():
            ref = f"{self.registry.host}/library/busybox@{self.image.manifest_digest}"
            layout, result = await self._pull(ref)
            self.assert_layout(layout, ref, "")
            self.assertEqual(result.target["digest"], self.image.manifest_digest)

        return ensureDeferred(go())

    def test_unknown_tag(self):
        async def go():
            with self.assertRaises(RegistryNotFound):
                await self._pull(f"{self.registry.host}/library/busybox:nope")

        return ensureDeferred(go())

    def test_index_resolved_to_host_platform(self):
        async def go():
            source = os.path.join(self.tempdir(), "multi")
            index_digest, arm_config = _multi_arch_layout(self.image, source)
            await self.registry.push(f"oci:{source}", "library/multi:1", all_=True)
            ref = f"{self.registry.host}/library/multi:1"
            layout, result = await self._pull(ref)
            entry = self.assert_layout(layout, ref, "1")
            self.assertEqual(entry["digest"], index_digest)
            self.assertEqual(entry["mediaType"], MEDIA_OCI_INDEX)
            self.assertEqual(result.manifest_digest, self.image.manifest_digest)
            blobs = os.listdir(os.path.join(layout, "blobs", "sha256"))
            self.assertNotIn(arm_config.split(":")[1], blobs)
            with archive.open_archive(layout) as parsed:
                [plan] = parsed.images
                self.assertEqual(plan.target.digest, index_digest)
                self.assertEqual(plan.manifest.descriptor.digest, self.image.manifest_digest)

        return ensureDeferred(go())

    def test_pull_image_imports_layout(self):
        class Recorder:
            calls = []

            def import_image(self, namespace, source, name=None, unpack=True):
                with archive.open_archive(source) as parsed:
                    self.calls.append((namespace, name, unpack, [i.name for i in parsed.images]))
                return Deferred.fromCoroutine(_value(["imported"]))

        async def go():
            work = self.tempdir()
            ref = f"{self.registry.host}/library/busybox:latest"
            recorder = Recorder()
            result = await pull_image(recorder, self.make_puller(), "ns1", ref, workdir=work)
            self.assertEqual(result, ["imported"])
            self.assertEqual(recorder.calls, [("ns1", ref, True, [ref])])
            self.assertEqual(os.listdir(work), [])

        return ensureDeferred(go())


async def _value(value):
    return value


class BasicAuthRegistryTests(_PullTestMixin, TestCase):
    timeout = 120

    async def _setUp(self):
        _require("htpasswd")
        self.image = _busybox()
        htpasswd = os.path.join(self.tempdir(), "htpasswd")
        subprocess.run(
            ["htpasswd", "-Bbc", htpasswd, USER, PASSWORD],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.registry = Registry(self, {"htpasswd": {"realm": "test", "path": htpasswd}})
        await self.registry.push(
            f"oci-archive:{self.image.oci_tar}", "library/busybox:latest", f"{USER}:{PASSWORD}"
        )
        self.ref = f"{self.registry.host}/library/busybox:latest"

    def setUp(self):
        return ensureDeferred(self._setUp())

    def test_with_credentials(self):
        async def go():
            layout = os.path.join(self.tempdir(), "layout")
            result = await self.make_puller().pull(self.ref, layout, Credentials(USER, PASSWORD))
            self.assertEqual(result.manifest_digest, self.image.manifest_digest)
            self.assert_layout(layout, self.ref, "latest")

        return ensureDeferred(go())

    def test_without_credentials(self):
        async def go():
            with self.assertRaises(RegistryUnauthorized):
                await self.make_puller().pull(self.ref, os.path.join(self.tempdir(), "l"))

        return ensureDeferred(go())

    def test_wrong_password(self):
        async def go():
            with self.assertRaises(RegistryUnauthorized):
                await self.make_puller().pull(
                    self.ref, os.path.join(self.tempdir(), "l"), Credentials(USER, "nope")
                )

        return ensureDeferred(go())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed_token(workdir: str, service: str, issuer: str, repos: list[str]) -> tuple[str, str]:
    """A JWT the registry accepts: RS256 with the signing cert in ``x5c``; return (token, cert)."""
    key, cert = os.path.join(workdir, "key.pem"), os.path.join(workdir, "cert.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=kukeond-test-token-issuer",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with open(cert) as handle:
        pem = handle.read()
    der_b64 = "".join(line for line in pem.splitlines() if "-----" not in line)
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "x5c": [der_b64]}
    claims = {
        "iss": issuer,
        "sub": USER,
        "aud": service,
        "exp": now + 3600,
        "nbf": now - 60,
        "iat": now - 60,
        "jti": "kukeond-test",
        "access": [
            {"type": "repository", "name": repo, "actions": ["pull", "push"]} for repo in repos
        ],
    }
    signing_input = (
        _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
    )
    signature = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", key],
        input=signing_input.encode(),
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    return signing_input + "." + _b64url(signature), cert


class TokenResource(Resource):
    """Hand the pre-signed token to clients presenting the right basic credentials."""

    isLeaf = True

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.requests: list[dict] = []

    def render_GET(self, request):  # noqa: N802
        self.requests.append(
            {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        )
        if (request.getUser(), request.getPassword()) != (USER.encode(), PASSWORD.encode()):
            request.setResponseCode(401)
            return b'{"details":"bad credentials"}'
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"token": self.token, "expires_in": 3600}).encode()


class TokenAuthRegistryTests(_PullTestMixin, TestCase):
    timeout = 120

    async def _setUp(self):
        _require("openssl", "docker-registry", "skopeo")
        self.image = _busybox()
        token, cert = _signed_token(
            self.tempdir(), "kukeond-test", "kukeond-test-issuer", ["library/busybox"]
        )
        self.tokens = TokenResource(token)
        port = reactor.listenTCP(0, Site(self.tokens), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        realm = f"http://127.0.0.1:{port.getHost().port}/token"
        self.registry = Registry(
            self,
            {
                "token": {
                    "realm": realm,
                    "service": "kukeond-test",
                    "issuer": "kukeond-test-issuer",
                    "rootcertbundle": cert,
                }
            },
        )
        await self.registry.push(
            f"oci-archive:{self.image.oci_tar}", "library/busybox:latest", f"{USER}:{PASSWORD}"
        )
        self.tokens.requests.clear()
        self.ref = f"{self.registry.host}/library/busybox:latest"

    def setUp(self):
        return ensureDeferred(self._setUp())

    def test_token_flow(self):
        async def go():
            layout = os.path.join(self.tempdir(), "layout")
            result = await self.make_puller().pull(self.ref, layout, Credentials(USER, PASSWORD))
            self.assertEqual(result.manifest_digest, self.image.manifest_digest)
            self.assert_layout(layout, self.ref, "latest")
            # One token serves the manifest and every blob of the pull.
            self.assertEqual(
                self.tokens.requests,
                [{"scope": ["repository:library/busybox:pull"], "service": ["kukeond-test"]}],
            )

        return ensureDeferred(go())

    def test_token_refused(self):
        async def go():
            with self.assertRaises(RegistryUnauthorized):
                await self.make_puller().pull(
                    self.ref, os.path.join(self.tempdir(), "l"), Credentials(USER, "wrong")
                )

        return ensureDeferred(go())


class FakeRegistry(Resource):
    """Serves one manifest and its blobs; ``corrupt`` names blobs served with wrong bytes."""

    isLeaf = True

    def __init__(self, blobs: dict[str, bytes], manifest: bytes, corrupt: frozenset = frozenset()):
        super().__init__()
        self.blobs = blobs
        self.manifest = manifest
        self.corrupt = corrupt

    def render_GET(self, request):  # noqa: N802
        path = request.path.decode()
        if path == "/v2/t/img/manifests/1":
            request.setHeader(b"content-type", MEDIA_OCI_MANIFEST.encode())
            return self.manifest
        digest = path.rsplit("/", 1)[1]
        if digest not in self.blobs:
            request.setResponseCode(404)
            return b"{}"
        data = self.blobs[digest]
        if digest in self.corrupt:
            data = b"X" + data[1:]
        return data


class FakeRegistryTests(_PullTestMixin, TestCase):
    timeout = 60

    def serve(self, corrupt_layer: bool = False) -> tuple[str, bytes]:
        layer = os.urandom(5 << 20)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": _sha(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": _sha(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        blobs = {_sha(layer): layer, _sha(config): config}
        corrupt = frozenset({_sha(layer)}) if corrupt_layer else frozenset()
        port = reactor.listenTCP(
            0, Site(FakeRegistry(blobs, manifest, corrupt)), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        return f"127.0.0.1:{port.getHost().port}/t/img:1", layer

    def test_large_blob_streamed_and_verified(self):
        async def go():
            ref, layer = self.serve()
            layout = os.path.join(self.tempdir(), "layout")
            result = await self.make_puller().pull(ref, layout)
            path = os.path.join(layout, "blobs", "sha256", _sha(layer).split(":")[1])
            with open(path, "rb") as handle:
                self.assertEqual(handle.read(), layer)
            self.assertEqual(
                result.bytes_fetched,
                len(layer)
                + os.path.getsize(
                    os.path.join(layout, "blobs", "sha256", result.config_digest.split(":")[1])
                ),
            )

        return ensureDeferred(go())

    def test_corrupt_blob_rejected_and_removed(self):
        async def go():
            ref, layer = self.serve(corrupt_layer=True)
            layout = os.path.join(self.tempdir(), "layout")
            with self.assertRaises(ContentMismatch):
                await self.make_puller().pull(ref, layout)
            blobs = os.listdir(os.path.join(layout, "blobs", "sha256"))
            self.assertNotIn(_sha(layer).split(":")[1], blobs)
            self.assertEqual([b for b in blobs if b.endswith(".part")], [])
            self.assertFalse(os.path.exists(os.path.join(layout, "index.json")))

        return ensureDeferred(go())


class _ProducerTransport:
    def __init__(self):
        self.events = []

    def pauseProducing(self):  # noqa: N802
        self.events.append("pause")

    def resumeProducing(self):  # noqa: N802
        self.events.append("resume")

    def stopProducing(self):  # noqa: N802
        self.events.append("stop")


class BlobSinkTests(SynchronousTestCase):
    """Flow control and the idle timeout of the streaming writer, on a fake clock."""

    def setUp(self):
        self.clock = Clock()
        self.path = os.path.join(tempfile.mkdtemp(prefix="kukeond-sink-"), "blob")
        self.addCleanup(shutil.rmtree, os.path.dirname(self.path), True)
        self.held = []
        self.done = Deferred()
        self.transport = _ProducerTransport()

    def run_now(self, fn, *args, **kwargs):
        return succeed(fn(*args, **kwargs))

    def run_later(self, fn, *args, **kwargs):
        d = Deferred()
        self.held.append((d, fn, args, kwargs))
        return d

    def release(self):
        while self.held:
            d, fn, args, kwargs = self.held.pop(0)
            d.callback(fn(*args, **kwargs))

    def sink(self, run):
        sink = BlobSink(self.clock, self.path, run, 10, self.done, lambda size: None)
        sink.makeConnection(self.transport)
        return sink

    def test_pauses_while_writing_and_resumes(self):
        sink = self.sink(self.run_later)
        self.release()
        big = b"a" * (1 << 20)
        sink.dataReceived(big)
        self.assertEqual(self.transport.events, ["pause"])
        sink.dataReceived(b"tail")  # already in flight from the HTTP parser
        self.release()
        self.assertEqual(self.transport.events, ["pause", "resume"])
        sink.connectionLost(Failure(ResponseDone()))
        self.assertNoResult(self.done)
        self.release()
        size, hexdigest = self.successResultOf(self.done)
        self.assertEqual(size, len(big) + 4)
        self.assertEqual(hexdigest, hashlib.sha256(big + b"tail").hexdigest())
        with open(self.path, "rb") as handle:
            self.assertEqual(handle.read(), big + b"tail")

    def test_idle_timeout_stops_the_transfer(self):
        sink = self.sink(self.run_now)
        sink.dataReceived(b"x")
        self.clock.advance(9)
        sink.dataReceived(b"y")
        self.clock.advance(9)
        self.assertEqual(self.transport.events, [])
        self.clock.advance(2)
        self.assertEqual(self.transport.events, ["stop"])
        sink.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(self.done, PullError)

    def test_transport_error_fails(self):
        sink = self.sink(self.run_now)
        sink.dataReceived(b"x")
        sink.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(self.done, ConnectionDone)
        self.assertEqual(self.clock.getDelayedCalls(), [])
