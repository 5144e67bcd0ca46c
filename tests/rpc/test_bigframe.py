"""Large frames decoded in pieces give what the usual decoder gives, arguments or errors."""

from __future__ import annotations

import base64
import json
import os
import threading

from twisted.trial.unittest import SynchronousTestCase

from kukeond.rpc import bigframe
from kukeond.rpc.bigframe import Cancelled, decode_frame
from kukeond.rpc.codec import RequestError, decode_request
from kukeond.rpc.dispatch import Call, Dispatcher


def _handler(args):
    raise AssertionError("prepare never runs the handler")


DISPATCHER = Dispatcher(
    {"LoadImage": _handler, "ApplyDocuments": _handler, "CreateRealm": _handler}
)

B64 = base64.b64encode(os.urandom(600)).decode()  # 800 characters
QUOTED = f'"{B64}"'
PAD2 = base64.b64encode(b"z" * 601).decode()  # ends "=="


def _load(tarball: str, realm: str = '"default"', key: str = "Tarball", id_: str = "7") -> bytes:
    params = f'{{"Realm":{realm},"{key}":"{tarball}"}}'
    return f'{{"method":"KukeonV1.LoadImage","params":[{params}],"id":{id_}}}'.encode()


def _usual(frame: bytes) -> object:
    try:
        request = decode_request(frame)
    except RequestError:
        return "fatal"
    return _shape(request, DISPATCHER.prepare(request))


def _pieces(frame: bytes, **kw: int) -> object:
    try:
        request, call = decode_frame(bytearray(frame), DISPATCHER, threading.Event(), **kw)
    except RequestError:
        return "fatal"
    return _shape(request, call)


def _shape(request, call) -> object:
    if isinstance(call, Call):
        return request.method, request.id_text, "call", call.method, call.args
    return request.method, request.id_text, "error", call


def _frames() -> list[bytes]:
    frames = [
        _load(B64),
        _load(PAD2),
        _load(B64[:-1]),
        _load(B64[:-4] + "AA=="),
        _load(B64[:8] + "AA==" + B64[12:]),  # padding ends a piece, more follows
        _load(B64[:6] + "==" + B64[8:]),
        _load(B64, key="tarball"),
        _load(B64, key="TARBALL"),
        _load(B64, realm="5"),  # an error in an earlier field comes first
        _load(B64[:100] + "!" + B64[101:], realm="5"),
        _load(B64[:100] + "!" + B64[101:]),
        _load(B64[:399] + "\u00e9" + B64[400:]),
        _load(B64[:399] + "\u20ac" + B64[401:]),
        _load(B64[:20] + "\\n" + B64[20:]),  # an escaped line break is skipped
        _load(B64[:20] + "\\/" + B64[21:]),  # an escaped slash is a slash
        _load(B64[:20] + "\\u0041" + B64[21:]),
        _load(B64[:20] + "\\u0021" + B64[21:]),
        _load(B64[:20] + "\n" + B64[20:]),  # a raw line break is not JSON
        _load(B64[:20] + "\x01" + B64[21:]),
        _load(B64[:20] + "\t" + B64[21:]),
        _load(B64[:20] + "\x7f" + B64[21:]),
        _load(B64, realm=QUOTED),  # a long string in a string field
        _load(B64, id_=QUOTED),  # ... as the id
        _load("", realm=QUOTED),
        _load(B64).replace(b"LoadImage", b"LoadImages"),
        _load(B64).replace(b"LoadImage", b"Ping"),
        _load(B64).replace(b'"params":[', b'"params":[{},'),
        _load(B64).replace(b'"params":[{', b'"params":{"x":{').replace(b"}]", b"}}"),
        _load(B64).replace(b'"method"', b'"METHOD"').replace(b'"params"', b'"Params"'),
        _load(B64).replace(b'"id":7', b'"id":'),
        _load(B64).replace(b'"id":7', b'"id":7.50'),
        _load(B64).replace(b'"method":"KukeonV1.LoadImage"', b'"method":5'),
        _load(B64).replace(b'"Realm"', QUOTED.encode()),  # a long key
        _load(B64).replace(b'"Realm":"default"', b'"Tarball":"%s"' % PAD2.encode()),
        _load(B64).replace(b'"Realm":"default"', b'"tarball":"%s"' % PAD2.encode()),
        _load(B64).replace(b'"Realm":"default"', b'"tarball":"%s!"' % PAD2.encode()),
        _load(B64).replace(b'"Realm":"default"', b'"tarball":"%s\x02"' % PAD2.encode()),
        b'{"method":"KukeonV1.ApplyDocuments","params":[{"RawYAML":"%s"}],"id":1}' % B64.encode(),
        b'{"method":"KukeonV1.CreateRealm","params":[{"Doc":{"metadata":'
        b'{"name":"x","labels":{"a":"%s"}}}}],"id":1}' % B64.encode(),
        b'{"method":"KukeonV1.LoadImage","params":[{"Tarball":"%s"}],"id":1,"x":"\xff\xfe"}'
        % B64.encode(),
    ]
    return frames


