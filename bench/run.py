"""Run the benchmark scenarios against refetch and the naive baseline, side by side.

    .venv/bin/python bench/run.py --profile quick   # make bench
    .venv/bin/python bench/run.py --profile full    # make bench-full

Every server and load-generator process is started fresh per measurement, on
127.0.0.1, the server pinned to CPU 0 and the load generator to CPU 1 (scenario 5 runs
two refetch servers sharing Redis, both on CPU 0, on a Redis stream of its own that is
deleted afterwards); every step has a time limit and the whole run stops by itself. Writes
``bench/results/<stamp>-<profile>.json`` and ``.md`` (and ``latest-<profile>.*``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
TOKEN = "bench-token"
REDIS = "redis://127.0.0.1:6379/0"
SCENARIOS = ["idle", "fanout", "saturation", "storm", "instances", "workers", "churn", "polling"]
SERVERS = {
    "refetch": (HERE / "server_refetch.py", []),
    # The same, with send() wrapped as Starlette's middleware does: the ASGI write path.
    "refetch-asgi": (HERE / "server_refetch.py", ["--asgi-send"]),
    # What users run: FastAPI, CORS, a raw ASGI middleware, the endpoint as the README mounts it.
    "fastapi": (HERE / "server_fastapi.py", []),
    # The same app with the stream in front of its stack (refetch.mount).
    "fastapi-mounted": (HERE / "server_fastapi.py", ["--mount"]),
    # The app of issue 22: SessionMiddleware + CORS + GZip + a request id, streams
    # authenticated by the app, on the fast path (refetch.mount).
    "fastapi-stack": (HERE / "server_fastapi.py", ["--mount", "--stack"]),
    # The reference portal: its own authenticated stream, notifies through its API.
    "portal": (HERE / "server_portal.py", []),
    "baseline": (HERE / "server_baseline.py", []),
}
#: The stream's path per server (the portal's is its own, filtered to the type it triggers).
STREAM_PATH = {"portal": "/api/updates?types=projects"}
#: Servers that take part in scenarios 3 and 4 (the app variants are measured in 1 and 2).
WRITE_PATH_ONLY = {"fastapi", "fastapi-mounted", "fastapi-stack", "portal"}
ORIGIN = "http://127.0.0.1:5173"  # the origin server_fastapi.py allows
PORTAL_WRITER = "bob@acme.test"  # member of acme: hears (and may rename) acme's projects
PORTAL_OTHER = "carol@globex.test"  # globex only: must hear nothing of acme


def nofile_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def profile(name: str) -> dict[str, Any]:
    """Sizes and durations per profile; ``full`` is what the issue asks for."""
    most = nofile_limit() - 200  # leave room for the listening socket, stats requests...
    if name == "smoke":
        return {
            "idle": {"sizes": [50], "idle": 0.5, "settle": 0.2},
            "fanout": {"sizes": [50], "rounds": 3, "gap": 0.15},
            "saturation": {"n": 50, "rates": [10, 20], "step": 0.5},
            "storm": {"n": 50, "count": 100, "rate": 200, "duration": 0.5},
            "instances": {"sizes": [50], "rounds": 3, "gap": 0.15},
            "workers": {"sizes": [50], "rounds": 3, "gap": 0.15},
            "churn": {"n": 50, "duration": 1.5, "rate": 20, "sample": 0.5},
            "polling": {"n": 5, "queries": 3, "interval": 0.5, "idle": 1.0, "changes": 2},
        }
    if name == "quick":
        return {
            "idle": {"sizes": [1000], "idle": 5, "settle": 1},
            "fanout": {"sizes": [1000], "rounds": 10, "gap": 0.2},
            "saturation": {"n": 1000, "rates": [5, 10, 20, 40, 60, 80, 120], "step": 2},
            "storm": {"n": 1000, "count": 2000, "rate": 1000, "duration": 2},
            "instances": {"sizes": [1000], "rounds": 10, "gap": 0.2},
            "workers": {"sizes": [1000], "rounds": 10, "gap": 0.2},
            "churn": {"n": 1000, "duration": 20, "rate": 50, "sample": 5},
            "polling": {"n": 20, "queries": 30, "interval": 2, "idle": 6, "changes": 3},
        }
    return {
        "idle": {"sizes": [1000, 10_000, most], "idle": 16.5, "settle": 2},
        "fanout": {"sizes": [1000, 10_000], "rounds": 20, "gap": 0.3},
        "saturation": {
            "n": 1000,
            "rates": [5, 10, 20, 30, 40, 50, 60, 70, 80, 100, 120, 150, 200],
            "step": 3,
        },
        "storm": {"n": 10_000, "count": 10_000, "rate": 1000, "duration": 10},
        "instances": {"sizes": [1000, 10_000], "rounds": 20, "gap": 0.3},
        "workers": {"sizes": [10_000], "rounds": 20, "gap": 0.3},
        # The soak the issue asks for: 10k streams, 50 replaced per second, 10 minutes.
        "churn": {"n": 10_000, "duration": 600, "rate": 50, "sample": 30},
        "polling": {"n": 100, "queries": 30, "interval": 2, "idle": 10, "changes": 5},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(cpu: int | None) -> Any:
    def apply() -> None:
        if (
            cpu is not None
            and len(os.sched_getaffinity(0)) > 1
            and os.cpu_count()
            and os.cpu_count() > cpu
        ):  # type: ignore[operator]
            os.sched_setaffinity(0, {cpu})

    return apply


class Server:
    def __init__(self, kind: str, options: list[str], log: Path, cpu: int | None = 0) -> None:
        self.port = free_port()
        self.log = log.open("ab")
        script, variant = SERVERS[kind]
        cmd = [PYTHON, str(script), "--port", str(self.port), "--token", TOKEN, *variant, *options]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=pin(cpu), cwd=HERE
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} server did not start; see {log}") from None
                time.sleep(0.05)

    def rss(self) -> int:
        try:
            return int(psutil.Process(self.proc.pid).memory_info().rss)
        except psutil.Error:
            return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def measure(
    kind: str,
    scenario: str,
    loadgen_args: list[str],
    log: Path,
    *,
    server_options: list[str] | None = None,
    instances: int = 1,
    pinned: bool = True,
    timeout: float = 300,
    rss_limit: int = 6 * 2**30,
) -> dict[str, Any]:
    """Fresh server(s), one load-generator run; never longer than ``timeout``.

    With ``instances`` > 1, that many servers of ``kind`` (all on CPU 0, the same
    options, so the same broker) and the load generator spreads its streams over them.
    """
    servers: list[Server] = []
    try:
        for _ in range(instances):
            servers.append(Server(kind, server_options or [], log, 0 if pinned else None))
    except BaseException:
        for started_server in servers:
            started_server.stop()
        raise
    path = STREAM_PATH.get(kind, "/updates")
    urls = [arg for server in servers for arg in ("--url", f"{server.url}{path}")]
    try:
        options = loadgen_options(kind, servers[0])
    except BaseException:
        for started_server in servers:
            started_server.stop()
        raise
    cmd = [
        PYTHON,
        str(HERE / "loadgen.py"),
        *urls,
        *options,
        "--scenario",
        scenario,
        *loadgen_args,
    ]
    started = time.monotonic()
    aborted = None
    peak_rss = 0
    with log.open("ab") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, preexec_fn=pin(1 if pinned else None)
        )
        try:
            while proc.poll() is None:
                peak_rss = max(peak_rss, sum(server.rss() for server in servers))
                if peak_rss > rss_limit:
                    aborted = f"server RSS over {rss_limit / 2**30:.0f} GB"
                elif time.monotonic() - started > timeout:
                    aborted = f"over the {timeout:.0f} s time limit"
                if aborted:
                    proc.kill()
                    break
                time.sleep(0.25)
            out = proc.communicate()[0]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for server in servers:
                server.stop()
    result: dict[str, Any] = {"server": kind, "scenario": scenario, "server_peak_rss_mb": 0}
    if instances > 1:
        result["instances"] = instances
    if aborted is None and proc.returncode == 0:
        result.update(json.loads(out))
    else:
        result["aborted"] = aborted or f"load generator exited with {proc.returncode}"
    result["server_peak_rss_mb"] = peak_rss / 2**20
    result["wall_s"] = time.monotonic() - started
    label = scenario if instances == 1 else f"{scenario}x{instances}"
    print(f"  {kind:8} {label:10} n={result.get('n', '?')}: {short(result)}", flush=True)
    return result


def local_json(url: str, method: str = "GET", body: Any = None, token: str | None = None) -> Any:
    import urllib.request

    request = urllib.request.Request(url, method=method)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, data, timeout=30) as response:
        return json.loads(response.read())


def loadgen_options(kind: str, server: Server) -> list[str]:
    """What the load generator needs to speak to this server, beyond the bench token."""
    if kind.startswith("fastapi"):
        # A cross-origin app (server_fastapi.ORIGIN is allowed): CORS answers every stream.
        return ["--header", f"Authorization: Bearer {TOKEN}", "--header", f"Origin: {ORIGIN}"]
    if kind != "portal":
        return ["--header", f"Authorization: Bearer {TOKEN}"]

    def login(email: str) -> str:
        answer = local_json(f"{server.url}/api/login", "POST", {"email": email, "password": "demo"})
        return str(answer["token"])

    writer, other = login(PORTAL_WRITER), login(PORTAL_OTHER)
    projects = local_json(f"{server.url}/api/projects?tenant=acme", token=writer)
    # Streams take turns: even ones are the acme member's, odd ones globex's (quiet).
    return [
        "--group",
        f"Authorization: Bearer {writer}",
        "--group",
        f"Authorization: Bearer {other}",
        "--quiet-groups",
        "1",
        "--trigger",
        f"PATCH /api/projects/{projects[0]['id']}",
        "--trigger-body",
        '{"name": "bench-{n}"}',
        "--trigger-header",
        f"Authorization: Bearer {writer}",
    ]


def redis_client(url: str) -> Any:
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing {url!r}: the benchmark uses a Redis on 127.0.0.1 only")
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)


@contextmanager
def redis_stream(url: str, stamp: str) -> Iterator[str]:
    """A backend URL naming a Redis stream of its own; the stream is deleted afterwards."""
    client = redis_client(url)
    name = f"refetch-bench:{stamp}:{os.getpid()}:{time.monotonic_ns()}"
    try:
        yield f"{url}?stream={name}"
    finally:
        try:
            client.delete(name, f"{name}:epoch")
        finally:
            client.close()


def redis_unreachable(url: str) -> str | None:
    """Why ``url`` cannot be used (None if it answers PING)."""
    try:
        client = redis_client(url)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"Redis not reachable at {url}: {exc}"
    return None


def short(r: dict[str, Any]) -> str:
    keys = (
        "aborted",
        "connected",
        "errors",
        "connect_s",
        "rss_per_connection_kb",
        "idle_cpu_pct",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "missing",
        "server_cpu_us_per_delivery",
        "server_user_us_per_delivery",
        "server_sys_us_per_delivery",
        "frames_per_client_per_s",
        "last_update_missing",
        "loadgen_cpu_pct",
    )
    return ", ".join(f"{k}={fmt(r[k])}" for k in keys if k in r)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for module in ("uvicorn", "uvloop", "httptools", "sse_starlette", "starlette"):
        try:
            versions[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            versions[module] = "?"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nofile": nofile_limit(),
        "git": commit,
        **versions,
    }


def run(
    profile_name: str,
    servers: list[str],
    only: list[str] | None,
    out: Path,
    redis_url: str = REDIS,
    sizes: list[int] | None = None,
) -> dict[str, Any]:
    p = profile(profile_name)
    if sizes:  # one size instead of the profile's, for a look at one row
        for scenario in ("idle", "fanout", "instances", "workers"):
            p[scenario]["sizes"] = sizes
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log = out / f"{stamp}-{profile_name}.log"
    report: dict[str, Any] = {
        "command": " ".join([Path(PYTHON).name, *sys.argv]),
        "profile": profile_name,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "load_before": os.getloadavg(),
        "results": {},
    }
    res = report["results"]
    wanted = only or SCENARIOS
    print(f"refetch bench ({profile_name}); load average {os.getloadavg()}; log {log}", flush=True)

    if "idle" in wanted:
        c = p["idle"]
        res["idle"] = [
            measure(
                kind,
                "idle",
                ["-n", str(n), "--idle", str(c["idle"]), "--settle", str(c["settle"])],
                log,
                timeout=180,
            )
            for n in c["sizes"]
            for kind in servers
            # Past 10k: the bare server, the recommended app and the baseline (the portal
            # would measure SQLite session look-ups; the routed app adds nothing new).
            if not (kind in ("portal", "fastapi") and n > 10_000)
        ]
    if "fanout" in wanted:
        c = p["fanout"]
        fanout_servers = list(servers)
        if "refetch" in servers and "refetch-asgi" not in servers:
            fanout_servers.insert(fanout_servers.index("refetch") + 1, "refetch-asgi")
        res["fanout"] = [
            measure(
                kind,
                "fanout",
                ["-n", str(n), "--rounds", str(c["rounds"]), "--gap", str(c["gap"])],
                log,
                timeout=300,
            )
            for n in c["sizes"]
            for kind in fanout_servers
        ]
    if "saturation" in wanted:
        c = p["saturation"]
        rates = ",".join(str(r) for r in c["rates"])
        res["saturation"] = [
            measure(
                kind,
                "saturation",
                ["-n", str(c["n"]), "--rates", rates, "--step", str(c["step"])],
                log,
                # Throughput of the write path: no coalescing window, so a delivery's
                # latency is the server's, not the min_interval it would wait on purpose.
                server_options=["--min-interval", "0"] if kind.startswith("refetch") else [],
                timeout=300,
            )
            for kind in servers
            if kind not in WRITE_PATH_ONLY
        ]
    if "storm" in wanted:
        c = p["storm"]
        res["storm"] = [
            measure(
                kind,
                "storm",
                [
                    "-n",
                    str(c["n"]),
                    "--count",
                    str(c["count"]),
                    "--rate",
                    str(c["rate"]),
                    "--duration",
                    str(c["duration"]),
                    "--round-timeout",
                    "30",
                ],
                log,
                timeout=240,
                rss_limit=4 * 2**30,
            )
            for kind in servers
            if kind not in WRITE_PATH_ONLY
        ]
    if "instances" in wanted:
        c = p["instances"]
        res["instances"] = []
        unreachable = redis_unreachable(redis_url)
        for n in c["sizes"]:
            if unreachable:
                print(f"  refetch  instances  n={n}: {unreachable}", flush=True)
                res["instances"].append(
                    {"server": "refetch", "scenario": "fanout", "n": n, "aborted": unreachable}
                )
                continue
            with redis_stream(redis_url, stamp) as backend:
                res["instances"].append(
                    measure(
                        "refetch",
                        "fanout",
                        ["-n", str(n), "--rounds", str(c["rounds"]), "--gap", str(c["gap"])],
                        log,
                        server_options=["--backend", backend],
                        instances=2,
                        timeout=300,
                    )
                )
    if "workers" in wanted:
        # All the cores: the recommended deployment (FastAPI, stream mounted in front) on
        # Redis as one worker and as two, nothing pinned (the load generator shares the
        # cores with the workers, as it must on two cores); streams split evenly.
        c = p["workers"]
        res["workers"] = []
        unreachable = redis_unreachable(redis_url)
        for n in c["sizes"]:
            for count in (1, 2):
                if unreachable:
                    res["workers"].append(
                        {
                            "server": "fastapi-mounted",
                            "n": n,
                            "workers": count,
                            "aborted": unreachable,
                        }
                    )
                    continue
                with redis_stream(redis_url, stamp) as backend:
                    row = measure(
                        "fastapi-mounted",
                        "fanout",
                        ["-n", str(n), "--rounds", str(c["rounds"]), "--gap", str(c["gap"])],
                        log,
                        server_options=["--backend", backend],
                        instances=count,
                        pinned=False,
                        timeout=300,
                    )
                row["workers"] = count
                res["workers"].append(row)
    if "churn" in wanted:
        c = p["churn"]
        res["churn"] = [
            measure(
                "fastapi",
                "churn",
                [
                    "-n",
                    str(c["n"]),
                    "--duration",
                    str(c["duration"]),
                    "--churn-rate",
                    str(c["rate"]),
                    "--sample",
                    str(c["sample"]),
                ],
                log,
                timeout=c["duration"] + 240,
            )
        ]
    if "polling" in wanted:
        c = p["polling"]
        common = ["-n", str(c["n"]), "--idle", str(c["idle"]), "--changes", str(c["changes"])]
        res["polling"] = [
            measure(
                "refetch",
                "poll",
                [*common, "--queries", str(c["queries"]), "--interval", str(c["interval"])],
                log,
                timeout=120,
            ),
            measure("refetch", "push", common, log, timeout=120),
        ]
    report["load_after"] = os.getloadavg()
    report["ratios"] = ratios(res)
    return report


def pick(rows: list[dict[str, Any]], server: str, n: int | None = None) -> dict[str, Any]:
    for row in rows:
        if row["server"] == server and (n is None or row.get("n") == n):
            return row
    return {}


def ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return float(a) / float(b)
    return None


def ratios(res: dict[str, Any]) -> dict[str, float | None]:
    """baseline / refetch: how many times better refetch is (higher is better)."""
    out: dict[str, float | None] = {}
    for row in res.get("idle", []):
        if row["server"] == "refetch":
            n, base = row.get("n"), pick(res["idle"], "baseline", row.get("n"))
            for key in ("rss_per_connection_kb", "connect_s", "idle_cpu_pct"):
                out[f"idle n={n} {key}"] = ratio(base.get(key), row.get(key))
    for row in res.get("fanout", []):
        if row["server"] == "refetch":
            n, base = row.get("n"), pick(res["fanout"], "baseline", row.get("n"))
            for key in ("p50_ms", "p99_ms", "max_ms", "server_cpu_us_per_delivery"):
                out[f"fanout n={n} {key}"] = ratio(base.get(key), row.get(key))
            for app in ("fastapi", "fastapi-mounted", "portal"):
                other = pick(res["fanout"], app, row.get("n"))
                if other:
                    for key in ("p99_ms", "server_cpu_us_per_delivery"):
                        out[f"fanout n={n} {key} (baseline / {app})"] = ratio(
                            base.get(key), other.get(key)
                        )
    if res.get("saturation"):
        r = (pick(res["saturation"], "refetch").get("best") or {}).get("deliveries_per_s")
        b = (pick(res["saturation"], "baseline").get("best") or {}).get("deliveries_per_s")
        out["saturation deliveries/s (refetch/baseline)"] = ratio(r, b)
    for row in res.get("instances", []):
        # Two instances on Redis against one in memory (same N, same run): the cost of
        # the broker hop and of sharing one core. < 1 means the two instances are slower.
        n, one = row.get("n"), pick(res.get("fanout", []), "refetch", row.get("n"))
        for key in ("p50_ms", "p99_ms", "max_ms"):
            out[f"instances n={n} {key} (one instance / two on Redis)"] = ratio(
                one.get(key), row.get(key)
            )
        base = pick(res.get("fanout", []), "baseline", row.get("n"))
        for key in ("p50_ms", "p99_ms", "max_ms"):
            out[f"instances n={n} {key} (baseline / two on Redis)"] = ratio(
                base.get(key), row.get(key)
            )
    if res.get("storm"):
        r, b = pick(res["storm"], "refetch"), pick(res["storm"], "baseline")
        out["storm freshness p99"] = ratio(
            (b.get("freshness") or {}).get("p99_ms"), (r.get("freshness") or {}).get("p99_ms")
        )
        out["storm server CPU s"] = ratio(b.get("server_cpu_s"), r.get("server_cpu_s"))
    return out


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    res = report["results"]
    lines = [
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; git {m['git']}  ",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gb']} GB, Linux {m['kernel']}, "
        f"Python {m['python']}, uvicorn {m['uvicorn']} (uvloop {m['uvloop']}, httptools "
        f"{m['httptools']}), sse-starlette {m['sse_starlette']}; open-file limit {m['nofile']}  ",
        "Load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in report["load_before"])
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in report["load_after"]),
        "",
    ]

    def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
        lines.extend([f"### {title}", "", "| " + " | ".join(header) + " |"])
        lines.append("|" + "|".join(" --- " for _ in header) + "|")
        lines.extend("| " + " | ".join(fmt(c) for c in row) + " |" for row in rows)
        lines.append("")

    if "idle" in res:
        table(
            "1. Idle connections",
            [
                "N",
                "server",
                "connected",
                "errors",
                "all connected in (s)",
                "RSS / connection (KB)",
                "idle CPU (% of a core)",
                "connections after close",
            ],
            [
                [
                    r.get("n"),
                    r["server"],
                    r.get("connected"),
                    r.get("errors"),
                    r.get("connect_s"),
                    r.get("rss_per_connection_kb"),
                    r.get("idle_cpu_pct"),
                    r.get("connections_after_close", r.get("aborted")),
                ]
                for r in res["idle"]
            ],
        )
    if "fanout" in res:
        table(
            "2. One update to all N",
            [
                "N",
                "server",
                "rounds",
                "p50 (ms)",
                "p99 (ms)",
                "max (ms)",
                "missing",
                "server CPU / delivery (µs)",
                "of which user / sys (µs)",
                "longest GC pause in the rounds / since start (ms)",
                "streams hearing / leaked deliveries",
                "load generator CPU (%)",
            ],
            [
                [
                    r.get("n"),
                    r["server"],
                    r.get("rounds"),
                    r.get("p50_ms"),
                    r.get("p99_ms"),
                    r.get("max_ms"),
                    r.get("missing", r.get("aborted")),
                    r.get("server_cpu_us_per_delivery"),
                    " / ".join(fmt(r.get(f"server_{k}_us_per_delivery")) for k in ("user", "sys")),
                    f"{fmt(r.get('server_gc_rounds_max_ms'))} / {fmt(r.get('server_gc_max_ms'))}",
                    f"{fmt(r.get('hearing'))} / {fmt(r.get('leaked'))}",
                    r.get("loadgen_cpu_pct"),
                ]
                for r in res["fanout"]
            ],
        )
        apps = [r for r in res["fanout"] if r["server"] in ("fastapi", "fastapi-mounted", "portal")]
        if apps:
            rows = []
            for r in apps:
                bare = pick(res["fanout"], "refetch", r.get("n"))
                rows.append(
                    [
                        r.get("n"),
                        r["server"],
                        r.get("server_cpu_us_per_delivery"),
                        ratio(
                            r.get("server_cpu_us_per_delivery"),
                            bare.get("server_cpu_us_per_delivery"),
                        ),
                        r.get("p99_ms"),
                        ratio(r.get("p99_ms"), bare.get("p99_ms")),
                        r.get("server_gc_rounds_max_ms"),
                        r.get("server_gc_max_ms"),
                    ]
                )
            table(
                "2a. The apps against the bare server (same run; x bare = app / bare; the target is at most 1.15)",
                [
                    "N",
                    "app",
                    "CPU / delivery (µs)",
                    "x bare",
                    "p99 (ms)",
                    "x bare",
                    "longest GC pause in the rounds (ms)",
                    "since start (ms)",
                ],
                rows,
            )
    if "saturation" in res:
        rows = []
        for r in res["saturation"]:
            for s in r.get("steps", []):
                rows.append(
                    [
                        r["server"],
                        r.get("n"),
                        s["notifies_per_s"],
                        s["target_deliveries_per_s"],
                        s["deliveries_per_s"],
                        s["p50_ms"],
                        s["p99_ms"],
                        s["missing"],
                        s["server_cpu_pct"],
                        s["loadgen_cpu_pct"],
                    ]
                )
        table(
            "3. Saturation (each step until p99 ≥ 100 ms or an update is missing)",
            [
                "server",
                "N",
                "notifies/s",
                "offered deliveries/s",
                "delivered/s",
                "p50 (ms)",
                "p99 (ms)",
                "missing",
                "server CPU (%)",
                "load generator CPU (%)",
            ],
            rows,
        )
        best = [
            [r["server"], (r.get("best") or {}).get("deliveries_per_s")] for r in res["saturation"]
        ]
        table("3b. Highest rate with p99 < 100 ms", ["server", "deliveries/s"], best)
    if "storm" in res:
        table(
            "4. Storm",
            [
                "server",
                "N",
                "notifies sent",
                "storm (s)",
                "frames / client / s",
                "max frames / client / s",
                "last update missing",
                "freshness p50 (ms)",
                "freshness p99 (ms)",
                "freshness max (ms)",
                "RSS before / end / after (MB)",
                "server CPU (s)",
            ],
            [
                [
                    r["server"],
                    r.get("n"),
                    r.get("notifies_sent"),
                    r.get("storm_s"),
                    r.get("frames_per_client_per_s"),
                    r.get("max_frames_per_client_per_s"),
                    r.get("last_update_missing", r.get("aborted")),
                    (r.get("freshness") or {}).get("p50_ms"),
                    (r.get("freshness") or {}).get("p99_ms"),
                    (r.get("freshness") or {}).get("max_ms"),
                    " / ".join(
                        fmt(r.get(k))
                        for k in ("rss_before_mb", "rss_end_of_storm_mb", "rss_after_mb")
                    ),
                    r.get("server_cpu_s"),
                ]
                for r in res["storm"]
            ],
        )
    if "instances" in res:
        rows = []
        for r in res["instances"]:
            rows.append(
                [
                    r.get("n"),
                    "both",
                    r.get("connected"),
                    r.get("rounds"),
                    r.get("p50_ms"),
                    r.get("p99_ms"),
                    r.get("max_ms"),
                    r.get("missing", r.get("aborted")),
                    r.get("server_cpu_us_per_delivery"),
                    r.get("server_gc_max_ms"),
                    r.get("loadgen_cpu_pct"),
                ]
            )
            for name, u in zip("AB", r.get("per_url", []), strict=False):
                trigger = " (trigger)" if name == "A" else ""
                rows.append(
                    [
                        r.get("n"),
                        f"{name}{trigger}",
                        u.get("connected"),
                        "",
                        u.get("p50_ms"),
                        u.get("p99_ms"),
                        u.get("max_ms"),
                        r.get("rounds", 0) * u.get("connected", 0) - u.get("delivered", 0),
                        "",
                        "",
                        "",
                    ]
                )
        table(
            "5. Two refetch instances sharing Redis: one update to all N "
            "(N/2 streams on each, trigger on A; both servers on CPU 0)",
            [
                "N",
                "instance",
                "streams",
                "rounds",
                "p50 (ms)",
                "p99 (ms)",
                "max (ms)",
                "missing",
                "server CPU / delivery (µs, both)",
                "longest GC pause (ms)",
                "load generator CPU (%)",
            ],
            rows,
        )
    if "workers" in res:
        table(
            "5b. One worker or two (FastAPI, stream mounted in front, Redis; nothing pinned): "
            "one update to all N",
            [
                "N",
                "workers",
                "streams per worker",
                "p50 (ms)",
                "p99 (ms)",
                "max (ms)",
                "missing",
                "server CPU / delivery (µs, all workers)",
                "longest GC pause in the rounds (ms)",
                "load generator CPU (%)",
            ],
            [
                [
                    r.get("n"),
                    r.get("workers"),
                    " / ".join(str(u.get("connected")) for u in r.get("per_url", []))
                    or r.get("connected"),
                    r.get("p50_ms"),
                    r.get("p99_ms"),
                    r.get("max_ms"),
                    r.get("missing", r.get("aborted")),
                    r.get("server_cpu_us_per_delivery"),
                    r.get("server_gc_rounds_max_ms"),
                    r.get("loadgen_cpu_pct"),
                ]
                for r in res["workers"]
            ],
        )
    if "churn" in res:
        table(
            "7. Churn soak (streams replaced while updates go out every second)",
            [
                "server",
                "N",
                "duration (s)",
                "streams replaced",
                "errors",
                "RSS start / end (MB)",
                "RSS samples (MB)",
                "server CPU (%)",
                "longest GC pause (ms)",
                "connections after close",
            ],
            [
                [
                    r["server"],
                    r.get("n"),
                    r.get("duration_s"),
                    r.get("replaced"),
                    r.get("errors", r.get("aborted")),
                    f"{fmt(r.get('rss_start_mb'))} / {fmt(r.get('rss_end_mb'))}",
                    ", ".join(fmt(mb) for _, mb in r.get("rss_samples_mb", [])),
                    r.get("server_cpu_pct"),
                    r.get("server_gc_max_ms"),
                    r.get("connections_after_close"),
                ]
                for r in res["churn"]
            ],
        )
    if "polling" in res:
        poll, push = res["polling"]
        table(
            "6. Polling dashboard versus refetch",
            [
                "mode",
                "clients",
                "requests / client / s while idle",
                "requests / client per change",
                "server CPU while idle (%)",
                "staleness p50 (ms)",
                "staleness max (ms)",
            ],
            [
                [
                    f"poll {poll.get('queries')} queries every {poll.get('interval_s')} s",
                    poll.get("clients"),
                    poll.get("requests_per_client_per_s"),
                    "none extra (it polls anyway)",
                    poll.get("server_cpu_pct"),
                    (poll.get("staleness") or {}).get("p50_ms"),
                    (poll.get("staleness") or {}).get("max_ms"),
                ],
                [
                    "refetch stream, refetch on invalidate",
                    push.get("clients"),
                    push.get("idle_requests_per_client_per_s"),
                    push.get("requests_per_client_per_change"),
                    push.get("idle_server_cpu_pct"),
                    (push.get("staleness") or {}).get("p50_ms"),
                    (push.get("staleness") or {}).get("max_ms"),
                ],
            ],
        )
    table(
        "Ratios (baseline / refetch; > 1 means refetch is better, except saturation)",
        ["measure", "ratio"],
        [[k, v] for k, v in report["ratios"].items()],
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", choices=["smoke", "quick", "full"], default="quick")
    parser.add_argument("--servers", default="refetch,fastapi,fastapi-mounted,portal,baseline")
    parser.add_argument("--only", default=None, help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument(
        "--redis", default=REDIS, help="Redis for scenario 5 (127.0.0.1 only; a stream per run)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--sizes", default=None, help="comma-separated N for idle/fanout/instances/workers"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(
        args.profile,
        args.servers.split(","),
        args.only.split(",") if args.only else None,
        args.out,
        args.redis,
        [int(n) for n in args.sizes.split(",")] if args.sizes else None,
    )
    text = markdown(report)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"{stamp}-{args.profile}", f"latest-{args.profile}"):
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
        (args.out / f"{name}.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
