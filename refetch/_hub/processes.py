"""Is this process one of several workers of one server? Then an in-memory hub is split.

``uvicorn --workers N``, ``gunicorn -w N`` and ``hypercorn --workers N`` run the app
in N processes: a hub without a backend in each, and a ``notify()`` in one worker
never reaches the streams held by the others. Nothing fails, so it is warned about.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from pathlib import Path

logger = logging.getLogger("refetch")

_PROC = Path("/proc")


def sibling_workers() -> int:
    """How many other worker processes of this server there are (0: none seen).

    Best effort, on Linux: the other children of our parent that run what we run.
    A forked worker (gunicorn) has its parent's command line; a spawned one (uvicorn,
    hypercorn) runs multiprocessing's ``--multiprocessing-fork`` bootstrap. uvicorn's
    ``--reload`` has one such child, so it counts as one process, as it should.
    """
    if multiprocessing.parent_process() is None and "gunicorn" not in sys.modules:
        return 0  # not a server's worker: nothing to look for
    try:
        ours = _cmdline(os.getpid())
        parent = os.getppid()
        spawned = "--multiprocessing-fork" in ours
        count = 0
        for entry in _PROC.iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if _parent_of(entry) != parent:
                    continue
                theirs = _cmdline(int(entry.name))
            except (OSError, ValueError):
                continue  # it ended while we looked
            if theirs == ours or (spawned and "--multiprocessing-fork" in theirs):
                count += 1
        return count
    except (OSError, ValueError):
        return 0  # no /proc (macOS, Windows): cannot tell


def _cmdline(pid: int) -> list[str]:
    return (_PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")


def _parent_of(entry: Path) -> int:
    # /proc/<pid>/stat is "pid (comm) state ppid ...", and comm may hold spaces or ")".
    stat = (entry / "stat").read_text(errors="replace")
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def warn_if_split() -> None:
    """Log a loud warning when an in-memory hub runs in one of several workers."""
    others = sibling_workers()
    if others:
        logger.warning(
            "refetch: this UpdateService has no backend but runs in one of %d worker "
            "processes of one server (uvicorn --workers, gunicorn -w): a notify() in one "
            "worker never reaches the streams of the others. Share the updates through "
            'a backend, e.g. UpdateService(types, backend="redis://127.0.0.1:6379/0") '
            "(or postgresql://..., nats://...), or run a single worker.",
            others + 1,
        )
