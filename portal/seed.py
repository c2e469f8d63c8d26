"""Demo data for a fresh database: two tenants, three users (password `demo`), a few projects."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .models import Membership, Project, Role, Tenant, User
from .passwords import hash_password

logger = logging.getLogger("portal")

DEMO_PASSWORD = "demo"
DEMO_TENANTS = [("acme", "Acme Corp"), ("globex", "Globex Inc")]
DEMO_USERS = [
    ("alice@acme.test", "Alice", "acme", Role.admin),
    ("bob@acme.test", "Bob", "acme", Role.member),
    ("carol@globex.test", "Carol", "globex", Role.admin),
]
DEMO_PROJECTS = [("acme", "website"), ("acme", "data-platform"), ("globex", "billing")]


async def seed_demo(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    """Create the demo data if there are no users yet. Returns whether it did."""
    async with sessionmaker() as db:
        if await db.scalar(select(func.count()).select_from(User)):
            return False
        # scrypt is slow on purpose: hash in threads, off the event loop and side by side
        hashes = await asyncio.gather(
            *(asyncio.to_thread(hash_password, DEMO_PASSWORD) for _ in DEMO_USERS)
        )
        tenants = {slug: Tenant(slug=slug, name=name) for slug, name in DEMO_TENANTS}
        db.add_all(tenants.values())
        for (email, name, slug, role), password_hash in zip(DEMO_USERS, hashes, strict=True):
            user = User(email=email, name=name, password_hash=password_hash)
            db.add(user)
            db.add(Membership(user=user, tenant=tenants[slug], role=role))
        for slug, name in DEMO_PROJECTS:
            db.add(Project(tenant=tenants[slug], name=name))
        try:
            await db.commit()
        except IntegrityError:  # another instance seeded at the same time
            return False
    logger.info("created the demo tenants and users")
    return True


async def all_tenant_slugs(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as db:
        return list(await db.scalars(select(Tenant.slug).order_by(Tenant.id)))
