from __future__ import annotations

from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "examples.django_app.projects"
    label = "projects"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the post_save receiver)
