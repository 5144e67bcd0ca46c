"""The terminal helper of attachable containers: its configuration document and its binary.

An attachable container runs ``kuketty`` (kukeon's wrapper around the sbsh
terminal library) instead of its workload. kuketty takes no arguments: it
reads one sbsh ``TerminalDoc`` (JSON) from ``/.kukeon/kuketty/metadata.json``,
starts the workload on a pseudo-terminal, writes the transcript to the
capture file and serves the attach socket. It refuses any other document
(``apiVersion "", want "sbsh/v1beta1"``, exit 70).

:func:`render_terminal_doc` produces the document byte for byte as the
reference daemon does (sbsh's inline terminal builder, indented Go JSON):

- ``spec.command``/``commandArgs``: the resolved workload argv;
- ``spec.inheritEnv`` true, so the workload gets the container's env;
- ``spec.prompt`` from ``tty.prompt``, ``setPrompt`` only when it is set
  (a non-shell workload is never typed an ``export PS1=…``);
- ``spec.stages.onInit`` from ``tty.onInit``;
- the socket and capture file in the bound tty dir, a log file only when
  ``tty.logFile`` asks for one;
- modes and group ids only when a kukeon group is configured (the daemon's
  socket group), else the helper's owner-only defaults;
- a fresh random terminal id (8 hex digits) and ``adjective_noun`` name, as
  sbsh gives a terminal that has none.

No working directory goes into the document: the helper starts in the
container's ``cwd`` and the workload inherits it.

:func:`stage` copies the helper binary to ``RUN/bin/kuketty``, the host path
bound into containers; :func:`find_source` says where it is copied from.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from kukeond.api.v1beta1 import ContainerSpec
from kukeond.base.atomic import fsync_dir, replace_file

API_VERSION = "sbsh/v1beta1"
KIND = "Terminal"
TTY_DIR = "/run/kukeon/tty"
SOCKET_PATH = TTY_DIR + "/socket"
CAPTURE_PATH = TTY_DIR + "/capture"
LOG_LEVEL = "info"

SOCKET_MODE = 0o660
CAPTURE_MODE = 0o640
LOG_FILE_MODE = 0o640
"""Modes of the helper's files, applied (with the group) only when a kukeon group is set."""

TTY_DIR_MODE_GROUP = 0o2750
TTY_DIR_MODE_PRIVATE = 0o700
"""Host tty dir and its container dir: setgid, group-readable with a kukeon group, else private."""

METADATA_MODE = 0o600
BINARY_MODE = 0o755
BIN_DIR_MODE = 0o755

IMAGE_PATH = "/bin/kuketty"
"""Where the kukeond image places the helper; looked at first, as the reference does."""

BINARY_NAME = "kuketty"

_ADJECTIVES = (
    "amber", "brisk", "calm", "daring", "eager", "fair", "gentle", "hardy", "keen", "lively",
    "mellow", "nimble", "patient", "quiet", "rapid", "steady", "tidy", "upbeat", "vivid", "witty",
)  # fmt: skip
_NOUNS = (
    "alder", "birch", "cedar", "elm", "fir", "hazel", "juniper", "larch", "maple", "oak",
    "pine", "rowan", "spruce", "willow", "yew", "aspen", "beech", "cypress", "linden", "poplar",
)  # fmt: skip


class KukettyNotFound(Exception):
    """No usable helper binary; the message names every place looked at."""


def terminal_id() -> str:
    """A fresh terminal id: 8 lowercase hex digits."""
    return secrets.token_hex(4)


def terminal_name() -> str:
    """A fresh terminal name: ``adjective_noun``."""
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"


def _labels(names: Sequence[str]) -> dict[str, str] | None:
    realm, space, stack, cell, container = names
    pairs = {
        "kukeon.io/realm": realm,
        "kukeon.io/space": space,
        "kukeon.io/stack": stack,
        "kukeon.io/cell": cell,
        "kukeon.io/container-id": container,
    }
    kept = {k: v for k, v in sorted(pairs.items()) if v}
    return kept or None


def terminal_doc(
    container: ContainerSpec,
    argv: Sequence[str],
    names: Sequence[str],
    group_gid: int = 0,
    term_id: str | None = None,
    term_name: str | None = None,
) -> dict[str, Any]:
    """The ``TerminalDoc`` of an attachable container, as ordered JSON-ready dicts.

    ``names`` are ``(realm, space, stack, cell, container)``; ``argv`` is the
    resolved workload argv (an empty one leaves sbsh's ``/bin/bash -i``);
    ``group_gid`` is the kukeon group (0: none).
    """
    tty = container.tty
    prompt = (tty.prompt if tty is not None else "") or ""
    log_file = (tty.logFile if tty is not None else "") or ""
    on_init = [{"script": step.script or ""} for step in ((tty.onInit if tty else None) or [])]
    if argv and argv[0]:
        command, command_args = argv[0], (list(argv[1:]) or None)
    else:
        command, command_args = "/bin/bash", ["-i"]
    spec: dict[str, Any] = {
        "id": term_id or terminal_id(),
        "kind": 0,
        "name": term_name or terminal_name(),
        "labels": None,
        "command": command,
        "commandArgs": command_args,
        "inheritEnv": True,
        "env": None,
        "prompt": prompt,
    }
    if prompt:
        spec["setPrompt"] = True
    spec.update(
        runPath=TTY_DIR,
        captureFile=CAPTURE_PATH,
        logFile=log_file,
        logLevel=LOG_LEVEL,
        socketIO=SOCKET_PATH,
    )
    if group_gid > 0:
        spec.update(
            socketMode=SOCKET_MODE,
            socketGid=group_gid,
            captureMode=CAPTURE_MODE,
            captureGid=group_gid,
        )
        if log_file:
            spec.update(logFileMode=LOG_FILE_MODE, logFileGid=group_gid)
    spec["profileName"] = ""
    spec["stages"] = {"onInit": on_init} if on_init else {}
    metadata: dict[str, Any] = {"name": container.id}
    labels = _labels(names)
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": spec,
        "status": {
            "pid": 0,
            "tty": "",
            "state": 0,
            "socketCtrl": "",
            "baseRunPath": "",
            "terminalRunPath": "",
            "logFile": "",
            "logLevel": "",
            "captureFile": "",
            "attachers": None,
        },
    }


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
               "\u2029": "\\u2029"}  # fmt: skip


