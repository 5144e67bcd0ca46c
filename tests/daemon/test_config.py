import os

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from kukeond import config as cfg
from kukeond.config import ConfigurationError, parse_go_duration, resolve
from kukeond.tap import Options

YAML = """\
apiVersion: v1beta1
kind: ServerConfiguration
spec:
  socket: /yaml/sock
  socketGID: 42
  runPath: /yaml/run
  containerdSocket: /yaml/containerd.sock
  logLevel: debug
  reconcileInterval: 1m30s
  containerdNamespaceSuffix: yaml.io
  cgroupRoot: /yaml-cg/
"""


class ResolveTests(SynchronousTestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "kukeond.yaml")
        with open(self.path, "w") as f:
            f.write(YAML)

    def test_defaults_with_absent_file(self):
        c = resolve({}, {}, os.path.join(self.dir, "absent.yaml"))
        self.assertEqual(
            (
                c.socket,
                c.socket_gid,
                c.run_path,
                c.containerd_socket,
                c.log_level,
                c.reconcile_interval,
                c.namespace_suffix,
                c.cgroup_root,
            ),
            (
                "/run/kukeon/kukeond.sock",
                0,
                "/opt/kukeon",
                "/run/containerd/containerd.sock",
                "info",
                "30s",
                "kukeon.io",
                "/kukeon",
            ),
        )
        self.assertFalse(os.path.exists(os.path.join(self.dir, "absent.yaml")))

    def test_yaml_fills_every_field(self):
        c = resolve({}, {}, self.path)
        self.assertEqual(
            (
                c.socket,
                c.socket_gid,
                c.run_path,
                c.containerd_socket,
                c.log_level,
                c.reconcile_interval,
                c.namespace_suffix,
                c.cgroup_root,
                c.reconcile_seconds,
            ),
            (
                "/yaml/sock",
                42,
                "/yaml/run",
                "/yaml/containerd.sock",
                "debug",
                "1m30s",
                "yaml.io",
                "/yaml-cg",
                90.0,
            ),
        )

    def test_precedence_per_field(self):
        table = [
            # (flag, env var, env value, attribute, expected)
            ("socket", "KUKEOND_SOCKET", "/env/sock", "socket"),
            ("socket-gid", "KUKEOND_SOCKET_GID", "7", "socket_gid"),
            ("run-path", "KUKEON_RUN_PATH", "/env/run", "run_path"),
            ("containerd-socket", "KUKEON_CONTAINERD_SOCKET", "/env/c.sock", "containerd_socket"),
            ("log-level", "KUKEON_LOG_LEVEL", "warn", "log_level"),
            ("reconcile-interval", "KUKEOND_RECONCILE_INTERVAL", "5s", "reconcile_interval"),
            (
                "containerd-namespace-suffix",
                "KUKEON_NAMESPACE_SUFFIX",
                "env.io",
                "namespace_suffix",
            ),
            ("cgroup-root", "KUKEON_CGROUP_ROOT", "/env-cg", "cgroup_root"),
        ]
        flag_values = {"socket-gid": "9", "log-level": "error", "reconcile-interval": "0"}
        for flag, env, env_value, attr in table:
            flag_value = flag_values.get(
                flag, f"/flag-{flag}" if "suffix" not in flag else "flag.io"
            )
            with_env = resolve({}, {env: env_value}, self.path)
            expected_env = int(env_value) if attr == "socket_gid" else env_value
            self.assertEqual(getattr(with_env, attr), expected_env, f"env beats yaml: {flag}")
            with_flag = resolve({flag: flag_value}, {env: env_value}, self.path)
            expected_flag = int(flag_value) if attr == "socket_gid" else flag_value
            self.assertEqual(getattr(with_flag, attr), expected_flag, f"flag beats env: {flag}")

    def test_empty_env_means_default_not_yaml(self):
        c = resolve({}, {"KUKEON_RUN_PATH": ""}, self.path)
        self.assertEqual(c.run_path, "/opt/kukeon")

    def test_empty_yaml_fields_do_not_override(self):
        with open(self.path, "w") as f:
            f.write('kind: ServerConfiguration\nspec:\n  socket: ""\n  socketGID: 0\n')
        c = resolve({}, {}, self.path)
        self.assertEqual((c.socket, c.socket_gid), ("/run/kukeon/kukeond.sock", 0))

    def test_invalid_yaml_names_the_file(self):
        with open(self.path, "w") as f:
            f.write("spec: [unclosed\n")
        e = self.assertRaises(ConfigurationError, resolve, {}, {}, self.path)
        self.assertIn(self.path, str(e))
        self.assertIn("server configuration is invalid", str(e))

    def test_wrong_kind(self):
        with open(self.path, "w") as f:
            f.write("kind: Realm\n")
        e = self.assertRaises(ConfigurationError, resolve, {}, {}, self.path)
        self.assertIn("Realm", str(e))

    def test_bad_suffix_and_cgroup_root(self):
        self.assertRaises(
            ConfigurationError, resolve, {"containerd-namespace-suffix": ".x"}, {}, self.path
        )
        self.assertRaises(ConfigurationError, resolve, {"cgroup-root": "/"}, {}, self.path)
        self.assertRaises(ConfigurationError, resolve, {"cgroup-root": "rel"}, {}, self.path)

    def test_invalid_log_level_is_an_error(self):
        e = self.assertRaises(ConfigurationError, resolve, {"log-level": "loud"}, {}, self.path)
        self.assertIn("debug, info, warn, error", str(e))

    def test_invalid_interval_warns_and_falls_back(self):
        c = resolve({"reconcile-interval": "soon"}, {}, self.path)
        self.assertEqual(c.reconcile_seconds, 30.0)
        self.assertEqual(len(c.warnings), 1)

    def test_bad_subnet_pool(self):
        for pool in ["10.88.0.0/25", "nonsense", "fd00::/64"]:
            self.assertRaises(ConfigurationError, resolve, {"cni-subnet-pool": pool}, {}, self.path)

    def test_pid_file_next_to_socket(self):
        c = resolve({"socket": "/a/b/k.sock"}, {}, self.path)
        self.assertEqual(c.pid_file, "/a/b/kukeond.pid")


