"""A small in-memory iptables (filter table) for exercising the enforcer."""

import shlex

from twisted.internet import defer


class FakeIptables:
    """Understands the verbs the enforcer uses; records every argv."""

    def __init__(self):
        self.chains = {"FORWARD": []}
        self.calls = []

    def _rule_text(self, chain, rule):
        return shlex.join(["-A", chain, *rule])

    def __call__(self, argv):
        self.calls.append(list(argv))
        args = [a for a in argv[1:] if a != "-w"]
        verb, chain, rest = args[0], args[1], args[2:]
        ok, fail = (0, b"", b""), (1, b"", b"iptables: No chain/target/match by that name.\n")
        if verb == "-N":
            if chain in self.chains:
                return defer.succeed((1, b"", b"Chain already exists.\n"))
            self.chains[chain] = []
            return defer.succeed(ok)
        if chain not in self.chains:
            return defer.succeed(fail)
        rules = self.chains[chain]
        if verb == "-L":
            lines = [f"Chain {chain}", "pkts bytes target prot opt in out source destination"]
            for rule in rules:
                target = rule[rule.index("-j") + 1]
                lines.append(f"    7   420 {target} all -- * * 0.0.0.0/0 0.0.0.0/0")
            return defer.succeed((0, "\n".join(lines).encode(), b""))
        if verb == "-S":
            text = "\n".join([f"-N {chain}"] + [self._rule_text(chain, r) for r in rules])
            return defer.succeed((0, text.encode() + b"\n", b""))
        if verb == "-F":
            rules.clear()
            return defer.succeed(ok)
        if verb == "-X":
            del self.chains[chain]
            return defer.succeed(ok)
        if verb == "-A":
            rules.append(rest)
            return defer.succeed(ok)
        if verb == "-I":
            rules.insert(int(rest[0]) - 1, rest[1:])
            return defer.succeed(ok)
        if verb == "-C":
            return defer.succeed(ok if rest in rules else fail)
        if verb == "-D":
            if rest not in rules:
                return defer.succeed(fail)
            rules.remove(rest)
            return defer.succeed(ok)
        raise AssertionError(f"unexpected iptables verb {argv}")


def fixed_resolver(table):
    """A resolver answering from ``table`` (host -> addresses)."""

    async def resolve(host):
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve
