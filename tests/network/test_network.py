"""INetwork contract, proven against FakeNetwork and the real CniNetwork."""

import ipaddress
import json
import os

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from kukeond.base import naming
from kukeond.host.cni import (
    CNIPluginNotFound,
    INetwork,
    NetworkAlreadyExists,
    NetworkConfigNotLoaded,
)
from kukeond.host.cninetwork import CniNetwork
from kukeond.host.netpolicy import EgressInvalidDefault
from kukeond.host.spacefiles import render_conflist
from kukeond.host.subnets import SubnetAllocator
from tests.network import hostenv
from tests.network.hostenv import coroutine_test
from tests.support.fake_network import FakeNetwork

SPACE = "s"


class NetworkContract:
    """Tests every INetwork must pass; subclasses provide the hooks."""

    def make_network(self, missing_plugin=False):
        raise NotImplementedError

    def make_netns(self):
        raise NotImplementedError

    def vanish(self, netns):
        """The cell's namespace disappears (its task died)."""

    def setUp(self):
        self.run_path = os.path.abspath(self.mktemp())
        os.makedirs(self.run_path)
        self.realm = hostenv.unique("kt")
        self.net = self.make_network()
        self.name = naming.network_name(self.realm, SPACE)

    def space(self):
        return self.net.ensure_space_network(self.realm, SPACE)

    async def attach(self, cid, netns, net=None):
        net = net or self.net
        path = naming.network_conflist_path(self.run_path, self.realm, SPACE)

        def undo():
            d = net.detach(cid, netns, path)
            d.addErrback(lambda _: None)
            return d

        self.addCleanup(undo)
        return await net.attach(cid, netns, path)

    def test_verify_object(self):
        self.assertTrue(verifyObject(INetwork, self.net))

    def test_ensure_writes_conflist_and_subnet_record(self):
        sn = self.space()
        self.assertTrue(sn.created)
        self.assertEqual(sn.name, self.name)
        self.assertEqual(sn.bridge, naming.bridge_name(self.realm, SPACE))
        with open(sn.conflist_path, "rb") as handle:
            self.assertEqual(handle.read(), render_conflist(sn.name, sn.bridge, sn.subnet))
        with open(naming.network_state_path(self.run_path, self.realm, SPACE)) as handle:
            self.assertEqual(json.load(handle), {"version": "v1", "subnetCIDR": sn.subnet})
        self.assertTrue(self.net.space_network_exists(self.realm, SPACE))
        self.assertFalse(self.net.space_network_exists(self.realm, "other"))

    def test_ensure_is_idempotent_and_exclusive_refuses(self):
        first = self.space()
        again = self.space()
        self.assertFalse(again.created)
        self.assertEqual(again.subnet, first.subnet)
        self.assertRaises(
            NetworkAlreadyExists, self.net.ensure_space_network, self.realm, SPACE, exclusive=True
        )

    def test_ensure_repairs_wrong_bridge_keeping_subnet(self):
        sn = self.space()
        with open(sn.conflist_path, "wb") as handle:
            handle.write(render_conflist(sn.name, "k-deadbeef", sn.subnet))
        repaired = self.space()
        self.assertTrue(repaired.created)
        self.assertEqual((repaired.bridge, repaired.subnet), (sn.bridge, sn.subnet))

    def test_ensure_records_the_subnet_of_an_older_conflist(self):
        sn = self.space()
        os.unlink(naming.network_state_path(self.run_path, self.realm, SPACE))
        again = self.space()
        self.assertFalse(again.created)
        self.assertNotEqual(self.net.ensure_space_network(self.realm, "t").subnet, sn.subnet)
        with open(naming.network_state_path(self.run_path, self.realm, SPACE)) as handle:
            self.assertEqual(json.load(handle)["subnetCIDR"], sn.subnet)

    @coroutine_test
    async def test_two_cells_get_distinct_addresses_in_the_subnet(self):
        sn = self.space()
        subnet = ipaddress.ip_network(sn.subnet)
        a = await self.attach("s_k_a_root", self.make_netns())
        b = await self.attach("s_k_b_root", self.make_netns())
        for got in (a, b):
            self.assertIn(ipaddress.ip_address(got.ipv4), subnet)
            self.assertNotEqual(got.ipv4, str(subnet.network_address + 1))
            self.assertFalse(got.reused)
        self.assertNotEqual(a.ipv4, b.ipv4)

    @coroutine_test
    async def test_detach_then_attach_again(self):
        sn = self.space()
        ns_a = self.make_netns()
        await self.attach("s_k_a_root", ns_a)
        b = await self.attach("s_k_b_root", self.make_netns())
        await self.net.detach("s_k_a_root", ns_a, sn.conflist_path)
        await self.net.detach("s_k_a_root", ns_a, sn.conflist_path)
        again = await self.attach("s_k_a_root", ns_a)
        self.assertIn(ipaddress.ip_address(again.ipv4), ipaddress.ip_network(sn.subnet))
        self.assertNotEqual(again.ipv4, b.ipv4)

    @coroutine_test
    async def test_scrub_releases_a_vanished_cell(self):
        self.space()
        ns_a = self.make_netns()
        await self.attach("s_k_a_root", ns_a)
        b = await self.attach("s_k_b_root", self.make_netns())
        self.vanish(ns_a)
        self.assertNotEqual(await self.net.scrub("s_k_a_root", self.name), [])
        self.assertEqual(await self.net.scrub("s_k_a_root", self.name), [])
        c = await self.attach("s_k_c_root", self.make_netns())
        self.assertNotEqual(c.ipv4, b.ipv4)

    @coroutine_test
    async def test_remove_space_network(self):
        sn = self.space()
        ns = self.make_netns()
        await self.attach("s_k_a_root", ns)
        await self.net.detach("s_k_a_root", ns, sn.conflist_path)
        removed = await self.net.remove_space_network(self.realm, SPACE)
        self.assertIn("conflist", removed)
        self.assertIn("subnet", removed)
        self.assertFalse(self.net.space_network_exists(self.realm, SPACE))
        self.assertFalse(
            os.path.exists(naming.network_state_path(self.run_path, self.realm, SPACE))
        )
        self.assertEqual(
            await self.net.remove_space_network(self.realm, SPACE),
            ["egress"] if isinstance(self.net, CniNetwork) else [],
        )

    @coroutine_test
    async def test_missing_plugin(self):
        self.space()
        net = self.make_network(missing_plugin=True)
        with self.assertRaises(CNIPluginNotFound) as caught:
            await self.attach("s_k_a_root", self.make_netns(), net=net)
        text = str(caught.exception)
        self.assertTrue(
            text.startswith(
                "cni plugin not found: required CNI plugin missing on host — install the standard "
                f'CNI plugins (e.g. apt install containernetworking-plugins) so "{self.name}" '
                "resolves: "
            )
        )
        self.assertIn("failed to find plugin", text)

    @coroutine_test
    async def test_attach_without_conflist(self):
        with self.assertRaises(NetworkConfigNotLoaded):
            await self.attach("s_k_a_root", self.make_netns())

    @coroutine_test
    async def test_invalid_egress_is_refused(self):
        self.space()
        with self.assertRaises(EgressInvalidDefault):
            await self.net.apply_egress(self.realm, SPACE, {"default": "sometimes"})


