"""Build a busybox test image offline from Debian's busybox-static.

The image (``docker.io/library/busybox:latest``) has one layer: ``/bin/busybox``
with every applet as a symlink beside it (``/bin/sh``, ``/bin/sleep``,
``/bin/true`` ...), a few empty system directories and a config with
``Cmd ["sh"]`` and a ``PATH``. It is written as an OCI image-layout tarball,
a docker-save tarball and an OCI image-layout directory. The bytes are
deterministic: the same busybox binary gives the same digests.

CLI: ``python -m tests.support.image --out DIR``.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass

from kukeond.containerd.reference import host_platform
from tools import ocilayout

BUSYBOX = "/bin/busybox"
REF = "docker.io/library/busybox:latest"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class BusyboxImage:
    """Paths of one built image, in every supported form."""

    ref: str
    oci_tar: str
    docker_tar: str
    oci_dir: str
    manifest_digest: str
    config_digest: str
    layer_digest: str
    diff_id: str


_digest = ocilayout.digest
_tar = ocilayout.tar_bytes


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644) -> tarfile.TarInfo:
    return ocilayout.tar_info(name, kind, mode)


def _applets() -> list[str]:
    listed = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True)
    return sorted({name for name in listed.stdout.split() if name and "/" not in name})


def layer_tar() -> bytes:
    """The uncompressed root filesystem layer."""
    with open(BUSYBOX, "rb") as f:
        binary = f.read()
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for directory, mode in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
    ]:
        entries.append((_info(directory + "/", tarfile.DIRTYPE, mode), None))
    entries.append((_info("bin/busybox", mode=0o755), binary))
    for applet in _applets():
        if applet == "busybox":
            continue
        link = _info(f"bin/{applet}", tarfile.SYMTYPE, 0o777)
        link.linkname = "busybox"
        entries.append((link, None))
    entries.append((_info("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n"))
    entries.append((_info("etc/group"), b"root:x:0:\n"))
    return _tar(entries)


def build(out: str) -> BusyboxImage:
    """Write the image forms under ``out`` (created if needed) and describe them."""
    os.makedirs(out, exist_ok=True)
    raw_layer = layer_tar()
    layer = ocilayout.layer_blob(raw_layer)
    diff_id = layer.diff_id
    os_name, arch = host_platform()
    config_blob, manifest_blob = ocilayout.image_blobs(
        {
            "architecture": arch,
            "os": os_name,
            "created": "1970-01-01T00:00:00Z",
            "config": {"Env": [PATH_ENV], "Cmd": ["sh"]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "busybox-static"}],
        },
        [layer],
    )
    config = config_blob.data
    oci_dir = os.path.join(out, "busybox-oci")
    shutil.rmtree(oci_dir, ignore_errors=True)
    ocilayout.write_layout_dir(oci_dir, REF, config_blob, manifest_blob, [layer])
    oci_tar = os.path.join(out, "busybox-oci.tar")
    ocilayout.write_layout_tar(oci_tar, REF, config_blob, manifest_blob, [layer])
    layer_id = _digest(raw_layer)[7:]
    docker_manifest = json.dumps(
        [
            {
                "Config": f"{_digest(config)[7:]}.json",
                "RepoTags": ["busybox:latest"],
                "Layers": [f"{layer_id}/layer.tar"],
            }
        ]
    ).encode()
    docker_entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (_info(f"{layer_id}/", tarfile.DIRTYPE, 0o755), None),
        (_info(f"{layer_id}/layer.tar"), raw_layer),
        (_info(f"{_digest(config)[7:]}.json"), config),
        (_info("manifest.json"), docker_manifest),
        (_info("repositories"), json.dumps({"busybox": {"latest": layer_id}}).encode()),
    ]
    docker_tar = os.path.join(out, "busybox-docker.tar")
    with open(docker_tar, "wb") as f:
        f.write(_tar(docker_entries))
    return BusyboxImage(
        REF,
        oci_tar,
        docker_tar,
        oci_dir,
        manifest_blob.digest,
        config_blob.digest,
        layer.digest,
        diff_id,
    )


@functools.cache
def busybox_image() -> BusyboxImage:
    """Build the image once per process under a temp dir removed at exit."""
    if not os.path.exists(BUSYBOX):
        from twisted.trial.unittest import SkipTest

        raise SkipTest(f"{BUSYBOX} is missing (apt-get install busybox-static)")
    out = tempfile.mkdtemp(prefix="kukeond-test-image-")
    atexit.register(shutil.rmtree, out, True)
    return build(out)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Build the busybox test image offline.")
    parser.add_argument("--out", required=True, help="directory to write the image forms to")
    args = parser.parse_args(argv)
    image = build(args.out)
    for form in (image.oci_tar, image.docker_tar, image.oci_dir):
        print(form)
    print(f"{image.ref} manifest {image.manifest_digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
