"""Where the kukeonv1 handler table comes from: one module per resource area.

Each module in :data:`HANDLER_MODULES` exposes ``handlers(runtime) ->
dict[str, Handler]`` keyed by bare method name; the daemon merges them.
Adding an area means adding its module here.

Every handler is wrapped (:func:`reporting_host_failures`)
so that an expected failure of the host underneath that a controller let
through reaches the client as a plain ``Err{Kind:"Unknown"}`` with its own
message, as the reference reports such chains, instead of being logged as a
bug of the daemon.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from kukeond.controller.failures import HOST_FAILURES
from kukeond.controller.runtime import Runtime
from kukeond.errors import KukeonError
from kukeond.handlers import apply, cells, containers, images, realms, refresh, spaces, stacks
from kukeond.rpc.dispatch import Handler

HANDLER_MODULES = (realms, spaces, stacks, images, cells, containers, refresh, apply)


def collect_handlers(runtime: Runtime) -> dict[str, Handler]:
    """Merge the handlers of every area; a method claimed twice is a programming error."""
    table: dict[str, Handler] = {}
    for module in HANDLER_MODULES:
        for method, handler in module.handlers(runtime).items():
            if method in table:
                raise ValueError(f"{method} is handled by more than one module")
            table[method] = reporting_host_failures(handler)
    return table


def reporting_host_failures(handler: Handler) -> Handler:
    """Wrap ``handler`` so :data:`HOST_FAILURES` become :class:`KukeonError` values."""

    @functools.wraps(handler)
    async def wrapped(args: Any) -> Any:
        try:
            reply = handler(args)
            if inspect.isawaitable(reply):
                reply = await reply
        except HOST_FAILURES as exc:
            raise KukeonError(str(exc) or type(exc).__name__) from exc
        return reply

    return wrapped
