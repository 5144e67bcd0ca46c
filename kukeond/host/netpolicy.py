"""Space egress policy as iptables chains (``spec.network.egress``).

Layout on the host (filter table):

* ``KUKEON-EGRESS`` — shared dispatch chain, jumped to from ``FORWARD``
  position 1;
* ``KUKE-EGR-<fnv1a32(R/S)>`` — one chain per space, flushed and refilled on
  every apply: RELATED,ESTABLISHED returns, one RETURN per allowed
  destination (per port when ports are given), then DROP or RETURN;
* ``-A KUKEON-EGRESS -i <bridge> -j KUKE-EGR-…`` — the space's dispatch rule.

Every rule carries ``--comment kukeon:R:S:<suffix>`` so an operator can find
a space's rules with ``iptables -S | grep``. Hosts are resolved to IPv4
addresses when the policy is applied; DNS changes are seen on the next apply.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import DNSLookupError

from kukeond.base import naming
from kukeond.host.cni import CNIError
from kukeond.logs import Logger

MASTER_CHAIN = "KUKEON-EGRESS"
DEFAULT_ALLOW = "allow"
DEFAULT_DENY = "deny"

RESOLVE_TIMEOUT = 10.0
"""Seconds an egress allow rule's host may take to resolve."""

CommandRunner = Callable[[Sequence[str]], Awaitable[tuple[int, bytes, bytes]]]
"""Runs an argv, returns ``(exit code, stdout, stderr)``."""

HostResolver = Callable[[str], Awaitable[list[str]]]
"""Resolves a host name to its IPv4 address texts."""


class EgressError(Exception):
    """Base of policy errors; ``sentinel`` is the reference's error text."""

    sentinel = "egress policy error"

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(f"{self.sentinel}: {detail}" if detail else self.sentinel)


class EgressInvalidDefault(EgressError):
    """``default`` is neither allow nor deny."""

    sentinel = "egress default must be 'allow' or 'deny'"


class EgressRuleTargetRequired(EgressError):
    """An allow rule names neither a host nor a CIDR."""

    sentinel = "egress allow rule requires exactly one of host or cidr"


class EgressRuleTargetConflict(EgressError):
    """An allow rule names both a host and a CIDR."""

    sentinel = "egress allow rule must not set both host and cidr"


class EgressInvalidCIDR(EgressError):
    """An allow rule's CIDR does not parse."""

    sentinel = "egress allow rule cidr is not a valid CIDR"


class EgressInvalidHost(EgressError):
    """An allow rule's host is not a plausible DNS name."""

    sentinel = "egress allow rule host is not a valid dns name"


class EgressInvalidPort(EgressError):
    """An allow rule's port is outside 1..65535."""

    sentinel = "egress allow rule port must be within [1, 65535]"


class EgressHostResolution(EgressError):
    """An allow rule's host did not resolve to any IPv4 address."""

    sentinel = "failed to resolve egress allow rule host"


class EgressApply(EgressError):
    """Installing the policy failed; wraps the cause in its text."""

    sentinel = "failed to apply egress policy"


class EgressRemove(EgressError):
    """Removing the policy failed; wraps the cause in its text."""

    sentinel = "failed to remove egress policy"


class IptablesFailed(Exception):
    """An iptables command could not run or exited non-zero (wrapped by apply and remove)."""


def chain_name(realm: str, space: str) -> str:
    """Return the per-space chain name ``KUKE-EGR-<8 hex>``."""
    return naming.egress_chain_name(realm, space)


def comment_tag(realm: str, space: str) -> str:
    """Return the ``kukeon:R:S`` prefix of every rule comment of a space."""
    return f"kukeon:{realm}:{space}"


@dataclass
class AllowRule:
    """One validated allow entry; ``ips`` is filled by resolution for hosts."""

    host: str = ""
    cidr: str = ""
    ports: list[int] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)

    def targets(self) -> list[str]:
        """Return the ``-d`` destinations of this entry."""
        if self.cidr:
            return [self.cidr]
        return [f"{ip}/32" for ip in self.ips]

    def comment(self, index: int) -> str:
        """Return the comment suffix naming this entry."""
        if self.host:
            return f"allow[{index}]:host={self.host}"
        return f"allow[{index}]:cidr={self.cidr}"


@dataclass
class Policy:
    """A validated egress policy of one space, bound to its bridge."""

    realm: str
    space: str
    bridge: str
    default: str
    allow: list[AllowRule]

    @property
    def chain(self) -> str:
        """The per-space chain name."""
        return chain_name(self.realm, self.space)

    @property
    def tag(self) -> str:
        """The comment prefix of this space's rules."""
        return comment_tag(self.realm, self.space)


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _plausible_dns_name(host: str) -> bool:
    if not host or any(ch in host for ch in " \t/"):
        return False
    return all(label for label in host.split("."))


