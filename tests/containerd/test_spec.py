"""The OCI spec builder: containerd's default spec exactly, then each option's effect."""

from __future__ import annotations

import json
import shutil
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from kukeond.containerd import spec as oci
from kukeond.containerd.capabilities import ALL_CAPABILITIES, capabilities_up_to
from kukeond.containerd.defaultspec import DEFAULT_PATH_ENV, default_spec
from kukeond.containerd.mounts import Mount
from kukeond.containerd.spec import (
    Capabilities,
    Device,
    ImageConfig,
    Namespace,
    Resources,
    Rlimit,
    SpecError,
    SpecOptions,
    build_spec,
)

# `ctr oci spec` of containerd 1.6.20 (Debian 12), the default every container starts from.
CONTAINERD_DEFAULT_SPEC = json.loads("""
{
  "ociVersion": "1.0.2-dev",
  "process": {
    "user": {"uid": 0, "gid": 0},
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"],
      "effective": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"],
      "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs"},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
  ],
  "linux": {
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "cgroupsPath": "/default",
    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
      {"type": "network"}],
    "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
      "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
      "/sys/firmware", "/proc/scsi"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
""")

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
# a comment
app:x:1000:1001:App:/home/app:/bin/sh
"""

GROUP = """root:x:0:
wheel:x:10:root,app
app:x:1001:
audio:x:29:app
"""


def _build(**kwargs):
    return build_spec(SpecOptions(default_path_env=False, **kwargs))


class DefaultSpecTests(SynchronousTestCase):
    def test_default_equals_containerd(self):
        self.assertEqual(default_spec(), CONTAINERD_DEFAULT_SPEC)

    def test_build_without_options_equals_containerd(self):
        self.assertEqual(_build(), CONTAINERD_DEFAULT_SPEC)

    def test_key_order_follows_go_structs(self):
        self.assertEqual(
            json.dumps(_build(), indent=4), json.dumps(CONTAINERD_DEFAULT_SPEC, indent=4)
        )

    def test_matches_installed_ctr(self):
        ctr = shutil.which("ctr")
        if ctr is None:
            raise self.skipTest("ctr is not installed")
        out = subprocess.run([ctr, "oci", "spec"], capture_output=True, check=True, timeout=30)
        self.assertEqual(_build(), json.loads(out.stdout))

    def test_default_cgroups_path_is_namespace_and_id(self):
        spec = _build(namespace="default.kukeon.io", container_id="s_k_c_root")
        self.assertEqual(spec["linux"]["cgroupsPath"], "/default.kukeon.io/s_k_c_root")

    def test_default_path_env(self):
        spec = build_spec(SpecOptions())
        self.assertEqual(spec["process"]["env"], [DEFAULT_PATH_ENV])

    def test_result_is_not_shared(self):
        first = _build()
        first["mounts"].clear()
        first["process"]["capabilities"]["bounding"].clear()
        self.assertEqual(_build(), CONTAINERD_DEFAULT_SPEC)


class ImageConfigTests(SynchronousTestCase):
    def config(self, **config):
        return ImageConfig.from_json(json.dumps({"architecture": "amd64", "config": config}))

    def test_from_json_reads_config_section(self):
        cfg = self.config(
            Env=["A=1"], Entrypoint=["/bin/sh", "-c"], Cmd=["echo"], WorkingDir="/w", User="app"
        )
        self.assertEqual(cfg, ImageConfig(("A=1",), ("/bin/sh", "-c"), ("echo",), "/w", "app"))

    def test_from_json_null_fields(self):
        cfg = ImageConfig.from_json({"config": {"Env": None, "Cmd": None}})
        self.assertEqual(cfg, ImageConfig())

    def test_env_args_cwd(self):
        spec = build_spec(
            SpecOptions(
                image_config=ImageConfig(
                    env=("PATH=/img/bin", "HOME=/root"),
                    entrypoint=("/entry",),
                    cmd=("a", "b"),
                    working_dir="/srv",
                )
            )
        )
        process = spec["process"]
        # The default PATH comes after the image and wins, as in the reference daemon.
        self.assertEqual(process["env"], [DEFAULT_PATH_ENV, "HOME=/root"])
        self.assertEqual(process["args"], ["/entry", "a", "b"])
        self.assertEqual(process["cwd"], "/srv")

    def test_image_without_env_gets_default_path(self):
        spec = _build(image_config=ImageConfig(cmd=("sh",)))
        self.assertEqual(spec["process"]["env"], [DEFAULT_PATH_ENV])
        self.assertEqual(spec["process"]["cwd"], "/")

    def test_image_user_name_resolved_with_supplementary_groups(self):
        spec = _build(image_config=ImageConfig(user="app"), passwd=PASSWD, group=GROUP)
        self.assertEqual(
            spec["process"]["user"], {"uid": 1000, "gid": 1001, "additionalGids": [10, 29]}
        )

    def test_no_image_user_takes_root_groups(self):
        spec = _build(image_config=ImageConfig(), passwd=PASSWD, group=GROUP)
        self.assertEqual(spec["process"]["user"], {"uid": 0, "gid": 0, "additionalGids": [10]})

    def test_image_user_unknown_name_fails(self):
        self.assertRaises(SpecError, _build, image_config=ImageConfig(user="nobody"), passwd=PASSWD)

    def test_explicit_args_cwd_override_image(self):
        spec = _build(
            image_config=ImageConfig(cmd=("sh",), working_dir="/srv"),
            args=("sleep", "infinity"),
            cwd="/tmp",
        )
        self.assertEqual(spec["process"]["args"], ["sleep", "infinity"])
        self.assertEqual(spec["process"]["cwd"], "/tmp")


class ProcessTests(SynchronousTestCase):
    def test_env_replace_append_unset(self):
        spec = build_spec(
            SpecOptions(
                image_config=ImageConfig(env=("A=1", "B=2")),
                env=("B=3", "C=4", "A"),
            )
        )
        self.assertEqual(spec["process"]["env"], ["B=3", DEFAULT_PATH_ENV, "C=4"])

    def test_merge_env_later_duplicate_wins(self):
        self.assertEqual(oci.merge_env([], ["X=1", "X=2"]), ["X=2"])

    def test_hostname(self):
        self.assertEqual(_build(hostname="cell")["hostname"], "cell")
        self.assertNotIn("hostname", _build())

    def test_rlimit_replaces_same_type_and_adds(self):
        spec = _build(rlimits=(Rlimit("RLIMIT_NOFILE", 4096, 2048), Rlimit("RLIMIT_NPROC", 9, 9)))
        self.assertEqual(
            spec["process"]["rlimits"],
            [
                {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 2048},
                {"type": "RLIMIT_NPROC", "hard": 9, "soft": 9},
            ],
        )

    def test_no_new_privileges_false_is_omitted(self):
        self.assertNotIn("noNewPrivileges", _build(no_new_privileges=False)["process"])
        self.assertTrue(_build(no_new_privileges=True)["process"]["noNewPrivileges"])


class UserTests(SynchronousTestCase):
    def test_numeric_uid_takes_passwd_gid(self):
        self.assertEqual(oci.resolve_user("1000", PASSWD, GROUP), (1000, 1001))

    def test_numeric_uid_unknown_gets_gid_zero(self):
        self.assertEqual(oci.resolve_user("4242", PASSWD, GROUP), (4242, 0))
        self.assertEqual(oci.resolve_user("4242", None, None), (4242, 0))

    def test_uid_gid_numbers_need_no_files(self):
        self.assertEqual(oci.resolve_user("5:6", None, None), (5, 6))

    def test_names(self):
        self.assertEqual(oci.resolve_user("app", PASSWD, GROUP), (1000, 1001))
        self.assertEqual(oci.resolve_user("app:audio", PASSWD, GROUP), (1000, 29))
        self.assertEqual(oci.resolve_user("7:wheel", PASSWD, GROUP), (7, 10))
        # A named user with a numeric group keeps that group, not the passwd one.
        self.assertEqual(oci.resolve_user("app:0", PASSWD, GROUP), (1000, 0))

    def test_unresolvable(self):
        self.assertRaises(SpecError, oci.resolve_user, "app", None, None)
        self.assertRaises(SpecError, oci.resolve_user, "1:nogroup", PASSWD, GROUP)
        self.assertRaises(SpecError, oci.resolve_user, "a:b:c", PASSWD, GROUP)

    def test_user_option_overrides_image_user(self):
        spec = _build(image_config=ImageConfig(user="app"), user="0:0", passwd=PASSWD)
        self.assertEqual(spec["process"]["user"]["uid"], 0)
        self.assertEqual(spec["process"]["user"]["gid"], 0)


class MountTests(SynchronousTestCase):
    def test_bind(self):
        self.assertEqual(
            Mount.bind("/h", "/c", readonly=True).to_json(),
            {"destination": "/c", "type": "bind", "source": "/h", "options": ["rbind", "ro"]},
        )
        self.assertEqual(Mount.bind("/h", "/c").options, ("rbind", "rw"))

    def test_tmpfs(self):
        self.assertEqual(
            Mount.tmpfs("/t", size_bytes=1048576, mode=0o1777, readonly=True).to_json(),
            {
                "destination": "/t",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["size=1048576", "mode=1777", "ro"],
            },
        )
        self.assertEqual(
            Mount.tmpfs("/t", options=("nosuid", "nodev")).options, ("nosuid", "nodev", "rw")
        )

    def test_cgroup(self):
        self.assertEqual(Mount.cgroup().options, ("rw", "nosuid", "noexec", "nodev"))
        self.assertEqual(Mount.cgroup().destination, "/sys/fs/cgroup")

    def test_mounts_are_appended_after_defaults(self):
        extra = (Mount.bind("/a", "/etc/hosts", True), Mount.tmpfs("/scratch"))
        spec = _build(mounts=extra)
        self.assertEqual(spec["mounts"][:7], CONTAINERD_DEFAULT_SPEC["mounts"])
        self.assertEqual(spec["mounts"][7:], [m.to_json() for m in extra])

    def test_shm_size(self):
        self.assertIn("size=1024k", Mount.shm(size_kb=1024).options)


class NamespaceTests(SynchronousTestCase):
    def types(self, spec):
        return [ns["type"] for ns in spec["linux"]["namespaces"]]

    def test_host_namespaces_removed(self):
        spec = _build(host_namespaces=frozenset({"network", "pid"}))
        self.assertEqual(self.types(spec), ["ipc", "uts", "mount"])

    def test_join_by_path_replaces_in_place(self):
        spec = _build(namespaces=(Namespace("network", "/proc/42/ns/net"),))
        joined = {"type": "network", "path": "/proc/42/ns/net"}
        self.assertEqual(spec["linux"]["namespaces"][4], joined)
        self.assertEqual(len(spec["linux"]["namespaces"]), 5)

    def test_new_cgroup_namespace_appended(self):
        spec = _build(namespaces=(Namespace("cgroup"),))
        self.assertEqual(self.types(spec), ["pid", "ipc", "uts", "mount", "network", "cgroup"])

    def test_unknown_type_rejected(self):
        self.assertRaises(SpecError, Namespace, "nope")


class SecurityTests(SynchronousTestCase):
    def caps(self, spec):
        return spec["process"]["capabilities"]

    def test_drop_and_add_normalised(self):
        spec = _build(capabilities=Capabilities(add=("net_admin",), drop=("CAP_KILL", "mknod")))
        for key in ("bounding", "effective", "permitted"):
            caps = self.caps(spec)[key]
            self.assertNotIn("CAP_KILL", caps)
            self.assertNotIn("CAP_MKNOD", caps)
            self.assertEqual(caps[-1], "CAP_NET_ADMIN")
            self.assertEqual(len(caps), 13)

    def test_drop_all_then_add(self):
        spec = _build(capabilities=Capabilities(add=("NET_BIND_SERVICE",), drop=("all",)))
        self.assertEqual(
            self.caps(spec),
            {
                "bounding": ["CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_NET_BIND_SERVICE"],
            },
        )

    def test_drop_all_alone_leaves_empty_object(self):
        self.assertEqual(self.caps(_build(capabilities=Capabilities(drop=("ALL",)))), {})

    def test_add_all(self):
        spec = _build(capabilities=Capabilities(add=("ALL",)))
        self.assertEqual(sorted(self.caps(spec)["bounding"]), sorted(ALL_CAPABILITIES))

    def test_readonly_rootfs(self):
        self.assertEqual(_build(readonly_rootfs=True)["root"], {"path": "rootfs", "readonly": True})

    def test_seccomp_profile_and_unconfined(self):
        profile = {"defaultAction": "SCMP_ACT_ALLOW"}
        self.assertEqual(_build(seccomp_profile=profile)["linux"]["seccomp"], profile)
        self.assertNotIn("seccomp", _build(seccomp_unconfined=True)["linux"])

    def test_parse_security_opts(self):
        parsed = oci.parse_security_opts(["no-new-privileges=false", "seccomp=unconfined"])
        self.assertEqual(parsed, oci.SecurityOpts(False, True, ""))
        parsed = oci.parse_security_opts(["no-new-privileges", "seccomp:/p.json"])
        self.assertEqual(parsed, oci.SecurityOpts(True, False, "/p.json"))
        self.assertEqual(oci.parse_security_opts([]), oci.SecurityOpts())

    def test_parse_security_opts_errors(self):
        for bad in (["apparmor=x"], ["seccomp"], ["no-new-privileges=maybe"]):
            self.assertRaises(SpecError, oci.parse_security_opts, bad)

    def test_privileged(self):
        spec = _build(
            privileged=True,
            devices=(Device("/dev/kvm", "c", 10, 232, 0o660, 0, 0),),
            mounts=(Mount.cgroup(readonly=True),),
        )
        self.assertEqual(self.caps(spec)["bounding"], list(ALL_CAPABILITIES))
        self.assertEqual(self.caps(spec)["effective"], list(ALL_CAPABILITIES))
        self.assertNotIn("maskedPaths", spec["linux"])
        self.assertNotIn("readonlyPaths", spec["linux"])
        sysfs = next(m for m in spec["mounts"] if m["type"] == "sysfs")
        self.assertEqual(sysfs["options"], ["nosuid", "noexec", "nodev", "rw"])
        self.assertEqual(spec["linux"]["resources"]["devices"], [{"allow": True, "access": "rwm"}])
        self.assertEqual(
            spec["linux"]["devices"],
            [
                {
                    "path": "/dev/kvm",
                    "type": "c",
                    "major": 10,
                    "minor": 232,
                    "fileMode": 0o660,
                    "uid": 0,
                    "gid": 0,
                }
            ],
        )

    def test_privileged_then_drop(self):
        spec = _build(privileged=True, capabilities=Capabilities(drop=("SYS_ADMIN",)))
        self.assertNotIn("CAP_SYS_ADMIN", self.caps(spec)["bounding"])
        self.assertIn("CAP_NET_ADMIN", self.caps(spec)["bounding"])

    def test_capabilities_up_to(self):
        self.assertEqual(capabilities_up_to(37)[-1], "CAP_AUDIT_READ")
        self.assertEqual(len(capabilities_up_to(40)), 41)


class LinuxTests(SynchronousTestCase):
    def test_cgroups_path(self):
        spec = _build(cgroups_path="/kukeon/r/s/k/c/s_k_c_root")
        self.assertEqual(spec["linux"]["cgroupsPath"], "/kukeon/r/s/k/c/s_k_c_root")

    def test_resources(self):
        limits = Resources(memory_limit_bytes=64 << 20, cpu_shares=512, pids_limit=99)
        spec = _build(resources=limits)
        self.assertEqual(
            spec["linux"]["resources"],
            {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": {"limit": 64 << 20},
                "cpu": {"shares": 512},
                "pids": {"limit": 99},
            },
        )

    def test_zero_resources_are_not_written(self):
        self.assertEqual(_build(resources=Resources()), CONTAINERD_DEFAULT_SPEC)

    def test_annotations(self):
        spec = _build(annotations={"io.kukeon.cni.config": "/x.conflist"})
        self.assertEqual(spec["annotations"], {"io.kukeon.cni.config": "/x.conflist"})
        self.assertEqual(list(spec)[-2:], ["annotations", "linux"])

    def test_json_round_trip(self):
        spec = build_spec(
            SpecOptions(container_id="x", args=("true",), privileged=True, hostname="h")
        )
        self.assertEqual(json.loads(json.dumps(spec)), spec)
