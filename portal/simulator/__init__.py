"""The simulated external APIs the portal polls: progress, an image registry, Gardener shoots."""

from .app import create_app

__all__ = ["create_app"]
