"""Container networking as the daemon sees it: :class:`INetwork`, its results, CNI errors.

Every space has one network: a CNI bridge over the space's subnet,
described by the space's conflist. A cell's root container joins it with
CNI ADD and leaves it with CNI DEL; a space may also carry an egress
policy. :class:`kukeond.host.cninetwork.CniNetwork` does this on the host
with the CNI plugins, ``ip`` and ``iptables``. The errors keep libcni's and
the reference's wording, sentinels included, so callers can match them.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from zope.interface import Interface

CNI_VERSION = "0.4.0"
MAX_BRIDGE_NAME = 15


class CNIError(Exception):
    """A CNI operation failed; the text follows libcni's wording."""


class CNIPluginError(CNIError):
    """A plugin exited non-zero; ``code``/``msg``/``details`` from its error JSON."""

    def __init__(self, text: str, code: int | None = None, msg: str = "") -> None:
        super().__init__(text)
        self.code = code
        self.msg = msg


class CNITimeout(CNIError):
    """A command did not finish within its deadline and was killed."""


class CNIPluginNotFound(CNIError):
    """A plugin binary is missing (the reference's ErrCNIPluginNotFound)."""

    sentinel = "cni plugin not found"

    def __init__(self, network: str, cause: str) -> None:
        super().__init__(
            f"{self.sentinel}: required CNI plugin missing on host — install the standard "
            f"CNI plugins (e.g. apt install containernetworking-plugins) so "
            f"{json.dumps(network)} resolves: {cause}"
        )


class BridgeNameTooLong(CNIError):
    """A bridge name longer than IFNAMSIZ-1 (the reference's ErrBridgeNameTooLong)."""

    sentinel = "bridge name exceeds Linux IFNAMSIZ limit"

    def __init__(self, bridge: str, cause: str = "") -> None:
        text = (
            f"{self.sentinel}: bridge {json.dumps(bridge)} is {len(bridge)} chars, "
            f"max {MAX_BRIDGE_NAME} (IFNAMSIZ-1)"
        )
        super().__init__(f"{text}: {cause}" if cause else text)


class NetworkAlreadyExists(CNIError):
    """An exclusive create found a conflist of the same network."""

    sentinel = "network already exists"

    def __init__(self, network: str, path: str) -> None:
        super().__init__(f"{self.sentinel}: {network} ({path})")


class NetworkConfigNotLoaded(CNIError):
    """The conflist of an attach/detach is missing or unreadable."""

    sentinel = "network config not loaded"


@dataclass
class SpaceNetwork:
    """What a space's network is: name, bridge, subnet and conflist path."""

    name: str
    bridge: str
    subnet: str
    conflist_path: str
    created: bool = False


@dataclass
class AttachResult:
    """Outcome of CNI ADD: the first IPv4 (or None) and the final result JSON.

    ``reused`` is True when the interface was already in the namespace (a
    previous ADD got that far) and the cached result was returned instead.
    """

    ipv4: str | None
    result: dict[str, Any] = field(default_factory=dict)
    reused: bool = False


def first_ipv4(result: Mapping[str, Any] | None) -> str | None:
    """Return the first IPv4 address (no prefix) of a CNI result."""
    for entry in (result or {}).get("ips") or []:
        address = str(entry.get("address", "")).split("/")[0]
        try:
            if ipaddress.ip_address(address).version == 4:
                return address
        except ValueError:
            continue
    return None


class INetwork(Interface):
    """The daemon's view of container networking (see the module docstring)."""

    def ensure_space_network(realm: str, space: str, exclusive: bool = False) -> SpaceNetwork:
        """Make sure the space's conflist and subnet record exist and are current.

        With ``exclusive`` (a brand-new space) a conflist already naming this
        network raises NetworkAlreadyExists. Synchronous: files only.
        """

    def space_network_exists(realm: str, space: str) -> bool:
        """True when the canonical conflist exists and names ``R-S``."""

    def apply_egress(realm: str, space: str, egress: Any) -> defer.Deferred:
        """Install (or re-assert) the space's egress policy; None/allow-all is a no-op."""

    def remove_egress(realm: str, space: str) -> defer.Deferred:
        """Remove the space's egress chain and dispatch rules."""

    def remove_space_network(realm: str, space: str) -> defer.Deferred:
        """Tear a space's network down; fires with the list of things removed."""

    def attach(
        container_id: str, netns: str, conflist: str, ifname: str = "eth0"
    ) -> defer.Deferred:
        """CNI ADD; fires with an AttachResult. A failure leaves nothing attached."""

    def detach(
        container_id: str, netns: str, conflist: str, ifname: str = "eth0"
    ) -> defer.Deferred:
        """CNI DEL (idempotent); fires with None."""

    def scrub(container_id: str, network: str) -> defer.Deferred:
        """Forget a container whose namespace is gone, without CNI DEL.

        Removes its host-local leases, cached results and the masquerade
        chain the bridge plugin made for it; fires with what was removed.
        """
