"""Where the copy reads from and writes to, and the errors a bad endpoint gets.

A connection problem becomes one ``MigrationError`` whose message says what to check; the
password never reaches a message. An error reply names the end that sent it (``refusal`` turns it
into what to do): the copy holds a connection to each end at once, so the ``with`` block an error
crosses does not tell.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import valkey


class MigrationError(Exception):
    """The copy cannot go on; the message says what to do. Nothing in the target was lost."""


class Resumable(Exception):
    """Stopped before its end by something a rerun may not meet again (a signal, a lost connection,
    a failover): nothing verified, the checkpoint kept; a rerun resumes where it can (exit 3)."""


class Unreachable(MigrationError):
    """A connection could not be set up: before the copy began, a wrong address or login (exit 1);
    once it runs, an end restarting or failing over (the copier makes it ``Resumable``)."""

    def __init__(self, message: str, endpoint: Endpoint, cause: BaseException) -> None:
        super().__init__(message)
        self.endpoint, self.cause = endpoint, cause


class _Client(valkey.Valkey):
    """A client whose error replies say which end sent them (``answered_by``; pipelined replies,
    which the copier reads itself, are not marked)."""

    endpoint: Endpoint

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except valkey.ResponseError as error:
            error.answered_by = self.endpoint  # type: ignore[attr-defined]
            raise


def refusal(
    error: valkey.ResponseError, endpoint: Endpoint | None = None, command: str = ""
) -> MigrationError | Resumable:
    """What an error reply means for the copy (``endpoint``: who sent it, if the reply is not marked;
    ``command``: what it answered, for the message)."""
    end = endpoint or getattr(error, "answered_by", None)
    who = str(end) if end is not None else "a server"
    if isinstance(error, valkey.ReadOnlyError):  # only the target is written to
        return Resumable(
            f"{who} took no more writes ({error}): a failover made it a replica. A rerun (the Job retries it) "
            "copies into the instance's new primary and resumes where it can"
        )
    if isinstance(error, valkey.OutOfMemoryError):
        return MigrationError(
            f"{who} is out of memory ({error}): it reached its maxmemory and may evict nothing. Give it room for the "
            "source's data (on the instance: more memory for its pods, and so a higher maxmemory), then run the "
            "copy again: it resumes where it can, else it says so"
        )
    if isinstance(error, valkey.exceptions.NoPermissionError):
        return MigrationError(
            f"{who} does not let this tool's user run a command it needs ({error}): docs/migration.md, "
            "What the source's user needs, lists them"
        )
    return MigrationError(f"{who} refused {command or 'a command'} ({error}): the copy cannot go on")


@dataclass(frozen=True)
class Endpoint:
    role: str
    """"source" or "target", for messages."""
    host: str
    port: int
    username: str | None = None
    """None: AUTH with the password alone (a server's default user, requirepass)."""
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    timeout_s: float = 30.0

    def __str__(self) -> str:
        return f"the {self.role} {self.host}:{self.port}"

    def connect(self, db: int = 0) -> valkey.Valkey:
        # The certificate must name the host connected to (valkey-py checks no name by default).
        tls = {"ssl": True, "ssl_ca_certs": self.ca_file, "ssl_check_hostname": True} if self.tls else {}
        client = _Client(
            host=self.host,
            port=self.port,
            db=db,
            username=self.username,
            password=self.password,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=5,
            decode_responses=False,
            **tls,  # type: ignore[arg-type]
        )
        # INFO as the server sends it: valkey-py's parser turns values that look numeric into numbers.
        client.set_response_callback("INFO", lambda response, **_: response)
        client.endpoint = self
        return client

    @contextmanager
    def session(self, db: int = 0) -> Iterator[valkey.Valkey]:
        """A checked connection: errors while connecting become a MigrationError saying what to check."""
        client = self.connect(db)
        try:
            client.ping()
        except valkey.AuthenticationError as error:
            client.close()
            raise MigrationError(
                f"{self} refused the login ({error}): check the user name and password (for the source, "
                "its credentials Secret's keys username and password; no username means the default user)"
            ) from error
        except valkey.ResponseError as error:
            client.close()
            raise MigrationError(
                f"{self} refused to set up the connection ({error}): its user needs PING, INFO and, for databases "
                "other than 0, SELECT"
            ) from error
        except (valkey.ConnectionError, valkey.TimeoutError, OSError) as error:
            client.close()
            raise Unreachable(
                f"cannot reach {self} ({error}): check the host and port, that TLS is "
                f"{'on' if self.tls else 'off'} as the server expects, and that no firewall or "
                "NetworkPolicy blocks the connection",
                self,
                error,
            ) from error
        try:
            yield client
        finally:
            client.close()


def info(client: valkey.Valkey, section: str) -> dict[str, str]:
    """``INFO <section>``'s fields, as text."""
    raw = client.execute_command("INFO", section)
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    fields = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {key: value.strip() for key, value in fields}


def keyspace(client: valkey.Valkey) -> dict[int, int]:
    """Database number -> keys, from ``INFO keyspace`` (databases without keys are not listed)."""
    out = {}
    for name, value in info(client, "keyspace").items():
        if name.startswith("db"):
            counts = dict(part.split("=", 1) for part in value.split(","))
            out[int(name[2:])] = int(counts["keys"])
    return out


def scan(client: valkey.Valkey, cursor: int, count: int, kind: str | None = None) -> tuple[int, list[bytes]]:
    """One ``SCAN`` step (of keys of type ``kind`` only, if given: the server filters): the next
    cursor (0 when the database has been gone through) and its keys."""
    reply: Any = client.execute_command("SCAN", cursor, "COUNT", count, *(("TYPE", kind) if kind else ()))
    return int(reply[0]), list(reply[1])


def scan_all(client: valkey.Valkey, count: int, kind: str | None = None) -> Iterator[list[bytes]]:
    """Every ``SCAN`` batch of the database, first to last (see ``scan``)."""
    cursor, keys = scan(client, 0, count, kind)
    yield keys
    while cursor != 0:
        cursor, keys = scan(client, cursor, count, kind)
        yield keys


def config_value(client: valkey.Valkey, name: str) -> str:
    reply: Any = client.execute_command("CONFIG GET", name)
    value = reply.get(name.encode()) if isinstance(reply, dict) else None
    return value.decode() if isinstance(value, bytes) else ""