class FirstRunTemplateTests(SynchronousTestCase):
    def test_written_only_at_default_path(self):
        default = os.path.join(self.mktemp(), "kukeond.yaml")
        self.patch(cfg, "DEFAULT_CONFIGURATION", default)
        resolve({}, {}, default)
        self.assertEqual(os.stat(default).st_mode & 0o777, 0o600)
        c = resolve({}, {}, default)  # the template round-trips through the loader
        self.assertEqual(c.run_path, "/opt/kukeon")
        custom = os.path.join(self.mktemp(), "custom.yaml")
        resolve({}, {}, custom)
        self.assertFalse(os.path.exists(custom))

    def test_existing_file_is_never_overwritten(self):
        default = os.path.join(self.mktemp(), "kukeond.yaml")
        os.makedirs(os.path.dirname(default))
        with open(default, "w") as f:
            f.write("spec:\n  runPath: /mine\n")
        self.patch(cfg, "DEFAULT_CONFIGURATION", default)
        self.assertEqual(resolve({}, {}, default).run_path, "/mine")
        with open(default) as f:
            self.assertEqual(f.read(), "spec:\n  runPath: /mine\n")

    def test_template_data_lines(self):
        import yaml

        doc = yaml.safe_load(cfg.FIRST_RUN_TEMPLATE)
        self.assertEqual(doc["kind"], "ServerConfiguration")
        self.assertEqual(
            list(doc["spec"]),
            [
                "socket",
                "socketGID",
                "runPath",
                "containerdSocket",
                "logLevel",
                "reconcileInterval",
                "kukeondImage",
                "containerdNamespaceSuffix",
                "cgroupRoot",
            ],
        )


class DurationTests(SynchronousTestCase):
    def test_go_durations(self):
        for text, seconds in [
            ("30s", 30),
            ("1m30s", 90),
            ("500ms", 0.5),
            ("0", 0),
            ("1h", 3600),
            ("-1s", -1),
            ("1.5s", 1.5),
            ("2us", 2e-6),
        ]:
            self.assertAlmostEqual(parse_go_duration(text), seconds)

    def test_invalid(self):
        for text in ["", "s", "10", "1x", "1s2"]:
            self.assertRaises(ValueError, parse_go_duration, text)


class OptionsTests(SynchronousTestCase):
    def parse(self, argv, env=None):
        self.patch(os, "environ", env or {})
        o = Options()
        o.parseOptions(["--configuration", os.path.join(self.mktemp(), "none.yaml")] + argv)
        return o.config

    def test_flags_before_and_after_serve(self):
        c = self.parse(["--socket", "/before", "serve", "--run-path", "/after"])
        self.assertEqual((c.socket, c.run_path), ("/before", "/after"))

    def test_after_serve_wins(self):
        c = self.parse(["--socket", "/before", "serve", "--socket", "/after"])
        self.assertEqual(c.socket, "/after")

    def test_serve_is_required(self):
        self.assertRaises(usage.UsageError, Options().parseOptions, ["--socket", "/x"])

    def test_help_lists_every_flag_with_default(self):
        text = " ".join((str(Options()) + str(Options().subCommands[0][2]())).split())
        for flag in [
            "configuration",
            "socket",
            "socket-gid",
            "run-path",
            "containerd-socket",
            "log-level",
            "reconcile-interval",
            "containerd-namespace-suffix",
            "cgroup-root",
            "max-frame-bytes",
            "cni-plugin-dirs",
            "cni-cache-dir",
            "cni-ipam-dir",
            "cni-subnet-pool",
        ]:
            self.assertIn(f"--{flag}", text)
        self.assertIn("[default: /opt/kukeon]", text)
