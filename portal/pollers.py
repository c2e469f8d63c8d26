"""The external APIs the portal polls, declared once for the BackgroundWorker.

Each extractor validates the body, so garbage from the API is a failed poll (the cached value
stays, marked stale) instead of garbage on a page.

With a Redis or PostgreSQL backend (``REFETCH_BACKEND_URL``) every poller gets a lease in the
same service: one instance polls each API, the others serve the snapshot it shares.

On demand (``Settings.poll_on_demand``, the default) each poller polls only while a stream that
would hear its notify is open on some instance: progress and images (no audience) while anyone
signed in has a page open, a tenant's clusters (audience: the tenant's scope) while a member of
that tenant has one open; at once when the first such page opens, and until ``poll_idle_after``
seconds after the last one closed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from refetch import Poller, poller
from refetch.leases import has_leases, with_leases

from .config import Settings
from .schemas import Cluster, Image
from .updates import UpdateType, tenant_scope

PROGRESS = "progress"
IMAGES = "images"


def gardener_poller_name(slug: str) -> str:
    return f"gardener:{slug}"


class ProgressState(BaseModel):
    value: float
    phase: str | None = None


_images = TypeAdapter(list[Image])
_clusters = TypeAdapter(list[Cluster])


def extract_progress(body: Any) -> dict[str, Any]:
    state = ProgressState.model_validate(body)
    if not 0 <= state.value <= 100:
        raise ValueError(f"progress out of range: {state.value}")
    return state.model_dump()


def extract_images(body: Any) -> list[Image]:
    return _images.validate_python(body["images"])


def extract_clusters(tenant: str) -> Any:
    def extract(body: Any) -> list[Cluster]:
        clusters = _clusters.validate_python(body["shoots"])
        # never show another tenant's cluster, whatever the API returns
        return [c for c in clusters if c.tenant == tenant]

    return extract


def portal_pollers(settings: Settings, tenant_slugs: list[str]) -> list[Poller]:
    base = settings.simulator_url

    def backoff(interval: float) -> float | None:
        cap = settings.poll_max_backoff
        return None if cap is None else max(cap, interval)

    on_demand, idle_after = settings.poll_on_demand, settings.poll_idle_after

    pollers = [
        # Progress and the image catalog are the same for everyone: no audience.
        poller(
            UpdateType.progress,
            name=PROGRESS,
            url=f"{base}/state",
            extract=extract_progress,
            interval=settings.progress_interval,
            timeout=settings.poll_timeout,
            max_backoff=backoff(settings.progress_interval),
            on_demand=on_demand,
            idle_after=idle_after,
        ),
        poller(
            UpdateType.images,
            name=IMAGES,
            url=f"{base}/images",
            extract=extract_images,
            interval=settings.images_interval,
            timeout=settings.poll_timeout,
            max_backoff=backoff(settings.images_interval),
            on_demand=on_demand,
            idle_after=idle_after,
        ),
    ]
    # One poller per tenant, so a tenant's clusters notify only that tenant's streams.
    for slug in tenant_slugs:
        pollers.append(
            poller(
                UpdateType.gardener,
                name=gardener_poller_name(slug),
                url=f"{base}/shoots?tenant={slug}",
                extract=extract_clusters(slug),
                interval=settings.shoots_interval,
                audience={tenant_scope(slug)},
                timeout=settings.poll_timeout,
                max_backoff=backoff(settings.shoots_interval),
                on_demand=on_demand,
                idle_after=idle_after,
            )
        )
    url = settings.backend_url
    if url and has_leases(url):
        return with_leases(pollers, url)
    return pollers
