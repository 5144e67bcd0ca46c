"""Where the kukeonv1 handler table comes from: one module per resource area.

Each module listed in :data:`HANDLER_MODULES` exposes
``handlers(runtime) -> dict[str, Handler]`` keyed by bare method name; the
daemon merges them. Adding an area means adding its module here.
"""

from __future__ import annotations

import importlib

from kukeond.controller.runtime import Runtime
from kukeond.rpc.dispatch import Handler

HANDLER_MODULES: tuple[str, ...] = (
    "kukeond.controller.realms",
    "kukeond.controller.spaces",
    "kukeond.controller.stacks",
    "kukeond.controller.images",
    "kukeond.controller.cells",
    "kukeond.controller.containers",
    "kukeond.controller.refresh",
    "kukeond.controller.apply",
)


def collect_handlers(runtime: Runtime) -> dict[str, Handler]:
    """Merge the handlers of every area; a method claimed twice is a programming error."""
    table: dict[str, Handler] = {}
    for name in HANDLER_MODULES:
        module = importlib.import_module(name)
        for method, handler in module.handlers(runtime).items():
            if method in table:
                raise ValueError(f"{method} is handled by more than one module")
            table[method] = handler
    return table
