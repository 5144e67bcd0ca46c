"""Daemon configuration: the nine flags, their env vars, the ServerConfiguration YAML.

Each field resolves on its own: explicit flag > environment variable > YAML >
built-in default. An environment variable that is defined but empty counts
as given-and-unset (the YAML is skipped and the default wins), as in the
reference. The first-run template is written only at the default path.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CONFIGURATION = "/etc/kukeon/kukeond.yaml"
DEFAULT_RECONCILE_SECONDS = 30.0


class ConfigurationError(Exception):
    """The configuration cannot be used; the message says which file or value and why."""


@dataclass(frozen=True)
class Setting:
    """One daemon setting: its flag, env var, YAML key, default and kind."""

    name: str
    flag: str
    env: str | None
    yaml_key: str | None
    default: str | int
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "socket",
        "socket",
        "KUKEOND_SOCKET",
        "socket",
        "/run/kukeon/kukeond.sock",
        "unix socket the daemon listens on",
    ),
    Setting(
        "socket_gid",
        "socket-gid",
        "KUKEOND_SOCKET_GID",
        "socketGID",
        0,
        "group owning the socket (mode 0660); 0 keeps it root-only (mode 0600)",
    ),
    Setting(
        "run_path",
        "run-path",
        "KUKEON_RUN_PATH",
        "runPath",
        "/opt/kukeon",
        "root of the kukeon state tree",
    ),
    Setting(
        "containerd_socket",
        "containerd-socket",
        "KUKEON_CONTAINERD_SOCKET",
        "containerdSocket",
        "/run/containerd/containerd.sock",
        "containerd gRPC socket",
    ),
    Setting(
        "log_level",
        "log-level",
        "KUKEON_LOG_LEVEL",
        "logLevel",
        "info",
        "log level: debug, info, warn or error",
    ),
    Setting(
        "reconcile_interval",
        "reconcile-interval",
        "KUKEOND_RECONCILE_INTERVAL",
        "reconcileInterval",
        "30s",
        "reconcile loop period as a Go duration; 0 disables",
    ),
    Setting(
        "namespace_suffix",
        "containerd-namespace-suffix",
        "KUKEON_NAMESPACE_SUFFIX",
        "containerdNamespaceSuffix",
        "kukeon.io",
        "suffix of realm containerd namespaces",
    ),
    Setting(
        "cgroup_root",
        "cgroup-root",
        "KUKEON_CGROUP_ROOT",
        "cgroupRoot",
        "/kukeon",
        "cgroup under which kukeon places its resources",
    ),
    Setting(
        "max_frame_bytes",
        "max-frame-bytes",
        "KUKEOND_MAX_FRAME_BYTES",
        "maxFrameBytes",
        1 << 30,
        "largest request accepted; a bigger one closes its connection",
    ),
    Setting(
        "cni_plugin_dirs",
        "cni-plugin-dirs",
        "KUKEOND_CNI_PLUGIN_DIRS",
        "cniPluginDirs",
        "/opt/cni/bin:/usr/lib/cni",
        "colon-separated directories searched for CNI plugins",
    ),
    Setting(
        "cni_cache_dir",
        "cni-cache-dir",
        "KUKEOND_CNI_CACHE_DIR",
        "cniCacheDir",
        "/opt/cni/cache",
        "CNI result cache directory",
    ),
    Setting(
        "cni_ipam_dir",
        "cni-ipam-dir",
        "KUKEOND_CNI_IPAM_DIR",
        "cniIpamDir",
        "/var/lib/cni/networks",
        "host-local IPAM lease directory",
    ),
    Setting(
        "cni_subnet_pool",
        "cni-subnet-pool",
        "KUKEOND_CNI_SUBNET_POOL",
        "cniSubnetPool",
        "10.88.0.0/16",
        "range the per-space /24 subnets are allocated from",
    ),
    Setting(
        "secrets_dir",
        "secrets-dir",
        "KUKEOND_SECRETS_DIR",
        "secretsDir",
        "/run/kukeon/secrets",
        "where file-mounted container secrets are staged (keep it on a tmpfs)",
    ),
    Setting(
        "pull_policy",
        "pull-policy",
        "KUKEOND_PULL_POLICY",
        "pullPolicy",
        "missing",
        "pull a cell's image its realm lacks: missing (from its registry) or never",
    ),
    Setting(
        "kuketty_binary",
        "kuketty-binary",
        "KUKEOND_KUKETTY_BINARY",
        "kukettyBinary",
        "",
        "terminal helper staged for attachable containers; empty looks in /bin, "
        "next to the daemon, then $PATH",
    ),
)
SETTINGS_BY_FLAG = {s.flag: s for s in SETTINGS}

PULL_POLICIES = ("missing", "never")
"""``--pull-policy`` values: pull an image a cell needs when its realm lacks it, or never."""


@dataclass
class DaemonConfig:
    """The resolved settings the daemon runs with."""

    configuration: str = DEFAULT_CONFIGURATION
    socket: str = "/run/kukeon/kukeond.sock"
    socket_gid: int = 0
    run_path: str = "/opt/kukeon"
    containerd_socket: str = "/run/containerd/containerd.sock"
    log_level: str = "info"
    reconcile_interval: str = "30s"
    namespace_suffix: str = "kukeon.io"
    cgroup_root: str = "/kukeon"
    max_frame_bytes: int = 1 << 30
    cni_plugin_dirs: str = "/opt/cni/bin:/usr/lib/cni"
    cni_cache_dir: str = "/opt/cni/cache"
    cni_ipam_dir: str = "/var/lib/cni/networks"
    cni_subnet_pool: str = "10.88.0.0/16"
    secrets_dir: str = "/run/kukeon/secrets"
    pull_policy: str = "missing"
    kuketty_binary: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def pid_file(self) -> str:
        """The pid file sits next to the socket, as the reference daemon's does."""
        return os.path.join(os.path.dirname(self.socket) or ".", "kukeond.pid")

    @property
    def reconcile_seconds(self) -> float:
        """The reconcile period in seconds (0 disables the loop); bad values fall back to 30s."""
        try:
            return max(parse_go_duration(self.reconcile_interval or "30s"), 0.0)
        except ValueError:
            return DEFAULT_RECONCILE_SECONDS


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Parse a Go ``time.Duration`` string (``30s``, ``1m30s``, ``500ms``, ``0``) into seconds."""
    s = text.strip()
    if not s:
        raise ValueError('time: invalid duration ""')
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def load_server_configuration(path: str) -> dict[str, Any]:
    """Read a ServerConfiguration file and return its ``spec`` mapping.

    A missing file is an empty configuration. Anything that is not valid YAML,
    not a mapping, or of another kind is a :class:`ConfigurationError` naming
    the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigurationError(f"read server configuration {path!r}: {e.strerror}") from None
    import yaml  # here: a daemon without a configuration file does without it

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigurationError(
            f"parse server configuration {path!r}: server configuration is invalid: {e}"
        ) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigurationError(
            f"parse server configuration {path!r}: server configuration is invalid: "
            "the document is not a mapping"
        )
    kind = doc.get("kind")
    if kind not in (None, "", "ServerConfiguration"):
        raise ConfigurationError(
            f"parse server configuration {path!r}: server configuration is invalid: "
            f"kind is {kind!r}, expected ServerConfiguration"
        )
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        raise ConfigurationError(
            f"parse server configuration {path!r}: server configuration is invalid: "
            "spec is not a mapping"
        )
    return spec


