"""The collaborators every controller works with, built once per daemon.

Controllers receive a :class:`Runtime` and never construct their own
clients, so tests can hand them fakes (``FakeContainerd``, ``FakeCgroups``,
``FakeNetwork``, an inline store) through the same seams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kukeond.config import DaemonConfig
from kukeond.containerd.interface import IContainerd
from kukeond.host.cgroups import ICgroups
from kukeond.host.cni import INetwork
from kukeond.store.metadata import MetadataStore


@dataclass
class Runtime:
    """Configuration, metadata store, containerd, cgroups and network of one daemon."""

    config: DaemonConfig
    store: MetadataStore
    containerd: IContainerd
    cgroups: ICgroups
    network: INetwork
    reactor: Any

    @property
    def run_path(self) -> str:
        """The run path (root of the state tree)."""
        return self.config.run_path

    @property
    def suffix(self) -> str:
        """The containerd namespace suffix, without a leading dot."""
        return self.config.namespace_suffix

    @property
    def cgroup_root(self) -> str:
        """The cgroup root, without a trailing slash."""
        return self.config.cgroup_root
