"""The terminal helper's configuration document, its tty dir and the staging of its binary.

The pinned documents are what the reference daemon v0.5.0 wrote for the
same containers (its ``kuketty-metadata.json``), with the random terminal id
and name fixed.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys

from twisted.trial.unittest import TestCase

from kukeond import config as cfg
from kukeond.api.v1beta1 import ContainerSpec
from kukeond.controller import kuketty

NAMES = ("pr", "s", "k", "c1", "plain")

STATUS = """  "status": {
    "pid": 0,
    "tty": "",
    "state": 0,
    "socketCtrl": "",
    "baseRunPath": "",
    "terminalRunPath": "",
    "logFile": "",
    "logLevel": "",
    "captureFile": "",
    "attachers": null
  }
}"""

PLAIN = (
    """{
  "apiVersion": "sbsh/v1beta1",
  "kind": "Terminal",
  "metadata": {
    "name": "plain",
    "labels": {
      "kukeon.io/cell": "c1",
      "kukeon.io/container-id": "plain",
      "kukeon.io/realm": "pr",
      "kukeon.io/space": "s",
      "kukeon.io/stack": "k"
    }
  },
  "spec": {
    "id": "042487a7",
    "kind": 0,
    "name": "faithful_rohan",
    "labels": null,
    "command": "sh",
    "commandArgs": null,
    "inheritEnv": true,
    "env": null,
    "prompt": "",
    "runPath": "/run/kukeon/tty",
    "captureFile": "/run/kukeon/tty/capture",
    "logFile": "",
    "logLevel": "info",
    "socketIO": "/run/kukeon/tty/socket",
    "profileName": "",
    "stages": {}
  },
"""
    + STATUS
)

FANCY_SPEC = """  "spec": {
    "id": "fa1b5482",
    "kind": 0,
    "name": "dour_khazaddum",
    "labels": null,
    "command": "sh",
    "commandArgs": [
      "-c",
      "exec sh -i"
    ],
    "inheritEnv": true,
    "env": null,
    "prompt": "$ ",
    "setPrompt": true,
    "runPath": "/run/kukeon/tty",
    "captureFile": "/run/kukeon/tty/capture",
    "logFile": "/run/kukeon/tty/log",
    "logLevel": "info",
    "socketIO": "/run/kukeon/tty/socket",
%s    "profileName": "",
    "stages": {
      "onInit": [
        {
          "script": "echo hi"
        }
      ]
    }
  },
"""

FANCY_HEAD = """{
  "apiVersion": "sbsh/v1beta1",
  "kind": "Terminal",
  "metadata": {
    "name": "fancy",
    "labels": {
      "kukeon.io/cell": "c1",
      "kukeon.io/container-id": "fancy",
      "kukeon.io/realm": "pr",
      "kukeon.io/space": "s",
      "kukeon.io/stack": "k"
    }
  },
"""

GROUP_FIELDS = """    "socketMode": 432,
    "socketGid": 995,
    "captureMode": 416,
    "captureGid": 995,
    "logFileMode": 416,
    "logFileGid": 995,
"""


def plain() -> ContainerSpec:
    return ContainerSpec.from_wire({"id": "plain", "image": "busybox", "attachable": True})


def fancy() -> ContainerSpec:
    return ContainerSpec.from_wire({
        "id": "fancy", "image": "busybox", "command": "sh", "args": ["-c", "exec sh -i"],
        "attachable": True, "workingDir": "/tmp", "env": ["A=b"],
        "tty": {"prompt": "$ ", "onInit": [{"script": "echo hi"}],
                "logFile": "/run/kukeon/tty/log"},
    })  # fmt: skip


def render(container, argv, names, gid=0, term=("042487a7", "faithful_rohan")) -> str:
    doc = kuketty.terminal_doc(container, argv, names, gid, *term)
    return kuketty.go_json(doc).decode()


class TerminalDocTests(TestCase):
    def test_image_command_as_the_reference_writes_it(self):
        self.assertEqual(render(plain(), ["sh"], NAMES), PLAIN)

    def test_command_args_and_tty_settings(self):
        names = ("pr", "s", "k", "c1", "fancy")
        got = render(fancy(), ["sh", "-c", "exec sh -i"], names, 0, ("fa1b5482", "dour_khazaddum"))
        self.assertEqual(got, FANCY_HEAD + FANCY_SPEC % "" + STATUS)

    def test_a_kukeon_group_sets_modes_and_gids(self):
        names = ("pr", "s", "k", "c1", "fancy")
        got = render(
            fancy(), ["sh", "-c", "exec sh -i"], names, 995, ("fa1b5482", "dour_khazaddum")
        )
        self.assertEqual(got, FANCY_HEAD + FANCY_SPEC % GROUP_FIELDS + STATUS)
        # Without a log file, no log file mode or group either.
        doc = kuketty.terminal_doc(plain(), ["sh"], NAMES, 995)
        self.assertNotIn("logFileMode", doc["spec"])
        self.assertEqual(doc["spec"]["socketMode"], 0o660)

    def test_fresh_id_and_name_each_time(self):
        docs = [kuketty.terminal_doc(plain(), ["sh"], NAMES) for _ in range(8)]
        for doc in docs:
            self.assertRegex(doc["spec"]["id"], r"^[0-9a-f]{8}$")
            self.assertRegex(doc["spec"]["name"], r"^[a-z]+_[a-z]+$")
        self.assertGreater(len({d["spec"]["id"] for d in docs}), 1)

    def test_no_argv_leaves_the_sbsh_default_shell(self):
        spec = kuketty.terminal_doc(plain(), [], NAMES)["spec"]
        self.assertEqual((spec["command"], spec["commandArgs"]), ("/bin/bash", ["-i"]))

    def test_empty_names_are_left_out_of_the_labels(self):
        doc = kuketty.terminal_doc(plain(), ["sh"], ("r", "", "", "", "x"))
        self.assertEqual(
            doc["metadata"]["labels"], {"kukeon.io/container-id": "x", "kukeon.io/realm": "r"}
        )
        doc = kuketty.terminal_doc(plain(), ["sh"], ("", "", "", "", ""))
        self.assertNotIn("labels", doc["metadata"])

    def test_go_string_escapes(self):
        text = kuketty.go_json({"a": "<b>&\u2028é\n\t\x01"}).decode()
        self.assertEqual(text, '{\n  "a": "\\u003cb\\u003e\\u0026\\u2028é\\n\\t\\u0001"\n}')
        self.assertEqual(json.loads(text), {"a": "<b>&\u2028é\n\t\x01"})


class FilesTests(TestCase):
    def test_metadata_is_replaced_atomically_and_private(self):
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "kuketty-metadata.json")
        with open(path, "w") as f:
            f.write("old")
        kuketty.write_metadata(path, kuketty.render_terminal_doc(plain(), ["sh"], NAMES))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            self.assertEqual(json.load(f)["apiVersion"], "sbsh/v1beta1")
        self.assertEqual(os.listdir(directory), ["kuketty-metadata.json"])

    def test_tty_dir_modes(self):
        tty = os.path.join(self.mktemp(), "x", "tty")
        kuketty.prepare_tty_dir(tty)
        for path in (tty, os.path.dirname(tty)):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o700, path)
        if os.geteuid() != 0:
            return
        kuketty.prepare_tty_dir(tty, 995)
        for path in (tty, os.path.dirname(tty)):
            st = os.stat(path)
            self.assertEqual(
                (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid), (0o2750, 0, 995), path
            )

    def test_hand_over_to_the_container_uid(self):
        if os.geteuid() != 0:
            self.skipTest("chown needs root")
        tty = os.path.join(self.mktemp(), "x", "tty")
        kuketty.prepare_tty_dir(tty)
        metadata = os.path.join(os.path.dirname(tty), "kuketty-metadata.json")
        kuketty.write_metadata(metadata, b"{}")
        kuketty.hand_over(tty, metadata, 1000)
        for path in (tty, metadata):
            st = os.stat(path)
            self.assertEqual((st.st_uid, st.st_gid), (1000, 0), path)
        # The parent stays the daemon's.
        self.assertEqual(os.stat(os.path.dirname(tty)).st_uid, 0)


class StagingTests(TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.run = os.path.join(self.dir, "run")
        self.source = self.binary("source", b"\x7fELF kuketty")
        self.patch(os, "environ", dict(os.environ, PATH=os.path.join(self.dir, "nowhere")))

    def binary(self, name: str, data: bytes, mode: int = 0o755) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def test_configured_binary_is_copied_once(self):
        staged = kuketty.stage(self.run, self.source)
        self.assertEqual(staged, os.path.join(self.run, "bin", "kuketty"))
        st = os.stat(staged)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o755)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(staged)).st_mode), 0o755)
        with open(staged, "rb") as f:
            self.assertEqual(f.read(), b"\x7fELF kuketty")
        # A usable staged copy is kept: not copied again, even from elsewhere.
        kuketty.stage(self.run, self.binary("other", b"other"))
        self.assertEqual(os.stat(staged).st_ino, st.st_ino)
        self.assertEqual(os.listdir(os.path.dirname(staged)), ["kuketty"])

    def test_empty_or_not_executable_copy_is_replaced(self):
        target = os.path.join(self.run, "bin", "kuketty")
        os.makedirs(os.path.dirname(target))
        for data, mode in ((b"", 0o755), (b"x", 0o644)):
            with open(target, "wb") as f:
                f.write(data)
            os.chmod(target, mode)
            kuketty.stage(self.run, self.source)
            with open(target, "rb") as f:
                self.assertEqual(f.read(), b"\x7fELF kuketty")

    def test_looked_for_in_order_then_path(self):
        first = os.path.join(self.dir, "a", "kuketty")
        second = self.binary("kuketty", b"second")
        self.assertEqual(kuketty.find_source("", [first, second]), second)
        bindir = os.path.join(self.dir, "bin")
        os.makedirs(bindir)
        os.rename(second, os.path.join(bindir, "kuketty"))
        self.patch(os, "environ", dict(os.environ, PATH=bindir))
        self.assertEqual(kuketty.find_source("", [first]), os.path.join(bindir, "kuketty"))

    def test_absent_names_every_place(self):
        places = [os.path.join(self.dir, "a", "kuketty"), self.binary("empty", b"")]
        with self.assertRaises(kuketty.KukettyNotFound) as caught:
            kuketty.find_source("", places)
        self.assertEqual(
            str(caught.exception),
            f"kuketty binary not found in: {places[0]}, {places[1]}, $PATH/kuketty "
            "(set --kuketty-binary or KUKEOND_KUKETTY_BINARY to its path)",
        )
        missing = os.path.join(self.dir, "missing")
        with self.assertRaises(kuketty.KukettyNotFound) as caught:
            kuketty.stage(self.run, missing)
        self.assertIn(missing, str(caught.exception))
        self.assertFalse(os.path.exists(os.path.join(self.run, "bin", "kuketty")))

    def test_default_places(self):
        venv_bin = os.path.dirname(os.path.abspath(sys.executable))
        places = kuketty.candidates("", sys.executable, "")
        self.assertEqual(places, ["/bin/kuketty", os.path.join(venv_bin, "kuketty")])
        script = self.binary("kukeond", b"#!/bin/sh\n")
        places = kuketty.candidates("", "/usr/bin/python3", script)
        self.assertEqual(
            places, ["/bin/kuketty", "/usr/bin/kuketty", os.path.join(self.dir, "kuketty")]
        )
        self.assertEqual(kuketty.candidates("/x/kuketty"), ["/x/kuketty"])


class SettingTests(TestCase):
    def resolve(self, flags, environ, yaml_text=None):
        path = os.path.join(self.mktemp(), "kukeond.yaml")
        os.makedirs(os.path.dirname(path))
        if yaml_text is not None:
            with open(path, "w") as f:
                f.write(yaml_text)
        return cfg.resolve(flags, environ, path).kuketty_binary

    def test_flag_env_yaml_default(self):
        yaml_text = "kind: ServerConfiguration\nspec:\n  kukettyBinary: /yaml/kuketty\n"
        env = {"KUKEOND_KUKETTY_BINARY": "/env/kuketty"}
        self.assertEqual(
            self.resolve({"kuketty-binary": "/flag/kuketty"}, env, yaml_text), "/flag/kuketty"
        )
        self.assertEqual(self.resolve({}, env, yaml_text), "/env/kuketty")
        self.assertEqual(self.resolve({}, {}, yaml_text), "/yaml/kuketty")
        self.assertEqual(self.resolve({}, {}), "")
        self.assertEqual(self.resolve({}, {"KUKEOND_KUKETTY_BINARY": ""}, yaml_text), "")

    def test_flag_is_offered(self):
        from kukeond.tap import Options

        options = Options()
        options.parseOptions(["--kuketty-binary", "/opt/k/kuketty", "serve"])
        self.assertEqual(options.config.kuketty_binary, "/opt/k/kuketty")
        self.assertTrue(re.search(r"kuketty-binary", str(options)))
