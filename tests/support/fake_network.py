"""``FakeNetwork``: the ``INetwork`` of tests, without the host's CNI plugins."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from zope.interface import implementer

from kukeond.base.naming import bridge_name, network_name
from kukeond.host import netpolicy
from kukeond.host.cni import (
    CNI_VERSION,
    AttachResult,
    CNIError,
    CNIPluginError,
    CNIPluginNotFound,
    INetwork,
    NetworkConfigNotLoaded,
    SpaceNetwork,
)
from kukeond.host.spacefiles import SpaceFiles, conflist_subnet
from kukeond.host.subnets import SubnetAllocator


@implementer(INetwork)
class FakeNetwork:
    """INetwork without the host: same conflist and subnet files, leases in memory.

    Addresses are handed out lowest-first from ``.2`` of the space subnet
    (``.1`` is the bridge). ``missing_plugins`` names plugin types that
    behave as absent, to exercise the plugin-not-found path.
    """

    def __init__(
        self,
        run_path: str,
        *,
        allocator: SubnetAllocator | None = None,
        missing_plugins: Sequence[str] = (),
    ) -> None:
        self._files = SpaceFiles(run_path, allocator)
        self.missing_plugins = set(missing_plugins)
        self.attached: dict[tuple[str, str, str], str] = {}
        self.bridges: set[str] = set()
        self.policies: dict[tuple[str, str], netpolicy.Policy] = {}

    def ensure_space_network(self, realm: str, space: str, exclusive: bool = False) -> SpaceNetwork:
        """See INetwork.ensure_space_network."""
        return self._files.ensure(realm, space, exclusive)

    def space_network_exists(self, realm: str, space: str) -> bool:
        """See INetwork.space_network_exists."""
        return self._files.exists(realm, space)

    def apply_egress(self, realm: str, space: str, egress: Any) -> defer.Deferred:
        """See INetwork.apply_egress."""
        try:
            policy = netpolicy.policy_from_spec(realm, space, bridge_name(realm, space), egress)
        except netpolicy.EgressError:
            return defer.fail()
        if policy is not None:
            self.policies[(realm, space)] = policy
        return defer.succeed(None)

    def remove_egress(self, realm: str, space: str) -> defer.Deferred:
        """See INetwork.remove_egress."""
        self.policies.pop((realm, space), None)
        return defer.succeed(None)

    def remove_space_network(self, realm: str, space: str) -> defer.Deferred:
        """See INetwork.remove_space_network."""
        removed = []
        if self.policies.pop((realm, space), None) is not None:
            removed.append("egress")
        deleted, bridge = self._files.remove_conflist(realm, space)
        if deleted:
            removed.append("conflist")
        if bridge in self.bridges:
            self.bridges.discard(bridge)
            removed.append("bridge")
        name = network_name(realm, space)
        leases = [key for key in self.attached if key[0] == name]
        for key in leases:
            del self.attached[key]
        if leases:
            removed.append("ipam")
        if self._files.allocator.release(realm, space):
            removed.append("subnet")
        return defer.succeed(removed)

    def attach(
        self, container_id: str, netns: str, conflist: str, ifname: str = "eth0"
    ) -> defer.Deferred:
        """See INetwork.attach."""
        try:
            return defer.succeed(self._attach(container_id, conflist, ifname))
        except CNIError:
            return defer.fail()

    def _attach(self, container_id: str, path: str, ifname: str) -> AttachResult:
        doc = self._files.read_conflist(path)
        if doc is None or not isinstance(doc.get("plugins"), list):
            raise NetworkConfigNotLoaded(f"failed to load CNI config list {path}")
        name = str(doc.get("name", ""))
        for plugin in doc["plugins"]:
            if plugin.get("type") in self.missing_plugins:
                kind = plugin.get("type")
                raise CNIPluginNotFound(
                    name,
                    f'plugin type="{kind}" name="{name}" failed '
                    f'(add): failed to find plugin "{kind}" in path',
                )
        key = (name, container_id, ifname)
        plugin = SpaceFiles.bridge_plugin(doc)
        subnet = ipaddress.IPv4Network(conflist_subnet(plugin) or "", strict=False)
        if key in self.attached:
            ip = self.attached[key]
            return AttachResult(ip, _fake_result(ip, subnet, ifname), reused=True)
        taken = {ip for (net, _, _), ip in self.attached.items() if net == name}
        for host in list(subnet.hosts())[1:]:
            if str(host) not in taken:
                self.attached[key] = str(host)
                self.bridges.add(str(plugin.get("bridge")))
                return AttachResult(str(host), _fake_result(str(host), subnet, ifname))
        raise CNIPluginError(
            f'plugin type="bridge" name="{name}" failed (add): '
            f"no IP addresses available in range set"
        )

    def detach(
        self, container_id: str, netns: str, conflist: str, ifname: str = "eth0"
    ) -> defer.Deferred:
        """See INetwork.detach."""
        doc = self._files.read_conflist(conflist)
        if doc is None:
            return defer.fail(NetworkConfigNotLoaded(f"failed to load CNI config list {conflist}"))
        self.attached.pop((str(doc.get("name", "")), container_id, ifname), None)
        return defer.succeed(None)

    def scrub(self, container_id: str, network: str) -> defer.Deferred:
        """See INetwork.scrub."""
        keys = [k for k in self.attached if k[0] == network and k[1] == container_id]
        return defer.succeed([f"{network}/{self.attached.pop(key)}" for key in keys])


def _fake_result(ip: str, subnet: ipaddress.IPv4Network, ifname: str) -> dict[str, Any]:
    gateway = str(next(subnet.hosts()))
    return {
        "cniVersion": CNI_VERSION,
        "interfaces": [{"name": ifname, "sandbox": ""}],
        "ips": [
            {
                "version": "4",
                "interface": 0,
                "address": f"{ip}/{subnet.prefixlen}",
                "gateway": gateway,
            }
        ],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    }
