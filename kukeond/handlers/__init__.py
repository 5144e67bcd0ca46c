"""The ``KukeonV1`` handlers: one thin module per resource over the engine.

A handler module knows the wire (the Args and Reply structs of
:mod:`kukeond.api.kukeonv1`) and nothing of the host: it turns a request into
calls on :mod:`kukeond.controller` and the outcome into a reply. Each exposes
``handlers(runtime) -> dict[str, Handler]`` keyed by bare method name.
"""
