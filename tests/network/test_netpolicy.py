from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from kukeond.host import netpolicy
from kukeond.host.netpolicy import (
    EgressApply,
    EgressHostResolution,
    EgressInvalidCIDR,
    EgressInvalidDefault,
    EgressInvalidHost,
    EgressInvalidPort,
    EgressRuleTargetConflict,
    EgressRuleTargetRequired,
    IptablesEnforcer,
    build_rules,
    policy_from_spec,
)
from tests.network.fakes import FakeIptables, fixed_resolver

CHAIN = "KUKE-EGR-af3172d4"


def run(coro):
    return defer.Deferred.fromCoroutine(coro)


class PolicyTests(SynchronousTestCase):
    def test_chain_name_is_fnv_of_realm_slash_space(self):
        self.assertEqual(netpolicy.chain_name("default", "default"), CHAIN)

    def test_nothing_to_enforce(self):
        self.assertIsNone(policy_from_spec("r", "s", "k-1", None))
        self.assertIsNone(policy_from_spec("r", "s", "k-1", {"default": "allow"}))
        self.assertIsNone(policy_from_spec("r", "s", "k-1", {"default": ""}))

    def test_validation_errors(self):
        cases = [
            ({"default": "maybe"}, EgressInvalidDefault),
            ({"default": "deny", "allow": [{}]}, EgressRuleTargetRequired),
            (
                {"default": "deny", "allow": [{"host": "a.b", "cidr": "1.2.3.0/24"}]},
                EgressRuleTargetConflict,
            ),
            ({"default": "deny", "allow": [{"cidr": "1.2.3/99"}]}, EgressInvalidCIDR),
            ({"default": "deny", "allow": [{"host": "a..b"}]}, EgressInvalidHost),
            (
                {"default": "deny", "allow": [{"cidr": "1.2.3.0/24", "ports": [0]}]},
                EgressInvalidPort,
            ),
        ]
        for egress, kind in cases:
            self.assertRaises(kind, policy_from_spec, "r", "s", "k-1", egress)

    def test_rule_error_names_its_index(self):
        exc = self.assertRaises(
            EgressInvalidCIDR,
            policy_from_spec,
            "r",
            "s",
            "k-1",
            {"default": "deny", "allow": [{"cidr": "10.0.0.0/8"}, {"cidr": "bad"}]},
        )
        self.assertTrue(
            str(exc).startswith("egress allow rule 1: egress allow rule cidr is not a valid CIDR")
        )

    def test_build_rules_order_and_comments(self):
        policy = policy_from_spec(
            "default",
            "default",
            "k-703e8b3a",
            {
                "default": "deny",
                "allow": [
                    {"cidr": "10.1.0.0/16"},
                    {"host": "db.example", "ports": [5432, 443, 443]},
                ],
            },
        )
        policy.allow[1].ips = ["192.0.2.9"]
        tag = "kukeon:default:default"
        self.assertEqual(
            build_rules(policy),
            [
                [
                    "-A",
                    CHAIN,
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
                [
                    "-A",
                    CHAIN,
                    "-d",
                    "10.1.0.0/16",
                    "-m",
                    "comment",
                    "--comment",
                    f"{tag}:allow[0]:cidr=10.1.0.0/16",
                    "-j",
                    "RETURN",
                ],
                [
                    "-A",
                    CHAIN,
                    "-d",
                    "192.0.2.9/32",
                    "-p",
                    "tcp",
                    "--dport",
                    "443",
                    "-m",
                    "comment",
                    "--comment",
                    f"{tag}:allow[1]:host=db.example",
                    "-j",
                    "RETURN",
                ],
                [
                    "-A",
                    CHAIN,
                    "-d",
                    "192.0.2.9/32",
                    "-p",
                    "tcp",
                    "--dport",
                    "5432",
                    "-m",
                    "comment",
                    "--comment",
                    f"{tag}:allow[1]:host=db.example",
                    "-j",
                    "RETURN",
                ],
                ["-A", CHAIN, "-m", "comment", "--comment", f"{tag}:default", "-j", "DROP"],
            ],
        )

    def test_allow_default_with_rules_ends_in_return(self):
        policy = policy_from_spec(
            "r", "s", "k-1", {"default": "allow", "allow": [{"cidr": "10.0.0.0/8"}]}
        )
        self.assertEqual(build_rules(policy)[-1][-2:], ["-j", "RETURN"])

    def test_parse_drop_counter(self):
        listing = (
            "Chain X (1 references)\n    pkts      bytes target     prot\n"
            "       3      180 RETURN     all\n      12      720 DROP       all\n"
        )
        self.assertEqual(netpolicy.parse_drop_counter(listing), (12, 720))
        self.assertIsNone(netpolicy.parse_drop_counter("nothing here"))


class EnforcerTests(SynchronousTestCase):
    def setUp(self):
        self.ipt = FakeIptables()
        self.enforcer = IptablesEnforcer(
            self.ipt, fixed_resolver({"db.example": ["192.0.2.7", "192.0.2.7", "2001:db8::1"]})
        )
        self.policy_spec = {
            "default": "deny",
            "allow": [{"host": "db.example"}, {"cidr": "10.9.0.0/16"}],
        }

    def apply(self, realm="default", space="default", spec=None):
        policy = policy_from_spec(realm, space, "k-703e8b3a", spec or self.policy_spec)
        return self.successResultOf(run(self.enforcer.apply(policy)))

    def test_apply_builds_chains_and_dispatch(self):
        self.apply()
        self.assertEqual(self.ipt.chains["FORWARD"], [["-j", "KUKEON-EGRESS"]])
        self.assertEqual(len(self.ipt.chains["KUKEON-EGRESS"]), 1)
        dispatch = self.ipt.chains["KUKEON-EGRESS"][0]
        self.assertEqual(dispatch[:2], ["-i", "k-703e8b3a"])
        self.assertEqual(dispatch[-2:], ["-j", CHAIN])
        rules = self.ipt.chains[CHAIN]
        self.assertEqual(len(rules), 4)
        self.assertIn("192.0.2.7/32", rules[1])
        self.assertEqual(rules[-1][-1], "DROP")
        self.assertTrue(all(call[1] == "-w" for call in self.ipt.calls))

    def test_apply_is_idempotent(self):
        self.apply()
        snapshot = {k: [list(r) for r in v] for k, v in self.ipt.chains.items()}
        self.apply()
        self.assertEqual(self.ipt.chains, snapshot)

    def test_reapply_replaces_rules(self):
        self.apply()
        self.apply(spec={"default": "deny", "allow": [{"cidr": "10.7.0.0/16"}]})
        self.assertEqual(len(self.ipt.chains[CHAIN]), 3)
        self.assertIn("10.7.0.0/16", self.ipt.chains[CHAIN][1])

    def test_none_policy_does_nothing(self):
        self.successResultOf(run(self.enforcer.apply(None)))
        self.assertEqual(self.ipt.calls, [])

    def test_unresolvable_host(self):
        policy = policy_from_spec(
            "r", "s", "k-1", {"default": "deny", "allow": [{"host": "nowhere.example"}]}
        )
        self.failureResultOf(run(self.enforcer.apply(policy)), EgressHostResolution)
        self.assertEqual(self.ipt.calls, [])

    def test_iptables_failure_is_egress_apply(self):
        def broken(argv):
            return defer.succeed((4, b"", b"iptables: permission denied"))

        enforcer = IptablesEnforcer(broken, fixed_resolver({}))
        policy = policy_from_spec("r", "s", "k-1", {"default": "deny"})
        failure = self.failureResultOf(run(enforcer.apply(policy)), EgressApply)
        self.assertIn("failed to apply egress policy", str(failure.value))
        self.assertIn("permission denied", str(failure.value))

    def test_remove_only_touches_its_space(self):
        self.apply()
        self.apply(space="other")
        other = netpolicy.chain_name("default", "other")
        self.successResultOf(run(self.enforcer.remove("default", "default")))
        self.assertNotIn(CHAIN, self.ipt.chains)
        self.assertIn(other, self.ipt.chains)
        self.assertEqual([r[-1] for r in self.ipt.chains["KUKEON-EGRESS"]], [other])

    def test_remove_absent_policy_is_fine(self):
        self.successResultOf(run(self.enforcer.remove("r", "s")))
