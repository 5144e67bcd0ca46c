"""How CniNetwork runs plugins, proven with small stand-in plugin scripts."""

import json
import os
import stat
import threading

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from kukeond.base import naming
from kukeond.host import cninetwork
from kukeond.host.cni import CNIPluginError, CNITimeout
from kukeond.host.cninetwork import CniNetwork
from kukeond.host.process import ProcessRunner
from kukeond.host.subnets import SubnetAllocator
from tests.network import hostenv
from tests.network.hostenv import coroutine_test

RESULT = {
    "cniVersion": "0.4.0",
    "interfaces": [{"name": "eth0"}],
    "ips": [{"version": "4", "address": "10.77.0.5/24", "gateway": "10.77.0.1"}],
}

RECORDER = """#!/bin/sh
n=$(ls "{log}" | wc -l)
cat > "{log}/$n-$CNI_COMMAND-{kind}.json"
env | grep '^CNI_' | sort > "{log}/$n-$CNI_COMMAND-{kind}.env"
{tail}
"""


class PluginExecTests(TestCase):
    def setUp(self):
        self.run_path = os.path.abspath(self.mktemp())
        self.plugins = os.path.join(self.run_path, "plugins")
        self.log = os.path.join(self.run_path, "log")
        os.makedirs(self.plugins)
        os.makedirs(self.log)
        self.net = CniNetwork(
            reactor,
            self.run_path,
            plugin_dirs=[self.plugins],
            cache_dir=os.path.join(self.run_path, "cache"),
            ipam_dir=os.path.join(self.run_path, "ipam"),
            legacy_results_dir=os.path.join(self.run_path, "results"),
            allocator=SubnetAllocator(self.run_path, "10.77.0.0/16"),
        )
        self.sn = self.net.ensure_space_network("r", "s")

    def plugin(self, kind, tail):
        path = os.path.join(self.plugins, kind)
        with open(path, "w") as handle:
            handle.write(RECORDER.format(log=self.log, kind=kind, tail=tail))
        os.chmod(path, stat.S_IRWXU)

    def calls(self):
        found = []
        for entry in sorted(os.listdir(self.log), key=lambda e: int(e.split("-")[0])):
            if entry.endswith(".json"):
                with open(os.path.join(self.log, entry)) as handle:
                    stdin = json.load(handle)
                with open(os.path.join(self.log, entry[:-5] + ".env")) as handle:
                    env = dict(line.split("=", 1) for line in handle.read().splitlines())
                found.append((entry.split("-", 1)[1][:-5], stdin, env))
        return found

    @coroutine_test
    async def test_add_chains_results_and_del_runs_in_reverse(self):
        self.plugin("bridge", f"echo '{json.dumps(RESULT)}'")
        self.plugin("loopback", f"echo '{json.dumps(RESULT)}'")
        got = await self.net.attach("s_k_c_root", "/proc/1/ns/net", self.sn.conflist_path)
        self.assertEqual(got.ipv4, "10.77.0.5")
        await self.net.detach("s_k_c_root", "/proc/1/ns/net", self.sn.conflist_path)

        calls = self.calls()
        self.assertEqual(
            [c[0] for c in calls], ["ADD-bridge", "ADD-loopback", "DEL-loopback", "DEL-bridge"]
        )
        add_bridge, add_loop = calls[0][1], calls[1][1]
        self.assertEqual((add_bridge["name"], add_bridge["cniVersion"]), ("r-s", "0.4.0"))
        self.assertNotIn("prevResult", add_bridge)
        self.assertEqual(add_bridge["ipam"]["dataDir"], os.path.join(self.run_path, "ipam"))
        self.assertEqual(add_loop["prevResult"], RESULT)
        self.assertEqual(calls[2][1]["prevResult"], RESULT)
        env = calls[0][2]
        self.assertEqual(env["CNI_CONTAINERID"], "s_k_c_root")
        self.assertEqual(env["CNI_NETNS"], "/proc/1/ns/net")
        self.assertEqual(env["CNI_IFNAME"], "eth0")
        self.assertEqual(env["CNI_PATH"], self.plugins)
        cache = os.path.join(self.run_path, "cache", "results")
        self.assertEqual(os.listdir(cache), [])

    @coroutine_test
    async def test_result_cache_is_written_and_removed_off_the_reactor_thread(self):
        self.plugin("bridge", f"echo '{json.dumps(RESULT)}'")
        self.plugin("loopback", f"echo '{json.dumps(RESULT)}'")
        threads = []

        def recording(function):
            def record(*args, **kwargs):
                threads.append((function.__name__, threading.current_thread().name))
                return function(*args, **kwargs)

            return record

        for name in ("write_file_atomic", "remove_file"):
            self.patch(cninetwork, name, recording(getattr(cninetwork, name)))
        await self.net.attach("s_k_c_root", "/proc/1/ns/net", self.sn.conflist_path)
        cache = os.path.join(self.run_path, "cache", "results")
        with open(os.path.join(cache, "r-s-s_k_c_root-eth0")) as handle:
            self.assertEqual(json.load(handle)["result"], RESULT)
        await self.net.detach("s_k_c_root", "/proc/1/ns/net", self.sn.conflist_path)
        self.assertEqual(os.listdir(cache), [])
        self.assertEqual([t[0] for t in threads], ["write_file_atomic", "remove_file"])
        main = threading.current_thread().name
        self.assertNotIn(main, [t[1] for t in threads])

    @coroutine_test
    async def test_plugin_error_json_is_reported_and_add_rolled_back(self):
        self.plugin("bridge", f"[ \"$CNI_COMMAND\" = DEL ] && exit 0; echo '{json.dumps(RESULT)}'")
        self.plugin(
            "loopback",
            '[ "$CNI_COMMAND" = DEL ] && exit 0\n'
            'echo \'{"code": 11, "msg": "boom", "details": "why"}\'\n'
            "exit 1",
        )
        with self.assertRaises(CNIPluginError) as caught:
            await self.net.attach("s_k_c_root", "/proc/1/ns/net", self.sn.conflist_path)
        self.assertEqual(
            str(caught.exception), 'plugin type="loopback" name="r-s" failed (add): boom; why'
        )
        self.assertEqual(caught.exception.code, 11)
        self.assertEqual(
            [c[0] for c in self.calls()],
            ["ADD-bridge", "ADD-loopback", "DEL-loopback", "DEL-bridge"],
        )
        self.assertFalse(os.path.exists(os.path.join(self.run_path, "cache", "results")))

    @coroutine_test
    async def test_remove_space_network_without_host_objects(self):
        hostenv.require_host()
        removed = await self.net.remove_space_network("r", "s")
        self.assertIn("conflist", removed)
        self.assertFalse(os.path.exists(naming.network_conflist_path(self.run_path, "r", "s")))


class ProcessRunnerTests(TestCase):
    @coroutine_test
    async def test_output_and_exit_code(self):
        code, out, err = await ProcessRunner(reactor)(
            ["/bin/sh", "-c", "cat; echo oops >&2; exit 3"], stdin=b"hello"
        )
        self.assertEqual((code, out, err), (3, b"hello", b"oops\n"))

    @coroutine_test
    async def test_a_hung_command_is_killed(self):
        with self.assertRaises(CNITimeout):
            await ProcessRunner(reactor, timeout=0.2)(["/bin/sleep", "30"])
