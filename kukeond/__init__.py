"""kukeond: the kukeon container runtime daemon, on Twisted.

It serves the ``kukeonv1`` API (Go ``net/rpc`` + ``jsonrpc`` framing) on a
unix socket and drives containerd, cgroups and CNI on one Linux host.
"""

__version__ = "0.5.0"
