"""``kuke init`` runs our daemon as the ``kukeond`` cell of the system realm.

The real ``kuke`` v0.5.0 bootstraps a host on a private containerd 2.2 with
our OCI image (``tools/build_oci_image.py``; ``.image/kukeond-oci.tar`` when
``.ci/run`` or ``make oci-image`` made it, else built here), then drives the
daemon it started on ``/run/kukeon/kukeond.sock``:

1. ``kuke init --kukeond-image REF``: the realms ``default`` and
   ``kuke-system`` are listed, and ``KukeonV1.Status`` (ours only) answers.
2. In ``default``: a cell is created, started, logged and deleted; its
   cgroup appears in the host's v1 hierarchies and its CNI network comes
   up, all done by the daemon from inside its cell.
3. ``kuke daemon logs`` shows the daemon's own log; ``kuke daemon stop``,
   ``start`` and ``restart`` manage it; a cell keeps running across them,
   its task untouched (same pids).
4. ``kuke uninstall -y --no-daemon`` removes it all again.

containerd, and every ``kuke`` and client of the test, runs in a network
namespace and a mount namespace of the test's own (``nsenter --net --mount``;
not ``ip netns exec``, which remounts ``/sys`` and hides the cgroup mounts):
the system cell is host-network, and ``kuke daemon restart`` v0.5.0 takes
``lo`` down in containerd's network namespace. In the mount namespace the
fixed paths ``kuke init`` uses (``/run/kukeon``, ``/opt/cni``,
``/var/lib/cni``, ``/var/lib/containerd``) are empty tmpfs, so the host's are
neither read nor changed and tests that start the Go daemon at the same time
(which do the same for ``/opt/cni``) are not disturbed. What stays shared is
removed at cleanup: the ``/kukeon`` cgroups (the test skips when they exist
before) and the ``kukeon`` user and group.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time

from twisted.trial.unittest import SkipTest, TestCase

from tests.containerd.ocispec import remove_cgroup_tree
from tests.support import reference
from tests.support.image import busybox_image
from tests.support.reference import REPO_ROOT
from tools.private_containerd import PrivateContainerd, PrivateContainerdError

SOCKET = "/run/kukeon/kukeond.sock"
HOST = f"unix://{SOCKET}"
CGROUP_ROOT = "/kukeon"
CGROUP_FS = "/sys/fs/cgroup"
SYSTEM_NS = "kuke-system.kukeon.io"
DEFAULT_NS = "default.kukeon.io"
BUSYBOX = "docker.io/library/busybox:latest"
IMAGE_TAR = REPO_ROOT / ".image" / "kukeond-oci.tar"
PRIVATE_DIRS = ("/run/kukeon", "/opt/cni", "/var/lib/cni", "/var/lib/containerd")
"""Paths ``kuke init`` uses, each an empty tmpfs (or under one) in the test's mount namespace."""
MOUNT_SCRIPT = " && ".join([
    'for d in ' + " ".join(PRIVATE_DIRS) + '; do m=$d; [ -d "$m" ] || m=$(dirname "$d"); '
    'mount -t tmpfs -o mode=0755 kukeon-init-test "$m"; done',
    "mkdir -p " + " ".join(PRIVATE_DIRS),
    'touch "$1"',
    "exec sleep infinity",
])  # fmt: skip
LOOP = "echo hello-from-{name}; trap 'exit 0' TERM; while :; do sleep 0.2; done"


def kukeond_image() -> tuple[str, str]:
    """``(tarball, ref)`` of our image: the prebuilt one, else built now (minutes)."""
    from tools import build_oci_image

    if not IMAGE_TAR.exists():
        if shutil.which("mmdebstrap") is None:
            reference.unavailable(
                f"{IMAGE_TAR} is missing and mmdebstrap is not installed "
                "(apt-get install mmdebstrap; make oci-image)"
            )
        try:
            build_oci_image.build(str(IMAGE_TAR), kuketty=build_oci_image.default_kuketty())
        except SystemExit as e:
            reference.unavailable(f"cannot build the kukeond image: {e}")
    return str(IMAGE_TAR), build_oci_image.REF


