"""Differential conformance: one scenario, step by step, on the Go kukeond and on ours.

``Pair(test)`` starts the reference daemon (the ``kuke`` binary under the
name ``kukeond``) and ours on the same containerd 2.2, each with its own run
path, socket, cgroup root and containerd namespace suffix, and each in a
network namespace of its own (``ip netns add``, ``lo`` up, the daemon started
under ``nsenter --net=…``; not ``ip netns exec``, which remounts ``/sys`` and
hides the cgroup mounts). The CNI plugins run as children of the daemon, so
the bridges, veths and iptables rules of both land in their own namespace and
the two can use the same realm and space names, bridges and 10.88.x subnets.
The reference also runs in a private mount namespace where ``/opt`` and
``/var/lib`` are empty tmpfs: it finds the CNI plugins in ``/opt/cni/bin``
(bound to Debian's ``/usr/lib/cni``) and keeps its host-local IPAM and CNI
cache there instead of on the host.

``Pair.step(name, *args)`` runs the real ``kuke ARGS`` against both at once
and compares, after ``Side.normalise`` (run path, cgroup root, namespace
suffix, timestamps): the exit status, stdout (as documents with ``-o json`` /
``-o yaml``), stderr, and the run-path tree (which files exist, JSON files by
content). Each difference has a key ``STEP / WHAT / PATH``; ``Pair.check()``
fails the test with every difference no row of the table in
``doc/compatibility.md`` (section ``ALLOW_SECTION``) allows: a row's id is a
glob (``fnmatch``) over keys.

Everything made is removed at cleanup, even on failure: daemons, containerd
namespaces, cgroup roots, network namespaces (and so every bridge, veth and
iptables rule in them), temp directories.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from twisted.trial.unittest import FailTest, SkipTest

from tests.support.reference import REPO_ROOT, GoKukeond, KukeResult, reference_bin, run_kuke

COMPATIBILITY = REPO_ROOT / "doc" / "compatibility.md"
ALLOW_SECTION = "## Differences the conformance harness allows"
ZERO_TIME = "0001-01-01T00:00:00Z"
TIME = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
ABSENT = "<absent>"
WRAP = """#!/bin/sh
# Runs in a private mount namespace: the reference's CNI directories on tmpfs.
set -e
mount -t tmpfs -o mode=0755 kukeon-conformance /opt
mkdir -p /opt/cni/bin /opt/cni/net.d /opt/cni/cache
mount --bind /usr/lib/cni /opt/cni/bin
mount -t tmpfs -o mode=0755 kukeon-conformance /var/lib
exec "$@"
"""


class Difference(NamedTuple):
    """One thing the two daemons did differently; ``key`` is ``STEP / WHAT / PATH``."""

    key: str
    reference: str
    ours: str


def allowed_differences(path: Path = COMPATIBILITY) -> dict[str, str]:
    """The rows of the allow table in ``doc/compatibility.md``: ``{id glob: why}``."""
    rows: dict[str, str] = {}
    inside = False
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            inside = line.strip() == ALLOW_SECTION
            continue
        if not inside or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or cells[0] in ("id", "") or set(cells[0]) <= {"-", ":"}:
            continue
        rows[cells[0].strip("`")] = cells[4]
    return rows


def unallowed(differences: list[Difference], rows: dict[str, str]) -> list[Difference]:
    """The differences no row's id glob matches."""
    return [d for d in differences if not any(fnmatch.fnmatchcase(d.key, g) for g in rows)]


def _sh(*argv: str) -> None:
    subprocess.run(argv, capture_output=True, timeout=30, check=True)


def _netns(test, role: str) -> str:
    """A fresh network namespace with ``lo`` up, deleted at cleanup; its path."""
    name = f"kcf{role}-{secrets.token_hex(3)}"
    _sh("ip", "netns", "add", name)
    test.addCleanup(subprocess.run, ["ip", "netns", "delete", name], capture_output=True)
    path = f"/var/run/netns/{name}"
    _sh("nsenter", f"--net={path}", "--", "ip", "link", "set", "lo", "up")
    return path


