"""``[]byte`` decoding a piece at a time gives what the field decoder gives, bytes or error."""

from __future__ import annotations

import base64
import os

from twisted.trial.unittest import SynchronousTestCase

from kukeond.api import kukeonv1
from kukeond.api.gotypes import DecodedBytes, DecodeError, decode_base64
from kukeond.api.structs import bytes_field

LoadImageArgs, _ = kukeonv1.METHODS["LoadImage"]
ApplyDocumentsArgs, _ = kukeonv1.METHODS["ApplyDocuments"]


def _field(text: str) -> bytes | str:
    """What the field decoder makes of ``text``: the bytes, or the error text."""
    try:
        return LoadImageArgs.from_wire({"Tarball": text}).Tarball
    except DecodeError as e:
        return str(e)


def _pieces(text: str, piece: int) -> bytes | str:
    try:
        return decode_base64(text.encode("utf-8"), piece, lambda: None)
    except DecodeError as e:
        return str(e)


def _samples() -> list[str]:
    body = base64.b64encode(os.urandom(300)).decode()  # 400 characters, no padding
    one = base64.b64encode(b"x" * 301).decode()  # ends "=="
    two = base64.b64encode(b"x" * 302).decode()  # ends "="
    out = [body, one, two, body[:-1], body[:-2], body[:-3], one + "A", one + "AAAA"]
    for at in (0, 1, 3, 4, 5, 7, 8, 15, 16, 17, 199, 200, 399):
        for bad in ("-", "_", "=", "!", " ", "\u00e9", "\ufffd", "\x7f"):
            out.append(body[:at] + bad + body[at + 1 :])
    for at in (4, 8, 12, 16, 32, 64):  # valid padded quanta with more after them
        out.append(body[: at - 2] + "==" + body[at:])
        out.append(body[: at - 1] + "=" + body[at:])
    out += ["A===", "AA==", "AAA=", "====", "AAAA" * 40 + "=", "AAAA" * 40 + "A=="]
    return out


class DecodeBase64PiecesTests(SynchronousTestCase):
    def test_same_bytes_and_errors_as_the_field(self) -> None:
        for text in _samples():
            expected = _field(text)
            for piece in (4, 8, 12, 16, 64, 400, 1 << 20):
                with self.subTest(text=text[:20], piece=piece):
                    self.assertEqual(_pieces(text, piece), expected)

    def test_error_text(self) -> None:
        self.assertEqual(_pieces("AAAA" * 9 + "A=AA", 8), "illegal base64 data at input byte 37")
        self.assertEqual(_pieces("AAAA" * 9 + "A", 8), "illegal base64 data at input byte 37")
        self.assertEqual(_pieces("AA==AAAA", 4), "illegal base64 data at input byte 2")

    def test_between_runs_before_each_piece_and_may_abandon(self) -> None:
        calls = []
        text = base64.b64encode(b"y" * 30)  # 40 characters
        self.assertEqual(decode_base64(text, 8, lambda: calls.append(1)), b"y" * 30)
        self.assertEqual(len(calls), 5)

        class Stop(Exception):
            pass

        def stop() -> None:
            raise Stop()

        self.assertRaises(Stop, decode_base64, text, 8, stop)

    def test_large_result_is_one_bytes_object(self) -> None:
        data = os.urandom((5 << 20) + 7)
        got = decode_base64(base64.b64encode(data), 1 << 20, lambda: None)
        self.assertIs(type(got), bytes)
        self.assertEqual(got, data)

    def test_piece_must_be_whole_quanta(self) -> None:
        self.assertRaises(ValueError, decode_base64, b"AAAA", 6, lambda: None)
        self.assertRaises(ValueError, decode_base64, b"AAAA", 0, lambda: None)


class DecodedBytesTests(SynchronousTestCase):
    def test_taken_as_it_is_in_field_order(self) -> None:
        args = LoadImageArgs.from_wire({"Realm": "r", "Tarball": DecodedBytes(b"\x00\x01")})
        self.assertEqual(args.Tarball, b"\x00\x01")
        with self.assertRaises(DecodeError) as ctx:
            LoadImageArgs.from_wire({"Tarball": DecodedBytes(error="illegal base64 data at x")})
        self.assertEqual(str(ctx.exception), "illegal base64 data at x")
        with self.assertRaises(DecodeError) as ctx:  # an earlier field's error comes first
            LoadImageArgs.from_wire({"Realm": 1, "Tarball": DecodedBytes(error="later")})
        self.assertIn("LoadImageArgs.Realm", str(ctx.exception))

    def test_bytes_field(self) -> None:
        self.assertTrue(bytes_field(LoadImageArgs, "Tarball"))
        self.assertTrue(bytes_field(LoadImageArgs, "tarBALL"))
        self.assertFalse(bytes_field(LoadImageArgs, "Realm"))
        self.assertFalse(bytes_field(LoadImageArgs, "Other"))
        self.assertTrue(bytes_field(ApplyDocumentsArgs, "rawyaml"))
        self.assertFalse(bytes_field(dict, "Tarball"))