def cell_document(name: str) -> str:
    """A cell of one busybox container in default/default/default printing one line."""
    return json.dumps({
        "apiVersion": "v1beta1", "kind": "Cell", "metadata": {"name": name},
        "spec": {
            "id": name, "realmId": "default", "spaceId": "default", "stackId": "default",
            "containers": [{"id": "app", "image": BUSYBOX, "command": "sh",
                            "args": ["-c", LOOP.format(name=name)]}],
        },
    })  # fmt: skip


def cgroup_dirs(*parts: str) -> list[str]:
    """The v1 hierarchies (and the unified one) holding ``/kukeon/PARTS``."""
    found = []
    for hierarchy in sorted(os.listdir(CGROUP_FS)):
        if os.path.isdir(os.path.join(CGROUP_FS, hierarchy, CGROUP_ROOT.lstrip("/"), *parts)):
            found.append(hierarchy)
    return found


def wait_until(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.2 s; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s: {what}")
        time.sleep(0.2)


class KukeInitTest(TestCase):
    """``kuke init`` with our image, then the real ``kuke`` against the daemon it started."""

    timeout = 600

    def setUp(self):
        if os.geteuid() != 0:
            raise SkipTest("kuke init needs root")
        self.kuke_bin = reference.reference_bin("kuke")
        self.ctr_bin = reference.reference_bin("ctr")
        containerd = reference.reference_bin("containerd")
        for tool in ("runc", "nsenter", "unshare", "ip", "iptables", "useradd"):
            if shutil.which(tool) is None:
                reference.unavailable(f"{tool} is not installed")
        if cgroup_dirs():
            raise SkipTest(f"the cgroup {CGROUP_ROOT} exists: kukeon is in use on this host")
        with contextlib.suppress(KeyError):
            pwd.getpwnam("kukeon")
            raise SkipTest("a 'kukeon' user exists: kukeon is installed on this host")
        self.image_tar, self.ref = kukeond_image()
        self.busybox = busybox_image().oci_tar
        token = secrets.token_hex(3)
        self.dir = tempfile_dir(self, "kki-")
        self.run_path = os.path.join(self.dir, "run")
        self.config = os.path.join(self.dir, "etc", "kukeond.yaml")
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)
        self.addCleanup(self.remove_system_user)
        self.addCleanup(remove_cgroup_tree, CGROUP_ROOT)
        self.netns = f"kukeon-init-{token}"
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "delete", self.netns], capture_output=True)
        self.mount_holder()
        self.nsenter = [
            "nsenter",
            f"--mount=/proc/{self.holder.pid}/ns/mnt",
            f"--net=/var/run/netns/{self.netns}",
            "--",
        ]
        subprocess.run([*self.nsenter, "ip", "link", "set", "lo", "up"], check=True)
        self.containerd = PrivateContainerd(
            os.path.join(self.dir, "ctrd"), binary=containerd, wrapper=self.nsenter
        )
        self.addCleanup(self.stop_containerd)
        try:
            self.address = self.containerd.start()
        except PrivateContainerdError as e:
            reference.unavailable(f"containerd 2.2 did not start: {e}")
        for ns in (SYSTEM_NS, DEFAULT_NS):
            self.ctr("-n", ns, "images", "import", self.busybox)
        self.ctr("-n", SYSTEM_NS, "images", "import", self.image_tar)

    def mount_holder(self) -> None:
        """A process holding the test's mount namespace, with the private tmpfs mounts."""
        ready = os.path.join(self.dir, "mounts-ready")
        self.holder = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                MOUNT_SCRIPT,
                "sh",
                ready,
            ],
            stdin=subprocess.DEVNULL,
        )

        def stop_holder() -> None:
            self.holder.kill()
            self.holder.wait()

        self.addCleanup(stop_holder)
        wait_until(
            lambda: os.path.exists(ready) or self.holder.poll() is not None,
            10,
            "the mount namespace",
        )
        if self.holder.poll() is not None:
            self.fail("could not make the test's mount namespace")

    def remove_system_user(self) -> None:
        """The ``kukeon`` user and group, when the test made them and uninstall did not go."""
        with contextlib.suppress(KeyError):
            pwd.getpwnam("kukeon")
            subprocess.run(["userdel", "kukeon"], capture_output=True)
        with contextlib.suppress(KeyError):
            grp.getgrnam("kukeon")
            subprocess.run(["groupdel", "kukeon"], capture_output=True)

    def stop_containerd(self) -> None:
        """Kill every task and stop containerd, so no shim keeps a cgroup or mount."""
        if self.containerd.running:
            for ns in self.ctr("namespaces", "list", "-q", check=False).split():
                for cid in self.ctr("-n", ns, "tasks", "list", "-q", check=False).split():
                    self.ctr("-n", ns, "tasks", "kill", "-s", "SIGKILL", cid, check=False)
                    self.ctr("-n", ns, "tasks", "delete", "-f", cid, check=False)
                for cid in self.ctr("-n", ns, "containers", "list", "-q", check=False).split():
                    self.ctr("-n", ns, "containers", "delete", cid, check=False)
        self.containerd.stop(remove=True)

    # Commands.

    def ctr(self, *args: str, check: bool = True) -> str:
        """``ctr --address A ARGS``: its stdout."""
        done = subprocess.run(
            [self.ctr_bin, "--address", self.address, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            self.fail(f"ctr {' '.join(args)}: {done.stderr}")
        return done.stdout

    def kuke(
        self, *args: str, daemon: bool = True, ok: bool = True, timeout: float = 120
    ) -> reference.KukeResult:
        """The real ``kuke ARGS`` in the test's network namespace, with its own HOME.

        ``daemon``: against ``/run/kukeon/kukeond.sock``; otherwise with the run
        path and containerd socket (init, daemon, uninstall act in-process).
        """
        where = (
            ["--host", HOST]
            if daemon
            else ["--run-path", self.run_path, "--containerd-socket", self.address]
        )
        argv = [*self.nsenter, self.kuke_bin, *args, *where]
        env = dict(os.environ, HOME=self.home)
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            self.fail(f"kuke {' '.join(args)} did not finish in {timeout:g} s: {e.stderr!r}")
        result = reference.KukeResult(done.returncode, done.stdout, done.stderr)
        if ok and result.code != 0:
            self.fail(
                f"kuke {' '.join(args)} failed ({result.code}): {result.stderr}"
                f"{result.stdout}\n{self.daemon_logs()}"
            )
        return result

    def daemon_logs(self) -> str:
        """The end of the kukeond cell's log, for failure messages."""
        done = self.kuke("daemon", "logs", daemon=False, ok=False)
        return f"kuke daemon logs:\n{(done.stdout + done.stderr)[-3000:]}"

    def status(self) -> dict:
        """``KukeonV1.Status`` through our client."""
        done = subprocess.run(
            [
                *self.nsenter,
                sys.executable,
                "-m",
                "kukeond.client",
                "--host",
                HOST,
                "call",
                "Status",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(done.returncode, 0, f"Status: {done.stderr}")
        return json.loads(done.stdout)

    def pinged(self) -> bool:
        """Whether a daemon answers Ping on the socket."""
        done = subprocess.run(
            [*self.nsenter, sys.executable, "-m", "kukeond.client", "--host", HOST, "ping"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.returncode == 0

    def tasks(self, ns: str) -> dict[str, str]:
        """``{container id: pid}`` of the running tasks in ``ns``."""
        rows = self.ctr("-n", ns, "tasks", "list").splitlines()[1:]
        return {
            row.split()[0]: row.split()[1]
            for row in rows
            if row.split() and row.split()[2] == "RUNNING"
        }

    # The test.

    def test_kuke_init_daemon_lifecycle_and_uninstall(self):
        started = time.monotonic()
        init = self.kuke(
            "init",
            "--kukeond-image",
            self.ref,
            "--server-configuration",
            self.config,
            daemon=False,
            timeout=180,
        )
        self.assertIn("kukeond is ready", init.stdout)
        realms = self.kuke("get", "realms").stdout
        for realm in ("default", "kuke-system"):
            self.assertIn(realm, realms)
        status = self.status()
        self.assertIn("containerd", json.dumps(status), "Status is our daemon's method")
        self.assertIn("kukeond listening", self.daemon_logs())
        # The system cell runs the image's /bin/kukeond with the arguments kuke init gave.
        system = self.tasks(SYSTEM_NS)
        self.assertIn("kukeon_kukeon_kukeond_kukeond", system)

        # A cell in the default realm, from inside the daemon's cell.
        self.kuke("apply", "-f", self.write("once.json", cell_document("once")))
        wait_until(
            lambda: "default_default_once_app" in self.tasks(DEFAULT_NS),
            30,
            "the applied cell's task",
        )
        self.kuke("stop", "cell", "once")
        self.assertNotIn("default_default_once_app", self.tasks(DEFAULT_NS))
        self.kuke("start", "cell", "once")
        wait_until(
            lambda: "hello-from-once" in self.kuke("log", "once", ok=False).stdout,
            30,
            "the cell's log line",
        )
        self.assertTrue(
            cgroup_dirs("default", "default", "default", "once"),
            "the cell's cgroup is in the host's hierarchies",
        )
        cell = json.loads(self.kuke("get", "cell", "once", "-o", "json").stdout)
        self.assertEqual(cell["status"]["state"], "Ready", cell)
        self.kuke("delete", "cell", "once")
        self.assertNotIn("default_default_once_app", self.tasks(DEFAULT_NS))
        self.assertFalse(cgroup_dirs("default", "default", "default", "once"))

        # The daemon, managed by kuke daemon; a cell runs on untouched.
        self.kuke("apply", "-f", self.write("keep.json", cell_document("keep")))
        wait_until(
            lambda: "default_default_keep_app" in self.tasks(DEFAULT_NS), 30, "the keep cell's task"
        )
        workloads = self.tasks(DEFAULT_NS)
        self.kuke("daemon", "stop", daemon=False)
        wait_until(lambda: not self.pinged(), 30, "the daemon stopped")
        self.kuke("daemon", "start", daemon=False)
        wait_until(self.pinged, 60, "the daemon started again")
        before = self.tasks(SYSTEM_NS)
        self.kuke("daemon", "restart", daemon=False)
        wait_until(self.pinged, 60, "the daemon restarted")
        lo = subprocess.run(
            [*self.nsenter, "ip", "-o", "link", "show", "lo"], capture_output=True, text=True
        ).stdout
        if "UP" not in lo.split(">")[0]:  # kuke daemon restart v0.5.0 (../shared/bin/README.md)
            print(
                "kuke daemon restart took lo down in containerd's network namespace",
                file=sys.stderr,
            )
            subprocess.run([*self.nsenter, "ip", "link", "set", "lo", "up"], check=True)
        self.assertNotEqual(self.tasks(SYSTEM_NS), before, "restart made a new daemon task")
        self.status()
        self.assertEqual(self.tasks(DEFAULT_NS), workloads, "cells kept running, not recreated")
        self.assertIn("keep", self.kuke("get", "cells").stdout)

        # Uninstall removes it all.
        done = self.kuke("uninstall", "-y", "--no-daemon", daemon=False, timeout=180, ok=False)
        if done.code != 0 and "must be empty" in done.stderr:
            # The reference deletes the realm's images, then at once its namespace,
            # racing containerd's collection of the image's snapshots: a second run
            # finds them gone.
            time.sleep(2)
            done = self.kuke("uninstall", "-y", "--no-daemon", daemon=False, timeout=180)
        self.assertEqual(done.code, 0, done.stderr)
        self.assertFalse(self.pinged())
        namespaces = self.ctr("namespaces", "list", "-q").split()
        self.assertNotIn(SYSTEM_NS, namespaces)
        self.assertEqual(self.tasks(DEFAULT_NS) if DEFAULT_NS in namespaces else {}, {})
        self.assertFalse(os.path.exists(os.path.join(self.run_path, "data")))
        self.assertRaises(KeyError, pwd.getpwnam, "kukeon")
        print(f"kuke init test: {time.monotonic() - started:.0f} s", file=sys.stderr)

    def write(self, name: str, content: str) -> str:
        """A file in the test's directory."""
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(content)
        return path


def tempfile_dir(test, prefix: str) -> str:
    """A short temp dir (unix socket paths are limited), removed at cleanup."""
    import tempfile

    path = tempfile.mkdtemp(prefix=prefix)
    test.addCleanup(shutil.rmtree, path, True)
    return path
