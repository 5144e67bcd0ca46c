"""Running one CNI plugin the way the CNI specification describes.

A plugin is an executable looked up in the plugin directories and run
once per command (``ADD`` or ``DEL``) with ``CNI_*`` variables. Its
configuration, the conflist's plugin entry with ``name``, ``cniVersion``
and the previous result injected, goes to its stdin; a result or error
JSON comes back on stdout. Failures are worded as libcni words them and
mapped to the reference's typed errors where one applies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from kukeond.host.cni import (
    CNI_VERSION,
    MAX_BRIDGE_NAME,
    BridgeNameTooLong,
    CNIError,
    CNIPluginError,
    CNIPluginNotFound,
)
from kukeond.host.process import ProcessRunner
from kukeond.host.spacefiles import SpaceFiles

DEFAULT_IPAM_DIR = "/var/lib/cni/networks"
"""host-local's own data directory; any other ``ipam_dir`` is passed to it as ``dataDir``."""


async def exec_plugin(
    run: ProcessRunner,
    conf: Mapping[str, Any],
    plugin: Mapping[str, Any],
    command: str,
    container_id: str,
    netns: str,
    ifname: str,
    prev: dict | None,
    *,
    plugin_dirs: Sequence[str],
    ipam_dir: str,
) -> dict:
    """Run ``plugin`` of the conflist ``conf`` for ``command`` (``ADD``/``DEL``); its result.

    ``prev`` is the previous plugin's result (the cached one for DEL); DEL
    and an empty answer give ``{}``. A missing plugin raises
    :class:`CNIPluginNotFound`, a failing one :class:`CNIPluginError`.
    """
    kind = str(plugin.get("type", ""))
    name = str(conf.get("name", ""))
    what = f'plugin type="{kind}" name="{name}" failed ({command.lower()})'
    binary = _find_plugin(plugin_dirs, kind)
    if binary is None:
        raise CNIPluginNotFound(
            name,
            f'{what}: failed to find plugin "{kind}" in path [{" ".join(plugin_dirs)}]',
        )
    env = dict(os.environ)
    env.update(
        CNI_COMMAND=command,
        CNI_CONTAINERID=container_id,
        CNI_NETNS=netns,
        CNI_IFNAME=ifname,
        CNI_ARGS="",
        CNI_PATH=os.pathsep.join(plugin_dirs),
    )
    code, out, err = await run([binary], env=env, stdin=_plugin_stdin(conf, plugin, prev, ipam_dir))
    if code != 0:
        raise _plugin_failure(what, code, out, err)
    if command == "DEL" or not out.strip():
        return {}
    try:
        return json.loads(out)
    except ValueError as exc:
        raise CNIError(f"{what}: invalid result: {exc}") from exc


def translate_error(exc: CNIError, conf: Mapping[str, Any]) -> CNIError:
    """Map a raw failure to the reference's typed errors where one applies."""
    if isinstance(exc, CNIPluginNotFound):
        return exc
    text = str(exc)
    plugin = SpaceFiles.bridge_plugin(conf)
    bridge = str(plugin.get("bridge", "")) if plugin else ""
    if "numerical result out of range" in text and len(bridge) > MAX_BRIDGE_NAME:
        return BridgeNameTooLong(bridge, text)
    if "failed to find plugin" in text or "executable file not found" in text:
        return CNIPluginNotFound(str(conf.get("name", "")), text)
    return exc


def _find_plugin(plugin_dirs: Sequence[str], kind: str) -> str | None:
    for directory in plugin_dirs:
        candidate = os.path.join(directory, kind)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _plugin_stdin(
    conf: Mapping[str, Any], plugin: Mapping[str, Any], prev: dict | None, ipam_dir: str
) -> bytes:
    body = dict(plugin)
    body["name"] = conf.get("name", "")
    body["cniVersion"] = conf.get("cniVersion", CNI_VERSION)
    ipam = body.get("ipam")
    if ipam_dir != DEFAULT_IPAM_DIR and isinstance(ipam, dict) and ipam.get("type") == "host-local":
        body["ipam"] = {**ipam, "dataDir": ipam_dir}
    if prev is not None:
        body["prevResult"] = prev
    return json.dumps(body).encode("utf-8")


def _plugin_failure(what: str, code: int, out: bytes, err: bytes) -> CNIPluginError:
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "msg" in doc:
        msg = str(doc.get("msg", ""))
        if doc.get("details"):
            msg = f"{msg}; {doc['details']}"
        return CNIPluginError(f"{what}: {msg}", doc.get("code"), msg)
    text = (out + err).decode("utf-8", "replace").strip()
    return CNIPluginError(f"{what}: exit status {code}: {text}", None, text)
