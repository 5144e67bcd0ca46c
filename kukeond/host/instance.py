"""The instance file: which namespace suffix and cgroup root a run path belongs to.

``RUN/.kukeon-instance.json`` records the layout a run path was first used
with. A daemon configured with another suffix or cgroup root must refuse to
start on it: the stored namespaces and cgroup paths would not match anything
it computes. The calls here are synchronous and small; the daemon runs them
once during start-up, before it serves requests.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from kukeond.base.atomic import replace_file
from kukeond.base.gojson import dumps_indent
from kukeond.base.naming import go_quote, instance_file_path, normalize_cgroup_root

FILE_MODE = 0o640
RUN_PATH_MODE = 0o750


class InstanceError(Exception):
    """Base of the errors raised while checking the instance file."""


class InstanceMismatch(InstanceError):
    """The run path was bootstrapped with another suffix or cgroup root."""

    def __init__(self, run_path: str, stored: Instance, wanted: Instance) -> None:
        super().__init__(
            f"runPath {go_quote(run_path)} was bootstrapped with "
            f"containerdNamespaceSuffix={go_quote(stored.suffix)} "
            f"cgroupRoot={go_quote(stored.cgroup_root)} "
            "but the running configuration requests "
            f"containerdNamespaceSuffix={go_quote(wanted.suffix)} "
            f"cgroupRoot={go_quote(wanted.cgroup_root)}: kukeon instance mismatch"
        )
        self.run_path = run_path
        self.stored = stored
        self.wanted = wanted


class InstanceFileInvalid(InstanceError):
    """The instance file exists but cannot be read or parsed."""


@dataclass(frozen=True)
class Instance:
    """The two values recorded in the instance file."""

    suffix: str
    cgroup_root: str

    def to_json(self) -> str:
        """File content as the reference writes it: 2-space indent, trailing newline."""
        return (
            dumps_indent({"containerdNamespaceSuffix": self.suffix, "cgroupRoot": self.cgroup_root})
            + "\n"
        )


def load(run_path: str) -> Instance | None:
    """Read the instance file of ``run_path``; ``None`` when there is none.

    Like the reference, unknown keys are ignored and missing ones read as
    empty. Raises :class:`InstanceFileInvalid` on any read or parse failure.
    """
    path = instance_file_path(run_path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InstanceFileInvalid(
            f"read instance metadata {go_quote(path)}: server configuration is invalid: {exc}"
        ) from exc
    try:
        data = json.loads(raw.decode("utf-8"))
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, found {type(data).__name__}")
        values = [data.get(key) for key in ("containerdNamespaceSuffix", "cgroupRoot")]
        for value in values:
            if value is not None and not isinstance(value, str):
                raise ValueError(f"expected a string, found {json.dumps(value)}")
    except ValueError as exc:
        raise InstanceFileInvalid(
            f"parse instance metadata {go_quote(path)}: server configuration is invalid: {exc}"
        ) from exc
    return Instance(values[0] or "", values[1] or "")


def write(run_path: str, instance: Instance) -> None:
    """Atomically write the instance file (run path created 0750, file 0640)."""
    os.makedirs(run_path, mode=RUN_PATH_MODE, exist_ok=True)
    replace_file(instance_file_path(run_path), instance.to_json().encode("utf-8"), FILE_MODE)


def verify_or_write(run_path: str, suffix: str, cgroup_root: str) -> Instance:
    """Check ``run_path`` belongs to this configuration, recording it on first use.

    Inputs are trimmed (and the cgroup root loses trailing ``/``) before
    comparison. Returns the recorded instance; raises :class:`InstanceMismatch`
    or :class:`InstanceFileInvalid`.
    """
    wanted = Instance(suffix.strip(), normalize_cgroup_root(cgroup_root))
    stored = load(run_path)
    if stored is None:
        write(run_path, wanted)
        return wanted
    if stored != wanted:
        raise InstanceMismatch(run_path, stored, wanted)
    return stored
