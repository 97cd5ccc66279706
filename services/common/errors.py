"""Domain errors shared by every service.

Core modules raise these and know nothing of gRPC; the one status interceptor in
``services.common.interceptors`` maps each class to its gRPC status code.
"""

from __future__ import annotations


class VidsearchError(Exception):
    """Base class of every error the services raise on purpose."""


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


class Cancelled(VidsearchError):
    """The work was cancelled on request: CANCELLED."""
