"""Small blocking helpers for the network's state files: read JSON, remove if present."""

from __future__ import annotations

import json
import os
from typing import Any


def read_json(path: str) -> Any:
    """The JSON document in the file at ``path``."""
    with open(path, "rb") as handle:
        return json.loads(handle.read())


def remove_file(path: str) -> bool:
    """Remove the file at ``path``; False when it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
