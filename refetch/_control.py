"""Control messages: changes to *who hears what*, carried in the update stream.

``reauthorize()`` and ``close_streams(subject=...)`` / ``close_streams(session=...)`` must
reach every instance, and in order with the updates: an update published after a
revocation must never reach a stream on the old scopes, on any instance. So with a
backend they travel through the same ordered stream as the updates and every instance
applies them where they stand.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._auth import Principal


@dataclass(frozen=True, slots=True)
class Reauthorize:
    """Every open stream of ``subject`` carries ``principal`` from here on."""

    subject: str
    principal: Principal
    #: The instance that made the change, and its own number for it: an instance
    #: applies its own changes at once and must not undo a newer one on read-back.
    origin: str = ""
    serial: int = 0


@dataclass(frozen=True, slots=True)
class CloseStreams:
    """End the open streams of ``subject`` (sign out everywhere), or of ``session`` (one
    browser's sign-out; with a subject too, that user's streams of that session only):
    their clients authenticate again. At least one of the two is set."""

    subject: str | None
    reason: str
    origin: str = ""
    serial: int = 0
    session: str | None = None


Control = Reauthorize | CloseStreams

#: The reason of a ``CloseStreams`` that stands in for a ``Reauthorize`` the broker did not
#: take at once. Published late, after changes other instances made meanwhile, the old
#: principal would undo a newer one (a revocation) everywhere; ending the subject's streams
#: instead makes every instance ask the app, the authority, again. Its own instance applies
#: it on read-back too (it did not end its streams when the change was made).
STALE_REAUTHORIZE = "permissions changed while the broker was away"


def stale(control: Control) -> Control:
    """What a control message that waited for the broker is published as (see above)."""
    if isinstance(control, Reauthorize):
        return CloseStreams(control.subject, STALE_REAUTHORIZE, control.origin, control.serial)
    return control
