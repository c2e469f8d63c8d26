"""bench/poll_demand.py (the portal's upstream requests per hour) end to end at a small size, so
it cannot rot. Asserts on counts only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_poll_demand_bench_counts_the_portals_upstream_requests(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "poll_demand.py"), "--seconds", "3",
         "--warmup", "2", "--tenants", "4", "--active", "1", "--out", str(tmp_path)],
        check=True, timeout=280, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    report = json.loads((tmp_path / "latest.json").read_text())
    demo, busy = report["hourly"]["rows"]
    # Always-on pollers poll with nobody listening; on demand, nothing is polled.
    assert demo["always"]["requests"] > 0
    assert demo["on_demand"]["requests"] == 0
    # 4 tenants, 1 active: always-on polls every tenant, on demand only the active one.
    assert busy["always"]["tenants_polled"] == 4
    assert busy["on_demand"]["tenants_polled"] == 1
    assert (tmp_path / "latest.md").read_text().startswith("# Pollers on demand")
