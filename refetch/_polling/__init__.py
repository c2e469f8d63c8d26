"""Pollers for external APIs: the ``poller()`` declaration and the ``BackgroundWorker``."""
