"""Forks real uvicorn processes of ``tests.shutdown_app`` on demand, for the shutdown test.

Importing Python, uvicorn, Starlette and refetch costs about a second per process; the
shutdown test needs twenty fresh processes. So this launcher imports once and forks: each
child is an ordinary uvicorn server in its own process (main thread, its own signal
handlers, its own event loop, the app's lifespan), started in milliseconds.

Protocol on stdin/stdout, one line each:
``spawn <port>`` -> ``pid <pid>``; ``wait <pid>`` -> ``exit <pid> <signal or code>``.
"""

from __future__ import annotations

import os
import sys

import uvicorn

from tests.shutdown_app import app

OPTIONS: dict[str, object] = {"host": "127.0.0.1", "log_level": "warning", "access_log": False}
# uvicorn imports its loop, protocol and lifespan modules when a config is loaded: do it
# here once, so a child only binds its port and starts.
uvicorn.Config(app, **OPTIONS).load()  # type: ignore[arg-type]


def _serve(port: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # stdout is the launcher's protocol pipe
    try:
        uvicorn.run(app, port=port, **OPTIONS)  # type: ignore[arg-type]
    finally:
        os._exit(0)


def main() -> None:
    for line in sys.stdin:
        command, arg = line.split()
        if command == "spawn":
            pid = os.fork()
            if pid == 0:
                _serve(int(arg))
            print(f"pid {pid}", flush=True)
        elif command == "wait":
            _, status = os.waitpid(int(arg), 0)
            if os.WIFSIGNALED(status):
                outcome = f"signal {os.WTERMSIG(status)}"
            else:
                outcome = f"code {os.WEXITSTATUS(status)}"
            print(f"exit {arg} {outcome}", flush=True)


if __name__ == "__main__":
    main()