class Side:
    """One daemon under test and how its outputs are normalised."""

    def __init__(self, name: str, daemon: Any) -> None:
        self.name = name
        self.daemon = daemon
        self.replacements = [
            (daemon.directory, "<DIR>"),
            (daemon.namespace_suffix, "<SUFFIX>"),
            (daemon.cgroup_root, "<CGROOT>"),
        ]

    def normalise(self, text: str) -> str:
        """``text`` with what must differ between the daemons replaced by placeholders."""
        for old, new in self.replacements:
            text = text.replace(old, new)
        return TIME.sub(lambda m: m.group(0) if m.group(0) == ZERO_TIME else "<TIME>", text)

    def normalise_doc(self, doc: Any) -> Any:
        """``normalise`` applied to every string (keys too) of a JSON/YAML document."""
        if isinstance(doc, dict):
            return {self.normalise(str(k)): self.normalise_doc(v) for k, v in doc.items()}
        if isinstance(doc, list):
            return [self.normalise_doc(v) for v in doc]
        if isinstance(doc, str):
            return self.normalise(doc)
        if hasattr(doc, "isoformat"):  # YAML reads timestamps as datetimes
            return "<TIME>"
        return doc

    def kuke(self, *args: str, input: str | None = None) -> KukeResult:
        return run_kuke(self.daemon.socket, *args, input=input, timeout=90)

    def tree(self) -> dict[str, Any]:
        """The run path: relative file path → normalised JSON document or text."""
        files: dict[str, Any] = {}
        root = self.daemon.run_path
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                if name == "log":  # what a workload printed: timing, not the daemon's doing
                    files[rel] = "<log>"
                    continue
                try:
                    text = Path(path).read_text(errors="replace")
                except OSError:  # removed while walking
                    continue
                if name.endswith((".json", ".conflist")):
                    try:
                        files[rel] = self.normalise_doc(json.loads(text))
                        continue
                    except ValueError:
                        pass
                files[rel] = self.normalise(text)
        return files


def _show(value: Any) -> str:
    if value is ABSENT:
        return ABSENT
    return json.dumps(value, sort_keys=True) if not isinstance(value, str) else value


def diff_docs(reference: Any, ours: Any, path: str = "") -> list[tuple[str, str, str]]:
    """Where two documents differ: ``(json path, reference value, our value)``."""
    if isinstance(reference, dict) and isinstance(ours, dict):
        out = []
        for key in sorted(set(reference) | set(ours)):
            sub = f"{path}.{key}" if path else str(key)
            out += diff_docs(reference.get(key, ABSENT), ours.get(key, ABSENT), sub)
        return out
    if isinstance(reference, list) and isinstance(ours, list):
        out = []
        for i in range(max(len(reference), len(ours))):
            out += diff_docs(
                reference[i] if i < len(reference) else ABSENT,
                ours[i] if i < len(ours) else ABSENT,
                f"{path}[{i}]",
            )
        return out
    if reference == ours and type(reference) is type(ours):
        return []
    return [(path, _show(reference), _show(ours))]


def _table_text(text: str) -> str:
    """Text with column padding and table rules collapsed (placeholders change widths)."""
    text = re.sub(r" {2,}", "  ", text)
    return re.sub(r"-{2,}", "--", text)


def _parse(text: str, output: str | None) -> Any:
    if output == "json":
        return json.loads(text) if text.strip() else None
    return yaml.safe_load(text)


