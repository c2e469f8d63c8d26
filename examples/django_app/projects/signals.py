"""Every saved Project notifies ``projects`` once its transaction commits.

``transaction.on_commit`` runs the callback after the outermost ``atomic`` block
commits (at once in autocommit mode) and never on rollback, so clients never refetch
a change that did not happen. ``notify`` is thread-safe: Django's sync views and
signals run in a worker thread under ASGI.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from ..updates import updates
from .models import Project


@receiver(post_save, sender=Project)
@receiver(post_delete, sender=Project)
def project_changed(sender: type[Project], instance: Project, **kwargs: Any) -> None:
    key = instance.pk
    transaction.on_commit(lambda: updates.notify("projects", key=key))
