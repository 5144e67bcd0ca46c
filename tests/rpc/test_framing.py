from twisted.trial.unittest import SynchronousTestCase

from kukeond.rpc.framing import FrameError, FrameSplitter, FrameTooLarge

STREAM = (
    b'{"method":"KukeonV1.Ping","params":[{}],"id":0}\n'
    b'  {"a":"brace } and \\" quote","b":[{"c":[1,2]}]}'
    b'{"x":"\\\\"}'
)
FRAMES = [
    b'{"method":"KukeonV1.Ping","params":[{}],"id":0}',
    b'{"a":"brace } and \\" quote","b":[{"c":[1,2]}]}',
    b'{"x":"\\\\"}',
]


class FrameSplitterTests(SynchronousTestCase):
    def test_whole_stream(self):
        self.assertEqual(FrameSplitter(1 << 20).feed(STREAM), FRAMES)

    def test_every_split_point(self):
        for cut in range(len(STREAM) + 1):
            s = FrameSplitter(1 << 20)
            got = s.feed(STREAM[:cut]) + s.feed(STREAM[cut:])
            self.assertEqual(got, FRAMES, f"cut at {cut}")

    def test_byte_by_byte(self):
        s = FrameSplitter(1 << 20)
        got = []
        for i in range(len(STREAM)):
            got += s.feed(STREAM[i : i + 1])
        self.assertEqual(got, FRAMES)
        self.assertEqual(s.pending, 0)

    def test_incomplete_is_kept(self):
        s = FrameSplitter(1 << 20)
        self.assertEqual(s.feed(b'{"a":[1,'), [])
        self.assertEqual(s.pending, 8)
        self.assertEqual(s.feed(b"2]}"), [b'{"a":[1,2]}'])

    def test_top_level_array_is_fatal(self):
        self.assertRaises(FrameError, FrameSplitter(100).feed, b'[{"method":"x"}]')

    def test_top_level_scalar_is_fatal(self):
        self.assertRaises(FrameError, FrameSplitter(100).feed, b"  42 ")

    def test_frames_before_garbage_are_returned_first(self):
        s = FrameSplitter(100)
        self.assertEqual(s.feed(b'{"a":1}'), [b'{"a":1}'])
        self.assertRaises(FrameError, s.feed, b"x")

    def test_too_large_incomplete(self):
        s = FrameSplitter(16)
        s.feed(b'{"a":"0123456')
        self.assertRaises(FrameTooLarge, s.feed, b"789abcdef")

    def test_too_large_complete(self):
        self.assertRaises(FrameTooLarge, FrameSplitter(8).feed, b'{"a":"0123456789"}')

    def test_limit_is_inclusive(self):
        frame = b'{"a":"xy"}'
        self.assertEqual(FrameSplitter(len(frame)).feed(frame), [frame])

    def test_big_string_in_chunks(self):
        payload = b'{"Tarball":"' + b"QUJD" * 250_000 + b'"}'
        s = FrameSplitter(1 << 24)
        got = []
        for i in range(0, len(payload), 65536):
            got += s.feed(payload[i : i + 65536])
        self.assertEqual(got, [payload])

    def test_big_frame_with_the_next_one_behind_it(self):
        big = b'{"Tarball":"' + b"QUJD" * 100_000 + b'"}'
        second = b'{"method":"KukeonV1.Ping","params":[{}],"id":2}'
        stream = big + b" " + second + b"\n" + second
        s = FrameSplitter(1 << 24)
        got = []
        for i in range(0, len(stream), 65536):
            got += s.feed(stream[i : i + 65536])
        self.assertEqual(got, [big, second, second])
        self.assertEqual(s.pending, 0)

    def test_big_frame_then_an_incomplete_one(self):
        big = b'{"Tarball":"' + b"QUJD" * 1000 + b'"}'
        s = FrameSplitter(1 << 24)
        self.assertEqual(s.feed(big[:-10]), [])
        self.assertEqual(s.feed(big[-10:] + b'{"a":'), [big])
        self.assertEqual(s.pending, 5)
        self.assertEqual(s.feed(b"[1]}"), [b'{"a":[1]}'])