class Pair:
    """The reference daemon and ours, driven by the same ``kuke`` steps."""

    def __init__(self, test, containerd_socket: str) -> None:
        if os.geteuid() != 0:
            raise SkipTest("the conformance harness needs root")
        for tool in ("ip", "nsenter", "unshare"):
            if shutil.which(tool) is None:
                raise SkipTest(f"the conformance harness needs {tool}")
        if not os.access("/usr/lib/cni/bridge", os.X_OK):
            raise SkipTest("the conformance harness needs the CNI plugins in /usr/lib/cni")
        reference_bin("kuke")
        self.test = test
        self.containerd_socket = containerd_socket
        self.differences: list[Difference] = []
        self.steps: list[str] = []
        self.reference = Side("reference", self._start_reference())
        self.ours = Side("ours", self._start_ours())
        self._pool = ThreadPoolExecutor(2)
        test.addCleanup(self._pool.shutdown)

    # Starting and cleaning up

    def _cleanup_daemon(self, daemon: Any) -> Callable[[], Any]:
        from tests.support.runtime import purge_daemon_host

        return lambda: purge_daemon_host(daemon)

    def _start_reference(self) -> GoKukeond:
        from tests.support.runtime import short_tmpdir

        netns = _netns(self.test, "g")
        daemon = GoKukeond(
            short_tmpdir(self.test, "kcg-"),
            self.containerd_socket,
            f"g{secrets.token_hex(3)}",
            ["--reconcile-interval", "0"],
        )
        wrap = os.path.join(daemon.directory, "wrap.sh")
        Path(wrap).write_text(WRAP)
        os.chmod(wrap, 0o755)
        daemon.argv = [
            "nsenter",
            f"--net={netns}",
            "--",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            wrap,
            *daemon.argv,
        ]
        self.test.addCleanup(self._cleanup_daemon(daemon))
        daemon.start()
        return daemon

    def _start_ours(self):
        from tests.support.daemon import OurKukeond
        from tests.support.runtime import short_tmpdir

        netns = _netns(self.test, "o")
        daemon = OurKukeond(
            short_tmpdir(self.test, "kco-"), self.containerd_socket, "0", "10.88.0.0/16"
        )
        daemon.prefix = ["nsenter", f"--net={netns}", "--"]
        self.test.addCleanup(self._cleanup_daemon(daemon))
        daemon.start()
        return daemon

    # Steps

    def step(
        self, name: str, *args: str, input: str | None = None, tree: bool = True
    ) -> tuple[KukeResult, KukeResult]:
        """Run ``kuke ARGS`` on both daemons at once and record how they differ."""
        self.steps.append(name)
        futures = [
            self._pool.submit(side.kuke, *args, input=input) for side in (self.reference, self.ours)
        ]
        ref, our = (f.result() for f in futures)
        output = args[args.index("-o") + 1] if "-o" in args[:-1] else None
        self._compare_result(name, ref, our, output if output in ("json", "yaml") else None)
        if tree:
            self._compare_tree(name)
        return ref, our

    def _record(self, key: str, reference: str, ours: str) -> None:
        self.differences.append(Difference(key, reference, ours))

    def _compare_result(
        self, name: str, ref: KukeResult, our: KukeResult, output: str | None
    ) -> None:
        if ref.code != our.code:
            self._record(f"{name} / exit / ", str(ref.code), str(our.code))
        ref_err = self.reference.normalise(ref.stderr)
        our_err = self.ours.normalise(our.stderr)
        if ref_err != our_err:
            self._record(f"{name} / stderr / ", ref_err, our_err)
        ref_out = self.reference.normalise(ref.stdout)
        our_out = self.ours.normalise(our.stdout)
        if (
            output is None
            and ref.stdout.startswith("apiVersion:")
            and our.stdout.startswith("apiVersion:")
        ):
            output = "yaml"  # kuke prints one resource as YAML without -o
        if output and ref.code == 0 and our.code == 0:
            try:
                docs = (
                    self.reference.normalise_doc(_parse(ref.stdout, output)),
                    self.ours.normalise_doc(_parse(our.stdout, output)),
                )
            except ValueError:  # yaml.YAMLError is a ValueError too
                docs = None
            if docs is not None:
                for path, a, b in diff_docs(*docs):
                    self._record(f"{name} / {output} / {path}", a, b)
                return
        if _table_text(ref_out) != _table_text(our_out):
            self._record(f"{name} / stdout / ", ref_out, our_out)

    def _compare_tree(self, name: str) -> None:
        ref_tree, our_tree = self.reference.tree(), self.ours.tree()
        for rel in sorted(set(ref_tree) | set(our_tree)):
            if rel not in ref_tree or rel not in our_tree:
                self._record(
                    f"{name} / tree {rel} / exists",
                    "present" if rel in ref_tree else ABSENT,
                    "present" if rel in our_tree else ABSENT,
                )
                continue
            for path, a, b in diff_docs(ref_tree[rel], our_tree[rel]):
                self._record(f"{name} / tree {rel} / {path}", a, b)

    # The verdict

    def check(self) -> None:
        """Fail with every difference the allow table of doc/compatibility.md does not allow."""
        bad = unallowed(self.differences, allowed_differences())
        if not bad:
            return
        seen: set[tuple[str, str, str]] = set()
        lines = []
        for d in bad:
            step, what, path = d.key.split(" / ", 2)
            if (what, path, d.reference + d.ours) in seen:  # the same tree difference again
                continue
            seen.add((what, path, d.reference + d.ours))
            lines.append(f"- {d.key}\n    reference: {d.reference!r}\n    ours:      {d.ours!r}")
        raise FailTest(
            f"{len(lines)} difference(s) from the reference that {COMPATIBILITY.name} "
            f"({ALLOW_SECTION!r}) does not allow:\n"
            + "\n".join(lines)
            + f"\nreference log: {self.reference.daemon.log_tail(1500)}"
            + f"\nour log: {self.ours.daemon.log_tail(1500)}"
        )
