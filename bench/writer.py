"""A rate-limited SET writer in its own process (so it neither shares the GIL with the samplers nor
steals their timing): raw RESP over one socket, small pipelined batches on a fixed tick.

The rate is a token bucket on wall time: every tick it sends what is due since the start (capped, so a
stall does not end in one huge burst), so the achieved rate is the asked one unless the server or
the CPU cannot keep up, which ``WriterResult.rate`` shows.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

SPAWN = multiprocessing.get_context("spawn")


def encode(*args: bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts += [b"$%d\r\n" % len(a), a, b"\r\n"]
    return b"".join(parts)


class Resp:
    """Just enough of a client for single-line replies (+OK, -ERR …)."""

    def __init__(self, host: str, port: int, password: str | None, username: str | None = None):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        if password is not None:
            auth = (b"AUTH", username.encode(), password.encode()) if username else (b"AUTH", password.encode())
            self.sock.sendall(encode(*auth))
            reply = self.replies(1)[0]
            if reply != b"+OK":
                raise RuntimeError(f"AUTH failed: {reply!r}")

    def replies(self, n: int) -> list[bytes]:
        while self.buffer.count(b"\r\n") < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        lines = self.buffer.split(b"\r\n", n)
        self.buffer = lines[n] if len(lines) > n else b""
        return lines[:n]

    def send(self, payload: bytes, n: int) -> int:
        """Send ``n`` pipelined commands; return how many replies were errors."""
        self.sock.sendall(payload)
        return sum(1 for r in self.replies(n) if r.startswith(b"-"))

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class WriterSpec:
    host: str
    port: int
    password: str | None
    rate: float
    """SETs per second."""
    value_size: int = 1024
    keys: int = 100_000
    key_format: str = "bench:%06d"
    """Key names; redis-benchmark's are "key:%012d"."""
    tick: float = 0.005
    max_batch_ticks: int = 4
    """At most this many ticks' worth of commands in one batch when catching up."""

    def command_bytes(self) -> int:
        """Length of one SET as sent, and as propagated into the replication stream."""
        return len(encode(b"SET", (self.key_format % 0).encode(), b"x" * self.value_size))

    @staticmethod
    def for_stream_rate(host: str, port: int, password: str | None, stream_bytes: float, **kw: Any) -> WriterSpec:
        """A writer whose SETs add ``stream_bytes`` per second to the replication stream."""
        probe = WriterSpec(host, port, password, 1.0, **kw)
        return WriterSpec(host, port, password, stream_bytes / probe.command_bytes(), **kw)


@dataclass(frozen=True)
class WriterResult:
    sent: int
    errors: int
    seconds: float
    bytes: int
    max_behind: float
    """Most commands the writer was behind its schedule at any tick, in seconds of the rate."""

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def byte_rate(self) -> float:
        return self.bytes / self.seconds if self.seconds else 0.0


def _main(spec: WriterSpec, stop: Any, started: Any, out: Connection) -> None:
    try:
        _write(spec, stop, started, out)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        started.set()
        out.send(RuntimeError(f"writer failed: {exc!r}"))


def _write(spec: WriterSpec, stop: Any, started: Any, out: Connection) -> None:
    conn = Resp(spec.host, spec.port, spec.password)
    value = os.urandom(spec.value_size)
    head = b"*3\r\n$3\r\nSET\r\n"
    tail = b"\r\n$%d\r\n" % spec.value_size + value + b"\r\n"
    keys = [(spec.key_format % i).encode() for i in range(spec.keys)]
    keyed = [b"$%d\r\n%s" % (len(k), k) for k in keys]
    rng = random.Random(1)
    per_tick_cap = max(1, int(spec.rate * spec.tick * spec.max_batch_ticks))
    sent = errors = nbytes = 0
    max_behind = 0.0
    started.set()
    start = time.monotonic()
    next_tick = start
    while not stop.is_set():
        now = time.monotonic()
        due = int(spec.rate * (now - start)) - sent
        max_behind = max(max_behind, due / spec.rate)
        n = min(due, per_tick_cap)
        if n > 0:
            payload = b"".join(head + keyed[rng.randrange(spec.keys)] + tail for _ in range(n))
            errors += conn.send(payload, n)
            sent += n
            nbytes += len(payload)
        next_tick += spec.tick
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.monotonic()
    seconds = time.monotonic() - start
    conn.close()
    out.send(WriterResult(sent, errors, seconds, nbytes, max_behind))


class Writer:
    """``with Writer(spec) as w: …; result = w.stop()`` — writes from start until stop()."""

    def __init__(self, spec: WriterSpec):
        self.spec = spec
        self._stop = SPAWN.Event()
        self._started = SPAWN.Event()
        self._recv, send = SPAWN.Pipe(duplex=False)
        self._proc = SPAWN.Process(target=_main, args=(spec, self._stop, self._started, send), daemon=True)
        self.result: WriterResult | None = None

    def start(self) -> Writer:
        self._proc.start()
        deadline = time.monotonic() + 30
        while not self._started.wait(0.05):
            if not self._proc.is_alive() or time.monotonic() > deadline:
                self._proc.kill()
                raise RuntimeError(f"the writer process did not start (exit code {self._proc.exitcode})")
        return self

    def stop(self) -> WriterResult:
        if self.result is None:
            self._stop.set()
            if not self._recv.poll(30):
                self._proc.kill()
                raise RuntimeError(f"the writer did not report (exit code {self._proc.exitcode})")
            result = self._recv.recv()
            self._proc.join(10)
            if isinstance(result, Exception):
                raise result
            self.result = result
        return self.result

    def __enter__(self) -> Writer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.result is None and self._proc.is_alive():
            self._stop.set()
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
