"""Which failures are expected, and how an unexpected one is logged.

Our own errors and failures of the host underneath (containerd unreachable,
a CNI plugin, a cgroup, the subnet pool, the egress rules, another writer of
the run path) become API errors; anything else is a bug of the daemon, logged
with its traceback and answered ``Err{Kind:"Unknown"}`` by the dispatcher.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from kukeond.api.gotypes import DecodeError
from kukeond.containerd.errors import ContainerdError
from kukeond.errors import KukeonError
from kukeond.host.cgroups import CgroupError
from kukeond.host.cni import CNIError
from kukeond.host.netpolicy import EgressError
from kukeond.host.subnets import SubnetError
from kukeond.store.errors import DocumentChanged, MetadataCorrupt

HOST_FAILURES = (
    ContainerdError,
    CNIError,
    CgroupError,
    SubnetError,
    EgressError,
    DocumentChanged,
)
"""Failures of the host underneath that are reported to the client, not logged as bugs.

``DocumentChanged``: another writer changed the run path under a request.
"""

EXPECTED_FAILURES = (KukeonError, OSError, MetadataCorrupt, DecodeError, *HOST_FAILURES)
"""What a controller may turn into an API error: our own errors and failures of the host.

``OSError`` is the host's too here: the run path, cgroupfs and network files
a controller reads and writes; ``MetadataCorrupt`` and ``DecodeError`` are a
stored document that cannot be used. Anything else (``TypeError``,
``KeyError``…) is a bug of the daemon: it must reach the dispatcher as
itself, which logs its traceback once and answers ``Err{Kind:"Unknown"}``.
"""


def log_if_bug(log: Logger, exc: BaseException, format: str, **fields: Any) -> bool:
    """Log ``exc`` with its traceback unless it is one of :data:`EXPECTED_FAILURES`.

    For the ``except`` block that caught ``exc`` (a ``FirstError`` is looked
    into). Returns whether it was logged.
    """
    failure = None
    if isinstance(exc, defer.FirstError):
        failure = exc.subFailure
        exc = failure.value
    if isinstance(exc, EXPECTED_FAILURES):
        return False
    log.failure(format, failure, **fields)
    return True


def log_step_failure(log: Logger, exc: BaseException, format: str, **fields: Any) -> None:
    """Log a failed best-effort step from the ``except`` block that caught ``exc``.

    An expected failure is a warning with its message; anything else is a bug
    and is logged with its traceback.
    """
    if not log_if_bug(log, exc, format, **fields):
        if isinstance(exc, defer.FirstError):
            exc = exc.subFailure.value
        log.warn(format + ": {error}", error=str(exc), **fields)
