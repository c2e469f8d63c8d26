"""Exceptions raised by refetch.

RefetchError
├── ConfigurationError   (also a ValueError: bad arguments at construction)
├── UnknownUpdateType    (also a ValueError: a type that was never declared)
├── ServiceClosed        (the UpdateService is not running any more)
├── BackendUnavailable   (the broker cannot be reached at start; names its URL)
├── PublishError         (the backend did not accept an update)
└── StreamError          (the Python client could not keep a stream open)
    └── StreamRejected   (a final answer: 400, 401, 403, 404, a redirect, or no event stream)
"""

from __future__ import annotations


class RefetchError(Exception):
    """Base class of every error refetch raises."""


class ConfigurationError(RefetchError, ValueError):
    """An argument makes no sense; the message says what to do instead."""


class UnknownUpdateType(RefetchError, ValueError):
    """An update type that the service was not declared with."""

    def __init__(self, unknown: list[str], known: list[str]) -> None:
        self.unknown = unknown
        self.known = known
        super().__init__(
            f"unknown update type(s) {', '.join(map(repr, unknown))}; "
            f"known types: {', '.join(known)}"
        )


class ServiceClosed(RefetchError):
    """The UpdateService was closed, or never started, when it was needed."""


class BackendUnavailable(RefetchError):
    """The broker behind a backend could not be reached (the message names its URL)."""


class PublishError(RefetchError):
    """The backend did not accept an update."""


class StreamError(RefetchError):
    """The client lost its stream and could not get it back."""


class StreamRejected(StreamError):
    """The server refused the stream with a status that retrying will not change."""

    def __init__(self, status_code: int, body: object, message: str | None = None) -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(message or f"stream rejected with HTTP {status_code}: {body!r}")
