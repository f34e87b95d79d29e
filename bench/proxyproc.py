"""The pod runner's FaultProxy, run in its own process.

``PodRunner.proxy()`` runs the proxy's event loop in a thread of the calling process; here the caller
samples INFO every 10 ms and a proxy thread forwarding ~20 MB/s would hold the GIL for whole switch
intervals (5 ms), skewing both. Same proxy class, same bridge address scheme (an address on the
runner's bridge that every pod can reach), controlled over a pipe.
"""

from __future__ import annotations

import contextlib
import logging
from multiprocessing.connection import Connection
from typing import Any, Literal

from podrunner import Pod, PodRunner
from podrunner.proxy import FaultProxy

from bench.writer import SPAWN


def _serve(conn: Connection, listen: tuple[str, int], target: tuple[str, int], latency: float) -> None:
    # Connections aborted by cut()/close() end in cancelled tasks that asyncio reports as errors.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    proxy = FaultProxy(listen, target, latency=latency).start()
    conn.send("ready")
    try:
        while True:
            command, args = conn.recv()
            reply: Any = None
            if command == "cut":
                proxy.cut(*args)
            elif command == "restore":
                proxy.restore()
            elif command == "latency":
                proxy.latency = args[0]
            elif command == "stats":
                reply = {
                    "connections": proxy.connections,
                    "accepted": proxy.accepted,
                    "bytes_to_target": proxy.bytes_to_target,
                    "bytes_to_client": proxy.bytes_to_client,
                    "state": proxy.state,
                }
            elif command == "close":
                proxy.close()
                conn.send(None)
                return
            conn.send(reply)
    finally:
        proxy.close()


class ProxyProcess:
    """A FaultProxy on a new bridge address, listening on the target's port, in a child process."""

    def __init__(self, runner: PodRunner, target: Pod, latency: float = 0.0):
        self.host = runner.bridge.add_local_address()
        self.port = target.port
        self._conn, child = SPAWN.Pipe()
        self._proc = SPAWN.Process(
            target=_serve, args=(child, (self.host, self.port), (target.address, target.port), latency), daemon=True
        )
        self._proc.start()
        if not self._conn.poll(30) or self._conn.recv() != "ready":
            self._proc.kill()
            raise RuntimeError("the proxy process did not start")

    def _call(self, command: str, *args: Any) -> Any:
        self._conn.send((command, args))
        if not self._conn.poll(30):
            raise RuntimeError(f"the proxy did not answer {command}")
        return self._conn.recv()

    def cut(self, mode: Literal["reset", "blackhole"] = "reset") -> None:
        self._call("cut", mode)

    def restore(self) -> None:
        self._call("restore")

    def set_latency(self, seconds: float) -> None:
        self._call("latency", seconds)

    def stats(self) -> dict[str, Any]:
        return self._call("stats")  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError, RuntimeError, EOFError):
                self._call("close")
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
