"""refetch: one Server-Sent-Events stream per client that says what changed."""

from __future__ import annotations

from ._auth import ANONYMOUS, Authenticate, Principal
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
from ._hub import Statistics, UpdateService
from ._mount import StreamMount, mount
from ._poller import Lease, Poller, SharedLease, poller
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
    "Lease",
    "Notifier",
    "Poller",
    "PollerStatistics",
    "Principal",
    "PublishError",
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
