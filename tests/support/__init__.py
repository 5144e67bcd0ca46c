"""Shared test fixtures: private containerd, test image, cgroup roots."""
