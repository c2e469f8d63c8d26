"""The simulated world: a progress value that moves, an image catalog, clusters that change.

`step()` moves the world one tick; the app calls it on a timer (autoplay) and tests call it
through `POST /control/step`, so they never wait for time to pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PHASES = ("build", "test", "deploy")
SHOOT_CYCLE = ("creating", "healthy", "healthy", "reconciling", "healthy", "unhealthy")


@dataclass
class Shoot:
    name: str
    tenant: str
    region: str
    kubernetes_version: str
    nodes: int
    status: str

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tenant": self.tenant,
            "region": self.region,
            "kubernetes_version": self.kubernetes_version,
            "nodes": self.nodes,
            "status": self.status,
        }


def _default_images() -> list[dict[str, Any]]:
    return [
        {
            "id": "debian-12",
            "name": "Debian 12",
            "os": "linux",
            "version": "12.7",
            "size_gb": 2.1,
            "status": "available",
        },
        {
            "id": "ubuntu-24.04",
            "name": "Ubuntu 24.04 LTS",
            "os": "linux",
            "version": "24.04.1",
            "size_gb": 2.6,
            "status": "available",
        },
        {
            "id": "gardenlinux-1592",
            "name": "Garden Linux",
            "os": "linux",
            "version": "1592.1",
            "size_gb": 1.4,
            "status": "available",
        },
        {
            "id": "windows-2022",
            "name": "Windows Server 2022",
            "os": "windows",
            "version": "21H2",
            "size_gb": 18.0,
            "status": "deprecated",
        },
    ]


def _default_shoots() -> list[Shoot]:
    return [
        Shoot("acme-prod", "acme", "eu-de-1", "1.30.4", 6, "healthy"),
        Shoot("acme-dev", "acme", "eu-de-2", "1.31.1", 2, "creating"),
        Shoot("globex-main", "globex", "us-east-1", "1.30.4", 4, "healthy"),
    ]


@dataclass
class World:
    progress: int = 0
    phase_index: int = 0
    ticks: int = 0
    images: list[dict[str, Any]] = field(default_factory=_default_images)
    images_changed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    shoots: list[Shoot] = field(default_factory=_default_shoots)

    def step(self) -> None:
        self.ticks += 1
        self.progress += 1
        if self.progress > 100:
            self.progress = 0
            self.phase_index = (self.phase_index + 1) % len(PHASES)
        # every 5 ticks one cluster moves on in its life cycle, round robin
        if self.ticks % 5 == 0 and self.shoots:
            shoot = self.shoots[(self.ticks // 5) % len(self.shoots)]
            index = SHOOT_CYCLE.index(shoot.status) if shoot.status in SHOOT_CYCLE else 0
            shoot.status = SHOOT_CYCLE[(index + 1) % len(SHOOT_CYCLE)]

    def state(self) -> dict[str, Any]:
        return {"value": self.progress, "phase": PHASES[self.phase_index], "ticks": self.ticks}

    def add_image(self, image: dict[str, Any]) -> None:
        self.images = [i for i in self.images if i["id"] != image["id"]] + [image]
        self.images_changed_at = datetime.now(UTC)

    def shoots_of(self, tenant: str | None) -> list[dict[str, Any]]:
        return [s.as_json() for s in self.shoots if tenant is None or s.tenant == tenant]

    def set_shoot(self, tenant: str, name: str, status: str) -> None:
        for shoot in self.shoots:
            if shoot.tenant == tenant and shoot.name == name:
                shoot.status = status
                return
        self.shoots.append(Shoot(name, tenant, "eu-de-1", "1.31.1", 3, status))
