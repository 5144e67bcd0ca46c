"""End-to-end tests: the daemon process on a real containerd."""
