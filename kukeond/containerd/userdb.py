"""An image's user database: the ``/etc/passwd`` and ``/etc/group`` texts of its rootfs.

Entries are parsed and looked up the way containerd's ``oci`` package reads
them: blank and ``#`` lines skipped, missing fields empty, non-numeric ids
read as 0. A text is ``None`` when the file does not exist in the rootfs.
Nothing here touches the filesystem; the caller reads the files.
"""

from __future__ import annotations

from typing import Any

PasswdEntry = tuple[str, str, int, int]
"""``(name, password, uid, gid)`` of one ``/etc/passwd`` line."""

GroupEntry = tuple[str, str, int, list[str]]
"""``(name, password, gid, members)`` of one ``/etc/group`` line."""


def is_numeric_id(text: str) -> bool:
    """Whether ``text`` is a numeric uid or gid (ASCII digits only)."""
    return text.isascii() and text.isdigit()


def find_passwd(text: str | None, match: Any) -> PasswdEntry | None:
    """The first ``/etc/passwd`` entry for which ``match`` is true, or ``None``."""
    if text is None:
        return None
    return next((e for e in _parse_passwd(text) if match(e)), None)


def find_group(text: str | None, match: Any) -> GroupEntry | None:
    """The first ``/etc/group`` entry for which ``match`` is true, or ``None``."""
    if text is None:
        return None
    return next((g for g in _parse_group(text) if match(g)), None)


def additional_gids(user: str, passwd: str | None, group: str | None) -> list[int] | None:
    """Supplementary gids of ``user`` (name or uid) from ``group``; ``None`` when unknowable."""
    if is_numeric_id(user):
        uid = int(user)
        entry = find_passwd(passwd, lambda e: e[2] == uid)
        if entry is None:
            return None
        user = entry[0]
    if group is None:
        return None
    return [g[2] for g in _parse_group(group) if g[0] != user and user in g[3]]


def _parse_passwd(text: str) -> list[PasswdEntry]:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        fields += [""] * (7 - len(fields))
        entries.append((fields[0], fields[1], _int_or_zero(fields[2]), _int_or_zero(fields[3])))
    return entries


def _parse_group(text: str) -> list[GroupEntry]:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        fields += [""] * (4 - len(fields))
        members = [m for m in fields[3].split(",") if m]
        entries.append((fields[0], fields[1], _int_or_zero(fields[2]), members))
    return entries


def _int_or_zero(text: str) -> int:
    return int(text) if is_numeric_id(text) else 0