def _yaml_value(setting: Setting, spec: Mapping[str, Any], path: str) -> str | int | None:
    """Return the YAML value of ``setting`` if it is set (non-empty / non-zero)."""
    value = spec.get(setting.yaml_key) if setting.yaml_key else None
    if value is None:
        return None
    if isinstance(setting.default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(
                f"parse server configuration {path!r}: server configuration is invalid: "
                f"spec.{setting.yaml_key} must be an integer"
            )
        return value or None
    text = str(value)
    return text or None


def _as_int(setting: Setting, value: str | int, origin: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"invalid {origin} for --{setting.flag}: {value!r}") from None


def resolve(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    configuration: str | None = None,
) -> DaemonConfig:
    """Resolve every setting: explicit flag > env var > YAML > default.

    ``flags`` maps flag names (``run-path``…) to the values given on the
    command line; absent or ``None`` means not given.
    """
    path = configuration or DEFAULT_CONFIGURATION
    if path == DEFAULT_CONFIGURATION:
        write_first_run_template(path)
    spec = load_server_configuration(path)
    config = DaemonConfig(configuration=path)
    for setting in SETTINGS:
        value: str | int | None = flags.get(setting.flag)
        if value is None and setting.env and setting.env in environ:
            value = environ[setting.env] or setting.default
        if value is None:
            value = _yaml_value(setting, spec, path)
        if value is None:
            value = setting.default
        if isinstance(setting.default, int):
            value = _as_int(setting, value, "value")
        setattr(config, setting.name, value)
    validate(config)
    return config


def validate(config: DaemonConfig) -> None:
    """Normalise and check the runtime identity and the log level; warn on a bad interval."""
    from kukeond.logs import parse_level

    try:
        parse_level(config.log_level)
    except ValueError as e:
        raise ConfigurationError(str(e)) from None
    suffix = config.namespace_suffix.strip()
    if not suffix:
        raise ConfigurationError(
            "configure runtime: containerd namespace suffix is empty: "
            "server configuration is invalid"
        )
    if suffix.startswith(".") or suffix.endswith(".") or any(c in suffix for c in "/ \t\n"):
        raise ConfigurationError(
            f"configure runtime: containerd namespace suffix {suffix!r} must not start or end "
            "with '.' nor contain '/' or whitespace: server configuration is invalid"
        )
    config.namespace_suffix = suffix
    root = config.cgroup_root.strip()
    if not root.startswith("/") or not root.rstrip("/"):
        raise ConfigurationError(
            f"configure runtime: cgroup root {root!r} must be an absolute path other than '/': "
            "server configuration is invalid"
        )
    config.cgroup_root = root.rstrip("/")
    if config.max_frame_bytes <= 0:
        raise ConfigurationError(f"invalid --max-frame-bytes {config.max_frame_bytes}: must be > 0")
    try:
        pool = ipaddress.ip_network(config.cni_subnet_pool)
    except ValueError as e:
        raise ConfigurationError(f"invalid --cni-subnet-pool: {e}") from None
    if pool.version != 4 or pool.prefixlen > 24:
        raise ConfigurationError(
            f"invalid --cni-subnet-pool {config.cni_subnet_pool}: "
            "need an IPv4 range of /24 or wider"
        )
    if config.socket_gid < 0:
        raise ConfigurationError(f"invalid --socket-gid {config.socket_gid}: must be >= 0")
    if config.pull_policy not in PULL_POLICIES:
        raise ConfigurationError(
            f"invalid --pull-policy {config.pull_policy!r}: one of {', '.join(PULL_POLICIES)}"
        )
    try:
        parse_go_duration(config.reconcile_interval or "30s")
    except ValueError as e:
        config.warnings.append(
            f"invalid reconcile-interval {config.reconcile_interval!r}; "
            f"falling back to default 30s ({e})"
        )


FIRST_RUN_TEMPLATE = """\
# kukeond server configuration, written on first start because none existed.
# kukeond reads it through --configuration (default /etc/kukeon/kukeond.yaml).
# Precedence per field: command-line flag > KUKEON_*/KUKEOND_* env > this file > default.
# An existing file is never overwritten; delete this one to get it written again.
apiVersion: v1beta1
kind: ServerConfiguration
metadata:
  name: default
spec:
  # Unix socket the daemon serves the kukeonv1 API on.
  # Default: /run/kukeon/kukeond.sock
  socket: /run/kukeon/kukeond.sock

  # Group that may use the socket (mode 0660); 0 keeps it root-only (0600).
  # Default: 0
  socketGID: 0

  # Root of the state tree (metadata, logs, network files).
  # Default: /opt/kukeon
  runPath: /opt/kukeon

  # containerd's gRPC socket.
  # Default: /run/containerd/containerd.sock
  containerdSocket: /run/containerd/containerd.sock

  # debug, info, warn or error.
  # Default: info
  logLevel: info

  # Period of the reconcile loop, as a Go duration; 0 disables it.
  # Default: 30s
  reconcileInterval: 30s

  # Ignored by the daemon; read by `kuke init`. Empty picks the release image.
  # Default: ""
  kukeondImage: ""

  # Realm namespaces in containerd are named <realm>.<suffix>.
  # Default: kukeon.io
  containerdNamespaceSuffix: kukeon.io

  # cgroup under which kukeon places realms, spaces, stacks and cells.
  # Default: /kukeon
  cgroupRoot: /kukeon
"""


def write_first_run_template(path: str) -> bool:
    """Create the commented default configuration at ``path`` unless a file exists.

    Every failure is ignored (the daemon must still start); returns whether
    the file was written.
    """
    try:
        os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return False
    try:
        os.write(fd, FIRST_RUN_TEMPLATE.encode())
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
