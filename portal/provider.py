"""The simulated compute provider: moves instances through their life cycle in the background.

A real provider would call a cloud API and wait; this one waits `step` seconds per transition.
Each transition is its own transaction and its own `compute` notification, sent after commit.
The lifespan owns the provider's task; on start it picks up instances a previous run left in a
transitional status.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .db import notify_after_commit
from .models import NEXT_STATUS, Instance, InstanceStatus, Project, Tenant, utcnow
from .updates import UpdateType, tenant_scope

logger = logging.getLogger("portal.provider")


class ComputeProvider:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, step: float) -> None:
        self._sessionmaker = sessionmaker
        self.step = step
        self._ready: asyncio.Queue[tuple[int, InstanceStatus]] = asyncio.Queue()
        self._timers: set[asyncio.TimerHandle] = set()
        self._task: asyncio.Task[None] | None = None

    def schedule(self, instance_id: int, status: InstanceStatus) -> None:
        """Advance the instance from `status` in `step` seconds (if it is still in it then)."""
        loop = asyncio.get_running_loop()

        def ready() -> None:
            self._timers.discard(timer)
            self._ready.put_nowait((instance_id, status))

        timer = loop.call_later(self.step, ready)
        self._timers.add(timer)

    async def __aenter__(self) -> ComputeProvider:
        async with self._sessionmaker() as db:
            rows = await db.execute(
                select(Instance.id, Instance.status).where(Instance.status.in_(list(NEXT_STATUS)))
            )
            for instance_id, status in rows:
                self.schedule(instance_id, status)
        self._task = asyncio.create_task(self._run(), name="portal compute provider")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            instance_id, status = await self._ready.get()
            try:
                await self.advance(instance_id, status)
            except Exception:  # one failed step must not stop the provider
                logger.exception("advancing instance %s from %s failed", instance_id, status)

    async def advance(self, instance_id: int, status: InstanceStatus) -> None:
        async with self._sessionmaker() as db:
            row = (
                await db.execute(
                    select(Instance, Tenant.slug)
                    .join(Project, Instance.project_id == Project.id)
                    .join(Tenant, Project.tenant_id == Tenant.id)
                    .where(Instance.id == instance_id)
                    .with_for_update(of=Instance)
                )
            ).first()
            if row is None:
                return
            instance, slug = row
            if instance.status != status or status not in NEXT_STATUS:
                return  # the user moved it on meanwhile; that action scheduled its own step
            following = NEXT_STATUS.get(status)
            if following is None:
                await db.delete(instance)
            else:
                instance.status = following
                instance.updated_at = utcnow()
            notify_after_commit(db, UpdateType.compute, instance_id, audience={tenant_scope(slug)})
            await db.commit()
            logger.info("instance %s: %s -> %s", instance_id, status, following or "deleted")
