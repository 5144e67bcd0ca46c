"""A space's network files: its conflist and the record of its subnet.

Each space has ``DATA/R/S/network.conflist`` (network ``R-S``, bridge
``k-<fnv1a32(R-S)>``, host-local IPAM over the space's ``/24``) rendered
byte for byte as the reference writes it, and its subnet recorded by
:class:`~kukeond.host.subnets.SubnetAllocator`. Everything here is
synchronous file work; the real network and the tests' fake share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kukeond.base import gojson, naming
from kukeond.base.naming import bridge_name, network_name
from kukeond.host.cni import CNI_VERSION, NetworkAlreadyExists, SpaceNetwork
from kukeond.host.files import read_json, remove_file
from kukeond.host.subnets import SubnetAllocator, SubnetStateCorrupt, write_file_atomic
from kukeond.logs import Logger


def render_conflist(name: str, bridge: str, subnet: str) -> bytes:
    """Render a space conflist byte for byte as the reference writes it."""
    doc = {
        "cniVersion": CNI_VERSION,
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "loopback"},
        ],
    }
    return gojson.dumps_indent(doc).encode("utf-8")


class SpaceFiles:
    """Conflist and subnet record of spaces: the file half shared by both networks."""

    log = Logger()

    def __init__(self, run_path: str, allocator: SubnetAllocator | None) -> None:
        self.run_path = run_path
        self.allocator = allocator or SubnetAllocator(run_path)

    def read_conflist(self, path: str) -> dict[str, Any] | None:
        """The conflist at ``path``; ``None`` when missing, not JSON or not an object."""
        try:
            doc = read_json(path)
        except (FileNotFoundError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    @staticmethod
    def bridge_plugin(doc: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The ``bridge`` plugin of a conflist, or ``None``."""
        for plugin in (doc or {}).get("plugins") or []:
            if isinstance(plugin, dict) and plugin.get("type") == "bridge":
                return plugin
        return None

    def ensure(self, realm: str, space: str, exclusive: bool) -> SpaceNetwork:
        """Keep the space's current conflist and subnet record, or write new ones."""
        name = network_name(realm, space)
        bridge = bridge_name(realm, space)
        path = naming.network_conflist_path(self.run_path, realm, space)
        doc = self.read_conflist(path)
        if doc is not None and doc.get("name") == name and exclusive:
            raise NetworkAlreadyExists(name, path)
        plugin = self.bridge_plugin(doc)
        old_subnet = conflist_subnet(plugin)
        if (
            doc is not None
            and plugin is not None
            and plugin.get("bridge") == bridge
            and doc.get("name") == name
            and old_subnet
            and self._recorded(realm, space, old_subnet)
        ):
            return SpaceNetwork(name, bridge, old_subnet, path, created=False)
        self.log.info("Creating space network '{network}'", network=name)
        subnet = self.allocator.allocate(realm, space, preferred=old_subnet)
        write_file_atomic(path, render_conflist(name, bridge, subnet), 0o600)
        return SpaceNetwork(name, bridge, subnet, path, created=True)

    def _recorded(self, realm: str, space: str, subnet: str) -> bool:
        """Make sure a live conflist's subnet is recorded; False if it cannot be.

        A conflist written before ``network.json`` existed gets its subnet
        recorded now, unless another space already holds it (then the caller
        regenerates the conflist on a fresh block).
        """
        try:
            if self.allocator.load_assigned(realm, space) is not None:
                return True
        except SubnetStateCorrupt as exc:
            self.log.warn("keeping live conflist despite {error}", error=str(exc))
            return True
        return self.allocator.allocate(realm, space, preferred=subnet) == subnet

    def exists(self, realm: str, space: str) -> bool:
        """Whether the space's conflist exists and names the space's network."""
        doc = self.read_conflist(naming.network_conflist_path(self.run_path, realm, space))
        return doc is not None and doc.get("name") == network_name(realm, space)

    def remove_conflist(self, realm: str, space: str) -> tuple[bool, str | None]:
        """Delete the conflist when it is this space's; return (removed, bridge)."""
        path = naming.network_conflist_path(self.run_path, realm, space)
        doc = self.read_conflist(path)
        plugin = self.bridge_plugin(doc)
        bridge = plugin.get("bridge") if plugin else None
        if doc is None or doc.get("name") != network_name(realm, space):
            return False, bridge
        return remove_file(path), bridge


def conflist_subnet(plugin: Mapping[str, Any] | None) -> str | None:
    """The subnet of a bridge plugin's host-local IPAM range, or ``None``."""
    try:
        subnet = plugin["ipam"]["ranges"][0][0]["subnet"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return None
    return subnet if isinstance(subnet, str) and subnet else None
