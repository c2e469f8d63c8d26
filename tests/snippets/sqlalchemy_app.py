"""An async SQLAlchemy app with the defaults a new user has (``expire_on_commit=True``), and a
check that the snippet's ``create_project`` commits, then notifies a client that can see it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    tenant: Mapped[str] = mapped_column(String(100))


async def setup(ns: dict[str, Any]) -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    ns.update(engine=engine, session=AsyncSession(engine), Project=Project)


async def check(ns: dict[str, Any]) -> None:
    from refetch import Principal, UpdatesEndpoint
    from tests.conftest import Stream, serve, wait_for

    updates = ns["updates"]
    await updates.start()
    acme = Principal.of("someone", scopes=["tenant:acme"])
    async with serve(UpdatesEndpoint(updates, authenticate=lambda scope: acme)) as url:
        async with Stream(url) as stream:
            key = await ns["create_project"](ns["session"], "demo", "acme")
            await wait_for(lambda: stream.saw("projects", str(key)))
    async with ns["engine"].connect() as conn:
        names = [row.name for row in await conn.execute(Project.__table__.select())]
    assert names == ["demo"], names


async def teardown(ns: dict[str, Any]) -> None:
    await ns["session"].close()
    await ns["engine"].dispose()
    if "updates" in ns:
        await ns["updates"].aclose()
