"""RefreshAll."""

from __future__ import annotations

from kukeond.api import kukeonv1 as w
from kukeond.api import wire_results as r
from kukeond.controller.refresh import Refresh
from kukeond.controller.runtime import Runtime
from kukeond.rpc.dispatch import Handler


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """``RefreshAll``: one walk per call."""

    async def refresh_all(args: w.RefreshAllArgs) -> w.RefreshAllReply:
        tallies = await Refresh(runtime).run()
        return w.RefreshAllReply(Result=r.RefreshAllResult(**tallies))

    return {"RefreshAll": refresh_all}
