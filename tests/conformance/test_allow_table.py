"""The allow table of doc/compatibility.md, as the conformance harness reads it."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.conformance.harness import Difference, allowed_differences, unallowed


class AllowTableTests(SynchronousTestCase):
    def test_every_row_has_an_id_and_a_reason(self):
        rows = allowed_differences()
        self.assertGreater(len(rows), 0)
        for glob, why in rows.items():
            self.assertTrue(glob.strip() and why.strip(), (glob, why))

    def test_a_difference_no_row_matches_is_not_allowed(self):
        rows = {"stop container again / *": "idempotent"}
        allowed = Difference("stop container again / exit / ", "1", "0")
        other = Difference("stop cell / exit / ", "1", "0")
        self.assertEqual(unallowed([allowed, other], rows), [other])