def go_json(value: Any) -> bytes:
    """``value`` as Go's ``json.MarshalIndent(v, "", "  ")`` writes it (no final newline).

    Keys keep their order (callers sort maps), non-ASCII stays UTF-8, and
    ``<``, ``>``, ``&``, U+2028 and U+2029 are escaped as Go escapes them;
    those characters only ever occur inside strings.
    """
    text = json.dumps(value, indent=2, ensure_ascii=False, separators=(",", ": "))
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def render_terminal_doc(
    container: ContainerSpec, argv: Sequence[str], names: Sequence[str], group_gid: int = 0
) -> bytes:
    """The bytes of ``kuketty-metadata.json`` for ``container`` (see :func:`terminal_doc`)."""
    return go_json(terminal_doc(container, argv, names, group_gid))


def write_metadata(path: str, data: bytes) -> None:
    """Replace the metadata file atomically, mode 0600 (blocking)."""
    replace_file(path, data, METADATA_MODE)
    fsync_dir(os.path.dirname(path))


def prepare_tty_dir(tty_dir: str, group_gid: int = 0) -> None:
    """Create the tty dir; set the mode (and root:group) on it and its container dir.

    Blocking. The owner becomes the container's uid later
    (:func:`hand_over`), once the container's user is resolved.
    """
    mode = TTY_DIR_MODE_GROUP if group_gid > 0 else TTY_DIR_MODE_PRIVATE
    os.makedirs(tty_dir, mode=mode & 0o777, exist_ok=True)
    for path in (os.path.dirname(tty_dir), tty_dir):
        os.chmod(path, mode)
        if group_gid > 0:
            os.chown(path, 0, group_gid)


def hand_over(tty_dir: str, metadata: str, uid: int, group_gid: int = 0) -> None:
    """Give the tty dir and the metadata file to the container's uid (blocking).

    The helper runs as that uid: it must read the metadata file and create
    its socket and capture file in the tty dir. The group is the kukeon
    group, else root.
    """
    os.chown(tty_dir, uid, group_gid)
    try:
        os.chown(metadata, uid, group_gid)
    except FileNotFoundError:
        pass


def usable(path: str) -> bool:
    """Whether ``path`` is a non-empty file with an execute bit."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return os.path.isfile(path) and st.st_size > 0 and bool(st.st_mode & 0o111)


def candidates(
    configured: str = "",
    executable: str | None = None,
    argv0: str | None = None,
) -> list[str]:
    """Where the helper is looked for, in order.

    A configured path is the only place looked at. Otherwise: ``/bin/kuketty``,
    next to the Python running the daemon (a venv's ``bin``), next to the
    ``kukeond`` console script.
    """
    if configured:
        return [configured]
    places = [IMAGE_PATH]
    executable = sys.executable if executable is None else executable
    argv0 = (sys.argv[0] if sys.argv else "") if argv0 is None else argv0
    if executable:
        places.append(os.path.join(os.path.dirname(os.path.abspath(executable)), BINARY_NAME))
    if argv0 and os.path.basename(argv0).startswith("kukeond") and os.path.isfile(argv0):
        places.append(os.path.join(os.path.dirname(os.path.abspath(argv0)), BINARY_NAME))
    return list(dict.fromkeys(places))


def find_source(configured: str = "", places: Iterable[str] | None = None) -> str:
    """The helper binary to stage: the first usable of ``places`` (default
    :func:`candidates`), then ``$PATH`` unless a path is configured.

    Raises :class:`KukettyNotFound` naming every place looked at.
    """
    tried = list(candidates(configured) if places is None else places)
    for path in tried:
        if usable(path):
            return path
    if configured:
        raise KukettyNotFound(
            f"kuketty binary {configured} (--kuketty-binary) is missing, empty or not executable"
        )
    found = shutil.which(BINARY_NAME)
    if found and usable(found):
        return found
    tried.append(f"$PATH/{BINARY_NAME}")
    raise KukettyNotFound(
        f"kuketty binary not found in: {', '.join(tried)} "
        "(set --kuketty-binary or KUKEOND_KUKETTY_BINARY to its path)"
    )


def stage(run_path: str, configured: str = "", places: Iterable[str] | None = None) -> str:
    """Make sure ``RUN/bin/kuketty`` holds the helper; return that path (blocking).

    A staged copy that is non-empty and executable is kept as it is. Otherwise
    the source (:func:`find_source`) is copied to a temp file next to it and
    renamed into place, so a concurrent start never binds a half-written binary.
    """
    target = os.path.join(run_path, "bin", BINARY_NAME)
    if usable(target):
        return target
    src = find_source(configured, places)
    bin_dir = os.path.dirname(target)
    os.makedirs(bin_dir, mode=BIN_DIR_MODE, exist_ok=True)
    with open(src, "rb") as f:
        data = f.read()
    replace_file(target, data, BINARY_MODE)
    fsync_dir(bin_dir)
    return target
