"""Container secrets: form checks, sources, staging, and that values stay out of documents."""

from __future__ import annotations

import json
import os
import stat

from twisted.trial.unittest import SynchronousTestCase, TestCase

from kukeond import errors
from kukeond.api.v1beta1 import ContainerSecret, ContainerSpec
from kukeond.base import gojson
from kukeond.controller import secrets
from tests.controller.cellsupport import Calls, cell_doc, make_parents, workload
from tests.support.runtime import fake_runtime, short_tmpdir

VALUE = "s3cr3t-value-9f1c"


def container(*entries: dict) -> ContainerSpec:
    return ContainerSpec(id="app", secrets=[ContainerSecret(**e) for e in entries])


class FormTests(SynchronousTestCase):
    def assertRefused(self, message, *entries, environ=None):
        with self.assertRaises(errors.KukeonError) as caught:
            secrets.check(container(*entries), environ or {})
        self.assertEqual(str(caught.exception), message)

    def test_the_reference_checks(self):
        self.assertRefused("secret name is required (secrets[0])", {"fromEnv": "X"})
        self.assertRefused(
            'secret requires exactly one of fromFile or fromEnv (secrets[0] "a")', {"name": "a"}
        )
        self.assertRefused(
            'secret must not set both fromFile and fromEnv (secrets[0] "a")',
            {"name": "a", "fromEnv": "X", "fromFile": "/x"},
        )
        self.assertRefused(
            "secret mountPath must be an absolute container path "
            '(secrets[0] "a" mountPath "rel/x")',
            {"name": "a", "fromEnv": "X", "mountPath": "rel/x"},
        )

    def test_missing_sources_are_named(self):
        self.assertRefused(
            'secret fromEnv env var is not set on the daemon host (secret "a" env "NOPE")',
            {"name": "a", "fromEnv": "NOPE"},
        )
        self.assertRefused(
            "secret fromFile path does not exist on the host "
            '(secret "b" path "/nonexistent/kt-secret")',
            {"name": "b", "fromFile": "/nonexistent/kt-secret"},
        )
        secrets.check(container({"name": "a", "fromEnv": "SET"}), {"SET": ""})


class StagingTests(SynchronousTestCase):
    def setUp(self):
        self.dir = short_tmpdir(self)
        self.source = os.path.join(self.dir, "source")
        with open(self.source, "w") as f:
            f.write(VALUE)
        self.staging = os.path.join(self.dir, "staging")

    def test_env_and_files(self):
        spec = container(
            {"name": "TOKEN", "fromEnv": "TOKEN_SRC"},
            {"name": "key", "fromFile": self.source, "mountPath": "/run/secrets/key"},
        )
        out = secrets.resolve(spec, "s_k_c_app", self.staging, {"TOKEN_SRC": "tok"})
        self.assertEqual(out.env, ["TOKEN=tok"])
        staged = os.path.join(self.staging, "s_k_c_app", "key")
        self.assertEqual(out.files, [staged])
        self.assertEqual(
            [(m.source, m.destination, m.options) for m in out.mounts],
            [(staged, "/run/secrets/key", ("rbind", "ro"))],
        )
        with open(staged) as f:
            self.assertEqual(f.read(), VALUE)
        self.assertEqual(stat.S_IMODE(os.stat(staged).st_mode), 0o400)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(staged)).st_mode), 0o700)
        secrets.give_to(out, 1000, 1001)
        self.assertEqual((os.stat(staged).st_uid, os.stat(staged).st_gid), (1000, 1001))
        secrets.remove_staged(self.staging, "s_k_c_app")
        self.assertFalse(os.path.exists(os.path.dirname(staged)))

    def test_a_failure_stages_nothing(self):
        spec = container(
            {"name": "key", "fromFile": self.source, "mountPath": "/k"},
            {"name": "gone", "fromEnv": "UNSET"},
        )
        with self.assertRaises(errors.KukeonError) as caught:
            secrets.resolve(spec, "s_k_c_app", self.staging, {})
        self.assertIn('"gone"', str(caught.exception))
        self.assertFalse(os.path.exists(os.path.join(self.staging, "s_k_c_app")))


