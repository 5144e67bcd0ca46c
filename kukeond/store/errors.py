"""The errors of the metadata store: a file that cannot be used, a write that found a change."""

from __future__ import annotations

from kukeond.store.documents import Key


class MetadataCorrupt(Exception):
    """A metadata file exists but cannot be used (wire Kind ``ConversionFailed``)."""

    wire_kind = "ConversionFailed"

    def __init__(self, key: Key, path: str, reason: str) -> None:
        super().__init__(f"conversion failed: {path}: {reason}")
        self.key = key
        self.path = path
        self.reason = reason


class DocumentChanged(Exception):
    """A write found the file changed (or gone, or created) since it was read.

    Nothing was written; the caller reads the document again and decides anew.
    """

    def __init__(self, key: Key, path: str) -> None:
        super().__init__(
            f"metadata {path} was changed by another writer since it was read; "
            "nothing was overwritten, retry"
        )
        self.key = key
        self.path = path