def _validate_rule(raw: Any) -> AllowRule:
    host = (_get(raw, "host") or "").strip()
    cidr = (_get(raw, "cidr") or "").strip()
    if not host and not cidr:
        raise EgressRuleTargetRequired()
    if host and cidr:
        raise EgressRuleTargetConflict()
    if cidr:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise EgressInvalidCIDR(f"{cidr!r}: {exc}") from exc
    if host and not _plausible_dns_name(host):
        raise EgressInvalidHost(repr(host))
    ports: set[int] = set()
    for port in _get(raw, "ports") or []:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise EgressInvalidPort(str(port))
        ports.add(port)
    return AllowRule(host=host, cidr=cidr, ports=sorted(ports))


def policy_from_spec(realm: str, space: str, bridge: str, egress: Any) -> Policy | None:
    """Validate ``spec.network.egress`` (a mapping or an object with fields).

    Returns None when there is nothing to enforce: no egress section, or
    ``allow`` by default with no rules.
    """
    if egress is None:
        return None
    default = (_get(egress, "default") or "").strip().lower() or DEFAULT_ALLOW
    if default not in (DEFAULT_ALLOW, DEFAULT_DENY):
        raise EgressInvalidDefault()
    raw_rules = _get(egress, "allow") or []
    if default == DEFAULT_ALLOW and not raw_rules:
        return None
    rules = []
    for index, raw in enumerate(raw_rules):
        try:
            rules.append(_validate_rule(raw))
        except EgressError as exc:
            exc.args = (f"egress allow rule {index}: {exc}",)
            raise
    return Policy(realm=realm, space=space, bridge=bridge, default=default, allow=rules)


def build_rules(policy: Policy) -> list[list[str]]:
    """Return the ``-A`` argument vectors filling the per-space chain, in order."""
    chain, tag = policy.chain, policy.tag
    rules = [
        [
            "-A",
            chain,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-m",
            "comment",
            "--comment",
            f"{tag}:established",
            "-j",
            "RETURN",
        ],
    ]
    for index, rule in enumerate(policy.allow):
        note = f"{tag}:{rule.comment(index)}"
        for dst in rule.targets():
            if not rule.ports:
                rules.append(
                    ["-A", chain, "-d", dst, "-m", "comment", "--comment", note, "-j", "RETURN"]
                )
            for port in rule.ports:
                rules.append(
                    [
                        "-A",
                        chain,
                        "-d",
                        dst,
                        "-p",
                        "tcp",
                        "--dport",
                        str(port),
                        "-m",
                        "comment",
                        "--comment",
                        note,
                        "-j",
                        "RETURN",
                    ]
                )
    verdict = "DROP" if policy.default == DEFAULT_DENY else "RETURN"
    rules.append(["-A", chain, "-m", "comment", "--comment", f"{tag}:default", "-j", verdict])
    return rules


def dispatch_rule(policy: Policy) -> list[str]:
    """Return the rule (without its ``-A``) sending bridge traffic to the chain."""
    return [
        MASTER_CHAIN,
        "-i",
        policy.bridge,
        "-m",
        "comment",
        "--comment",
        f"{policy.tag}:dispatch",
        "-j",
        policy.chain,
    ]


def parse_drop_counter(listing: str) -> tuple[int, int] | None:
    """Return (packets, bytes) of the DROP row of ``iptables -L -n -v -x``."""
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "DROP":
            try:
                return int(fields[0]), int(fields[1])
            except ValueError:
                continue
    return None


def reactor_resolver(reactor: Any, timeout: float = RESOLVE_TIMEOUT) -> HostResolver:
    """Build a resolver using the reactor's non-blocking name resolver.

    A lookup with no answer after ``timeout`` seconds fails with
    ``twisted.internet.defer.TimeoutError``.
    """

    async def resolve(host: str) -> list[str]:
        found: list[str] = []
        done: defer.Deferred[None] = defer.Deferred()

        class _Receiver:
            def resolutionBegan(self, resolution: object) -> None:  # noqa: N802
                pass

            def addressResolved(self, address: object) -> None:  # noqa: N802
                if isinstance(address, IPv4Address):
                    found.append(address.host)

            def resolutionComplete(self) -> None:  # noqa: N802
                done.callback(None)

        reactor.nameResolver.resolveHostName(_Receiver(), host, addressTypes=[IPv4Address])
        done.addTimeout(timeout, reactor)
        try:
            await done
        except defer.TimeoutError:
            raise defer.TimeoutError(f"no answer within {timeout:g}s") from None
        return found

    return resolve


