"""refetch: one Server-Sent-Events stream per client that says what changed."""

from __future__ import annotations

from ._asgi.cursor_header import CursorHeaderMiddleware
from ._asgi.endpoint import UpdatesEndpoint
from ._asgi.mount import StreamMount, mount
from ._auth import ANONYMOUS, Authenticate, Principal
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
from ._fanout.connection import ConnectionInfo
from ._hub.front import UpdateService
from ._hub.presence import DemandWatch
from ._hub.publisher import Publisher
from ._hub.statistics import Statistics
from ._polling.poller import Lease, Poller, SharedLease, poller
from ._polling.worker import BackgroundWorker, Cached, Notifier, PollerStatistics
from ._update import Update

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
    "DemandWatch",
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
