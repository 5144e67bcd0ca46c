"""Go ``encoding/json`` text: escaping and indentation."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kukeond.base import gojson


class EscapeTests(SynchronousTestCase):
    def test_html_safe(self) -> None:
        self.assertEqual(gojson.dumps("<a>&</a>"), '"\\u003ca\\u003e\\u0026\\u003c/a\\u003e"')

    def test_line_separators(self) -> None:
        self.assertEqual(gojson.dumps("a\u2028b\u2029c"), '"a\\u2028b\\u2029c"')

    def test_non_ascii_raw_and_controls_escaped(self) -> None:
        self.assertEqual(gojson.dumps("é\n\t\x01"), '"é\\n\\t\\u0001"')

    def test_lone_surrogate_becomes_replacement_char(self) -> None:
        self.assertEqual(gojson.dumps("a\ud800b"), '"a\ufffdb"')

    def test_keys_escaped_too(self) -> None:
        self.assertEqual(gojson.dumps({"<k>": 1}), '{"\\u003ck\\u003e":1}')

    def test_indent(self) -> None:
        self.assertEqual(
            gojson.dumps_indent({"a": [], "b": {}, "c": [1]}),
            '{\n  "a": [],\n  "b": {},\n  "c": [\n    1\n  ]\n}',
        )


class RawJSONTests(SynchronousTestCase):
    def test_spliced_verbatim_at_any_depth(self):
        kept = gojson.raw({"name": "<a>", "n": [1, 2]})
        self.assertEqual(kept.data, b'{"name":"\\u003ca\\u003e","n":[1,2]}')
        value = {"Cells": [kept, kept], "Err": None, "x": {"y": (kept,)}}
        text = gojson.dumps(value)
        inner = '{"name":"\\u003ca\\u003e","n":[1,2]}'
        self.assertEqual(text, '{"Cells":[%s,%s],"Err":null,"x":{"y":[%s]}}' % ((inner,) * 3))
        out = []
        gojson.encode_into(value, out)
        self.assertEqual(b"".join(out), text.encode())
        self.assertIs(kept.to_wire(), kept)

    def test_other_values_still_refused(self):
        self.assertRaises(TypeError, gojson.dumps, {"a": object()})
