"""The run-path metadata tree: atomic writes, in-memory index, keyed locks."""
