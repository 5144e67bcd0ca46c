"""Names, identifiers and run-path locations."""

from twisted.trial.unittest import SynchronousTestCase

from kukeond.base import naming


class ValidateNameTests(SynchronousTestCase):
    def test_reference_message_for_realm(self):
        with self.assertRaises(naming.InvalidName) as ctx:
            naming.validate_realm_name("bad_name")
        self.assertEqual(
            str(ctx.exception),
            'realm name is invalid: "bad_name" contains disallowed character '
            "(must not contain '_' or '/')",
        )
        self.assertEqual(ctx.exception.wire_kind, "Unknown")

    def test_reference_message_for_other_kinds(self):
        for kind in ("space", "stack", "cell", "container"):
            with self.assertRaises(naming.InvalidName) as ctx:
                naming.validate_name(kind, "  a/b ")
            self.assertEqual(
                str(ctx.exception),
                f'name is invalid: {kind} name "a/b" contains disallowed character '
                "(must not contain '_' or '/')",
            )

    def test_required(self):
        for kind, wire in (
            ("realm", "RealmNameRequired"),
            ("space", "SpaceNameRequired"),
            ("stack", "StackNameRequired"),
            ("cell", "CellNameRequired"),
            ("container", "ContainerNameRequired"),
        ):
            for empty in ("", "   ", None, "\t\n"):
                with self.assertRaises(naming.NameRequired) as ctx:
                    naming.validate_name(kind, empty)
                self.assertEqual(str(ctx.exception), f"{kind} name is required")
                self.assertEqual(ctx.exception.wire_kind, wire)

    def test_accepts_and_trims(self):
        for name in ("default", "kuke-system", "a", "A1.b-2", "x" * naming.MAX_NAME_LENGTH):
            self.assertEqual(naming.validate_name("cell", f" {name} "), name)

    def test_rejects_beyond_reference(self):
        for bad in (
            ".",
            "..",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "a b",
            "a\x00b",
            "a\nb",
            "caf\u00e9",
            "a\tb",
            "x" * (naming.MAX_NAME_LENGTH + 1),
            "metadata.json",
            "network.json",
            "network.conflist",
            "etc-hosts",
            "etc-hostname",
        ):
            self.assertRaises(naming.InvalidName, naming.validate_name, "space", bad)

    def test_control_characters_quoted_like_go(self):
        with self.assertRaises(naming.InvalidName) as ctx:
            naming.validate_name("stack", "a\x01b c")
        self.assertIn('stack name "a\\x01b c" must be ASCII', str(ctx.exception))

    def test_unknown_kind(self):
        self.assertRaises(ValueError, naming.validate_name, "volume", "x")

    def test_longest_name_is_a_dns_label(self):
        naming.validate_name("cell", "a" * 63)
        self.assertRaises(naming.InvalidName, naming.validate_name, "cell", "a" * 64)

    def test_composed_id_length_is_checked(self):
        fits = naming.containerd_id("a" * 18, "b" * 18, "c" * 18, "d" * 19)
        self.assertEqual(naming.check_containerd_id(fits), fits)
        self.assertTrue(naming.is_containerd_identifier(fits))
        too_long = naming.containerd_id("a" * 18, "b" * 18, "c" * 18, "d" * 20)
        with self.assertRaises(naming.InvalidName) as ctx:
            naming.check_containerd_id(too_long)
        self.assertIn("77 characters long; containerd allows 76", str(ctx.exception))


class GoQuoteTests(SynchronousTestCase):
    def test_like_strconv_quote(self):
        cases = {
            "plain": '"plain"',
            'q"b\\': '"q\\"b\\\\"',
            "\n\t\a": '"\\n\\t\\a"',
            "\x00\x7f": '"\\x00\\x7f"',
            "caf\u00e9 \u4e16": '"caf\u00e9 \u4e16"',
            "\u00a0\u200b": '"\\u00a0\\u200b"',
            "\U000e0001": '"\\U000e0001"',
        }
        for text, quoted in cases.items():
            self.assertEqual(naming.go_quote(text), quoted)


