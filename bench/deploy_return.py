"""Fast return after a deploy: how long after a restarted server answers do pages show a change
made while it was down, and how spread are their reconnects.

    python bench/deploy_return.py                      # 1,000 pages, 5 s outage, before and after
    python bench/deploy_return.py --clients 200 --rounds 2 --out /tmp/x

Per round and mode: a real uvicorn server (``bench/server_deploy.py``, state in SQLite, pinned
to CPU 0) and N pages in one Node process (``bench/deploy_return_clients.mjs``: the real
refetch-sse client from ``js/dist``, pinned to CPU 1) that each show one query tagged
``projects``. Once every page shows its data with its stream open, the server gets SIGTERM
(it drains), this process writes the change to the database while nothing serves it, and a
new server process is started so that it answers about ``--outage`` seconds after the
SIGTERM. "Answering" is the first 200 of ``GET /api/health``, polled every 2 ms (or a page's
stream opening, if that was earlier). A page has the change once its query's data changed:
its stream reconnected, got ``resync`` (a new server run cannot resume the cursor), and the
refetch completed.

``before`` is the same client code on main's wire: the load generator drops the server's
``reconnect`` frame from every stream's bytes, so the client falls back to its error backoff,
as main's does. ``after`` follows the frame. Both run in the same invocation, alternating.
Results: ``<out>/<stamp>.{json,md}`` and ``latest.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = 100  # ms: the histogram's bin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: int) -> Any:
    def pin() -> None:
        if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
            os.sched_setaffinity(0, {cpu})

    return pin


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_server(port: int, db: str, spread: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "server_deploy.py"),
            "--port",
            str(port),
            "--db",
            db,
            "--drain-spread",
            str(spread),
        ],
        cwd=ROOT,
        preexec_fn=pinned(0),
    )


def wait_until_answering(port: int, timeout: float, step: float = 0.002) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if answers(port):
            return time.time()
        time.sleep(step)
    raise TimeoutError(f"the server on port {port} did not answer within {timeout} s")


class Clients:
    """The Node load generator and its stdout lines."""

    def __init__(self, url: str, count: int, mode: str) -> None:
        self.process = subprocess.Popen(
            [
                "node",
                str(ROOT / "bench" / "deploy_return_clients.mjs"),
                "--url",
                url,
                "--clients",
                str(count),
                "--mode",
                mode,
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=pinned(1),
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(json.loads(raw))

    def wait_for(self, event: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.time() + timeout
        while (left := deadline - time.time()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line["event"] == event:
                return line
        return None

    def report(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(b"report\n")
        self.process.stdin.flush()
        line = self.wait_for("report", 60)
        if line is None:
            raise RuntimeError("the load generator did not report")
        self.process.wait(10)
        return line

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else None,
    }


def one_round(mode: str, args: argparse.Namespace, startup: float) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="refetch-deploy-") as tmp:
        db = str(Path(tmp) / "state.db")
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE projects (version INTEGER)")
            conn.execute("INSERT INTO projects VALUES (1)")
        server = start_server(port, db, args.drain_spread)
        clients: Clients | None = None
        try:
            wait_until_answering(port, 30)
            clients = Clients(url, args.clients, mode)
            if clients.wait_for("ready", 180) is None:
                raise RuntimeError("the pages did not all open within 180 s")
            time.sleep(0.5)  # settled: nothing in flight
            stopped = time.time()
            server.send_signal(signal.SIGTERM)
            server.wait(30)
            exited = time.time()
            # The change, by another process, while nothing serves the data.
            with sqlite3.connect(db) as conn:
                conn.execute("UPDATE projects SET version = 2")
            time.sleep(max(0.0, stopped + args.outage - startup - time.time()))
            server = start_server(port, db, args.drain_spread)
            up = wait_until_answering(port, 30)
            all_shown = clients.wait_for("all-shown", args.timeout) is not None
            time.sleep(0.2)
            report = clients.report()
        finally:
            if clients is not None:
                clients.kill()
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    pages = report["pages"]
    reopened = [p["reopenedAt"] for p in pages if p["reopenedAt"] is not None]
    up = min([up, *reopened])  # a page's stream may beat the health poll
    shown = [p["shownAt"] - up * 1000 for p in pages if p["shownAt"] is not None]
    reopen = [t - up * 1000 for t in reopened]
    times = [t / 1000 for _, t in report["attempts"]]
    during = [t for t in times if stopped <= t < up]
    after_up = [t for t in times if t >= up]
    hist_up = Counter(int((t - up) * 1000 // BIN) for t in times if up - 1 <= t < up + 3)
    hist_stop = Counter(
        int((t - stopped) * 1000 // BIN) for t in times if stopped <= t < stopped + 3
    )
    return {
        "mode": mode,
        "clients": args.clients,
        "outage_s": round(up - stopped, 3),
        "server_exit_s": round(exited - stopped, 3),
        "all_shown": all_shown,
        "shown": len(shown),
        "return_ms": summary(shown),
        "reopen_ms": summary(reopen),
        "resyncs": sum(1 for p in pages if p["invalidateAll"] > 0),
        "attempts_during_outage": len(during),
        "attempts_per_s_during_outage": round(len(during) / max(up - stopped, 1e-9), 1),
        "attempts_after_up": len(after_up),
        "peak_attempts_per_100ms_after_up": max(
            (n for b, n in hist_up.items() if b >= 0), default=0
        ),
        "attempts_per_100ms_around_up": {str(b * BIN): hist_up[b] for b in range(-10, 30)},
        "attempts_per_100ms_after_stop": {str(b * BIN): hist_stop[b] for b in range(0, 30)},
        "loadgen_cpu_s": round(report["cpu_s"], 2),
    }


def spark(histogram: dict[str, int]) -> str:
    peak = max(histogram.values()) or 1
    bars = " ▁▂▃▄▅▆▇█"
    return "".join(bars[min(8, round(8 * n / peak))] for n in histogram.values())


def markdown(report: dict[str, Any]) -> str:
    rows = report["rounds"]
    out = [
        "# Deploy return",
        "",
        f"`{report['command']}` — {report['date']}, load average {report['load_before']} → "
        f"{report['load_after']}, {report['machine']}",
        "",
        "Time from the restarted server answering to each page showing the change made while it "
        "was down (its stream reconnected, got `resync`, its query refetched), per page.",
        "",
        "| round | mode | pages shown | outage s | p50 ms | p90 ms | p99 ms | max ms | "
        "stream open p99 ms | attempts/s while down | peak attempts per 100 ms after up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, row in enumerate(rows):
        r = row["return_ms"]
        out.append(
            f"| {i // 2 + 1} | {row['mode']} | {row['shown']}/{row['clients']} | {row['outage_s']} "
            f"| {fmt(r['p50_ms'])} | {fmt(r['p90_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} "
            f"| {fmt(row['reopen_ms']['p99_ms'])} | {row['attempts_per_s_during_outage']} "
            f"| {row['peak_attempts_per_100ms_after_up']} |"
        )
    out += ["", "Ratios (before / after; > 1: after is faster):", ""]
    for key, value in report["ratios"].items():
        out.append(f"- {key}: {value}")
    out += [
        "",
        "Reconnect attempts per 100 ms, from 1 s before the server answered to 3 s after "
        "(each character one bin, scaled to the row's peak; counts in the JSON):",
        "",
        "```",
    ]
    for row in rows:
        hist = row["attempts_per_100ms_around_up"]
        out.append(f"{row['mode']:>6} |{spark(hist)}| peak {max(hist.values())}")
    out += [
        "```",
        "",
        "and in the 3 s after the SIGTERM (the drain notice's spread; the server is down):",
        "",
        "```",
    ]
    for row in rows:
        hist = row["attempts_per_100ms_after_stop"]
        out.append(f"{row['mode']:>6} |{spark(hist)}| peak {max(hist.values())}")
    out += ["```", ""]
    return "\n".join(out)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--outage", type=float, default=5.0)
    parser.add_argument("--drain-spread", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", default="before,after")
    parser.add_argument("--timeout", type=float, default=60.0, help="s to wait for every page")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "deploy-return"))
    args = parser.parse_args()
    if not (ROOT / "js" / "dist" / "query-updates.js").exists():
        sys.exit("js/dist is missing: run `cd js && npm run build` first")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the children inherit it

    # How long a server process takes to answer, so the restart lands at --outage.
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "probe.db")
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE projects (version INTEGER)")
            conn.execute("INSERT INTO projects VALUES (1)")
        began = time.time()
        probe = start_server(port, db, args.drain_spread)
        startup = wait_until_answering(port, 30) - began
        probe.send_signal(signal.SIGTERM)
        probe.wait(30)

    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs",
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "server_startup_s": round(startup, 3),
        "rounds": [],
    }
    modes = args.modes.split(",")
    for i in range(args.rounds):
        for mode in modes if i % 2 == 0 else list(reversed(modes)):
            row = one_round(mode, args, startup)
            print(
                json.dumps({k: v for k, v in row.items() if not k.startswith("attempts_per_100")})
            )
            report["rounds"].append(row)
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    report["ratios"] = ratios(report["rounds"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for name in (stamp, "latest"):
        (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
        (out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


def ratios(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    found: dict[str, float | None] = {}
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
        means = {}
        for mode in ("before", "after"):
            values = [r["return_ms"][key] for r in rows if r["mode"] == mode]
            values = [v for v in values if v is not None]
            means[mode] = sum(values) / len(values) if values else None
        b, a = means["before"], means["after"]
        found[key] = round(b / a, 2) if a and b else None
    return found


if __name__ == "__main__":
    main()
