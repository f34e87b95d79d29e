"""Where the copy reads from and writes to, and the errors a bad endpoint gets.

A connection problem becomes one ``MigrationError`` whose message says what to check; the
password never reaches a message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import valkey


class MigrationError(Exception):
    """The copy cannot go on; the message says what to do. Nothing in the target was lost."""


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
        client = valkey.Valkey(
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
            raise MigrationError(
                f"cannot reach {self} ({error}): check the host and port, that TLS is "
                f"{'on' if self.tls else 'off'} as the server expects, and that no firewall or "
                "NetworkPolicy blocks the connection"
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
