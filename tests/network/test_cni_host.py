"""What the real CniNetwork leaves on the host: bridge, veths, routes, leases, NAT."""

import os

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from kukeond.base import naming
from kukeond.host import netpolicy
from kukeond.host.cni import CNIPluginNotFound
from kukeond.host.cninetwork import masquerade_chain
from kukeond.host.process import ProcessRunner
from tests.network import hostenv
from tests.network.hostenv import coroutine_test
from tests.network.test_network import real_network

SPACE = "s"
BOOKKEEPING = {"lock", "last_reserved_ip.0"}


class HostAttachTests(TestCase):
    def setUp(self):
        hostenv.require_host()
        hostenv.preserve_ip_forward(self)
        self.run_path = os.path.abspath(self.mktemp())
        os.makedirs(self.run_path)
        self.realm = hostenv.unique("kh")
        self.name = naming.network_name(self.realm, SPACE)
        self.bridge = naming.bridge_name(self.realm, SPACE)
        self.state = os.path.join(self.run_path, "cni-state")
        self.net = real_network(self, self.run_path, hostenv.free_parent_cidr())
        self.addCleanup(hostenv.sh, "ip", "link", "delete", self.bridge, check=False)
        self.addCleanup(
            lambda: self.net.remove_space_network(self.realm, SPACE).addErrback(lambda _: None)
        )
        self.sn = self.net.ensure_space_network(self.realm, SPACE, exclusive=True)

    async def attach(self, cid, net=None):
        netns = hostenv.make_netns(self)
        net = net or self.net

        def undo():
            return net.detach(cid, netns, self.sn.conflist_path).addErrback(lambda _: None)

        self.addCleanup(undo)
        return netns, await net.attach(cid, netns, self.sn.conflist_path)

    def leases(self):
        directory = os.path.join(self.state, "ipam", self.name)
        if not os.path.isdir(directory):
            return {}
        found = {}
        for entry in set(os.listdir(directory)) - BOOKKEEPING:
            with open(os.path.join(directory, entry)) as handle:
                found[entry] = handle.read().split()[0]
        return found

    def cached(self):
        directory = os.path.join(self.state, "cache", "results")
        return sorted(os.listdir(directory)) if os.path.isdir(directory) else []

    def bridge_ports(self):
        return (
            hostenv.sh("ip", "-o", "link", "show", "master", self.bridge, check=False)
            .strip()
            .splitlines()
        )

    def nat(self):
        return hostenv.sh("iptables", "-w", "-t", "nat", "-S")

    async def ping(self, netns, address):
        code, out, err = await ProcessRunner(reactor, timeout=30)(
            [
                "/usr/bin/ip",
                "netns",
                "exec",
                hostenv.netns_name(netns),
                "/usr/bin/busybox",
                "ping",
                "-c",
                "3",
                "-W",
                "2",
                address,
            ]
        )
        return code

    @coroutine_test
    async def test_two_cells_share_the_bridge_and_leave_nothing_behind(self):
        ns_a, a = await self.attach("s_k_a_root")
        ns_b, b = await self.attach("s_k_b_root")
        gateway = self.sn.subnet.replace(".0/24", ".1")

        self.assertEqual(len(self.bridge_ports()), 2)
        self.assertIn(f"{gateway}/24", hostenv.sh("ip", "-4", "addr", "show", self.bridge))
        self.assertIn(f"{self.sn.subnet} dev {self.bridge}", hostenv.sh("ip", "-4", "route"))
        for ns, got in ((ns_a, a), (ns_b, b)):
            inside = hostenv.sh("ip", "-n", hostenv.netns_name(ns), "-4", "addr", "show", "eth0")
            self.assertIn(f"{got.ipv4}/24", inside)
            routes = hostenv.sh("ip", "-n", hostenv.netns_name(ns), "-4", "route")
            self.assertIn(f"default via {gateway} dev eth0", routes)
        self.assertEqual(self.leases(), {a.ipv4: "s_k_a_root", b.ipv4: "s_k_b_root"})
        self.assertEqual(
            self.cached(), [f"{self.name}-s_k_a_root-eth0", f"{self.name}-s_k_b_root-eth0"]
        )
        self.assertIn(masquerade_chain(self.name, "s_k_a_root"), self.nat())

        self.assertEqual(await self.ping(ns_a, b.ipv4), 0)
        self.assertEqual(await self.ping(ns_b, a.ipv4), 0)

        await self.net.detach("s_k_a_root", ns_a, self.sn.conflist_path)
        await self.net.detach("s_k_b_root", ns_b, self.sn.conflist_path)
        self.assertEqual(self.bridge_ports(), [])
        self.assertEqual(self.leases(), {})
        self.assertEqual(self.cached(), [])
        self.assertNotIn(masquerade_chain(self.name, "s_k_a_root"), self.nat())
        self.assertNotIn(masquerade_chain(self.name, "s_k_b_root"), self.nat())

        removed = await self.net.remove_space_network(self.realm, SPACE)
        self.assertIn("bridge", removed)
        self.assertFalse(hostenv.link_exists(self.bridge))
        self.assertFalse(os.path.exists(os.path.join(self.state, "ipam", self.name)))

    @coroutine_test
    async def test_detach_attach_cycles_keep_one_lease_per_cell(self):
        ns_a, _ = await self.attach("s_k_a_root")
        _, b = await self.attach("s_k_b_root")
        for _ in range(3):
            await self.net.detach("s_k_a_root", ns_a, self.sn.conflist_path)
            again = await self.net.attach("s_k_a_root", ns_a, self.sn.conflist_path)
            self.assertEqual(self.leases(), {again.ipv4: "s_k_a_root", b.ipv4: "s_k_b_root"})
        self.assertEqual(await self.ping(ns_a, b.ipv4), 0)

    @coroutine_test
    async def test_second_add_recovers_the_cached_address(self):
        ns_a, a = await self.attach("s_k_a_root")
        again = await self.net.attach("s_k_a_root", ns_a, self.sn.conflist_path)
        self.assertTrue(again.reused)
        self.assertEqual(again.ipv4, a.ipv4)
        self.assertEqual(self.leases(), {a.ipv4: "s_k_a_root"})

    @coroutine_test
    async def test_failed_add_is_rolled_back(self):
        partial = self.mktemp()
        os.makedirs(partial)
        for plugin in ("bridge", "host-local"):
            os.symlink(os.path.join(hostenv.PLUGIN_DIR, plugin), os.path.join(partial, plugin))
        broken = real_network(self, self.run_path, self.net._files.allocator.parent, [partial])
        with self.assertRaises(CNIPluginNotFound) as caught:
            await self.attach("s_k_a_root", net=broken)
        self.assertIn('failed to find plugin "loopback"', str(caught.exception))
        self.assertEqual(self.bridge_ports(), [])
        self.assertEqual(self.leases(), {})
        self.assertEqual(self.cached(), [])
        self.assertNotIn(masquerade_chain(self.name, "s_k_a_root"), self.nat())

    @coroutine_test
    async def test_scrub_after_the_namespace_vanished(self):
        ns_a, _ = await self.attach("s_k_a_root")
        hostenv.sh("ip", "netns", "delete", hostenv.netns_name(ns_a))
        removed = await self.net.scrub("s_k_a_root", self.name)
        self.assertIn(f"nat:{masquerade_chain(self.name, 's_k_a_root')}", removed)
        self.assertEqual(self.leases(), {})
        self.assertEqual(self.cached(), [])
        self.assertNotIn(masquerade_chain(self.name, "s_k_a_root"), self.nat())