class IptablesEnforcer:
    """Apply and remove space policies by running ``iptables``.

    ``run`` executes one argv (the daemon passes the CNI module's process
    runner, which has a timeout); ``resolve`` turns allow-rule hosts into
    IPv4 addresses. Applies of one space are serialised so two concurrent
    ensures never interleave a flush with a refill.
    """

    log = Logger()

    def __init__(self, run: CommandRunner, resolve: HostResolver, binary: str = "iptables") -> None:
        self._run = run
        self._resolve = resolve
        self._binary = binary
        self._locks: dict[str, defer.DeferredLock] = {}

    async def _iptables(self, *args: str, check: bool = True) -> tuple[int, str]:
        try:
            code, out, err = await self._run([self._binary, "-w", *args])
        except (CNIError, OSError) as exc:
            raise IptablesFailed(str(exc)) from exc
        text = (out + err).decode("utf-8", "replace").strip()
        if check and code != 0:
            raise IptablesFailed(f"iptables {shlex.join(args)}: exit status {code}: {text}")
        return code, out.decode("utf-8", "replace")

    async def _ensure_chain(self, chain: str) -> None:
        code, _ = await self._iptables("-L", chain, "-n", check=False)
        if code != 0:
            await self._iptables("-N", chain)

    async def _ensure_master(self) -> None:
        await self._ensure_chain(MASTER_CHAIN)
        code, _ = await self._iptables("-C", "FORWARD", "-j", MASTER_CHAIN, check=False)
        if code != 0:
            await self._iptables("-I", "FORWARD", "1", "-j", MASTER_CHAIN)

    async def _resolve_hosts(self, policy: Policy) -> None:
        for rule in policy.allow:
            if not rule.host:
                continue
            try:
                addresses = await self._resolve(rule.host)
            except (OSError, DNSLookupError, defer.TimeoutError) as exc:
                raise EgressHostResolution(f"{rule.host!r}: {exc}") from exc
            ips = sorted({str(ipaddress.IPv4Address(a)) for a in addresses if "." in a})
            if not ips:
                raise EgressHostResolution(f"{rule.host!r} resolved to no IPv4 addresses")
            rule.ips = ips

    def _lock(self, chain: str) -> defer.DeferredLock:
        return self._locks.setdefault(chain, defer.DeferredLock())

    async def apply(self, policy: Policy | None) -> None:
        """Install ``policy`` idempotently; None does nothing."""
        if policy is None:
            return
        await self._resolve_hosts(policy)
        lock = self._lock(policy.chain)
        await lock.acquire()
        try:
            await self._ensure_master()
            await self._ensure_chain(policy.chain)
            await self._iptables("-F", policy.chain)
            for rule in build_rules(policy):
                await self._iptables(*rule)
            dispatch = dispatch_rule(policy)
            code, _ = await self._iptables("-C", *dispatch, check=False)
            if code != 0:
                await self._iptables("-A", *dispatch)
        except IptablesFailed as exc:
            raise EgressApply(str(exc)) from exc
        finally:
            lock.release()
        self.log.info(
            "applied egress policy realm={realm} space={space} bridge={bridge} "
            "chain={chain} default={default} allow_count={allow_count}",
            realm=policy.realm,
            space=policy.space,
            bridge=policy.bridge,
            chain=policy.chain,
            default=policy.default,
            allow_count=len(policy.allow),
        )

    async def remove(self, realm: str, space: str) -> None:
        """Remove the space's dispatch rules and chain; absent ones are fine."""
        chain = chain_name(realm, space)
        lock = self._lock(chain)
        await lock.acquire()
        try:
            await self._log_drops(chain, realm, space)
            code, listing = await self._iptables("-S", MASTER_CHAIN, check=False)
            if code == 0:
                for line in listing.splitlines():
                    args = shlex.split(line)
                    if args[:2] == ["-A", MASTER_CHAIN] and args[-2:] == ["-j", chain]:
                        await self._iptables("-D", *args[1:])
            await self._iptables("-F", chain, check=False)
            await self._iptables("-X", chain, check=False)
        except IptablesFailed as exc:
            raise EgressRemove(str(exc)) from exc
        finally:
            lock.release()

    async def _log_drops(self, chain: str, realm: str, space: str) -> None:
        code, listing = await self._iptables("-L", chain, "-n", "-v", "-x", check=False)
        counters = parse_drop_counter(listing) if code == 0 else None
        if counters is not None:
            self.log.info(
                "egress policy drop counter realm={realm} space={space} chain={chain} "
                "drop_packets={packets} drop_bytes={bytes}",
                realm=realm,
                space=space,
                chain=chain,
                packets=counters[0],
                bytes=counters[1],
            )
