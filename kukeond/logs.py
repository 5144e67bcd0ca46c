"""Logging for kukeond: one level filter for every logger of the package, logfmt output.

Every module logs through :class:`Logger`, whose events pass a filter set
once from ``--log-level`` before reaching Twisted's global publisher, so the
filter works the same under ``twistd`` (which owns the global observers) and
under the ``kukeond`` console script. :func:`logfmt_observer` writes lines in
the reference daemon's style: ``time=… level=… msg="…" key=value``.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
)
from twisted.logger import Logger as _TwistedLogger
from zope.interface import implementer

from kukeond.base import gojson

LEVELS: dict[str, LogLevel] = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "err": LogLevel.error,
}

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_predicate])


def parse_level(name: str) -> LogLevel:
    """Map a ``--log-level`` value to a level, or raise ``ValueError`` naming the choices."""
    try:
        return LEVELS[name.strip().lower()]
    except KeyError:
        raise ValueError(
            f"invalid log level {name!r}: choose one of debug, info, warn, error"
        ) from None


def set_level(level: LogLevel) -> None:
    """Drop events below ``level`` from every kukeond logger."""
    _predicate.setLogLevelForNamespace("", level)


class Logger(_TwistedLogger):
    """A Twisted logger whose events pass the kukeond level filter."""

    def __init__(
        self,
        namespace: str | None = None,
        source: object = None,
        observer: ILogObserver | None = None,
    ) -> None:
        if namespace is None:
            namespace = sys._getframe(1).f_globals.get("__name__", "kukeond")
        super().__init__(namespace, source, observer or _observer)


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return json.dumps(text, ensure_ascii=False)


@implementer(ILogObserver)
class logfmt_observer:  # noqa: N801 - used like a function, as Twisted's own observers
    """Write events as ``time=… level=… msg=…`` lines to a text stream."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, event: dict[str, Any]) -> None:
        """Format and write one event."""
        level = event.get("log_level", LogLevel.info)
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}"
        stamp = gojson.format_epoch_ns(int(event.get("log_time", 0) * 1e9))
        self._stream.write(f"time={stamp} level={level.name.upper()} msg={_logfmt_value(text)}\n")
        self._stream.flush()
