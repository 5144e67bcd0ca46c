"""HPACK (RFC 7541) for the HTTP/2 client of :mod:`kukeond.containerd.unary`.

Only what a client that never indexes its own headers needs:

* :func:`encode_literal` writes a header field as a literal without
  indexing and without Huffman coding, which every decoder accepts and which
  keeps the peer's view of our (empty) dynamic table trivially in sync;
* :class:`Decoder` reads whatever the server sends: indexed fields, the three
  literal forms, dynamic table size updates, Huffman-coded strings, with the
  dynamic table and its eviction rules.

Header names and values are bytes.
"""

from __future__ import annotations

from collections import deque

Field = tuple[bytes, bytes]

DEFAULT_TABLE_SIZE = 4096
"""The dynamic table size an HTTP/2 endpoint allows unless it says otherwise."""

_ENTRY_OVERHEAD = 32

STATIC_TABLE: tuple[Field, ...] = tuple(
    (name.encode(), value.encode())
    for name, value in (
        (":authority", ""),
        (":method", "GET"),
        (":method", "POST"),
        (":path", "/"),
        (":path", "/index.html"),
        (":scheme", "http"),
        (":scheme", "https"),
        (":status", "200"),
        (":status", "204"),
        (":status", "206"),
        (":status", "304"),
        (":status", "400"),
        (":status", "404"),
        (":status", "500"),
        ("accept-charset", ""),
        ("accept-encoding", "gzip, deflate"),
        ("accept-language", ""),
        ("accept-ranges", ""),
        ("accept", ""),
        ("access-control-allow-origin", ""),
        ("age", ""),
        ("allow", ""),
        ("authorization", ""),
        ("cache-control", ""),
        ("content-disposition", ""),
        ("content-encoding", ""),
        ("content-language", ""),
        ("content-length", ""),
        ("content-location", ""),
        ("content-range", ""),
        ("content-type", ""),
        ("cookie", ""),
        ("date", ""),
        ("etag", ""),
        ("expect", ""),
        ("expires", ""),
        ("from", ""),
        ("host", ""),
        ("if-match", ""),
        ("if-modified-since", ""),
        ("if-none-match", ""),
        ("if-range", ""),
        ("if-unmodified-since", ""),
        ("last-modified", ""),
        ("link", ""),
        ("location", ""),
        ("max-forwards", ""),
        ("proxy-authenticate", ""),
        ("proxy-authorization", ""),
        ("range", ""),
        ("referer", ""),
        ("refresh", ""),
        ("retry-after", ""),
        ("server", ""),
        ("set-cookie", ""),
        ("strict-transport-security", ""),
        ("transfer-encoding", ""),
        ("user-agent", ""),
        ("vary", ""),
        ("via", ""),
        ("www-authenticate", ""),
    )
)
"""RFC 7541 Appendix A, index 1 first."""

# RFC 7541 Appendix B is a canonical Huffman code: the code of every symbol
# follows from the code lengths alone (codes of one length are consecutive,
# in symbol order, after the codes of every shorter length). These are the
# lengths, symbols 0 to 255 and EOS (256), sixteen to a line.
_CODE_LENGTHS = tuple(
    int(n)
    for n in """
    13 23 28 28 28 28 28 28 28 24 30 28 28 30 28 28
    28 28 28 28 28 28 30 28 28 28 28 28 28 28 28 28
    6 10 10 12 13 6 8 11 10 10 8 11 8 6 6 6
    5 5 5 6 6 6 6 6 6 6 7 8 15 6 12 10
    13 6 7 7 7 7 7 7 7 7 7 7 7 7 7 7
    7 7 7 7 7 7 7 7 8 7 8 13 19 13 14 6
    15 5 6 5 6 5 6 6 6 5 7 7 6 6 6 5
    6 7 6 5 5 6 7 7 7 7 7 15 11 14 13 28
    20 22 20 20 22 22 22 23 22 23 23 23 23 23 24 23
    24 24 22 23 24 23 23 23 23 21 22 23 22 23 23 24
    22 21 20 22 22 23 23 21 23 22 22 24 21 22 23 23
    21 21 22 21 23 22 23 23 20 22 22 22 23 22 22 23
    26 26 20 19 22 23 22 25 26 26 26 27 27 26 24 25
    19 21 26 27 27 26 27 24 21 21 26 26 28 27 27 27
    20 24 20 21 22 21 21 23 22 22 25 25 24 24 26 23
    26 27 26 26 27 27 27 27 27 28 27 27 27 27 27 26
    30
    """.split()
)
_EOS = 256


class HpackError(Exception):
    """A header block that does not decode (a connection error in HTTP/2)."""


def _canonical(lengths: tuple[int, ...]) -> tuple[dict[int, tuple[int, int, int]], list[int]]:
    """Per code length: (first code, count, offset into the symbol list); and that list."""
    symbols = sorted(range(len(lengths)), key=lambda s: (lengths[s], s))
    by_length: dict[int, tuple[int, int, int]] = {}
    code = 0
    previous = lengths[symbols[0]]
    for index, symbol in enumerate(symbols):
        length = lengths[symbol]
        if index:
            code = (code + 1) << (length - previous)
        previous = length
        if length not in by_length:
            by_length[length] = (code, 0, index)
        first, count, offset = by_length[length]
        by_length[length] = (first, count + 1, offset)
    return by_length, symbols


_BY_LENGTH, _SYMBOLS = _canonical(_CODE_LENGTHS)
_SHORTEST = min(_BY_LENGTH)
_LONGEST = max(_BY_LENGTH)
# (code length) -> (first code, count, offset), as a list indexed by length
_TABLE: list[tuple[int, int, int] | None] = [_BY_LENGTH.get(n) for n in range(_LONGEST + 1)]


