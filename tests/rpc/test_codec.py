from twisted.trial.unittest import SynchronousTestCase

from kukeond.rpc.codec import GoNumber, RequestError, decode_request, encode_response


class DecodeRequestTests(SynchronousTestCase):
    def test_go_client_request(self):
        r = decode_request(b'{"method":"KukeonV1.Ping","params":[{}],"id":0}')
        self.assertEqual((r.method, r.params, r.id_text), ("KukeonV1.Ping", [{}], "0"))
        self.assertTrue(r.has_params)

    def test_header_keys_case_insensitive_last_wins(self):
        r = decode_request(b'{"METHOD":"a.B","Method":"KukeonV1.Ping","PARAMS":[],"Id":7}')
        self.assertEqual((r.method, r.params, r.id_text), ("KukeonV1.Ping", [], "7"))

    def test_missing_id_echoes_null(self):
        self.assertEqual(decode_request(b'{"method":"x.y","params":[]}').id_text, "null")

    def test_id_echoed_compact_with_literals(self):
        r = decode_request(b'{"method":"x.y","id": {"a" : [1, 1.50, 2e3, "<x>"]}}')
        self.assertEqual(r.id_text, '{"a":[1,1.50,2e3,"\\u003cx\\u003e"]}')

    def test_missing_and_null_params(self):
        self.assertFalse(decode_request(b'{"method":"x.y"}').has_params)
        self.assertFalse(decode_request(b'{"method":"x.y","params":null}').has_params)

    def test_fractional_numbers_are_go_numbers(self):
        r = decode_request(b'{"method":"x.y","params":[{"n":1.0}]}')
        self.assertIsInstance(r.params[0]["n"], GoNumber)
        self.assertEqual(r.params[0]["n"].literal, "1.0")

    def test_method_of_wrong_type_is_fatal(self):
        self.assertRaises(RequestError, decode_request, b'{"method":1,"params":[]}')

    def test_malformed_is_fatal(self):
        self.assertRaises(RequestError, decode_request, b'{"method":"x.y",}')

    def test_invalid_utf8_becomes_replacement(self):
        r = decode_request(b'{"method":"x.y","params":["\xff"]}')
        self.assertEqual(r.params, ["\ufffd"])


class EncodeResponseTests(SynchronousTestCase):
    def test_success(self):
        self.assertEqual(
            encode_response("0", {"OK": True, "Version": "v0.5.0", "Err": None}),
            b'{"id":0,"result":{"OK":true,"Version":"v0.5.0","Err":null},"error":null}\n',
        )

    def test_error(self):
        self.assertEqual(
            encode_response("8", error="rpc: can't find method KukeonV1.Reboot"),
            b'{"id":8,"result":null,"error":"rpc: can\'t find method KukeonV1.Reboot"}\n',
        )

    def test_error_is_html_escaped(self):
        self.assertEqual(
            encode_response("null", error="<&>"),
            b'{"id":null,"result":null,"error":"\\u003c\\u0026\\u003e"}\n',
        )