class HostEgressTests(TestCase):
    def setUp(self):
        hostenv.require_host()
        self.run_path = os.path.abspath(self.mktemp())
        os.makedirs(self.run_path)
        self.realm = hostenv.unique("ke")
        self.chain = netpolicy.chain_name(self.realm, SPACE)
        self.net = real_network(self, self.run_path, hostenv.free_parent_cidr())
        self.net.ensure_space_network(self.realm, SPACE)
        master_existed = self.iptables("-S", netpolicy.MASTER_CHAIN) is not None
        if not master_existed:
            self.addCleanup(self.drop_master_if_empty)
        self.addCleanup(
            lambda: self.net.remove_space_network(self.realm, SPACE).addErrback(lambda _: None)
        )

    def iptables(self, *args):
        try:
            return hostenv.sh("iptables", "-w", *args)
        except RuntimeError:
            return None

    def drop_master_if_empty(self):
        rules = self.iptables("-S", netpolicy.MASTER_CHAIN) or ""
        if rules.strip() == f"-N {netpolicy.MASTER_CHAIN}":
            self.iptables("-D", "FORWARD", "-j", netpolicy.MASTER_CHAIN)
            self.iptables("-X", netpolicy.MASTER_CHAIN)

    @coroutine_test
    async def test_policy_installed_idempotently_and_removed(self):
        egress = {"default": "deny", "allow": [{"cidr": "10.9.0.0/16", "ports": [443]}]}
        await self.net.apply_egress(self.realm, SPACE, egress)
        rules = self.iptables("-S", self.chain)
        self.assertIn("RELATED,ESTABLISHED", rules)
        self.assertIn("-d 10.9.0.0/16 -p tcp -m tcp --dport 443", rules)
        self.assertTrue(rules.strip().endswith("-j DROP"))
        self.assertIn(f"-j {netpolicy.MASTER_CHAIN}", self.iptables("-S", "FORWARD"))
        dispatch = self.iptables("-S", netpolicy.MASTER_CHAIN)
        self.assertEqual(dispatch.count(f"-j {self.chain}"), 1)

        await self.net.apply_egress(self.realm, SPACE, egress)
        self.assertEqual(self.iptables("-S", self.chain), rules)
        self.assertEqual(self.iptables("-S", netpolicy.MASTER_CHAIN), dispatch)

        removed = await self.net.remove_space_network(self.realm, SPACE)
        self.assertIn("egress", removed)
        self.assertIsNone(self.iptables("-S", self.chain))
        self.assertNotIn(self.chain, self.iptables("-S", netpolicy.MASTER_CHAIN) or "")
