"""Runtimes for controller tests: all fakes, or the real containerd, cgroups and CNI.

``fake_runtime(test)`` needs nothing from the host. ``real_runtime(test)``
uses the private test containerd, the host's cgroupfs under a unique root
(``/kukeon-test-<id>``), and CNI with private cache/IPAM directories and a
subnet pool no host route uses; everything it creates is removed at cleanup,
even when the test fails. Realm namespaces get a unique suffix per test, so
``purge_test_namespaces`` can find and remove exactly this test's objects.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile

from twisted.internet import defer

from kukeond.base import naming
from kukeond.config import DaemonConfig
from kukeond.containerd import errors as cerrors
from kukeond.controller.runtime import Runtime
from kukeond.host.cgroups import detect_cgroups
from kukeond.host.cninetwork import CniNetwork
from kukeond.host.subnets import SubnetAllocator
from kukeond.store.metadata import MetadataStore
from tests.support.fake_cgroups import FakeCgroups
from tests.support.fake_containerd import FakeContainerd
from tests.support.fake_network import FakeNetwork


def short_tmpdir(test, prefix: str = "kt-") -> str:
    """A temp dir with a short path (socket paths are limited), removed at cleanup."""
    path = tempfile.mkdtemp(prefix=prefix)
    test.addCleanup(shutil.rmtree, path, True)
    return path


def test_config(run_path: str, cgroup_root: str | None = None) -> DaemonConfig:
    """A daemon configuration for one test: its own run path, suffix and cgroup root."""
    token = secrets.token_hex(3)
    return DaemonConfig(
        configuration=os.path.join(run_path, "absent.yaml"),
        socket=os.path.join(run_path, "kukeond.sock"),
        run_path=run_path,
        namespace_suffix=f"t{token}.kukeon.test",
        cgroup_root=cgroup_root or f"/kukeon-test-{token}",
        reconcile_interval="0",
        # No test pulls from a registry it did not start itself.
        pull_policy="never",
    )


def fake_runtime(test, reactor=None, watch=False) -> Runtime:
    """A runtime of fakes with an inline store under a temp run path.

    ``watch``: the store trusts inotify, as the daemon's does.
    """
    if reactor is None:
        from twisted.internet import reactor
    run_path = short_tmpdir(test)
    config = test_config(run_path)
    store = MetadataStore(run_path, inline=True, reactor=reactor, watch=watch)
    if watch:
        test.addCleanup(store.stop)
    store.load()
    return Runtime(
        config=config,
        store=store,
        containerd=FakeContainerd(),
        cgroups=FakeCgroups(),
        network=FakeNetwork(run_path),
        reactor=reactor,
    )


HOST_NETWORK_LOCK = "/run/lock/kukeond-test-host-network.lock"


def hold_host_network(test) -> None:
    """Serialise tests that build bridges across trial workers.

    Bridge names derive from realm and space names only (``k-<fnv(R-S)>``), so
    two workers running tests with the same names would fight over one bridge.
    """
    import fcntl

    if getattr(test, "_holds_host_network", False):
        return  # a second flock on a new handle would wait for the first forever
    os.makedirs(os.path.dirname(HOST_NETWORK_LOCK), exist_ok=True)
    handle = open(HOST_NETWORK_LOCK, "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    test._holds_host_network = True
    test.addCleanup(handle.close)


def real_runtime(test) -> Runtime:
    """A runtime on the private containerd, the real cgroupfs and real CNI plugins."""
    from twisted.internet import reactor

    from kukeond.containerd.grpc import GrpcContainerd
    from tests.network.hostenv import free_parent_cidr, preserve_ip_forward, remove_masquerade
    from tests.support.containerd import get_containerd_socket

    if os.geteuid() != 0:
        test.skipTest("the real runtime needs root")
    socket = get_containerd_socket()
    hold_host_network(test)
    run_path = short_tmpdir(test)
    config = test_config(run_path)
    config.containerd_socket = socket
    client = GrpcContainerd(socket, reactor=reactor)
    client.start()
    store = MetadataStore(run_path, reactor=reactor)
    store.load()
    store.start()
    cgroups = detect_cgroups()
    state = short_tmpdir(test, "kcni-")
    network = CniNetwork(
        reactor,
        run_path,
        plugin_dirs=config.cni_plugin_dirs.split(":"),
        cache_dir=os.path.join(state, "cache"),
        ipam_dir=os.path.join(state, "ipam"),
        legacy_results_dir=os.path.join(state, "results"),
        allocator=SubnetAllocator(run_path, parent_cidr=free_parent_cidr()),
    )
    preserve_ip_forward(test)
    runtime = Runtime(config, store, client, cgroups, network, reactor)

    @defer.inlineCallbacks
    def cleanup():
        for realm, space in store.keys(2):
            remove_masquerade(naming.network_name(realm, space))
            try:
                yield network.remove_space_network(realm, space)
            except Exception:  # noqa: BLE001 - best effort: the test may have removed it
                pass
        yield purge_test_namespaces(client, config.namespace_suffix)
        yield defer.maybeDeferred(store.stop)
        yield client.stop()
        remove_cgroup_tree(cgroups, config.cgroup_root)

    test.addCleanup(cleanup)
    return runtime


async def purge_daemon_host(daemon) -> None:
    """Stop a test's daemon process, then remove its containerd namespaces and cgroups.

    ``daemon`` is a ``tests.support.daemon.OurKukeond`` or a
    ``tests.support.reference.GoKukeond``.
    """
    from twisted.internet import reactor, threads

    from kukeond.containerd.grpc import GrpcContainerd
    from tests.containerd.ocispec import remove_cgroup_tree as remove_everywhere

    await threads.deferToThread(daemon.stop)
    client = GrpcContainerd(daemon.containerd_socket, reactor=reactor, call_timeout=20)
    client.start()
    try:
        await purge_test_namespaces(client, daemon.namespace_suffix)
    finally:
        await client.stop()
    remove_everywhere(daemon.cgroup_root)


def remove_cgroup_tree(cgroups, root: str) -> None:
    """Remove a test cgroup root and everything below it (children first)."""
    if cgroups.exists(root):
        cgroups.delete(root)


@defer.inlineCallbacks
def purge_test_namespaces(client, suffix: str):
    """Kill and delete every task, container, image and namespace ending in ``suffix``."""
    namespaces = yield client.list_namespaces()
    for ns in namespaces:
        if not ns.endswith(suffix):
            continue
        yield purge_namespace(client, ns)


@defer.inlineCallbacks
def purge_namespace(client, ns: str):
    """Empty and delete one containerd namespace."""
    for task in (yield client.list_tasks(ns)):
        try:
            yield client.kill_task(ns, task.container_id, signal=9, all=True)
            yield client.wait_task(ns, task.container_id, timeout=10)
        except cerrors.ContainerdError:
            pass
        try:
            yield client.delete_task(ns, task.container_id)
        except cerrors.ContainerdError:
            pass
    for container in (yield client.list_containers(ns)):
        try:
            yield client.delete_container(ns, container.id)
        except cerrors.NotFound:
            pass
    for image in (yield client.list_images(ns)):
        yield client.delete_image(ns, image.name, sync=True)
    try:
        yield client.delete_namespace(ns)
    except cerrors.ContainerdError:
        pass


@defer.inlineCallbacks
def load_busybox(runtime: Runtime, realm: str):
    """Import the offline busybox test image into ``realm``'s namespace."""
    from tests.support.image import busybox_image

    ns = f"{realm}.{runtime.suffix}"
    yield runtime.containerd.ensure_namespace(ns)
    images = yield runtime.containerd.import_image(ns, busybox_image().oci_tar)
    return images
