"""bench/on_demand.py (first-poll latency and idle cost of pollers on demand) end to end at a tiny
size, so it cannot rot. Asserts on counts only, never on the latencies it measures.

The one-process setups and Redis only: the bench's cross-instance code is the same for every
backend, and PostgreSQL and NATS presence have their own tests on real processes
(tests/test_pollers_on_demand_instances.py); each run costs ~7 s of `make test`. A missing
service skips (or, under ``CI=true``, fails) only its own setups; the services' addresses reach
the bench through ``REFETCH_TEST_*`` (tests/services.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import require_service

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("setups", ["always,one", "redis"])
def test_on_demand_bench_polls_every_open_and_nothing_while_idle(
    setups: str, tmp_path: Path
) -> None:
    if setups in ("redis", "postgres", "nats"):
        require_service(setups)
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "on_demand.py"), "--rounds", "3",
         "--interval", "0.5", "--idle", "1.0", "--setups", setups, "--out", str(tmp_path)],
        check=True, timeout=55, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    [written] = tmp_path.glob("*.json")
    rows = {row["setup"]: row for row in json.loads(written.read_text())}
    assert set(rows) == set(setups.split(","))
    for setup, row in rows.items():
        # Every stream opened made the polling instance poll.
        assert row["polled"] == row["rounds"] == 3, row
        if setup == "always":
            # The baseline polls with nobody listening (an interval of 0.5 s over 1 s).
            assert row["idle_requests"] > 0, row
        else:
            # On demand, nobody listening: not one upstream request, on any instance.
            assert row["idle_requests"] == 0, row
    assert len(list(tmp_path.glob("*.md"))) == 1
