"""Command-line options and ``makeService`` for ``twistd kukeond`` and the ``kukeond`` script.

The nine persistent flags of the reference (plus ``--max-frame-bytes``) are
accepted both before and after ``serve``; a value given after ``serve`` wins.
"""

from __future__ import annotations

import os
import sys

from twisted.application.service import IService
from twisted.python import usage

from kukeond import __version__
from kukeond.config import (
    DEFAULT_CONFIGURATION,
    SETTINGS,
    ConfigurationError,
    DaemonConfig,
    resolve,
)


def _flag_parameters() -> list[list]:
    params: list[list] = [
        [
            "configuration",
            None,
            None,
            f"ServerConfiguration YAML file [default: {DEFAULT_CONFIGURATION}]",
        ]
    ]
    for s in SETTINGS:
        params.append([s.flag, None, None, f"{s.help} [default: {s.default}]"])
    return params


class ServeOptions(usage.Options):
    """``serve``: run the daemon in the foreground."""

    synopsis = "[flags]"
    optParameters = _flag_parameters()
    longdesc = "Run the kukeond daemon in the foreground, serving the kukeonv1 API."


class Options(usage.Options):
    """Root options of ``kukeond``; the only command is ``serve``."""

    synopsis = "[flags] serve [flags]"
    optParameters = _flag_parameters()
    subCommands = [["serve", None, ServeOptions, "Run the daemon in the foreground"]]
    longdesc = (
        "kukeond serves the kukeon kukeonv1 API on a unix socket and drives containerd, "
        "cgroups and CNI. Flags resolve per field: flag > environment > "
        "ServerConfiguration YAML > default."
    )

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"kukeond {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        """Require ``serve`` and resolve the configuration, as a usage error when invalid."""
        if self.subCommand is None:
            raise usage.UsageError("a command is required: serve")
        flags = self.given_flags()
        try:
            self.config = resolve(flags, os.environ, flags.get("configuration"))
        except ConfigurationError as e:
            raise usage.UsageError(str(e)) from None

    def given_flags(self) -> dict[str, str | None]:
        """Flags given on the command line, those after ``serve`` overriding those before."""
        given = {k: v for k, v in self.items() if v is not None and not isinstance(v, bool)}
        if self.subOptions is not None:
            given.update({k: v for k, v in self.subOptions.items() if v is not None})
        return given


def makeService(options: Options) -> IService:
    """Build the daemon's service tree from parsed options."""
    from kukeond.daemon import build_daemon

    config: DaemonConfig = options.config
    return build_daemon(config)
