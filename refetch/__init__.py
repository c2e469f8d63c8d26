"""refetch: one Server-Sent-Events stream per client that says what changed."""

from __future__ import annotations

from ._auth import ANONYMOUS, Authenticate, Principal
from ._connection import ConnectionInfo
from ._cursor_header import CursorHeaderMiddleware
from ._endpoint import UpdatesEndpoint
from ._exceptions import (
    BackendUnavailable,
    ConfigurationError,
    PublishError,
    RefetchError,
    ServiceClosed,
    StreamError,
    StreamRejected,
    UnknownUpdateType,
)
from ._hub import UpdateService
from ._mount import StreamMount, mount
from ._poller import Lease, Poller, SharedLease, poller
from ._publisher import Publisher
from ._statistics import Statistics
from ._update import Update
from ._worker import BackgroundWorker, Cached, Notifier, PollerStatistics

__version__ = "0.1.0"

__all__ = [
    "ANONYMOUS",
    "Authenticate",
    "BackendUnavailable",
    "BackgroundWorker",
    "Cached",
    "ConfigurationError",
    "ConnectionInfo",
    "CursorHeaderMiddleware",
    "Lease",
    "Notifier",
    "Poller",
    "PollerStatistics",
    "Principal",
    "PublishError",
    "Publisher",
    "RefetchError",
    "ServiceClosed",
    "SharedLease",
    "Statistics",
    "StreamError",
    "StreamMount",
    "StreamRejected",
    "UnknownUpdateType",
    "Update",
    "UpdateService",
    "UpdatesEndpoint",
    "mount",
    "poller",
]
