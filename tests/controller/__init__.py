"""Tests of the resource controllers and their RPC handlers."""
