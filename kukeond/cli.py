"""The ``kukeond`` console script: ``kukeond [flags] serve [flags]`` in the foreground.

It parses the same options as the twistd plugin, logs logfmt lines to
stderr, and exits 0 after a SIGINT/SIGTERM-triggered graceful stop, 1 when
the configuration or the start-up is refused (with an ``Error: …`` line).
"""

from __future__ import annotations

import signal
import sys
from typing import cast

# Before anything imports Twisted's transports (see kukeond.startup).
from kukeond.startup import install_reactor

install_reactor()

from twisted.internet.interfaces import IReactorThreads  # noqa: E402
from twisted.logger import (  # noqa: E402
    FilteringLogObserver,
    LogLevelFilterPredicate,
    globalLogBeginner,
)
from twisted.python import usage  # noqa: E402

from kukeond.daemon import StartupError  # noqa: E402
from kukeond.listener import ListenerError  # noqa: E402
from kukeond.logs import logfmt_observer, parse_level  # noqa: E402
from kukeond.tap import Options, makeService  # noqa: E402


def _start_logging(level_name: str) -> None:
    predicate = LogLevelFilterPredicate(defaultLogLevel=parse_level(level_name))
    observer = FilteringLogObserver(logfmt_observer(sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def main(argv: list[str] | None = None) -> int:
    """Run the daemon; return the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    options = Options()
    if not argv:
        print(options)
        return 0
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        print(f"Error: {e}", file=sys.stderr)
        print("Run 'kukeond --help' for usage.", file=sys.stderr)
        return 1
    _start_logging(options.config.log_level)
    from twisted.internet import reactor

    # Before the reactor runs and installs its handlers, SIGTERM would kill the
    # process outright, leaving socket and pid file behind. This handler asks
    # for the same graceful stop as the reactor's own (which replaces it for
    # SIGTERM; Twisted leaves a non-default SIGINT handler in place).
    threads = cast(IReactorThreads, reactor)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: threads.callFromThread(reactor.stop))
    try:
        service = makeService(options)
        service.privilegedStartService()
    except (StartupError, ListenerError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
