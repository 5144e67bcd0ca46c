"""Tests of the kukeonv1 wire layer."""
