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


def _serve(port: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # stdout is the launcher's protocol pipe
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
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
