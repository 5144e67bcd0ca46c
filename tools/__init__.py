"""Build tools of the project (not part of the kukeond package)."""
