"""gRPC status to typed containerd error."""

from __future__ import annotations

import grpc
from twisted.trial.unittest import SynchronousTestCase

from kukeond.containerd import errors


class _Status(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class FromRpcErrorTests(SynchronousTestCase):
    """``errors.from_rpc_error``."""

    def test_codes_map_to_their_classes(self):
        error = errors.from_rpc_error(_Status(grpc.StatusCode.NOT_FOUND, "no task"), "Tasks.Get")
        self.assertIsInstance(error, errors.NotFound)
        self.assertEqual((error.message, error.code), ("Tasks.Get: no task", "NOT_FOUND"))

    def test_a_server_side_deadline_is_a_deadline(self):
        error = errors.from_rpc_error(
            _Status(grpc.StatusCode.UNKNOWN, "context deadline exceeded"), "Tasks.Wait"
        )
        self.assertIsInstance(error, errors.DeadlineExceeded)
        self.assertEqual(error.message, "Tasks.Wait: context deadline exceeded")

    def test_a_server_side_cancel_is_a_cancel(self):
        error = errors.from_rpc_error(
            _Status(grpc.StatusCode.UNKNOWN, "context canceled"), "Tasks.Wait"
        )
        self.assertIsInstance(error, errors.Cancelled)

    def test_other_unknown_errors_stay_generic(self):
        error = errors.from_rpc_error(
            _Status(grpc.StatusCode.UNKNOWN, "task must be stopped before deletion: running"),
            "Tasks.Delete",
        )
        self.assertIs(type(error), errors.ContainerdError)
        self.assertEqual(error.code, "UNKNOWN")
