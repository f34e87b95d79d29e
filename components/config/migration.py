"""``instances.<name>.migration``: bringing an existing Redis or Dragonfly's data into an instance
(docs/migration.md). Only the source's name and the Secrets the program does not create are
config; no password is."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .names import DnsSubdomain, Hostname
from .security import MAX_LIST
from .types import Cidr, ConfigModel, ImageRef, Integer, within

COPY_METRICS_PORT = 9400
"""The keyspace copy's metrics port in its Job's pod."""


class MigrationSource(ConfigModel):
    """The server the data comes from. Its login is an existing Secret's, never config."""

    host: Hostname
    """Its DNS name or address, as the instance's namespace resolves it."""
    port: Annotated[Integer, within(1, 65535)] = 6379
    """Its client port."""
    tls: bool = False
    """Connect to it over TLS."""
    ca_secret: DnsSubdomain | None = None
    """With tls: an existing Secret in the stack's namespace whose key ca.crt is the CA that signs
    the source's certificate; default the system's trusted CAs."""
    credentials_secret: DnsSubdomain | None = None
    """An existing Secret in the stack's namespace with the key password and, optionally, username
    (without it, the password alone: the source's default user, requirepass). Unset: no login."""
    cidrs: Annotated[list[Cidr], Field(max_length=MAX_LIST)] = []
    """With method replication and the NetworkPolicy: the addresses the source may have; the
    instance's pods may connect to them on its port (the NetworkPolicy denies all other egress)."""


class KeyspaceCopy(ConfigModel):
    """The Job that runs ``python -m ops.keyspace_copy`` (docs/migration.md#keyspace-copy)."""

    image: ImageRef
    """An image with Python 3 and the program's ``ops`` package with its requirements, e.g. built
    from ops/Dockerfile and pushed to your registry (the program publishes no image)."""
    batch: Annotated[Integer, within(1, 100_000)] = 1000
    """Keys per SCAN and per pipeline: the Job holds one batch of values at a time."""
    start_over: bool = False
    """Let the Job empty the instance when it finds an unfinished earlier copy that cannot resume
    (the source took writes or restarted since): set it only after checking that the source still
    holds the data, and leave it until the migration is removed (a change of it replaces the Job:
    docs/migration.md)."""
    follow: bool = True
    """Keep copying what the applications change until the cut-over (the Job runs until you give it
    its cue, docs/migration.md); false: copy once and finish, for a source nobody writes to."""
    notifications_configured: bool = False
    """The source already sends keyspace events (``notify-keyspace-events`` includes ``KA``), set by
    its owner: for sources whose user may not run CONFIG (managed services). The copy then does not
    set them, and warns when it saw no event while the source took writes (docs/migration.md)."""


class Migration(ConfigModel):
    """Where an instance's data comes from on its first days, and how it gets here."""

    method: Literal["replication", "copy"]
    """replication: the instance's head replicates the source (REPLICAOF; a source whose
    replication stream this Valkey loads: docs/migration.md#version-matrix), its other members and
    the other region follow as usual, until the cut-over (``python -m ops.cutover``). copy: the
    keyspace copy Job (any source that answers SCAN, PTTL and DUMP with payloads this Valkey can
    RESTORE)."""
    source: MigrationSource
    """The server to migrate from."""
    keyspace_copy: KeyspaceCopy | None = None
    """The Job's settings; required with method copy."""
    rdb_version_check: Literal["strict", "relaxed"] = "strict"
    """With method replication: relaxed renders ``rdb-version-check relaxed`` while the migration
    lasts, so the group loads a source's newer RDB format (Redis 7.4 and later stream RDB 12, which
    only Valkey 9 and later load, and only without hash fields that have their own TTL:
    docs/migration.md#version-matrix). Needs an image of Valkey 8.1 or later."""
