"""Forks real uvicorn processes of ``tests.shutdown_app`` on demand, for the shutdown test.

Importing Python, uvicorn, Starlette and refetch costs about a second per process; the
shutdown test needs twenty fresh processes. So this launcher imports once and forks: each
child is an ordinary uvicorn server in its own process (main thread, its own signal
handlers, its own event loop, the app's lifespan), started in milliseconds.

Protocol: ``spawn <port>`` on stdin is answered ``pid <pid>`` on stdout; whenever a child
ends, ``exit <pid> signal <n>`` (or ``exit <pid> code <n>``) follows on stdout.
"""

from __future__ import annotations

import os
import sys
import threading

import uvicorn

from tests.shutdown_app import app

OPTIONS: dict[str, object] = {"host": "127.0.0.1", "log_level": "warning", "access_log": False}
# uvicorn imports its loop, protocol and lifespan modules when a config is loaded: do it
# here once, so a child only binds its port and starts.
uvicorn.Config(app, **OPTIONS).load()  # type: ignore[arg-type]

_say_lock = threading.Lock()


def _say(line: str) -> None:
    with _say_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _serve(port: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # stdout is the launcher's protocol pipe
    try:
        uvicorn.run(app, port=port, **OPTIONS)  # type: ignore[arg-type]
    finally:
        os._exit(0)


def _reap(children: threading.Semaphore) -> None:
    while True:
        children.acquire()  # os.wait() with no child would fail at once
        pid, status = os.wait()
        if os.WIFSIGNALED(status):
            _say(f"exit {pid} signal {os.WTERMSIG(status)}")
        else:
            _say(f"exit {pid} code {os.WEXITSTATUS(status)}")


def main() -> None:
    children = threading.Semaphore(0)
    threading.Thread(target=_reap, args=(children,), daemon=True).start()
    for line in sys.stdin:
        port = int(line.split()[1])
        with _say_lock:  # no child may inherit the lock, or stdout's, held by the reaper
            pid = os.fork()
        if pid == 0:
            _serve(port)
        children.release()
        _say(f"pid {pid}")


if __name__ == "__main__":
    main()
