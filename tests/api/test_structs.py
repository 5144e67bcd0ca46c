"""The Go-struct mirror: decoding like ``encoding/json``, encoding like ``json.Marshal``."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from kukeond.api import kukeonv1, v1beta1
from kukeond.api.gotypes import DecodeError
from kukeond.base import gojson

CreateRealmArgs, _ = kukeonv1.METHODS["CreateRealm"]
CreateCellArgs, _ = kukeonv1.METHODS["CreateCell"]
LoadImageArgs, _ = kukeonv1.METHODS["LoadImage"]


def _go_number(literal: str) -> float:
    """A float as the wire codec hands it over (literal kept)."""
    return json.loads(literal, parse_float=_Literal)


class _Literal(float):
    def __new__(cls, literal: str) -> _Literal:
        self = super().__new__(cls, literal)
        self.literal = literal
        return self


class DecodeTests(SynchronousTestCase):
    def assertDecodeError(self, cls, raw, message: str) -> None:
        with self.assertRaises(DecodeError) as ctx:
            cls.from_wire(raw)
        self.assertEqual(str(ctx.exception), message)

    def test_case_insensitive_keys(self) -> None:
        args = CreateRealmArgs.from_wire({"doc": {"METADATA": {"NAME": "demo"}}})
        self.assertEqual(args.Doc.metadata.name, "demo")

    def test_exact_key_beats_folded_key_and_last_wins(self) -> None:
        doc = v1beta1.RealmMetadata.from_wire({"NAME": "a", "name": "b"})
        self.assertEqual(doc.name, "b")
        doc = v1beta1.RealmMetadata.from_wire({"name": "b", "NAME": "a"})
        self.assertEqual(doc.name, "a")

    def test_unknown_keys_ignored(self) -> None:
        doc = v1beta1.RealmMetadata.from_wire({"name": "x", "bogus": [1, 2]})
        self.assertEqual(doc, v1beta1.RealmMetadata(name="x"))

    def test_null_leaves_zero(self) -> None:
        doc = v1beta1.ContainerSpec.from_wire(
            {"id": None, "args": None, "privileged": None, "resources": None}
        )
        self.assertEqual(doc, v1beta1.ContainerSpec())
        self.assertEqual(CreateRealmArgs.from_wire(None), CreateRealmArgs())

    def test_nil_and_empty_stay_distinct(self) -> None:
        spec = v1beta1.ContainerSpec.from_wire({"args": [], "env": None})
        self.assertEqual(spec.args, [])
        self.assertIsNone(spec.env)
        wire = gojson.dumps(spec.to_wire())
        self.assertIn('"args":[]', wire)
        self.assertIn('"env":null', wire)
        meta = v1beta1.RealmMetadata.from_wire({"labels": {}})
        self.assertEqual(gojson.dumps(meta.to_wire()), '{"name":"","labels":{}}')

    def test_wrong_type_messages(self) -> None:
        self.assertDecodeError(
            CreateRealmArgs,
            {"Doc": "oops"},
            "json: cannot unmarshal string into Go struct field CreateRealmArgs.Doc"
            " of type v1beta1.RealmDoc",
        )
        self.assertDecodeError(
            CreateRealmArgs,
            {"Doc": {"metadata": {"name": 1}}},
            "json: cannot unmarshal number into Go struct field RealmMetadata.Doc.metadata.name"
            " of type string",
        )
        self.assertDecodeError(
            CreateCellArgs,
            {"Doc": {"spec": {"containers": [{"args": [True]}]}}},
            "json: cannot unmarshal bool into Go struct field"
            " ContainerSpec.Doc.spec.containers.args of type string",
        )
        self.assertDecodeError(
            CreateRealmArgs,
            [],
            "json: cannot unmarshal array into Go value of type kukeonv1.CreateRealmArgs",
        )

    def test_state_enums(self) -> None:
        def realm(state):
            return {"Doc": {"status": {"state": state}}}

        self.assertEqual(CreateRealmArgs.from_wire(realm("Ready")).Doc.status.state, "Ready")
        self.assertEqual(CreateRealmArgs.from_wire(realm(2)).Doc.status.state, "Ready")
        self.assertDecodeError(CreateRealmArgs, realm(""), 'realm state: unknown label ""')
        self.assertDecodeError(CreateRealmArgs, realm(None), 'realm state: unknown label ""')
        self.assertDecodeError(CreateRealmArgs, realm(9), "realm state: int 9 out of range")
        self.assertDecodeError(CreateRealmArgs, realm(-1), "realm state: int -1 out of range")
        self.assertDecodeError(
            CreateRealmArgs, realm("Stopped"), 'realm state: unknown label "Stopped"'
        )
        self.assertDecodeError(
            CreateRealmArgs,
            realm(_go_number("1.5")),
            "realm state: expected string or int, got 1.5",
        )
        self.assertDecodeError(
            CreateRealmArgs, realm(True), "realm state: expected string or int, got true"
        )
        cell = {"Doc": {"status": {"containers": [{"state": 7}]}}}
        self.assertDecodeError(CreateCellArgs, cell, "container state: int 7 out of range")

    def test_integers(self) -> None:
        def mount(value):
            return {"volumes": [{"target": "/t", "mode": value}]}

        self.assertEqual(v1beta1.ContainerSpec.from_wire(mount(493)).volumes[0].mode, 493)
        field = (
            "json: cannot unmarshal {} into Go struct field VolumeMount.volumes.mode of type uint32"
        )
        self.assertDecodeError(v1beta1.ContainerSpec, mount(-1), field.format("number -1"))
        self.assertDecodeError(
            v1beta1.ContainerSpec, mount(2**32), field.format("number 4294967296")
        )
        self.assertDecodeError(
            v1beta1.ContainerSpec, mount(_go_number("1.0")), field.format("number 1.0")
        )
        self.assertDecodeError(
            v1beta1.ContainerSpec, mount(_go_number("1e3")), field.format("number 1e3")
        )
        self.assertDecodeError(v1beta1.ContainerSpec, mount("1"), field.format("string"))
        self.assertDecodeError(v1beta1.ContainerSpec, mount(False), field.format("bool"))

    def test_pointer_scalars(self) -> None:
        res = v1beta1.ContainerResources.from_wire({"memoryLimitBytes": 0, "cpuShares": None})
        self.assertEqual(res.memoryLimitBytes, 0)
        self.assertIsNone(res.cpuShares)
        self.assertEqual(gojson.dumps(res.to_wire()), '{"memoryLimitBytes":0}')
        defaults = v1beta1.SpaceContainerDefaults.from_wire({"readOnlyRootFilesystem": False})
        self.assertEqual(gojson.dumps(defaults.to_wire()), '{"readOnlyRootFilesystem":false}')

    def test_bytes(self) -> None:
        args = LoadImageArgs.from_wire({"Realm": "r", "Tarball": "H4sIAA=="})
        self.assertEqual(args.Tarball, b"\x1f\x8b\x08\x00")
        self.assertEqual(gojson.dumps(args.to_wire()), '{"Realm":"r","Tarball":"H4sIAA=="}')
        self.assertIsNone(LoadImageArgs.from_wire({"Tarball": None}).Tarball)
        self.assertEqual(LoadImageArgs.from_wire({"Tarball": ""}).Tarball, b"")
        for bad in ("H4sIAA", "H4sI-A==", "H4sI_A==", "a==="):
            with self.subTest(bad):
                with self.assertRaises(DecodeError) as ctx:
                    LoadImageArgs.from_wire({"Tarball": bad})
                self.assertTrue(str(ctx.exception).startswith("illegal base64 data at input byte"))
        self.assertDecodeError(
            LoadImageArgs,
            {"Tarball": 5},
            "json: cannot unmarshal number into Go struct field LoadImageArgs.Tarball"
            " of type []uint8",
        )

    def test_times(self) -> None:
        def status(value):
            return {"createdAt": value}

        doc = v1beta1.RealmStatus.from_wire(status("2025-06-01T12:00:00.500+02:00"))
        self.assertEqual(doc.createdAt, "2025-06-01T12:00:00.5+02:00")
        self.assertEqual(v1beta1.RealmStatus.from_wire(status(None)).createdAt, gojson.ZERO_TIME)
        with self.assertRaises(DecodeError):
            v1beta1.RealmStatus.from_wire(status(""))
        with self.assertRaises(DecodeError):
            v1beta1.RealmStatus.from_wire(status("yesterday"))
        self.assertDecodeError(
            v1beta1.RealmStatus, status(5), "Time.UnmarshalJSON: input is not a JSON string"
        )


class EncodeTests(SynchronousTestCase):
    def test_maps_sorted_bytewise(self) -> None:
        meta = v1beta1.CellMetadata(name="c", labels={"b": "1", "B": "2", "a": "3", "é": "4"})
        self.assertEqual(
            gojson.dumps(meta.to_wire()),
            '{"name":"c","labels":{"B":"2","a":"3","b":"1","é":"4"}}',
        )

    def test_html_escaping(self) -> None:
        meta = v1beta1.RealmMetadata(name="<a&b>")
        expected = '{"name":"\\u003ca\\u0026b\\u003e","labels":null}'
        self.assertEqual(gojson.dumps(meta.to_wire()), expected)

    def test_omitempty_keeps_structs_and_times(self) -> None:
        status = v1beta1.CellStatus()
        wire = status.to_wire()
        self.assertEqual(wire["network"], {})
        self.assertEqual(wire["createdAt"], gojson.ZERO_TIME)
        self.assertNotIn("readyObserved", wire)

    def test_keyword_construction_and_unknown_field(self) -> None:
        spec = v1beta1.StackSpec(id="s", realmId="r")
        self.assertEqual(spec.spaceId, "")
        self.assertRaises(TypeError, v1beta1.StackSpec, nope=1)

    def test_zero_values_are_independent(self) -> None:
        a, b = v1beta1.CellDoc(), v1beta1.CellDoc()
        a.status.network.bridgeName = "k-1"
        self.assertEqual(b.status.network.bridgeName, "")

    def test_clone_is_deep(self) -> None:
        doc = v1beta1.CellDoc()
        doc.spec.containers = [v1beta1.ContainerSpec(id="a")]
        copy = doc.clone()
        copy.spec.containers[0].id = "b"
        self.assertEqual(doc.spec.containers[0].id, "a")
        self.assertNotEqual(doc, copy)
