"""A fault-injecting TCP proxy: one-way latency, cuts, byte counters.

Runs an asyncio loop in a daemon thread. Latency is a delay queue per direction: each chunk is
stamped when read and written once its time has come, so order is kept and pipelined traffic is not
serialised (throughput is unchanged; every byte arrives ``latency`` later).

``cut("reset")`` aborts every connection with a TCP RST and refuses new ones (the listener closes).
``cut("blackhole")`` is a partition: connections stay open, nothing is delivered in either direction
and new connections are accepted but not forwarded; ``restore()`` then delivers what was held (as TCP
retransmission would) and forwards again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Literal

CHUNK = 65536


class _Connection:
    def __init__(self, client: asyncio.StreamWriter, handler: asyncio.Task[Any] | None):
        self.client = client
        self.handler = handler
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def close(self) -> None:
        """The normal end: both directions saw EOF."""
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):  # close with RST, not FIN: the peer sees a reset
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    def __init__(
        self, listen: tuple[str, int], target: tuple[str, int], latency: float = 0.0, connect_timeout: float = 5.0
    ):
        self.listen = listen
        self.target = target
        self.latency = latency
        """Seconds added in each direction; changes apply to bytes read afterwards."""
        self.connect_timeout = connect_timeout
        self.bytes_to_target = 0
        self.bytes_to_client = 0
        self.accepted = 0
        self.state: Literal["open", "reset", "blackhole"] = "open"
        self._connections: set[_Connection] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{listen}", daemon=True)
        self._server: asyncio.Server | None = None
        self._held: asyncio.Event | None = None

    # ----- control (thread-safe) ------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Listen (idempotent); with a port of 0, ``address`` has the port picked."""
        if self._thread.is_alive():
            return self
        self._thread.start()
        self._call(self._init())
        self._call(self._open())
        return self

    @property
    def address(self) -> tuple[str, int]:
        return self.listen

    @property
    def host(self) -> str:
        return self.listen[0]

    @property
    def port(self) -> int:
        return self.listen[1]

    @property
    def connections(self) -> int:
        return len(self._connections)

    def cut(self, mode: Literal["reset", "blackhole"] = "reset") -> None:
        self._call(self._cut(mode))

    def restore(self) -> None:
        self._call(self._restore())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._drop_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # ----- loop side ------------------------------------------------------------------------------
    async def _init(self) -> None:
        self._held = asyncio.Event()
        self._held.set()  # set = delivering

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._handle, *self.listen, reuse_address=True)
        if self.listen[1] == 0:
            self.listen = (self.listen[0], self._server.sockets[0].getsockname()[1])

    async def _drop_all(self) -> None:
        """Stop listening (new connections are refused) and reset every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections, self._connections = list(self._connections), set()
        for conn in connections:
            conn.abort()
            if conn.handler is not None:
                conn.handler.cancel()
        handlers = [c.handler for c in connections if c.handler is not None]
        if handlers:
            await asyncio.wait(handlers, timeout=5)
        if server is not None:
            await server.wait_closed()

    async def _cut(self, mode: Literal["reset", "blackhole"]) -> None:
        self.state = mode
        if mode == "reset":
            await self._drop_all()
        else:
            assert self._held is not None
            self._held.clear()

    async def _restore(self) -> None:
        assert self._held is not None
        if self.state == "reset":
            await self._open()
        self.state = "open"
        self._held.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._held is not None
        self.accepted += 1
        conn = _Connection(writer, asyncio.current_task())
        self._connections.add(conn)
        try:
            await self._held.wait()  # a partitioned proxy accepts but does not forward
            up_reader, upstream = await asyncio.wait_for(asyncio.open_connection(*self.target), self.connect_timeout)
        except (TimeoutError, OSError):  # the target refused or did not answer: so does the proxy
            conn.abort()
            self._connections.discard(conn)
            return
        conn.upstream = upstream
        conn.tasks = [
            asyncio.ensure_future(self._pipe(reader, upstream, "bytes_to_target")),
            asyncio.ensure_future(self._pipe(up_reader, writer, "bytes_to_client")),
        ]
        try:
            await asyncio.gather(*conn.tasks)
            conn.close()
        except OSError:
            conn.abort()
        finally:
            for task in conn.tasks:
                task.cancel()
            self._connections.discard(conn)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: str) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def receive() -> None:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    data = b""
                queue.put_nowait((loop.time() + self.latency, data))
                if not data:
                    return

        receiver = asyncio.ensure_future(receive())
        try:
            while True:
                due, data = await queue.get()
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                assert self._held is not None
                await self._held.wait()
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                setattr(self, counter, getattr(self, counter) + len(data))
                await writer.drain()
        finally:
            receiver.cancel()