class DecodeFrameTests(SynchronousTestCase):
    def test_same_outcome_as_the_usual_decoder(self) -> None:
        for frame in _frames():
            expected = _usual(frame)
            for kw in (
                {"long_string": 16, "piece": 8},
                {"long_string": 100, "piece": 8},
                {"long_string": 100, "piece": 64},
                {},
            ):
                with self.subTest(frame=frame[:90], **kw):
                    self.assertEqual(_pieces(frame, **kw), expected)

    def test_the_outcomes_are_the_ones_expected(self) -> None:
        ok = _pieces(_load(B64), long_string=100, piece=8)
        self.assertEqual(ok[:3], ("KukeonV1.LoadImage", "7", "call"))
        self.assertEqual(ok[4].Tarball, base64.b64decode(B64))
        self.assertEqual(ok[4].Realm, "default")
        bad = _pieces(_load(B64[:100] + "!" + B64[101:]), long_string=100, piece=8)
        self.assertEqual(bad[2:], ("error", (None, "illegal base64 data at input byte 100")))
        self.assertEqual(_pieces(_load(B64[:20] + "\n" + B64[20:]), long_string=100), "fatal")

    def test_a_frame_of_megabytes(self) -> None:
        data = os.urandom(3 << 20)
        text = base64.b64encode(data).decode()
        (method, _, kind, _, args) = _pieces(_load(text))
        self.assertEqual((method, kind), ("KukeonV1.LoadImage", "call"))
        self.assertIs(type(args.Tarball), bytes)
        self.assertEqual(args.Tarball, data)
        late = len(text) - 5
        bad = _load(text[:late] + "-" + text[late + 1 :])
        self.assertEqual(_pieces(bad), _usual(bad))
        self.assertEqual(_pieces(bad)[3], (None, f"illegal base64 data at input byte {late}"))

    def test_the_long_string_is_decoded_in_pieces(self) -> None:
        calls = []
        real = bigframe.decode_base64

        def spy(text, piece, between):
            calls.append((len(text), piece))
            return real(text, piece, between)

        self.patch(bigframe, "decode_base64", spy)
        _pieces(_load(B64), long_string=100, piece=8)
        self.assertEqual(calls, [(len(B64), 8)])
        calls.clear()
        _pieces(_load(B64, realm=QUOTED), long_string=100, piece=8)
        self.assertEqual(calls, [])  # fell back to the usual decoder

    def test_cancelled(self) -> None:
        cancelled = threading.Event()
        cancelled.set()
        for frame in (_load(B64), _load(B64, realm=QUOTED)):
            self.assertRaises(
                Cancelled,
                decode_frame,
                frame,
                DISPATCHER,
                cancelled,
                long_string=16,
                piece=8,
            )

    def test_escapes_around_quotes_are_followed(self) -> None:
        tricky = json.dumps({"method": 'KukeonV1.LoadImage"\\', "params": [{"Tarball": B64}]})
        frame = tricky.encode()
        self.assertEqual(_pieces(frame, long_string=100, piece=8), _usual(frame))
        frame = b'{"method":"KukeonV1.LoadImage","params":[{"Realm":"a\\\\","Tarball":"%s"}]}' % (
            B64.encode()
        )
        self.assertEqual(_pieces(frame, long_string=100, piece=8), _usual(frame))
        self.assertEqual(_pieces(frame, long_string=100, piece=8)[4].Realm, "a\\")
