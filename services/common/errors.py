"""Domain errors shared by every service.

Core modules raise these and know nothing of gRPC; the one status interceptor in
``services.common.interceptors`` maps each class to its gRPC status code, and an error's
``reason`` to a ``google.rpc.ErrorInfo`` detail that clients can act on.
"""

from __future__ import annotations

#: ``ErrorInfo.domain`` of every reason the services give (reasons: ``vidsearch.common.v1.ErrorReason``).
ERROR_DOMAIN = "vidsearch"


class VidsearchError(Exception):
    """Base class of every error the services raise on purpose.

    ``reason``, when set, is the name of a ``vidsearch.common.v1.ErrorReason`` value: what a
    client can do about the error, so that it never has to read the message's text.
    """

    def __init__(self, *args: object, reason: str = "") -> None:
        super().__init__(*args)
        self.reason = reason


class InvalidInput(VidsearchError):
    """The request itself is wrong (bad vector, bad id, undecodable bytes): INVALID_ARGUMENT."""


class NotFound(VidsearchError):
    """A named clip, video, job or file does not exist: NOT_FOUND."""


class WrongState(VidsearchError):
    """Valid request, wrong state of the target (e.g. model mismatch): FAILED_PRECONDITION."""


class Overloaded(VidsearchError):
    """A bounded queue or quota is full; the caller should back off: RESOURCE_EXHAUSTED."""


class NotReady(VidsearchError):
    """The service is up but still starting (loading its model, opening its index): UNAVAILABLE,
    which callers retry, unlike FAILED_PRECONDITION, which says the request itself cannot succeed."""


class DependencyDown(VidsearchError):
    """A service this one relies on is unreachable: UNAVAILABLE."""


class StorageFull(VidsearchError):
    """The disk is full; nothing was acknowledged: RESOURCE_EXHAUSTED."""


class Unsupported(VidsearchError):
    """The server does not implement the call (an older version of the service): UNIMPLEMENTED.
    Callers that can do without it fall back; it is not retried elsewhere like a server that is down."""


class Cancelled(VidsearchError):
    """The work was cancelled on request: CANCELLED."""