class FakeNetworkTests(NetworkContract, TestCase):
    def make_network(self, missing_plugin=False):
        return FakeNetwork(self.run_path, missing_plugins=["bridge"] if missing_plugin else ())

    def make_netns(self):
        return f"/proc/{hostenv.unique('')}/ns/net"


def real_network(testcase, run_path, parent, plugin_dirs=(hostenv.PLUGIN_DIR,)):
    """A CniNetwork whose CNI state lives in the test's temp dir."""
    state = os.path.join(run_path, "cni-state")
    return CniNetwork(
        reactor,
        run_path,
        plugin_dirs=list(plugin_dirs),
        cache_dir=os.path.join(state, "cache"),
        ipam_dir=os.path.join(state, "ipam"),
        legacy_results_dir=os.path.join(state, "results"),
        allocator=SubnetAllocator(run_path, parent),
    )


class CniNetworkTests(NetworkContract, TestCase):
    def setUp(self):
        hostenv.require_host()
        hostenv.preserve_ip_forward(self)
        self.parent = hostenv.free_parent_cidr()
        super().setUp()
        bridge = naming.bridge_name(self.realm, SPACE)
        self.addCleanup(hostenv.sh, "ip", "link", "delete", bridge, check=False)
        self.addCleanup(
            lambda: self.net.remove_space_network(self.realm, SPACE).addErrback(lambda _: None)
        )

    def make_network(self, missing_plugin=False):
        dirs = [self.mktemp()] if missing_plugin else [hostenv.PLUGIN_DIR]
        return real_network(self, self.run_path, self.parent, dirs)

    def make_netns(self):
        return hostenv.make_netns(self)

    def vanish(self, netns):
        hostenv.sh("ip", "netns", "delete", hostenv.netns_name(netns))
