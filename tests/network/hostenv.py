"""Helpers for tests that exercise the real host: root, netns, unique names."""

import functools
import os
import secrets
import shlex
import shutil
import subprocess

from twisted.internet import defer
from twisted.trial.unittest import SkipTest

PLUGIN_DIR = "/usr/lib/cni"


def coroutine_test(method):
    """Let a test method be ``async def`` (trial waits on the Deferred)."""

    @functools.wraps(method)
    def wrapper(self, *args):
        return defer.Deferred.fromCoroutine(method(self, *args))

    return wrapper


def require_host():
    """Skip unless root with ip, iptables and the CNI plugins available."""
    if os.geteuid() != 0:
        raise SkipTest("needs root")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            raise SkipTest(f"needs {tool}")
    for plugin in ("bridge", "host-local", "loopback"):
        if not os.access(os.path.join(PLUGIN_DIR, plugin), os.X_OK):
            raise SkipTest(f"needs the {plugin} CNI plugin in {PLUGIN_DIR}")


def sh(*argv, check=True):
    """Run a short host command; returns its stdout text."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{argv}: {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def remove_masquerade(network: str) -> None:
    """Remove the bridge plugin's nat rules and chains of the CNI network ``network``.

    A container whose task was killed without a CNI DEL (a test's cleanup, or
    the reference's in-process delete) leaves them behind.
    """
    mark = f'name: "{network}" id:'
    chains = set()
    for line in sh("iptables", "-w", "-t", "nat", "-S", check=False).splitlines():
        args = shlex.split(line)
        if args[:1] != ["-A"] or not any(mark in a for a in args):
            continue
        if args[1] == "POSTROUTING" and args[-2] == "-j":
            chains.add(args[-1])
            sh("iptables", "-w", "-t", "nat", "-D", *args[1:], check=False)
        elif args[1].startswith("CNI-"):
            chains.add(args[1])  # a chain whose jump is already gone
    rules = sh("iptables", "-w", "-t", "nat", "-S", check=False)
    for chain in sorted(chains):
        if f"-N {chain}" in rules:
            sh("iptables", "-w", "-t", "nat", "-F", chain, check=False)
            sh("iptables", "-w", "-t", "nat", "-X", chain, check=False)


def unique(prefix):
    """A short name no other test run uses."""
    return f"{prefix}{secrets.token_hex(3)}"


def free_parent_cidr():
    """A /16 under 10.200-10.250 that no host route touches."""
    routes = sh("ip", "-4", "route", "show", "table", "all")
    for _ in range(50):
        second = 200 + secrets.randbelow(51)
        if f"10.{second}." not in routes:
            return f"10.{second}.0.0/16"
    raise SkipTest("no free 10.x.0.0/16 for a test subnet pool")


def make_netns(testcase):
    """Create a network namespace removed at cleanup; returns its path."""
    name = unique("knt-")
    sh("ip", "netns", "add", name)
    testcase.addCleanup(sh, "ip", "netns", "delete", name, check=False)
    return f"/var/run/netns/{name}"


def netns_name(path):
    """The ``ip netns`` name of a namespace path made by make_netns."""
    return os.path.basename(path)


def preserve_ip_forward(testcase):
    """Restore net.ipv4.ip_forward (the bridge gateway turns it on) at cleanup."""
    path = "/proc/sys/net/ipv4/ip_forward"
    with open(path) as handle:
        value = handle.read()

    def restore():
        with open(path, "w") as handle:
            handle.write(value)

    testcase.addCleanup(restore)


def link_exists(name):
    """True when a network link of that name exists on the host."""
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0
