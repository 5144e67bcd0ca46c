"""The daemon's reactor, installed without Twisted's TLS transports.

With ``twisted[tls]`` installed, the first import of Twisted's TCP and
reactor modules loads pyOpenSSL: ``twisted.internet.tcp`` for ``startTLS``,
``twisted.internet.posixbase`` for ``connectSSL``/``listenSSL``. That brings
cryptography (with its own OpenSSL), cffi and service_identity, about 9 MiB
of resident memory, into a daemon that serves a unix socket and needs TLS
only to pull an image from a registry.

:func:`install_reactor` imports the reactor and those modules while
``OpenSSL`` cannot be imported, so they take their no-TLS branch, then lifts
the block. A pull still speaks TLS: ``twisted.web.client.Agent`` wraps a
plain TCP connection in ``TLSMemoryBIOProtocol``
(``twisted.internet.endpoints.wrapClientTLS``), and those modules import
pyOpenSSL when the pull first loads them. What is given up is
``reactor.connectSSL``/``listenSSL`` and ``startTLS`` on a TCP transport,
which the daemon does not use.

Modules that decide about TLS when they are imported (``endpoints``,
``twisted.web.client``, ``twisted.internet.ssl``) must therefore not be
imported before :func:`install_reactor`; the listener imports ``endpoints``
only under systemd socket activation.
"""

from __future__ import annotations

import sys

# Twisted's modules that look for pyOpenSSL when imported and keep the answer.
_TRANSPORTS = (
    "twisted.internet.tcp",
    "twisted.internet.unix",
    "twisted.internet.posixbase",
    "twisted.internet.reactor",
)


def install_reactor() -> bool:
    """Install the default reactor with TLS-free transports; False when it was too late.

    Too late means the reactor, a transport module or pyOpenSSL is already
    imported (as under ``twistd`` or ``trial``): then nothing changes.
    """
    if "OpenSSL" in sys.modules or any(name in sys.modules for name in _TRANSPORTS):
        return False
    sys.modules["OpenSSL"] = None  # type: ignore[assignment]  # "import OpenSSL" fails
    try:
        from twisted.internet import reactor, tcp, unix  # noqa: F401
    finally:
        del sys.modules["OpenSSL"]
    return True