class CellSecretTests(TestCase):
    def setUp(self):
        self.rt = fake_runtime(self)
        self.rt.config.secrets_dir = os.path.join(short_tmpdir(self), "secrets")
        self.call = Calls(self.rt)
        self.fake = self.rt.containerd
        self.source = os.path.join(short_tmpdir(self), "source")
        with open(self.source, "w") as f:
            f.write(VALUE)
        os.environ["KT_SECRET_SRC"] = VALUE
        self.addCleanup(os.environ.pop, "KT_SECRET_SRC", None)

    async def test_values_reach_the_container_and_nothing_else(self):
        ns = await make_parents(self.rt)
        app = workload(
            "app",
            "true",
            secrets=[
                ContainerSecret(name="TOKEN", fromEnv="KT_SECRET_SRC"),
                ContainerSecret(name="key", fromFile=self.source, mountPath="/run/secrets/key"),
            ],
        )
        reply = await self.call("CreateCell", Doc=cell_doc("c1", [app]))
        spec = self.fake._ns(ns).containers["s1_k1_c1_app"].spec
        self.assertIn(f"TOKEN={VALUE}", spec["process"]["env"])
        staged = os.path.join(self.rt.config.secrets_dir, "s1_k1_c1_app", "key")
        self.assertIn(
            {
                "destination": "/run/secrets/key",
                "type": "bind",
                "source": staged,
                "options": ["rbind", "ro"],
            },
            spec["mounts"],
        )
        with open(staged) as f:
            self.assertEqual(f.read(), VALUE)
        # The reference is kept, the value is not: not on disk, not in the reply.
        with open(self.rt.store.path(("r1", "s1", "k1", "c1"))) as f:
            stored = f.read()
        self.assertNotIn(VALUE, stored)
        self.assertEqual(
            json.loads(stored)["spec"]["containers"][0]["secrets"][0],
            {"name": "TOKEN", "fromEnv": "KT_SECRET_SRC"},
        )
        self.assertNotIn(VALUE, gojson.dumps(reply.to_wire()))
        await self.call("DeleteCell", Doc=cell_doc("c1"))
        self.assertFalse(os.path.exists(os.path.dirname(staged)))

    async def test_a_missing_source_creates_nothing(self):
        ns = await make_parents(self.rt)
        app = workload(
            "app",
            "true",
            secrets=[
                ContainerSecret(name="key", fromFile=self.source, mountPath="/k"),
                ContainerSecret(name="db", fromEnv="KT_SECRET_UNSET"),
            ],
        )
        with self.assertRaises(errors.KukeonError) as caught:
            await self.call("CreateCell", Doc=cell_doc("c1", [app]))
        self.assertEqual(
            str(caught.exception),
            "failed to create cell: secret fromEnv env var is not set on the daemon host "
            '(secret "db" env "KT_SECRET_UNSET")',
        )
        self.assertIsNone(self.rt.store.get(("r1", "s1", "k1", "c1")))
        self.assertEqual(sorted(self.fake._ns(ns, create=False).containers), [])
        self.assertFalse(os.path.exists(self.rt.config.secrets_dir))


class RealSecretTests(TestCase):
    timeout = 120

    def setUp(self):
        from tests.support.runtime import real_runtime

        self.rt = real_runtime(self)
        self.rt.config.secrets_dir = os.path.join(short_tmpdir(self), "secrets")
        self.call = Calls(self.rt)
        self.addCleanup(self.rt.network.remove_space_network, "r1", "s1")
        self.source = os.path.join(short_tmpdir(self), "source")
        with open(self.source, "w") as f:
            f.write(VALUE)
        os.environ["KT_SECRET_SRC"] = "env-" + VALUE
        self.addCleanup(os.environ.pop, "KT_SECRET_SRC", None)

    async def test_a_non_root_workload_reads_its_secrets(self):
        from twisted.internet import reactor, task

        from kukeond.base import naming

        await make_parents(self.rt)
        app = workload(
            "app",
            "trap 'exit 0' TERM; cat /run/secrets/key; echo; echo $TOKEN; id -u; "
            "while :; do sleep 0.2; done",
            user="1000:1000",
            secrets=[
                ContainerSecret(name="TOKEN", fromEnv="KT_SECRET_SRC"),
                ContainerSecret(name="key", fromFile=self.source, mountPath="/run/secrets/key"),
            ],
        )
        await self.call("CreateCell", Doc=cell_doc("c1", [app]))
        log = naming.container_log_path(self.rt.run_path, "r1", "s1", "k1", "c1", "app")
        wanted = [VALUE, "env-" + VALUE, "1000"]
        for _ in range(100):
            with open(log) as f:
                if f.read().split() == wanted:
                    break
            await task.deferLater(reactor, 0.05, lambda: None)
        with open(log) as f:
            self.assertEqual(f.read().split(), wanted)
        staged = os.path.join(self.rt.config.secrets_dir, "s1_k1_c1_app")
        self.assertTrue(os.path.isdir(staged))
        await self.call("DeleteCell", Doc=cell_doc("c1"))
        self.assertFalse(os.path.exists(staged))
