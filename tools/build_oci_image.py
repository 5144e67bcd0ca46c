"""Build the kukeond OCI image offline: no registry, no docker.

``make oci-image`` (as root) runs::

    python -m tools.build_oci_image [--out .image/kukeond-oci.tar] [--ref REF]

and writes an OCI image-layout tarball that ``ctr images import`` and
``kuke image load`` read, named ``docker.io/kukeon/kukeond-py:0.5.0`` by
default. It is what ``kuke init --kukeond-image REF`` runs as the ``kukeond``
cell of the ``kuke-system`` realm (doc/install.md).

One layer, a Debian 12 root filesystem:

- ``mmdebstrap --variant=essential`` from Debian's archive, plus
  ``python3-minimal``, ``libpython3.11-stdlib``, ``iptables`` and
  ``iproute2`` (``ip``: bridge teardown) and ``containernetworking-plugins``,
  of which only the plugins kukeon's networks use are kept
  (``CNI_PLUGINS``), linked from ``/opt/cni/bin``. Documentation, man pages
  and locales are never unpacked (copyright files are kept).
- kukeond and its dependencies in a virtual environment at ``/opt/kukeond``:
  a wheel built from this checkout, and the dependency wheels at the
  versions installed in the project's ``.venv`` (downloaded once from PyPI
  into ``.image/cache/wheels``). Twisted's ``tls`` extra is left out: the
  daemon never speaks TLS in the cell.
- ``/bin/kukeond``: the daemon's command line (``kukeond [--configuration F]
  serve --socket … --run-path … --containerd-socket … [--socket-gid N]``,
  exactly what ``kuke init`` passes).
- ``/bin/kuketty`` when one is found (``--kuketty``, default
  ``$KUKEON_REFERENCE_BIN/kuketty`` or ``../shared/bin/kuketty``): the daemon
  stages it to ``<run-path>/bin/kuketty`` for attachable containers.

Reproducible: the same packages, wheels and sources give the same digest.
Every entry has mtime ``SOURCE_DATE_EPOCH`` (default: the last commit's
time), numeric owners, sorted order; ``.pyc`` files are made once, with
``PYTHONHASHSEED=0``, in ``checked-hash`` mode (no time stamps), and logs,
caches and the other run-time leftovers of the package installation are
removed. Debian package downloads are cached in ``.image/cache/debs``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.requirements import Requirement

from tools import ocilayout

REPO = Path(__file__).resolve().parents[1]
VERSION = "0.5.0"
REF = f"docker.io/kukeon/kukeond-py:{VERSION}"
SOURCE_URL = "https://github.com/kukeon/kukeond-py"
SUITE = "bookworm"
PYTHON = "python3.11"
PACKAGES = [
    "python3-minimal",
    f"lib{PYTHON}-stdlib",
    "iptables",
    "iproute2",
    "containernetworking-plugins",
    "libstdc++6",  # grpcio's extension module
    # init-system-helpers (iptables) takes usrmerge, and so perl, otherwise.
    "usr-is-merged",
]
CNI_PLUGINS = ["bridge", "host-local", "loopback", "portmap"]
"""Kept from Debian's ``/usr/lib/cni``: what kukeon's space networks use, and port maps."""
VENV = "opt/kukeond"
PATH_ENV = "PATH=/opt/kukeond/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DPKG_EXCLUDES = [
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
    # glibc's iconv modules: nothing in the image converts character sets with iconv.
    "path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*",
]
PURGE = [
    "usrmerge",
    "libfile-find-rule-perl",
    "libnumber-compare-perl",
    "libtext-glob-perl",
    "perl",
    "libperl5.36",
    "perl-modules-5.36",
    "libgdbm-compat4",
]
"""The essential set brings usrmerge (and with it perl) for init-system-helpers; the
root filesystem is merged already and ``usr-is-merged`` satisfies that dependency."""
ENTRYPOINT = f"""#!/{VENV}/bin/python
# kukeond, as kuke init runs it: /bin/kukeond [--configuration F] serve --socket S ...
import sys

