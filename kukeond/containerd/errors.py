"""Typed errors of the containerd layer, and the mapping from gRPC status codes."""

from __future__ import annotations

import grpc


class ContainerdError(Exception):
    """Base of every error raised by an ``IContainerd`` provider.

    ``message`` is the human-readable text (containerd's own when it came
    from a gRPC status); ``code`` is the gRPC status code name, or ``None``
    for errors found on our side of the wire.
    """

    code: str | None = None

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(ContainerdError):
    """The named object (namespace, image, container, task, snapshot...) does not exist."""

    code = "NOT_FOUND"


class AlreadyExists(ContainerdError):
    """An object with that name or ID exists already."""

    code = "ALREADY_EXISTS"


class Unavailable(ContainerdError):
    """containerd cannot be reached (socket missing, daemon restarting, client stopped)."""

    code = "UNAVAILABLE"


class InvalidArgument(ContainerdError):
    """The request or its input (e.g. an image archive) is malformed."""

    code = "INVALID_ARGUMENT"


class FailedPrecondition(ContainerdError):
    """The object is not in a state that allows the operation (e.g. non-empty namespace)."""

    code = "FAILED_PRECONDITION"


class DeadlineExceeded(ContainerdError):
    """The call did not finish before its deadline."""

    code = "DEADLINE_EXCEEDED"


class Cancelled(ContainerdError):
    """The call was cancelled (client stopping or caller's cancel)."""

    code = "CANCELLED"


class Unimplemented(ContainerdError):
    """containerd does not implement the call (older daemon, disabled plugin)."""

    code = "UNIMPLEMENTED"


class ImageFormatError(InvalidArgument):
    """An image archive or layout is corrupt, truncated or of an unsupported type."""


class DigestMismatch(ImageFormatError):
    """A blob's bytes do not hash to the digest that names it."""


class PullError(ContainerdError):
    """The image could not be pulled (registry answer, transport or content problem)."""

    code = "UNKNOWN"


class RegistryUnauthorized(PullError):
    """The registry refused our (missing or wrong) credentials."""

    code = "PERMISSION_DENIED"


class RegistryNotFound(PullError):
    """The repository, tag, manifest or blob does not exist in the registry."""

    code = "NOT_FOUND"


class ContentMismatch(PullError):
    """Downloaded bytes do not match the digest or size that named them."""

    code = "DATA_LOSS"


_BY_CODE: dict[grpc.StatusCode, type[ContainerdError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


_CONTEXT_ERRORS: dict[str, type[ContainerdError]] = {
    "context deadline exceeded": DeadlineExceeded,
    "context canceled": Cancelled,
}
"""Go context errors containerd reports with code UNKNOWN (its own client maps them back)."""


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def from_status(number: int, details: str, what: str) -> ContainerdError:
    """Translate a gRPC status (its code number and message) of a call to ``what``."""
    return _typed(_CODES.get(number, grpc.StatusCode.UNKNOWN), details, what)


def from_rpc_error(error: grpc.RpcError, what: str) -> ContainerdError:
    """Translate a ``grpc.RpcError`` raised by ``what`` (e.g. ``"Tasks.Kill"``)."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    return _typed(code, details, what)


def _typed(code: grpc.StatusCode | None, details: str | None, what: str) -> ContainerdError:
    """The error for ``code``.

    A server-side deadline that expires just before the client's arrives as
    UNKNOWN ``context deadline exceeded``; it is the same timeout.
    """
    cls = _BY_CODE.get(code, ContainerdError) if code is not None else ContainerdError
    if code == grpc.StatusCode.UNKNOWN:
        # containerd may append the code to the text: "context deadline exceeded: unknown".
        text = (details or "").strip()
        for prefix, context_cls in _CONTEXT_ERRORS.items():
            if text.startswith(prefix):
                cls = context_cls
    name = code.name if isinstance(code, grpc.StatusCode) else None
    return cls(f"{what}: {details}", name)
