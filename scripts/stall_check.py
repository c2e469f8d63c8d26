"""A quick check that a stalled broker (alive, silent) is a lost broker within the promised bound.

For each broker: a private server (Redis, NATS: own process on a free port, stopped with
SIGSTOP; PostgreSQL: the local server behind a TCP proxy that stops forwarding), two hubs in this
process, an authenticated and an anonymous stream on hub B. B notifies every 0.2 s through the
stall. Prints, from the moment of the stall: when B counted the broker lost, when B ended the
authenticated stream (fail closed), the longest wait of a B notify for B's own anonymous client,
and after the broker is back whether hub A's client heard every update B notified (none
silently stale). Not part of the test suite (it stops processes and takes ~10 s per broker):

    .venv/bin/python scripts/stall_check.py [redis] [nats] [postgres] [--stall 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from refetch import Principal, UpdateService
from refetch._parser import SSEParser

TYPES = ["compute", "projects"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on {port}")


class Client:
    def __init__(self) -> None:
        self.parser = SSEParser()
        self.heard: dict[str, float] = {}

    async def send(self, message: Any) -> None:
        now = time.monotonic()
        for event in self.parser.feed(message.get("body", b"")):
            if event.event == "invalidate":
                for update in json.loads(event.data)["updates"]:
                    for key in update.get("keys", ()):
                        self.heard.setdefault(key, now)


class Proxy:
    """A TCP proxy whose ``stall()`` stops forwarding (connections stay open, silent)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.port = 0

    async def start(self) -> None:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    await self.flowing.wait()
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def check(kind: str, stall: float) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="refetch-stall-")
    process: subprocess.Popen[bytes] | None = None
    proxy: Proxy | None = None
    name = f"stall_{uuid.uuid4().hex[:8]}"
    try:
        if kind == "redis":
            port = free_port()
            process = subprocess.Popen(  # noqa: ASYNC220 (a server, left running)
                ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                cwd=folder,
                stdout=subprocess.DEVNULL,
            )
            url = f"redis://127.0.0.1:{port}/0?stream={name}"
        elif kind == "nats":
            port = free_port()
            process = subprocess.Popen(  # noqa: ASYNC220 (a server, left running)
                ["nats-server", "-js", "-p", str(port), "-sd", folder],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"nats://127.0.0.1:{port}?stream={name}"
        else:
            proxy = Proxy(5432)
            await proxy.start()
            port = proxy.port
            url = f"postgresql://postgres@127.0.0.1:{port}/test?table={name}"
        wait_port(port)

        def stop() -> None:
            if process is not None:
                os.kill(process.pid, signal.SIGSTOP)
            else:
                assert proxy is not None
                proxy.flowing.clear()

        def resume() -> None:
            if process is not None:
                os.kill(process.pid, signal.SIGCONT)
            else:
                assert proxy is not None
                proxy.flowing.set()

        a = UpdateService(TYPES, backend=url, min_interval=0.02, close_on_signals=False)
        b = UpdateService(TYPES, backend=url, min_interval=0.02, close_on_signals=False)
        async with a, b:
            bob, anonymous, on_a = Client(), Client(), Client()
            bob_conn = b.attach(
                bob.send, Principal.of("bob", ["tenant:acme"]), frozenset(TYPES), None, None
            )
            b.attach(anonymous.send, Principal(), frozenset(TYPES), None, None)
            a.attach(on_a.send, Principal(), frozenset(TYPES), None, None)
            await a.publish("projects", "warm-up")
            while "warm-up" not in anonymous.heard:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

            stopped = time.monotonic()
            stop()
            # Bob is removed from acme through A, 0.2 s into the stall; A answers within
            # flush(timeout=2) with PublishError, and B ends bob's stream on its own.
            revoked: dict[str, Any] = {}

            async def revoke() -> None:
                await asyncio.sleep(0.2)
                a.reauthorize("bob", Principal.of("bob", ["user:bob"]))
                revoked["at"] = time.monotonic()
                try:
                    await a.flush(timeout=2)
                    revoked["flush"] = "returned"
                except Exception as exc:
                    revoked["flush"] = type(exc).__name__
                revoked["flush_s"] = round(time.monotonic() - revoked["at"], 2)

            revoking = asyncio.create_task(revoke())
            notified: dict[str, float] = {}
            public: set[str] = set()
            detected = ended = None
            n = 0
            while time.monotonic() - stopped < stall:
                key = f"b{n}"
                n += 1
                notified[key] = time.monotonic()
                if n % 2:
                    b.notify("compute", key, audience=["tenant:acme"])
                else:
                    public.add(key)
                    b.notify("compute", key)
                for _ in range(20):
                    if detected is None and b.statistics().listener_down is not None:
                        detected = time.monotonic() - stopped
                    if ended is None and bob_conn.ended.done():
                        ended = time.monotonic() - stopped
                    await asyncio.sleep(0.01)
            waits = [anonymous.heard.get(k, time.monotonic()) - notified[k] for k in public]
            await revoking
            after_revoke = [t - revoked["at"] for k, t in bob.heard.items() if k in notified]
            resume()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not public <= set(on_a.heard):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            return {
                "broker": kind,
                "stall_s": stall,
                "counted_lost_after_s": None if detected is None else round(detected, 2),
                "authenticated_stream_ended_after_s": None if ended is None else round(ended, 2),
                "b_notifies": len(notified),
                "longest_local_wait_s": round(max(waits), 2),
                "silently_stale_on_a": sorted(public - set(on_a.heard)),
                "revoking_flush": revoked["flush"],
                "revoking_flush_s": revoked["flush_s"],
                # B's own acme notifies reach bob (B has not heard of the revocation)
                # until B fails closed: the last one, in seconds after the revocation.
                "bob_heard_acme_until_s_after_revocation": round(max(after_revoke, default=0), 2),
            }
    finally:
        if process is not None:
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
        if kind == "postgres":
            import asyncpg

            conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
            await conn.execute(f'DROP TABLE IF EXISTS "{name}", "{name}_meta"')
            await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("brokers", nargs="*", default=["redis", "nats", "postgres"])
    parser.add_argument("--stall", type=float, default=6.0)
    args = parser.parse_args()
    for kind in args.brokers:
        print(json.dumps(await check(kind, args.stall)), flush=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
