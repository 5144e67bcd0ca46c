"""Per-space ``/24`` allocation, recorded in ``DATA/R/S/network.json``.

The files under the data tree are the only record: an allocation scans every
``DATA/*/*/network.json`` to learn which subnets are taken, so nothing needs
to be rebuilt after a restart. The first free block, lowest address first,
wins; a corrupt record of another space is skipped (and logged) so one bad
file cannot stop every space creation on the host.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading

from kukeond.base import gojson, naming
from kukeond.base.atomic import replace_file
from kukeond.logs import Logger

STATE_VERSION = "v1"
DEFAULT_PARENT_CIDR = "10.88.0.0/16"
DEFAULT_PREFIX_LEN = 24


class SubnetError(Exception):
    """Base of the allocator's errors; ``sentinel`` is the reference's text."""

    sentinel = "subnet allocation failed"

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(f"{self.sentinel}: {detail}" if detail else self.sentinel)


class SubnetExhausted(SubnetError):
    """Every block of the parent CIDR is recorded by some space."""

    sentinel = "no free subnet available in parent CIDR"


class SubnetStateCorrupt(SubnetError):
    """A ``network.json`` exists but cannot be read as an allocation."""

    sentinel = "subnet allocator state is malformed"


class InvalidSubnetCIDR(SubnetError):
    """The parent block or prefix length cannot be carved as asked."""

    sentinel = "invalid subnet CIDR"


def write_file_atomic(path: str, data: bytes, mode: int, dir_mode: int = 0o750) -> None:
    """Replace ``path`` with ``data`` in one rename, creating its directory."""
    os.makedirs(os.path.dirname(path), mode=dir_mode, exist_ok=True)
    replace_file(path, data, mode)


class SubnetAllocator:
    """Hand out per-space subnets carved from ``parent_cidr``.

    ``run_path`` is the daemon's run path; records live under ``RUN/data``.
    Calls are serialised by a lock shared by every caller of this instance
    (the daemon holds one), so two concurrent space creations never receive
    the same block.
    """

    log = Logger()

    def __init__(
        self,
        run_path: str,
        parent_cidr: str = DEFAULT_PARENT_CIDR,
        prefix_len: int = DEFAULT_PREFIX_LEN,
    ) -> None:
        try:
            parent = ipaddress.IPv4Network(parent_cidr, strict=False)
        except ValueError as exc:
            raise InvalidSubnetCIDR(f"parent {parent_cidr!r}: {exc}") from exc
        if not parent.prefixlen < prefix_len <= 32:
            raise InvalidSubnetCIDR(
                f"prefix /{prefix_len} must be longer than parent /{parent.prefixlen}"
                " and at most /32"
            )
        self.run_path = run_path
        self.data_root = naming.data_dir(run_path)
        self.parent = parent
        self.prefix_len = prefix_len
        self._lock = threading.Lock()

    def state_path(self, realm: str, space: str) -> str:
        """Return the ``network.json`` path of one space."""
        return naming.network_state_path(self.run_path, realm, space)

    def load_assigned(self, realm: str, space: str) -> str | None:
        """Return the subnet recorded for the space, or None when there is none.

        Raises SubnetStateCorrupt when the record exists but is unusable.
        """
        return self._read(self.state_path(realm, space))

    def allocate(self, realm: str, space: str, preferred: str | None = None) -> str:
        """Return the space's subnet, recording the first free block if needed.

        ``preferred`` (a subnet found in an older conflist) is recorded
        instead of a fresh block when no other space holds it.
        """
        if not realm.strip() or not space.strip():
            raise ValueError("realm and space names are required")
        with self._lock:
            target = self.state_path(realm, space)
            existing = self._read(target)
            if existing is not None:
                return existing
            used = self._used()
            if preferred is not None and self._normalise(preferred) not in used:
                chosen = self._normalise(preferred)
            else:
                chosen = self._first_free(used)
            self._write(target, chosen)
            return chosen

    def release(self, realm: str, space: str) -> bool:
        """Forget the space's subnet; True when a record was removed."""
        if not realm.strip() or not space.strip():
            return False
        with self._lock:
            try:
                os.unlink(self.state_path(realm, space))
            except FileNotFoundError:
                return False
            return True

    def _normalise(self, cidr: str) -> str:
        return str(ipaddress.IPv4Network(cidr, strict=False))

    def _read(self, path: str) -> str | None:
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None
        try:
            state = json.loads(raw)
        except ValueError as exc:
            raise SubnetStateCorrupt(f"{path}: {exc}") from exc
        subnet = state.get("subnetCIDR") if isinstance(state, dict) else None
        if not isinstance(subnet, str) or not subnet.strip():
            raise SubnetStateCorrupt(f"{path}: subnetCIDR is empty")
        return subnet

    def _used(self) -> set[str]:
        used: set[str] = set()
        try:
            realms = sorted(os.scandir(self.data_root), key=lambda e: e.name)
        except FileNotFoundError:
            return used
        for realm in realms:
            if not realm.is_dir():
                continue
            try:
                spaces = sorted(os.scandir(realm.path), key=lambda e: e.name)
            except FileNotFoundError:
                continue
            for space in spaces:
                if not space.is_dir():
                    continue
                path = os.path.join(space.path, naming.NETWORK_STATE_FILE)
                try:
                    subnet = self._read(path)
                except SubnetStateCorrupt as exc:
                    self.log.warn(
                        "skipping corrupt subnet state file during allocator scan: {path}: {error}",
                        path=path,
                        error=str(exc),
                    )
                    continue
                if subnet is not None:
                    used.add(subnet)
        return used

    def _first_free(self, used: set[str]) -> str:
        for block in self.parent.subnets(new_prefix=self.prefix_len):
            text = str(block)
            if text not in used:
                return text
        raise SubnetExhausted(f"parent {self.parent} exhausted at /{self.prefix_len}")

    def _write(self, path: str, subnet: str) -> None:
        body = gojson.dumps_indent({"version": STATE_VERSION, "subnetCIDR": subnet})
        write_file_atomic(path, body.encode("utf-8"), 0o600)
