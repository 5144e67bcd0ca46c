"""HPACK decoding against header blocks written by Go's encoder, which containerd uses.

``fixtures/hpack_go.json`` was written by ``golang.org/x/net/http2/hpack``
(the copy vendored in Go 1.26): a sequence of header blocks from one encoder,
so later blocks refer to entries earlier ones added to the dynamic table,
with Huffman-coded names and values, a never-indexed field, evictions and a
table size update; and the Huffman coding of a few strings, every byte value
among them.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import TestCase

from kukeond.containerd import hpack

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "hpack_go.json")


def vectors() -> dict:
    with open(FIXTURE) as fh:
        return json.load(fh)


class HpackTests(TestCase):
    def test_blocks_of_go_encoder_decode_in_sequence(self):
        decoder = hpack.Decoder()
        for block in vectors()["blocks"]:
            fields = decoder.decode(bytes.fromhex(block["hex"]))
            want = [(bytes.fromhex(n), bytes.fromhex(v)) for n, v in block["fields"]]
            self.assertEqual(fields, want)
            self.assertLessEqual(decoder.size, decoder.max_size)
        self.assertEqual(decoder.max_size, 2048)

    def test_huffman_strings_of_go(self):
        for plain, coded in vectors()["huffman"]:
            self.assertEqual(hpack.huffman_decode(bytes.fromhex(coded)), bytes.fromhex(plain))
            self.assertEqual(hpack.huffman_encode(bytes.fromhex(plain)).hex(), coded)

    def test_huffman_rejects_eos_and_bad_padding(self):
        eos, _ = hpack.huffman_code(256)
        with self.assertRaises(hpack.HpackError):
            hpack.huffman_decode((eos << 2 | 0b11).to_bytes(4, "big"))  # EOS, then padding
        with self.assertRaises(hpack.HpackError):
            hpack.huffman_decode(b"\x00")  # '0' (00000) then padding 000, not ones
        with self.assertRaises(hpack.HpackError):
            hpack.huffman_decode(hpack.huffman_encode(b"a") + b"\xff")  # 8+ bits of padding

    def test_literals_we_send_decode_as_sent_and_leave_no_state(self):
        decoder = hpack.Decoder()
        block = (
            hpack.encode_indexed(3)
            + hpack.encode_literal_indexed_name(4, b"/containerd.services.tasks.v1.Tasks/Get")
            + hpack.encode_literal(b"containerd-namespace", b"r" * 200)
        )
        self.assertEqual(
            decoder.decode(block),
            [
                (b":method", b"POST"),
                (b":path", b"/containerd.services.tasks.v1.Tasks/Get"),
                (b"containerd-namespace", b"r" * 200),
            ],
        )
        self.assertEqual((decoder.table, decoder.size), ([], 0))

    def test_table_rules(self):
        decoder = hpack.Decoder(limit=90)
        # incremental indexing, new name: 0x40, then name and value literals
        add = b"\x40" + hpack.encode_string(b"k1") + hpack.encode_string(b"v" * 30)
        self.assertEqual(decoder.decode(add), [(b"k1", b"v" * 30)])
        self.assertEqual(decoder.size, 2 + 30 + 32)
        self.assertEqual(decoder.decode(b"\xbe"), [(b"k1", b"v" * 30)])  # index 62
        add2 = b"\x40" + hpack.encode_string(b"k2") + hpack.encode_string(b"w")
        decoder.decode(add2)  # 64 + 35 > 90: k1 is evicted
        self.assertEqual(decoder.table, [(b"k2", b"w")])
        with self.assertRaises(hpack.HpackError):
            decoder.decode(b"\xbf")  # index 63: gone
        with self.assertRaises(hpack.HpackError):
            decoder.decode(hpack.encode_integer(91, 5, 0x20))  # above the announced limit
        decoder.decode(hpack.encode_integer(0, 5, 0x20))
        self.assertEqual((decoder.table, decoder.size, decoder.max_size), ([], 0, 0))
        big = b"\x40" + hpack.encode_string(b"k3") + hpack.encode_string(b"x")
        self.assertEqual(decoder.decode(big), [(b"k3", b"x")])  # too big for the table: not kept
        self.assertEqual(decoder.table, [])
        for bad in (b"\x80", b"\x41", b"\x00\x05ab", b"\xff\xff\xff\xff\xff\xff\x7f"):
            with self.assertRaises(hpack.HpackError):
                decoder.decode(bad)

    def test_integers(self):
        for value, prefix in ((10, 5), (1337, 5), (42, 8), (30, 5), (31, 5), (127, 7), (2**21, 7)):
            encoded = hpack.encode_integer(value, prefix)
            self.assertEqual(hpack.Decoder._integer(encoded, 0, prefix), (value, len(encoded)))
        self.assertEqual(hpack.encode_integer(1337, 5), bytes([31, 154, 10]))  # RFC 7541 C.1.2