class IdentifierTests(SynchronousTestCase):
    def test_namespace(self):
        self.assertEqual(naming.realm_namespace("default"), "default.kukeon.io")
        self.assertEqual(
            naming.realm_namespace("kuke-system", "kukeon.io"), "kuke-system.kukeon.io"
        )
        self.assertEqual(naming.realm_namespace("r", "example.org"), "r.example.org")
        self.assertEqual(naming.realm_namespace("r", "x", explicit="custom"), "custom")

    def test_containerd_ids(self):
        self.assertEqual(
            naming.root_containerd_id("kukeon", "kukeon", "kukeond"), "kukeon_kukeon_kukeond_root"
        )
        self.assertEqual(naming.containerd_id("s", "k", "c", "x"), "s_k_c_x")
        self.assertEqual(naming.split_containerd_id("s_k_c_root"), ("s", "k", "c", "root"))
        self.assertIsNone(naming.split_containerd_id("s_k_c"))
        self.assertIsNone(naming.split_containerd_id("s__c_x"))
        with self.assertRaises(ValueError) as ctx:
            naming.containerd_id("s", " ", "c", "x")
        self.assertEqual(str(ctx.exception), "stack name cannot be empty")

    def test_cgroup_paths(self):
        self.assertEqual(naming.cgroup_path("/kukeon", "default"), "/kukeon/default")
        self.assertEqual(naming.cgroup_path("/kukeon/", "r", "s", "k", "c"), "/kukeon/r/s/k/c")
        self.assertRaises(ValueError, naming.cgroup_path, "/k", "r", "s", "k", "c", "x")
        cell = naming.cgroup_path("/kukeon", "r", "s", "k", "c")
        ctr = naming.container_cgroup_path(cell, "s_k_c_root")
        self.assertEqual(ctr, "/kukeon/r/s/k/c/s_k_c_root")
        self.assertEqual(naming.payload_cgroup_path(ctr), "/kukeon/r/s/k/c/s_k_c_root/_payload")
        self.assertEqual(naming.normalize_cgroup_root(" /a/b// "), "/a/b")

    def test_bridge_names_from_reference(self):
        self.assertEqual(naming.network_name("default", "default"), "default-default")
        self.assertEqual(naming.bridge_name("default", "default"), "k-703e8b3a")
        self.assertEqual(naming.bridge_name("kuke-system", "kukeon"), "k-082023b5")
        self.assertLessEqual(len(naming.bridge_name("a" * 18, "b" * 18)), 15)

    def test_fnv1a32_vectors(self):
        self.assertEqual(naming.fnv1a32(""), 0x811C9DC5)
        self.assertEqual(naming.fnv1a32("a"), 0xE40C292C)
        self.assertEqual(naming.fnv1a32("foobar"), 0xBF9CF968)

    def test_egress_chain(self):
        chain = naming.egress_chain_name("default", "default")
        self.assertEqual(chain, f"KUKE-EGR-{naming.fnv1a32('default/default'):08x}")
        self.assertLessEqual(len(chain), 28)


class PathTests(SynchronousTestCase):
    def test_metadata_paths(self):
        run = "/opt/kukeon"
        self.assertEqual(naming.instance_file_path(run), "/opt/kukeon/.kukeon-instance.json")
        self.assertEqual(naming.metadata_path(run, "r"), "/opt/kukeon/data/r/metadata.json")
        self.assertEqual(
            naming.metadata_path(run, "r", "s", "k", "c"), "/opt/kukeon/data/r/s/k/c/metadata.json"
        )
        self.assertRaises(ValueError, naming.metadata_path, run, "r", "s", "k", "c", "x")
        self.assertRaises(ValueError, naming.resource_dir, run)

    def test_space_and_cell_files(self):
        run = "/run"
        self.assertEqual(
            naming.network_conflist_path(run, "r", "s"), "/run/data/r/s/network.conflist"
        )
        self.assertEqual(naming.network_state_path(run, "r", "s"), "/run/data/r/s/network.json")
        self.assertEqual(
            naming.etc_hosts_path(run, "r", "s", "k", "c"), "/run/data/r/s/k/c/etc-hosts"
        )
        self.assertEqual(
            naming.etc_hostname_path(run, "r", "s", "k", "c"), "/run/data/r/s/k/c/etc-hostname"
        )

    def test_container_files(self):
        args = ("/run", "r", "s", "k", "c", "x")
        self.assertEqual(naming.container_dir(*args), "/run/data/r/s/k/c/x")
        self.assertEqual(naming.container_log_path(*args), "/run/data/r/s/k/c/x/log")
        self.assertEqual(naming.tty_dir(*args), "/run/data/r/s/k/c/x/tty")
        self.assertEqual(naming.tty_socket_path(*args), "/run/data/r/s/k/c/x/tty/socket")
        self.assertEqual(naming.tty_capture_path(*args), "/run/data/r/s/k/c/x/tty/capture")
        self.assertEqual(naming.tty_log_path(*args), "/run/data/r/s/k/c/x/tty/log")
        self.assertEqual(
            naming.kuketty_metadata_path(*args), "/run/data/r/s/k/c/x/kuketty-metadata.json"
        )
        self.assertEqual(naming.kuketty_binary_path("/run"), "/run/bin/kuketty")
        self.assertEqual(naming.secrets_dir("s_k_c_x"), "/run/kukeon/secrets/s_k_c_x")

    def test_safe_path_component(self):
        for good in ("a", "a b", "caf\u00e9", "x_y"):
            self.assertTrue(naming.is_safe_path_component(good))
        for bad in ("", ".", "..", "a/b", "a\x00", "x" * 256):
            self.assertFalse(naming.is_safe_path_component(bad))
