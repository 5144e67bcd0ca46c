"""ApplyDocuments."""

from __future__ import annotations

from kukeond.api import kukeonv1 as w
from kukeond.api import wire_results as r
from kukeond.controller.apply import Applier
from kukeond.controller.runtime import Runtime
from kukeond.rpc.dispatch import Handler


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """``ApplyDocuments``: one entry per document, in the order they were handled."""
    applier = Applier(runtime)

    async def apply_documents(args: w.ApplyDocumentsArgs) -> w.ApplyDocumentsReply:
        done = await applier.apply(args.RawYAML or b"")
        resources = [
            r.ApplyResourceResult(
                Index=d.index,
                Kind=d.kind,
                Name=d.name,
                Action=d.action,
                Error=d.error,
                Changes=d.changes,
                Details=d.details,
            )
            for d in done
        ]
        return w.ApplyDocumentsReply(Result=r.ApplyDocumentsResult(Resources=resources))

    return {"ApplyDocuments": apply_documents}
