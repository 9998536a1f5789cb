"""Errors the store and the service raise, each mapped to one gRPC status code.

The message is written for a person: it names the collection, field or id at fault.
"""

from __future__ import annotations

import grpc


class DbApiError(Exception):
    """Base class; `code` is the gRPC status the service answers with."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(DbApiError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class TooLarge(DbApiError):
    """A request that would take more memory than the service grants one call."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


# How the db-api words a stream it refuses for want of a free slot: RESOURCE_EXHAUSTED, as for
# data too large, so a client tells "busy, try again" from "too large" by these words.
STREAMS_BUSY = "streaming calls (scans, bulk writes) at once"


def streams_busy(details: str) -> bool:
    """Whether a RESOURCE_EXHAUSTED status's details say the db-api's streams were all taken."""
    return STREAMS_BUSY in details


class UnknownCollection(DbApiError):
    code = grpc.StatusCode.NOT_FOUND


class Unavailable(DbApiError):
    """The backing database cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(DbApiError):
    """The caller's deadline passed before the write was acknowledged. The embedded store then
    has not committed it; elsewhere the message says whether it may still have been stored."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class StaleFence(DbApiError):
    """A write fenced by a lease generation that no longer holds: its writer lost the lease."""

    code = grpc.StatusCode.FAILED_PRECONDITION
