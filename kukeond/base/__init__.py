"""The base layer: names and paths, Go-shaped JSON, crash-safe files.

Everything else in kukeond may import these modules; they import nothing of
kukeond, so the layers above only ever point down.
"""
