"""Route ``KukeonV1.<Method>`` requests to handlers, with Go ``net/rpc``'s error texts.

The method table has one source: :data:`kukeond.api.kukeonv1.METHODS` gives the
Args and Reply types of the reference's 40 methods (plus our
:data:`kukeond.api.extensions.EXTENSION_METHODS`), and the daemon passes the
handlers it implements. A method without a handler answers exactly as Go does for a method
that does not exist.

Domain failures travel inside the reply (``Err``); only protocol failures
become the response's ``error`` string. A handler that raises never takes the
daemon down: the exception becomes ``Err{Kind:"Unknown"}`` and is logged with
its traceback.
"""

from __future__ import annotations

import types as _types
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from kukeond.errors import KukeonError
from kukeond.logs import Logger
from kukeond.rpc.codec import Request, params_type_name

SERVICE = "KukeonV1"

_Coroutine = _types.CoroutineType

Handler = Callable[[Any], Any]
"""Takes the decoded Args; returns a Reply, a Deferred or a coroutine firing with one."""
Outcome = tuple[Any, str | None]


class Call:
    """A request ready to run: its handler, decoded arguments, method name and Reply type."""

    __slots__ = ("handler", "args", "method", "reply_type")

    def __init__(self, handler: Handler, args: Any, method: str, reply_type: Any) -> None:
        self.handler = handler
        self.args = args
        self.method = method
        self.reply_type = reply_type


class Dispatcher:
    """Decode a request's arguments, run its handler and shape the reply.

    ``types`` maps a bare method name to ``(ArgsType, ReplyType)``; ``handlers``
    maps the bare names the daemon implements to callables taking the decoded
    Args and returning a Reply (directly, as a Deferred or as a coroutine).
    """

    log = Logger()

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        types: Mapping[str, tuple[type, type]] | None = None,
    ) -> None:
        if types is None:
            from kukeond.api.extensions import EXTENSION_METHODS
            from kukeond.api.kukeonv1 import METHODS

            types = {**METHODS, **EXTENSION_METHODS}
        unknown = set(handlers) - set(types)
        if unknown:
            raise ValueError(f"handlers for methods that do not exist: {sorted(unknown)}")
        self._handlers = dict(handlers)
        self._types = types
        self._routes: dict[str, tuple[Handler, Any, Any, Any]] = {}

    def methods(self) -> list[str]:
        """Return the full names of the methods that have handlers."""
        return sorted(f"{SERVICE}.{name}" for name in self._handlers)

    def dispatch(self, request: Request) -> Outcome | defer.Deferred:
        """Run ``request``; return ``(result, None)`` or ``(None, protocol error text)``.

        A handler that answers synchronously gets its outcome returned
        directly (no Deferred on the hot path); otherwise a Deferred fires with it.
        """
        call = self.prepare(request)
        if isinstance(call, Call):
            return self.run(call)
        return call

    def prepare(self, request: Request) -> Call | Outcome:
        """Find the handler and decode the arguments: a :class:`Call`, or the protocol error.

        Touches nothing but the request and the route table, so a large
        request can be prepared on a worker thread and run on the reactor.
        """
        method = request.method
        route = self._routes.get(method)
        if route is None:
            found = self._route(method)
            if isinstance(found, str):
                return None, found
            route = found
        handler, args_type, reply_type, empty_args = route
        params = request.params
        if type(params) is not list:
            if not request.has_params:
                return None, "jsonrpc: request body missing params"
            kind = params_type_name(params)
            return None, f"json: cannot unmarshal {kind} into Go value of type [1]interface {{}}"
        raw = params[0] if params else None
        try:
            if empty_args is not None and (raw is None or type(raw) is dict):
                args = empty_args  # no fields to fill: every such request decodes alike
            else:
                args = args_type.from_wire(raw)
        except ValueError as e:  # every decode failure is a protocol error, as in Go
            return None, str(e) or type(e).__name__
        except Exception as e:  # noqa: BLE001 - a bug of a decoder: logged, answered as the rest
            self.log.failure("decoding the arguments of {method} raised", method=method)
            return None, str(e) or type(e).__name__
        return Call(handler, args, method, reply_type)

    def run(self, call: Call) -> Outcome | defer.Deferred:
        """Run a prepared call's handler and shape its reply (on the reactor thread)."""
        try:
            reply = call.handler(call.args)
        except Exception as e:  # noqa: BLE001 - a handler never takes the daemon down; logged
            return self._failed(e, call.method, call.reply_type)
        if type(reply) is _Coroutine:
            reply = defer.Deferred.fromCoroutine(reply)
        if isinstance(reply, defer.Deferred):
            return reply.addCallbacks(
                _outcome, self._failed_async, errbackArgs=(call.method, call.reply_type)
            )
        return reply.to_wire(), None

    def args_type(self, method: str) -> Any:
        """The Args type of ``method``, or ``None`` when it has no handler."""
        route = self._routes.get(method) or self._route(method)
        return None if isinstance(route, str) else route[1]

    def _route(self, method: str) -> tuple[Handler, Any, Any, Any] | str:
        """Look ``method`` up: its handler and types, or the protocol error text.

        Found methods are remembered (there are a few dozen); misses are not,
        so a client cannot grow the table.
        """
        dot = method.rfind(".")
        if dot < 0:
            return f"rpc: service/method request ill-formed: {method}"
        if method[:dot] != SERVICE:
            return f"rpc: can't find service {method}"
        name = method[dot + 1 :]
        handler = self._handlers.get(name)
        if handler is None:
            return f"rpc: can't find method {method}"
        args_type, reply_type = self._types[name]
        empty_args = None
        if not getattr(args_type, "fields", True):
            empty_args = args_type()
        route = self._routes[method] = (handler, args_type, reply_type, empty_args)
        return route

    def _failed(self, exc: BaseException, method: str, reply_type: Any) -> Outcome:
        if not isinstance(exc, KukeonError):
            self.log.failure("handler for {method} raised", method=method)
        return reply_type.failure(exc).to_wire(), None

    def _failed_async(self, failure: Failure, method: str, reply_type: Any) -> Outcome:
        if not failure.check(KukeonError):
            self.log.failure("handler for {method} raised", failure, method=method)
        return reply_type.failure(failure.value).to_wire(), None


def _outcome(reply: Any) -> Outcome:
    return reply.to_wire(), None
