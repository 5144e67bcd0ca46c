"""Byte-exact round trips against the reference encodings (tests/api/fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from kukeond.api import kukeonv1, v1beta1, wire_results
from kukeond.api.gotypes import DecodeError
from kukeond.base import gojson

FIXTURES = Path(__file__).parent / "fixtures"


def _load(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _type(name: str):
    for module in (v1beta1, kukeonv1, wire_results):
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    raise LookupError(name)


class ZeroValueTests(SynchronousTestCase):
    """Appendix §7: ``Cls()`` encodes exactly as Go's zero value."""

    def test_zero_values(self) -> None:
        entries = _load("zero_values.json")
        self.assertEqual(len(entries), 11)
        for entry in entries:
            with self.subTest(entry["type"]):
                self.assertEqual(gojson.dumps(_type(entry["type"])().to_wire()), entry["json"])

    def test_zero_values_decode_back(self) -> None:
        for entry in _load("zero_values.json"):
            cls = _type(entry["type"])
            self.assertEqual(cls.from_wire(json.loads(entry["json"])), cls())


class FullValueTests(SynchronousTestCase):
    """Every field set: decode, re-encode, same bytes (key order, omitempty, nesting)."""

    def test_round_trip(self) -> None:
        entries = _load("full_values.json")
        self.assertGreaterEqual(len(entries), 9)
        for entry in entries:
            with self.subTest(entry["type"]):
                obj = _type(entry["type"]).from_wire(json.loads(entry["json"]))
                self.assertEqual(gojson.dumps(obj.to_wire()), entry["json"])


class WireExampleTests(SynchronousTestCase):
    """§5: requests decode into Args; replies re-encode to the exact response line."""

    def setUp(self) -> None:
        self.examples = _load("wire_examples.json")

    def test_replies_re_encode_exactly(self) -> None:
        checked = 0
        for ex in self.examples:
            request = json.loads(ex["request"])
            response = ex["response"]
            if response is None or '"result":null' in response:
                continue
            name = request["method"].split(".")[1]
            _, reply_cls = kukeonv1.METHODS[name]
            result = json.loads(response)["result"]
            reply = reply_cls.from_wire(result)
            line = (
                '{"id":'
                + json.dumps(request["id"])
                + ',"result":'
                + gojson.dumps(reply.to_wire())
                + ',"error":null}'
            )
            self.assertEqual(line, response, ex["section"])
            checked += 1
        self.assertEqual(checked, 8)

    def test_go_client_requests_re_encode_exactly(self) -> None:
        checked = 0
        for ex in self.examples:
            if ex["section"] in ("5.8", "5.9"):
                continue  # hand-written minimal requests
            request = json.loads(ex["request"])
            name = request["method"].split(".")[1]
            args_cls, _ = kukeonv1.METHODS[name]
            params = request["params"][0]
            args = args_cls.from_wire(params)
            self.assertEqual(gojson.dumps(args.to_wire()), gojson.dumps(params), ex["section"])
            checked += 1
        self.assertEqual(checked, 12)

    def test_minimal_request(self) -> None:
        ex = next(e for e in self.examples if e["section"] == "5.8")
        params = json.loads(ex["request"])["params"][0]
        args = kukeonv1.METHODS["CreateRealm"][0].from_wire(params)
        self.assertEqual(args.Doc.metadata.name, "bad_name")
        self.assertEqual(args.Doc.status.state, "Pending")

    def test_bad_state_is_a_decode_error(self) -> None:
        ex = next(e for e in self.examples if '"state":""' in e["request"])
        params = json.loads(ex["request"])["params"][0]
        with self.assertRaises(DecodeError) as ctx:
            kukeonv1.METHODS["CreateRealm"][0].from_wire(params)
        self.assertEqual(str(ctx.exception), json.loads(ex["response"])["error"])

    def test_apply_and_load_bytes(self) -> None:
        ex = next(e for e in self.examples if "ApplyDocuments" in e["request"])
        args = kukeonv1.METHODS["ApplyDocuments"][0].from_wire(
            json.loads(ex["request"])["params"][0]
        )
        self.assertEqual(args.RawYAML, b"kind: Realm\nmetadata:\n  name: demo\n")


class MetadataFileTests(SynchronousTestCase):
    """On-disk metadata.json: Go ``MarshalIndent`` with two spaces plus a newline."""

    def test_metadata_files_round_trip(self) -> None:
        for kind, cls in (
            ("realm", v1beta1.RealmDoc),
            ("space", v1beta1.SpaceDoc),
            ("stack", v1beta1.StackDoc),
            ("cell", v1beta1.CellDoc),
        ):
            with self.subTest(kind):
                text = (FIXTURES / "metadata" / f"{kind}.json").read_text(encoding="utf-8")
                doc = cls.from_wire(json.loads(text))
                self.assertEqual(gojson.dumps_indent(doc.to_wire()) + "\n", text)

    def test_cell_metadata_values(self) -> None:
        text = (FIXTURES / "metadata" / "cell.json").read_text(encoding="utf-8")
        doc = v1beta1.CellDoc.from_wire(json.loads(text))
        app = doc.spec.containers[1]
        self.assertEqual(app.args[1], "echo <hi> && sleep 1000")
        self.assertEqual(app.resources.memoryLimitBytes, 0)
        self.assertIsNone(app.resources.cpuShares)
        self.assertEqual(app.ports, [])
        self.assertIsNone(app.networks)
        self.assertEqual(app.volumes[1].mode, 0o700)
        self.assertEqual(doc.status.updatedAt, "2025-06-01T10:05:00.000000001Z")
