"""Tests of the daemon process: options, configuration, listener, lifecycle."""