from kukeond.cli import main

sys.exit(main())
"""
SKIP_PKG = {"kukeond"}


_STARTED = time.monotonic()


def log(message: str) -> None:
    """One progress line on stderr, with the seconds since the start."""
    print(
        f"build_oci_image: {time.monotonic() - _STARTED:4.0f}s {message}",
        file=sys.stderr,
        flush=True,
    )


def run(argv: list[str], **kwargs) -> None:
    """Run ``argv``; fail the build with its output when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )


def source_date_epoch() -> int:
    """``$SOURCE_DATE_EPOCH``, else the time of the checkout's last commit, else 0."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    done = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True
    )
    return int(done.stdout.strip() or 0)


def runtime_requirements() -> list[str]:
    """``name==version`` of kukeond's run-time dependencies, as installed in this environment.

    Walks the installed metadata from kukeond down, evaluating markers and
    taking no extras (so Twisted's ``tls`` extra is not followed).
    """
    pins: dict[str, str] = {}
    todo = [r for r in importlib.metadata.requires("kukeond") or []]
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        dist = importlib.metadata.distribution(req.name)
        name = dist.metadata["Name"]
        if name.lower() in pins or name.lower() in SKIP_PKG:
            continue
        pins[name.lower()] = f"{name}=={dist.version}"
        todo.extend(dist.requires or [])
    return sorted(pins.values())


def debian_rootfs(rootfs: Path, cache: Path, epoch: int, mirror: str | None) -> None:
    """``mmdebstrap`` the base system into ``rootfs``, reusing cached .debs."""
    if shutil.which("mmdebstrap") is None:
        raise SystemExit("mmdebstrap is not installed (apt-get install mmdebstrap)")
    cache.mkdir(parents=True, exist_ok=True)
    argv = [
        "mmdebstrap",
        "--quiet",
        "--variant=essential",
        "--mode=root",
        "--format=directory",
        f"--include={','.join(PACKAGES)}",
        "--aptopt=APT::Install-Recommends false",
        *[f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES],
        "--skip=essential/unlink",
        f'--setup-hook=mkdir -p "$1"/var/cache/apt/archives && '
        f'cp -a {cache}/. "$1"/var/cache/apt/archives/',
        f'--customize-hook=find "$1"/var/cache/apt/archives -maxdepth 1 -name "*.deb" '
        f"-exec cp -a -t {cache} {{}} +",
        f'--customize-hook=chroot "$1" dpkg --purge {" ".join(PURGE)}',
        SUITE,
        str(rootfs),
    ]
    if mirror:
        argv.append(mirror)
    run(argv, env=dict(os.environ, SOURCE_DATE_EPOCH=str(epoch)))


def python_env(rootfs: Path, wheels: Path, work: Path) -> None:
    """kukeond and its dependencies in a venv at ``/opt/kukeond`` of the rootfs."""
    wheels.mkdir(parents=True, exist_ok=True)
    pins = runtime_requirements()
    missing = [
        p
        for p in pins
        if not any(
            w.name.lower().startswith(
                p.split("==")[0].lower().replace("-", "_").replace(".", "_")
                + "-"
                + p.split("==")[1]
            )
            for w in wheels.glob("*.whl")
        )
    ]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    if missing:
        log(f"downloading {len(missing)} wheels: {' '.join(missing)}")
        run(
            [
                *pip,
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--platform",
                "manylinux2014_x86_64",
                "--platform",
                "manylinux_2_17_x86_64",
                "--platform",
                "manylinux_2_28_x86_64",
                "-d",
                str(wheels),
                *missing,
            ]
        )
    # The wheel of this checkout, built from a copy of the package's files only.
    src = work / "src"
    shutil.copytree(
        REPO / "kukeond", src / "kukeond", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    (src / "twisted" / "plugins").mkdir(parents=True)
    shutil.copy2(REPO / "twisted" / "plugins" / "kukeond_plugin.py", src / "twisted" / "plugins")
    shutil.copy2(REPO / "setup.py", src)
    ours = work / "wheels"
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(ours), str(src)])
    venv = rootfs / VENV
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / PYTHON / "site-packages").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(
        f"home = /usr/bin\ninclude-system-site-packages = false\nversion = "
        f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}\n"
    )
    os.symlink("/usr/bin/python3", venv / "bin" / "python3")
    os.symlink("python3", venv / "bin" / "python")
    os.symlink("lib", venv / "lib64")
    run(
        [
            *pip,
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "--no-compile",
            "--no-warn-script-location",
            "--find-links",
            str(wheels),
            "--find-links",
            str(ours),
            *pins,
            f"kukeond=={VERSION}",
        ],
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    # Test suites of the dependencies (Twisted's alone is 20 MB) are never imported.
    site = venv / "lib" / PYTHON / "site-packages"
    for tests in sorted(site.glob("twisted/**/test"), reverse=True):
        shutil.rmtree(tests)
    # Console scripts would name the build directory in their #! line; the image
    # needs only /bin/kukeond.
    for script in (venv / "bin").iterdir():
        if not script.name.startswith("python"):
            script.unlink()
    for record in site.glob("*.dist-info/RECORD"):
        lines = record.read_text().splitlines(keepends=True)
        record.write_text("".join(line for line in lines if not line.startswith("../../../bin/")))


def finish_rootfs(rootfs: Path, kuketty: str | None) -> None:
    """Entry point, kuketty, CNI links; then remove what would differ from build to build."""
    entry = rootfs / "bin" / "kukeond"
    entry.write_text(ENTRYPOINT)
    entry.chmod(0o755)
    if kuketty:
        shutil.copyfile(kuketty, rootfs / "bin" / "kuketty")
        (rootfs / "bin" / "kuketty").chmod(0o755)
    cni = rootfs / "usr" / "lib" / "cni"
    for plugin in cni.iterdir():
        if plugin.name not in CNI_PLUGINS:
            plugin.unlink()
    opt_cni = rootfs / "opt" / "cni" / "bin"
    opt_cni.mkdir(parents=True, exist_ok=True)
    for plugin in CNI_PLUGINS:
        os.symlink(f"/usr/lib/cni/{plugin}", opt_cni / plugin)
    for name in ("net.d", "cache"):
        (rootfs / "opt" / "cni" / name).mkdir(exist_ok=True)
    for directory in ("var/cache", "var/log", "var/lib/apt/lists", "tmp", "run"):
        path = rootfs / directory
        for child in path.iterdir() if path.is_dir() else ():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    for leftover in [
        *(rootfs / "var" / "lib" / "dpkg").glob("*-old"),
        rootfs / "etc" / "ld.so.cache",
        rootfs / "var" / "lib" / "dbus" / "machine-id",
        rootfs / "etc" / "resolv.conf",
        rootfs / "etc" / "hostname",
        rootfs / "etc" / "hosts",
    ]:
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    (rootfs / "etc" / "machine-id").write_text("")
    # ld.so.cache is made afresh: its bytes depend on the order of directory reads.
    run(["chroot", str(rootfs), "/sbin/ldconfig"])
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(rootfs / "var" / "cache" / "ldconfig")
    for pycache in sorted(rootfs.rglob("__pycache__"), reverse=True):
        shutil.rmtree(pycache)
    run(
        [
            "chroot",
            str(rootfs),
            "/usr/bin/python3",
            "-m",
            "compileall",
            "-q",
            "-j",
            "1",
            "--invalidation-mode",
            "checked-hash",
            f"/usr/lib/{PYTHON}",
            f"/{VENV}/lib/{PYTHON}/site-packages",
        ],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"},
    )


def image_config(epoch: int, source_url: str) -> dict:
    """The image configuration (``rootfs`` is added by ``ocilayout.image_blobs``)."""
    from kukeond.containerd.reference import host_platform

    os_name, arch = host_platform()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    return {
        "architecture": arch,
        "os": os_name,
        "created": created,
        "config": {
            "Env": [PATH_ENV, "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"],
            "Cmd": ["/bin/kukeond", "serve"],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.version": VERSION,
                "org.opencontainers.image.source": source_url,
                "org.opencontainers.image.title": "kukeond",
                "org.opencontainers.image.description": (
                    "kukeond, the kukeon daemon in Python on Twisted, for kuke init"
                ),
                "org.opencontainers.image.created": created,
            },
        },
        "history": [
            {
                "created": created,
                "created_by": f"tools/build_oci_image.py (Debian {SUITE}, kukeond {VERSION})",
            }
        ],
    }


def default_kuketty() -> str | None:
    """The reference kuketty when present (``$KUKEON_REFERENCE_BIN`` or ``../shared/bin``)."""
    directory = os.environ.get("KUKEON_REFERENCE_BIN") or str(REPO.parent / "shared" / "bin")
    path = os.path.join(directory, "kuketty")
    return path if os.access(path, os.X_OK) else None


def build(
    out: str,
    ref: str = REF,
    cache: str | None = None,
    kuketty: str | None = None,
    source_url: str = SOURCE_URL,
    mirror: str | None = None,
    keep: bool = False,
) -> tuple[str, str]:
    """Build the image tarball at ``out``; return ``(out, manifest digest)``."""
    if os.geteuid() != 0:
        raise SystemExit("building the image needs root (mmdebstrap --mode=root, chroot)")
    started = time.monotonic()
    epoch = source_date_epoch()
    out_path = Path(out).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache).resolve() if cache else out_path.parent / "cache"
    work = Path(tempfile.mkdtemp(prefix="kukeond-oci-", dir=out_path.parent))
    try:
        rootfs = work / "rootfs"
        log(f"Debian {SUITE} root filesystem (mmdebstrap)")
        debian_rootfs(rootfs, cache_dir / "debs", epoch, mirror)
        log("kukeond and its dependencies in /opt/kukeond")
        python_env(rootfs, cache_dir / "wheels", work)
        log("entry point, CNI plugins, byte code")
        finish_rootfs(rootfs, kuketty)
        log("layer")
        layer = ocilayout.directory_layer(str(rootfs), str(work / "layer.tar.gz"), epoch)
        config, manifest = ocilayout.image_blobs(image_config(epoch, source_url), [layer])
        ocilayout.write_layout_tar(str(out_path), ref, config, manifest, [layer], epoch)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    size = out_path.stat().st_size
    log(
        f"{out_path}: {ref} manifest {manifest.digest}, layer {layer.size / 1e6:.1f} MB "
        f"compressed ({size / 1e6:.1f} MB tarball), {time.monotonic() - started:.0f} s"
    )
    return str(out_path), manifest.digest


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.build_oci_image", description="Build the kukeond OCI image offline."
    )
    parser.add_argument("--out", default=str(REPO / ".image" / "kukeond-oci.tar"))
    parser.add_argument("--ref", default=REF, help=f"image name (default {REF})")
    parser.add_argument("--cache", help="download cache (default: .image/cache beside --out)")
    parser.add_argument(
        "--kuketty",
        default=default_kuketty(),
        help="kuketty binary to ship as /bin/kuketty (default: the reference's)",
    )
    parser.add_argument(
        "--source-url", default=SOURCE_URL, help="org.opencontainers.image.source label"
    )
    parser.add_argument("--mirror", help="Debian mirror (default: mmdebstrap's)")
    parser.add_argument("--keep", action="store_true", help="keep the build directory")
    args = parser.parse_args(argv)
    if not args.kuketty:
        log("no kuketty found: the image has none (attachable containers will fail)")
    path, manifest = build(
        args.out, args.ref, args.cache, args.kuketty, args.source_url, args.mirror, args.keep
    )
    print(path)
    print(f"{args.ref} manifest {manifest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