def huffman_code(symbol: int) -> tuple[int, int]:
    """The ``(code, length)`` of a symbol (0-255, or 256 for EOS)."""
    length = _CODE_LENGTHS[symbol]
    entry = _TABLE[length]
    assert entry is not None
    first, _count, offset = entry
    return first + _SYMBOLS.index(symbol) - offset, length


def huffman_encode(data: bytes) -> bytes:
    """``data`` Huffman-coded, padded with the EOS prefix (used by tests)."""
    acc, bits = 0, 0
    for byte in data:
        code, length = huffman_code(byte)
        acc, bits = (acc << length) | code, bits + length
    pad = -bits % 8
    acc, bits = (acc << pad) | ((1 << pad) - 1), bits + pad
    return acc.to_bytes(bits // 8, "big")


def huffman_decode(data: bytes) -> bytes:
    """Decode a Huffman-coded string; :class:`HpackError` for EOS or bad padding."""
    out = bytearray()
    table, symbols, shortest = _TABLE, _SYMBOLS, _SHORTEST
    code = length = 0
    for byte in data:
        for shift in (7, 6, 5, 4, 3, 2, 1, 0):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            if length < shortest:
                continue
            if length > _LONGEST:
                raise HpackError("invalid Huffman code")
            entry = table[length]
            if entry is None:
                continue
            index = code - entry[0]
            if 0 <= index < entry[1]:
                symbol = symbols[entry[2] + index]
                if symbol == _EOS:
                    raise HpackError("EOS in a Huffman-coded string")
                out.append(symbol)
                code = length = 0
    # What is left must be a prefix of EOS (all ones), shorter than a byte.
    if length > 7 or code != (1 << length) - 1:
        raise HpackError("invalid Huffman padding")
    return bytes(out)


def encode_integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer with a ``prefix_bits`` prefix; ``first`` holds the other high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_string(data: bytes) -> bytes:
    """A string literal, not Huffman-coded."""
    return encode_integer(len(data), 7) + data


def encode_literal(name: bytes, value: bytes) -> bytes:
    """A header field as a literal without indexing, its name a literal too."""
    return b"\x00" + encode_string(name) + encode_string(value)


def encode_indexed(index: int) -> bytes:
    """A field of the static table by its index (e.g. 3 for ``:method: POST``)."""
    return encode_integer(index, 7, 0x80)


def encode_literal_indexed_name(index: int, value: bytes) -> bytes:
    """A literal without indexing whose name is that of static entry ``index``."""
    return encode_integer(index, 4) + encode_string(value)


class Decoder:
    """One connection's header decoding state (see the module docstring).

    ``limit`` is the table size this side announced (SETTINGS_HEADER_TABLE_SIZE);
    the peer may lower the table below it with size updates, never raise it above.
    """

    def __init__(self, limit: int = DEFAULT_TABLE_SIZE) -> None:
        self.limit = limit
        self.max_size = limit
        self.size = 0
        self._table: deque[Field] = deque()

    @property
    def table(self) -> list[Field]:
        """The dynamic table, newest entry first."""
        return list(self._table)

    def decode(self, block: bytes) -> list[Field]:
        """The fields of one complete header block, in order."""
        fields: list[Field] = []
        pos, end = 0, len(block)
        try:
            while pos < end:
                byte = block[pos]
                if byte & 0x80:  # indexed field
                    index, pos = self._integer(block, pos, 7)
                    fields.append(self._entry(index))
                elif byte & 0x40:  # literal with incremental indexing
                    field, pos = self._literal(block, pos, 6)
                    self._add(field)
                    fields.append(field)
                elif byte & 0x20:  # dynamic table size update
                    size, pos = self._integer(block, pos, 5)
                    if size > self.limit:
                        raise HpackError(f"table size update to {size} above {self.limit}")
                    self.max_size = size
                    self._evict(0)
                else:  # literal without indexing (0000) or never indexed (0001)
                    field, pos = self._literal(block, pos, 4)
                    fields.append(field)
        except IndexError:
            raise HpackError("truncated header block") from None
        return fields

    @staticmethod
    def _integer(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
        limit = (1 << prefix_bits) - 1
        value = block[pos] & limit
        pos += 1
        if value < limit:
            return value, pos
        shift = 0
        while True:
            byte = block[pos]
            pos += 1
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, pos
            if shift > 28:
                raise HpackError("integer too large")

    def _string(self, block: bytes, pos: int) -> tuple[bytes, int]:
        huffman = block[pos] & 0x80
        length, pos = self._integer(block, pos, 7)
        if pos + length > len(block):
            raise HpackError("truncated string")
        data = block[pos : pos + length]
        return (huffman_decode(data) if huffman else data), pos + length

    def _literal(self, block: bytes, pos: int, prefix_bits: int) -> tuple[Field, int]:
        index, pos = self._integer(block, pos, prefix_bits)
        if index:
            name = self._entry(index)[0]
        else:
            name, pos = self._string(block, pos)
        value, pos = self._string(block, pos)
        return (name, value), pos

    def _entry(self, index: int) -> Field:
        if 0 < index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        dynamic = index - len(STATIC_TABLE) - 1
        if 0 <= dynamic < len(self._table):
            return self._table[dynamic]
        raise HpackError(f"header index {index} out of range")

    def _add(self, field: Field) -> None:
        size = len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
        if size > self.max_size:
            self._table.clear()
            self.size = 0
            return
        self._evict(size)
        self._table.appendleft(field)
        self.size += size

    def _evict(self, room: int) -> None:
        while self._table and self.size + room > self.max_size:
            name, value = self._table.pop()
            self.size -= len(name) + len(value) + _ENTRY_OVERHEAD
