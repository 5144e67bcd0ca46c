"""The collaborators every controller works with, built once per daemon.

Controllers receive a :class:`Runtime` and never construct their own
clients, so tests can hand them fakes (``FakeContainerd``, ``FakeCgroups``,
``FakeNetwork``, an inline store) through the same seams.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kukeond.config import DaemonConfig
from kukeond.containerd.interface import IContainerd
from kukeond.host.cgroups import ICgroups
from kukeond.host.cni import INetwork
from kukeond.store.metadata import MetadataStore

if TYPE_CHECKING:
    from kukeond.controller.cell_runner import CellRunner
    from kukeond.controller.image_pull import ImagePulls


@dataclass
class Runtime:
    """Configuration, metadata store, containerd, cgroups and network of one daemon."""

    config: DaemonConfig
    store: MetadataStore
    containerd: IContainerd
    cgroups: ICgroups
    network: INetwork
    reactor: Any
    _pulls: Any = field(default=None, repr=False, compare=False)
    _cells: Any = field(default=None, repr=False, compare=False)

    @property
    def cells(self) -> CellRunner:
        """The one cell runner every handler and the reconciler share (made on first use)."""
        if self._cells is None:
            from kukeond.controller.cell_runner import CellRunner

            self._cells = CellRunner(self)
        return self._cells

    @property
    def pulls(self) -> ImagePulls:
        """Image pulls for cells whose realm lacks their image (made on first use)."""
        if self._pulls is None:
            from kukeond.controller.image_pull import ImagePulls

            self._pulls = ImagePulls(self.containerd, self.reactor)
        return self._pulls

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
