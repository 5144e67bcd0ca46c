"""Space networks on the host: one CNI bridge per space, cells attached with CNI ADD/DEL.

:class:`CniNetwork` is the real :class:`~kukeond.host.cni.INetwork`. Every
space gets ``DATA/R/S/network.conflist`` (network ``R-S``, bridge
``k-<fnv1a32(R-S)>``, host-local IPAM over the space's ``/24`` from
:mod:`kukeond.host.subnets`; the files are :mod:`kukeond.host.spacefiles`)
and, when its spec asks for one, an egress policy
(:mod:`kukeond.host.netpolicy`). A cell's root container joins the network
through the CNI plugins, each run as the CNI specification describes
(:mod:`kukeond.host.cniplugins`); a failed ADD is rolled back with DEL.

Plugins are looked up in ``plugin_dirs`` in order (default ``/opt/cni/bin``
only, as the reference; Debian installs them in ``/usr/lib/cni``, which
``.ci/run`` and ``make run`` link into ``/opt/cni/bin``). The libcni result
cache (``CACHE/results/<net>-<id>-<ifname>``) is written in libcni's format
so either implementation can DEL what the other added.

``ensure_space_network`` and ``space_network_exists`` only touch files under
the run path and are synchronous; every other method runs host commands and
returns a Deferred, never blocking the reactor.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet import defer
from zope.interface import implementer

from kukeond.base.naming import bridge_name, network_name
from kukeond.blocking import BlockingPool
from kukeond.host import netpolicy
from kukeond.host.cni import (
    AttachResult,
    CNIError,
    INetwork,
    NetworkConfigNotLoaded,
    SpaceNetwork,
    first_ipv4,
)
from kukeond.host.cniplugins import DEFAULT_IPAM_DIR, exec_plugin, translate_error
from kukeond.host.files import read_json, remove_file
from kukeond.host.process import ProcessRunner
from kukeond.host.spacefiles import SpaceFiles
from kukeond.host.subnets import SubnetAllocator, write_file_atomic
from kukeond.logs import Logger

DEFAULT_PLUGIN_DIRS = ("/opt/cni/bin",)
DEFAULT_CACHE_DIR = "/opt/cni/cache"
LEGACY_RESULTS_DIR = "/var/lib/cni/results"

_VETH_EXISTS = re.compile(r"container veth name .*already exists")


@implementer(INetwork)
class CniNetwork:
    """The real network: CNI plugins, ``ip`` and ``iptables`` on the host.

    ``cache_dir``, ``ipam_dir`` and ``legacy_results_dir`` default to the
    host's libcni/host-local locations; tests point them at a temporary
    directory (a non-default ``ipam_dir`` is passed to host-local as its
    ``dataDir``, never written into the conflist).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        run_path: str,
        *,
        plugin_dirs: Sequence[str] = DEFAULT_PLUGIN_DIRS,
        cache_dir: str = DEFAULT_CACHE_DIR,
        ipam_dir: str = DEFAULT_IPAM_DIR,
        legacy_results_dir: str = LEGACY_RESULTS_DIR,
        allocator: SubnetAllocator | None = None,
        runner: ProcessRunner | None = None,
        enforcer: netpolicy.IptablesEnforcer | None = None,
    ) -> None:
        self._files = SpaceFiles(run_path, allocator)
        self.plugin_dirs = list(plugin_dirs)
        self.cache_dir = cache_dir
        self.ipam_dir = ipam_dir
        self.legacy_results_dir = legacy_results_dir
        self._run = runner or ProcessRunner(reactor)
        # Conflist reads, the fsync'd result cache and cleanup: never on the reactor.
        self._disk = BlockingPool(reactor, "cni-files")
        self._enforcer = enforcer or netpolicy.IptablesEnforcer(
            self._run, netpolicy.reactor_resolver(reactor)
        )

    # -- spaces -----------------------------------------------------------

    def ensure_space_network(self, realm: str, space: str, exclusive: bool = False) -> SpaceNetwork:
        """See INetwork.ensure_space_network."""
        return self._files.ensure(realm, space, exclusive)

    def space_network_exists(self, realm: str, space: str) -> bool:
        """See INetwork.space_network_exists."""
        return self._files.exists(realm, space)

    def apply_egress(self, realm: str, space: str, egress: Any) -> defer.Deferred:
        """See INetwork.apply_egress."""
        policy = netpolicy.policy_from_spec(realm, space, bridge_name(realm, space), egress)
        return defer.Deferred.fromCoroutine(self._enforcer.apply(policy))

    def remove_egress(self, realm: str, space: str) -> defer.Deferred:
        """See INetwork.remove_egress."""
        return defer.Deferred.fromCoroutine(self._enforcer.remove(realm, space))

    def remove_space_network(self, realm: str, space: str) -> defer.Deferred:
        """See INetwork.remove_space_network."""
        return defer.Deferred.fromCoroutine(self._remove_space(realm, space))

    async def _remove_space(self, realm: str, space: str) -> list[str]:
        removed = []
        try:
            await self._enforcer.remove(realm, space)
            removed.append("egress")
        except netpolicy.EgressError as exc:
            self.log.warn("failed to remove egress policy: {error}", error=str(exc))
        # The conflist and subnet records stay on the reactor thread, as their writers
        # (ensure_space_network, the allocator) do.
        deleted, bridge = self._files.remove_conflist(realm, space)
        if deleted:
            removed.append("conflist")
        if bridge and await self._delete_bridge(bridge):
            removed.append("bridge")
        removed += await self._disk.run(self._remove_network_state, network_name(realm, space))
        if self._files.allocator.release(realm, space):
            removed.append("subnet")
        return removed

    def _remove_network_state(self, name: str) -> list[str]:
        """Remove a network's IPAM leases and cached results (blocking)."""
        removed = []
        ipam = os.path.join(self.ipam_dir, name)
        if os.path.isdir(ipam):
            shutil.rmtree(ipam)
            removed.append("ipam")
        if self._scrub_network_cache(name):
            removed.append("cache")
        return removed

    async def _delete_bridge(self, bridge: str) -> bool:
        code, out, err = await self._run(["ip", "link", "delete", bridge, "type", "bridge"])
        text = (out + err).decode("utf-8", "replace").strip()
        if code == 0:
            return True
        if "cannot find device" in text.lower():
            return False
        raise CNIError(f"ip link delete {bridge}: exit status {code}: {text}")

    def _results_dirs(self) -> list[str]:
        return [os.path.join(self.cache_dir, "results"), self.legacy_results_dir]

    def _scrub_network_cache(self, name: str) -> list[str]:
        removed = []
        for directory in self._results_dirs():
            for entry in _listdir(directory):
                path = os.path.join(directory, entry)
                try:
                    owner = read_json(path).get("networkName")
                except (OSError, ValueError, AttributeError):
                    owner = None
                if owner == name or (owner is None and entry.startswith(name + "-")):
                    if remove_file(path):
                        removed.append(path)
        return removed

    # -- containers -------------------------------------------------------

    def attach(
        self, container_id: str, netns: str, conflist: str, ifname: str = "eth0"
    ) -> defer.Deferred:
        """See INetwork.attach."""
        return defer.Deferred.fromCoroutine(self._attach(container_id, netns, conflist, ifname))

    def detach(
        self, container_id: str, netns: str, conflist: str, ifname: str = "eth0"
    ) -> defer.Deferred:
        """See INetwork.detach."""
        return defer.Deferred.fromCoroutine(self._detach(container_id, netns, conflist, ifname))

    def scrub(self, container_id: str, network: str) -> defer.Deferred:
        """See INetwork.scrub."""

        async def with_nat() -> list[str]:
            removed = await self._disk.run(self._scrub_files, container_id, network)
            return removed + await self._scrub_masquerade(container_id, network)

        return defer.Deferred.fromCoroutine(with_nat())

    async def _scrub_masquerade(self, container_id: str, network: str) -> list[str]:
        chain = masquerade_chain(network, container_id)
        code, _, _ = await self._run(["iptables", "-w", "-t", "nat", "-L", chain, "-n"])
        if code != 0:
            return []
        code, out, _ = await self._run(["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"])
        for line in out.decode("utf-8", "replace").splitlines():
            args = shlex.split(line)
            if args[:2] == ["-A", "POSTROUTING"] and args[-2:] == ["-j", chain]:
                await self._run(["iptables", "-w", "-t", "nat", "-D", *args[1:]])
        await self._run(["iptables", "-w", "-t", "nat", "-F", chain])
        await self._run(["iptables", "-w", "-t", "nat", "-X", chain])
        return [f"nat:{chain}"]

    def _scrub_files(self, container_id: str, network: str) -> list[str]:
        removed = []
        leases = os.path.join(self.ipam_dir, network)
        for entry in _listdir(leases):
            path = os.path.join(leases, entry)
            if entry == container_id:
                matched = True
            else:
                try:
                    with open(path, "rb") as handle:
                        tokens = handle.read(4096).decode("utf-8", "replace").split()
                except OSError:
                    continue
                matched = container_id in tokens
            if matched and remove_file(path):
                removed.append(path)
        for directory in self._results_dirs():
            for entry in _listdir(directory):
                if (
                    entry == container_id
                    or entry.startswith(container_id + "-")
                    or entry.startswith(f"{network}-{container_id}-")
                ):
                    path = os.path.join(directory, entry)
                    if remove_file(path):
                        removed.append(path)
        return removed

    def _load(self, path: str) -> tuple[dict[str, Any], bytes]:
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
            doc = json.loads(raw)
        except (OSError, ValueError) as exc:
            raise NetworkConfigNotLoaded(f"failed to load CNI config list {path}: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("plugins"), list):
            raise NetworkConfigNotLoaded(f"failed to load CNI config list {path}: no plugins")
        return doc, raw

    def _load_with_result(
        self, path: str, container_id: str, ifname: str
    ) -> tuple[dict[str, Any], dict | None]:
        """The conflist and the container's cached result, in one trip to the disk."""
        conf, _ = self._load(path)
        return conf, self._cached_result(str(conf.get("name", "")), container_id, ifname)

    def _cache_path(self, name: str, container_id: str, ifname: str) -> str:
        return os.path.join(self.cache_dir, "results", f"{name}-{container_id}-{ifname}")

    def _cached_result(self, name: str, container_id: str, ifname: str) -> dict | None:
        try:
            result = read_json(self._cache_path(name, container_id, ifname)).get("result")
        except (OSError, ValueError, AttributeError):
            return None
        return result if isinstance(result, dict) else None

    async def _exec(
        self,
        conf: Mapping[str, Any],
        plugin: Mapping[str, Any],
        command: str,
        container_id: str,
        netns: str,
        ifname: str,
        prev: dict | None,
    ) -> dict:
        return await exec_plugin(
            self._run,
            conf,
            plugin,
            command,
            container_id,
            netns,
            ifname,
            prev,
            plugin_dirs=self.plugin_dirs,
            ipam_dir=self.ipam_dir,
        )

    async def _attach(self, container_id: str, netns: str, path: str, ifname: str) -> AttachResult:
        conf, raw = await self._disk.run(self._load, path)
        name = str(conf.get("name", ""))
        prev: dict | None = None
        try:
            for plugin in conf["plugins"]:
                prev = await self._exec(conf, plugin, "ADD", container_id, netns, ifname, prev)
        except CNIError as exc:
            if _VETH_EXISTS.search(str(exc)):
                cached = await self._disk.run(self._cached_result, name, container_id, ifname)
                self.log.info(
                    "container veth already exists, recovered cached result for {container_id}",
                    container_id=container_id,
                )
                return AttachResult(first_ipv4(cached), cached or {}, reused=True)
            await self._rollback(conf, container_id, netns, ifname, prev)
            raise translate_error(exc, conf) from exc
        await self._disk.run(self._write_cache, name, container_id, ifname, raw, prev or {})
        return AttachResult(first_ipv4(prev), prev or {})

    async def _rollback(
        self, conf: Mapping[str, Any], container_id: str, netns: str, ifname: str, prev: dict | None
    ) -> None:
        for plugin in reversed(conf["plugins"]):
            try:
                await self._exec(conf, plugin, "DEL", container_id, netns, ifname, prev)
            except CNIError as exc:
                self.log.debug("rollback DEL failed: {error}", error=str(exc))

    async def _detach(self, container_id: str, netns: str, path: str, ifname: str) -> None:
        conf, cached = await self._disk.run(self._load_with_result, path, container_id, ifname)
        name = str(conf.get("name", ""))
        try:
            for plugin in reversed(conf["plugins"]):
                await self._exec(conf, plugin, "DEL", container_id, netns, ifname, cached)
        except CNIError as exc:
            raise translate_error(exc, conf) from exc
        await self._disk.run(remove_file, self._cache_path(name, container_id, ifname))

    def _write_cache(
        self, name: str, container_id: str, ifname: str, raw: bytes, result: dict
    ) -> None:
        entry = {
            "kind": "cniCacheV1",
            "containerId": container_id,
            "config": base64.b64encode(raw).decode("ascii"),
            "ifName": ifname,
            "networkName": name,
            "result": result,
        }
        write_file_atomic(
            self._cache_path(name, container_id, ifname),
            json.dumps(entry).encode("utf-8"),
            0o600,
            dir_mode=0o700,
        )


def masquerade_chain(network: str, container_id: str) -> str:
    """Return the nat chain the bridge plugin's ipMasq makes for a container."""
    return "CNI-" + hashlib.sha512((network + container_id).encode("utf-8")).hexdigest()[:24]


def _listdir(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
