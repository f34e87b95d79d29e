"""The cut-over of a live-replication migration, with no acknowledged write lost: the source's
writes pause, the group's head receives everything, the source is fenced, the head becomes the
primary, writes resume there.

    python -m ops.cutover check   --source HOST:PORT --target HOST:PORT [--source-tls] [--source-ca FILE]
        [--target-tls] [--target-ca FILE] [--source-credentials DIR] [--target-credentials DIR]
    python -m ops.cutover check   --source HOST:PORT --valkey-version X.Y.Z [--rdb-version-check strict|relaxed]
        [the source's options]
    python -m ops.cutover promote --source HOST:PORT --target HOST:PORT [the same options]
        [--pause-timeout SECONDS] [--fence-host NAME] [--writers-stopped]

``--target`` is the group member to promote: its head (the node that replicates the source), or
any member replicating the head (the same history): pod 0 is the runbook's choice, since the
``pulumi up`` rollout that follows restarts it last, once the other members run the group's
Sentinels, which hand it over (a primary restarted first waits for a failover no Sentinel can make
yet: about 40 s without writes in the drill). Logins never come
from arguments: a ``--*-credentials`` directory holds the files ``username`` (optional: without it,
the password alone, as a server's default user) and ``password``, as a mounted Secret does; else
``SOURCE_USERNAME``/``SOURCE_PASSWORD`` (the migration's credentials Secret) and
``TARGET_USERNAME`` (default ``admin``)/``TARGET_PASSWORD`` (``<instance>-admin-credentials``), as
for ``python -m ops.keyspace_copy``.

``check --valkey-version`` without ``--target`` is the preflight, before the migration is configured:
the source's checks alone, for a head of that version (the stack's image) with that
``rdb-version-check`` (the instance's ``migration.rdbVersionCheck``).

``check`` (also promote's first step): the source answers and takes the login; it is a Redis or
Valkey whose replication stream the head loads (Dragonfly's is its own protocol; Redis 7.4 and
later stream RDB 12, which only Valkey 9.0 and later load, with ``rdb-version-check relaxed``,
and only without hash fields that have their own TTL); it lets PSYNC run; the head replicates it
(the same replication ID: names do not matter), its link up. It prints the lag in bytes.

``promote``, each step checked before the next:

1. ``check``.
2. ``CLIENT PAUSE <timeout> WRITE`` on the source: writes wait, reads go on.
3. Wait until the head's offset reaches the source's (within the pause, less a margin).
4. Fence the source: ``REPLICAOF <fence-host> <port>``, a name that resolves nowhere, so it keeps
   its data, never syncs, and answers every write with ``READONLY`` (the writes that waited in the
   pause too, measured on Redis 7.0). Its offset is final now.
5. Wait until the head holds that offset (a replication PING may have been sent meanwhile).
6. ``REPLICAOF NO ONE`` on the head: it takes writes.
7. ``CLIENT UNPAUSE`` on the source.

With ``--writers-stopped`` (a source that refuses CLIENT PAUSE or REPLICAOF, as managed services
may): no pause; the source's offset must stay the same for 2 s and the head reach it; a source that
refuses REPLICAOF is left taking writes, with a warning. A failure before 6 puts the source back
(``REPLICAOF NO ONE`` if its fence was sent, answered or not; unpaused), each step tried whatever
the others did: the message says nothing changed, or names what could not be undone. If 6 fails,
no one takes writes: the message says what to do. To roll back before any write reached the new
primary: ``REPLICAOF NO ONE`` on the source.

Exit status 0: done (or the check passed); 1: failed, the message says in which state things are;
2: bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import valkey

from .keyspace_copy.arguments import host_port, login
from .keyspace_copy.endpoint import Endpoint, MigrationError, config_value, info, keyspace

FENCE_HOST = "fenced.invalid"
"""RFC 2606: never resolves, so a fenced source never syncs from (and never empties itself for) it."""
MIN_PAUSE_S = 2.0
MARGIN_S = 1.0
"""The waits end this long before the pause does: the fence and the promotion come after them."""
QUIET_S = 2.0
"""With --writers-stopped: how long the source's offset must stay the same."""
KEYSPACE_COPY = "use the keyspace copy (migration.method: copy, docs/migration.md)"
LINK_DOWN_CAUSES = (
    # What a Valkey 8.1.8 / 9.1.2 head logs for each cause, measured against Redis 7.0 (the timeout
    # from Valkey's source: no address here drops packets).
    ("Error condition on socket for SYNC: Connection refused", "nothing listens at the source's address and port"),
    ("Unable to connect to PRIMARY: Resource temporarily unavailable", "the source's name does not resolve"),
    ("Timeout connecting to the PRIMARY", "packets are dropped: the NetworkPolicy's egress or a firewall"),
    ("Unable to AUTH to PRIMARY: -WRONGPASS", "the source refuses the login in the migration's credentials Secret"),
    ("NOPERM this user has no permissions to run the 'psync' command", "the source's user lacks +psync +sync"),
    ("Primary does not support PSYNC", f"the source has PSYNC and SYNC renamed or disabled: {KEYSPACE_COPY}"),
    ("Can't handle RDB format version", "the source streams an RDB version the head refuses (Redis 7.4+: 12)"),
    ("Can't handle foreign type or opcode", "the source holds a type Valkey lacks (Redis hash field TTLs)"),
    ("I/O error reading bulk count from PRIMARY", "the source failed to send its RDB: its own log says why"),
)


class CutoverError(MigrationError):
    """A check or step failed; the message says in which state the source and the head are."""


@dataclass(frozen=True)
class Checked:
    """What the check found, for promote."""

    may_pause: bool | None
    """Whether the source's user may run CLIENT PAUSE; None: it could not be told."""
    may_fence: bool | None
    """The same for REPLICAOF."""


@dataclass(frozen=True)
class Result:
    offset: int
    """The source's final replication offset, which the new primary holds."""
    pause_s: float | None
    """From the PAUSE to the UNPAUSE reply; None with --writers-stopped."""
    fenced: bool
    keys: dict[str, dict[int, int]]
    """Keys per database on "source" and "target" afterwards."""


def stamped(log: Callable[[str], None]) -> Callable[[str], None]:
    """Each line with the wall clock (for the applications' logs) and the time since the start."""
    began = time.monotonic()

    def say(message: str) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        log(f"{now} +{time.monotonic() - began:.3f}s cutover: {message}")

    return say


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("-", maxsplit=1)[0].split(".") if part.isdigit())


def _server(fields: dict[str, str]) -> tuple[str, tuple[int, ...]]:
    """("Dragonfly" | "Valkey" | "Redis", version) from INFO server: Valkey also shows redis_version
    (7.2.4, the protocol it is compatible with), Dragonfly too."""
    if "dragonfly_version" in fields:
        return "Dragonfly", _version(fields["dragonfly_version"].removeprefix("df-v"))
    if "valkey_version" in fields or fields.get("server_name") == "valkey":
        return "Valkey", _version(fields.get("valkey_version", fields.get("redis_version", "")))
    return "Redis", _version(fields.get("redis_version", ""))


def _name(kind: str, version: tuple[int, ...]) -> str:
    return f"{kind} {'.'.join(map(str, version)) or '(version unknown)'}"


def _offset(replication: dict[str, str]) -> int:
    """A node's replication offset: a replica's what it applied, a primary's what it wrote."""
    return int(replication.get("slave_repl_offset") or replication.get("master_repl_offset") or -1)


def _allowed(client: valkey.Valkey, *command: str) -> bool | None:
    """Whether the login may run ``command``, without running it: queued in a MULTI (ACL and an
    unknown, renamed, command are checked when queued), then DISCARDed. None: no MULTI."""
    try:
        client.execute_command("MULTI")
    except valkey.ResponseError:
        return None
    try:
        client.execute_command(*command)
        return True
    except valkey.ResponseError:
        return False
    finally:
        client.execute_command("DISCARD")


def _check_psync(s: valkey.Valkey, source: Endpoint) -> str | None:
    """Refuses a source without PSYNC and SYNC; returns a note when its user's right to them cannot
    be told (ACL DRYRUN needs a user that may run it; PSYNC cannot be queued in a MULTI)."""
    try:
        described = s.execute_command("COMMAND INFO", "PSYNC", "SYNC")
    except valkey.ResponseError:
        described = None
    if isinstance(described, list) and all(entry is None for entry in described):
        raise CutoverError(f"{source} refuses PSYNC and SYNC (renamed or disabled): {KEYSPACE_COPY}")
    try:
        user = s.execute_command("ACL", "WHOAMI")
        verdict = s.execute_command("ACL", "DRYRUN", user, "PSYNC", "?", "-1")
    except valkey.ResponseError:
        return "whether the source's user may run PSYNC cannot be told (it may not run ACL DRYRUN)"
    if verdict not in (b"OK", "OK"):
        text = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        raise CutoverError(
            f"{source} refuses PSYNC to its user ({text}): give it +psync +sync +replconf, or {KEYSPACE_COPY}"
        )
    return None


def _check_persistence(s: valkey.Valkey, source: Endpoint) -> str | None:
    """A note when the source keeps nothing across a restart (no AOF, no RDB save points): one
    before the cut-over comes back empty, and every copy (the group, region 2) follows it."""
    if info(s, "persistence").get("aof_enabled") == "1":
        return None
    try:
        saves = config_value(s, "save")
    except (valkey.ValkeyError, MigrationError):
        return None  # CONFIG refused: cannot tell
    if saves.strip():
        return None
    return (
        f"{source} persists nothing (no AOF, no save points): if it restarts before the cut-over it comes back "
        "empty, and the group and region 2 copy that; keep it from restarting until then, or turn on persistence"
    )


def _volatile_hashes(s: valkey.Valkey) -> int:
    """Hashes with fields that have their own TTL: INFO keyspace's subexpiry (Redis 7.4 and later),
    keys_with_volatile_items (Valkey 9)."""
    count = 0
    for name, value in info(s, "keyspace").items():
        if name.startswith("db"):
            counts = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
            count += int(counts.get("subexpiry", 0)) + int(counts.get("keys_with_volatile_items", 0))
    return count


def stream_refusal(
    source: tuple[str, tuple[int, ...]], head: tuple[int, ...], rdb_check: str, volatile: int
) -> str | None:
    """Why the head cannot load what the source streams, or None. Measured (tests/test_cutover_real.py):
    an RDB 12 stream is refused by 8.1.8 whatever rdb-version-check says (8.1 reserves 12-79 for
    foreign formats) and by 9.1.2 with strict; 9.1.2 with relaxed loads it unless it holds a type
    Valkey lacks. A Valkey 9 source streams RDB 11 to an 8.1 head but cannot store a hash with
    field TTLs in it, and its live HSETEX is an unknown command there (lost)."""
    kind, version = source
    if kind == "Redis" and version >= (7, 4):
        if head < (9, 0):
            return (
                f"Redis {'.'.join(map(str, version))} streams RDB 12, which Valkey {'.'.join(map(str, head))} "
                f"refuses even with rdb-version-check relaxed: {KEYSPACE_COPY}, or a Valkey 9.0+ head"
            )
        if volatile:
            return (
                f"the source holds {volatile} hash(es) with field TTLs (INFO keyspace), which Valkey loads neither "
                "from Redis' replication stream nor from its DUMP payloads (the keyspace copy): remove their field "
                "TTLs (HPERSIST) or the keys on the source first"
            )
        if rdb_check != "relaxed":
            return (
                "Redis 7.4 and later stream RDB 12, which Valkey loads only with rdb-version-check relaxed (and only "
                "without types it lacks): set the instance's migration.rdbVersionCheck: relaxed and pulumi up, or "
                f"{KEYSPACE_COPY}"
            )
    if kind == "Valkey" and version[:1] > head[:1] and volatile:
        return (
            f"the source holds {volatile} hash(es) with field TTLs (INFO keyspace), which the head's Valkey "
            f"{'.'.join(map(str, head))} lacks: a head of the source's Valkey version"
        )
    return None


def _link_down(target: Endpoint, replication: dict[str, str]) -> CutoverError:
    fields = (
        "master_host",
        "master_port",
        "master_link_status",
        "master_link_down_since_seconds",
        "master_sync_in_progress",
        "master_last_io_seconds_ago",
    )
    shown = ", ".join(f"{name}:{replication[name]}" for name in fields if name in replication)
    causes = "; ".join(f"'{line}': {meaning}" for line, meaning in LINK_DOWN_CAUSES)
    return CutoverError(
        f"{target}'s link to the source is down ({shown}). The reason is in the head's log "
        f"(kubectl logs <head pod> -c valkey): look for {causes}"
    )


def preflight(
    s: valkey.Valkey, source: Endpoint, head_version: tuple[int, ...], rdb_check: str, say: Callable[[str], None]
) -> None:
    """The source's checks alone, before the migration is configured: a head of ``head_version``
    (the stack's image) with ``rdb_check`` (its rdb-version-check) could replicate it."""
    kind, version = _source_checks(s, source)[:2]
    refusal = stream_refusal((kind, version), head_version, rdb_check, _volatile_hashes(s))
    if refusal:
        raise CutoverError(f"a Valkey {'.'.join(map(str, head_version))} head cannot replicate {source}: {refusal}")
    offset = int(info(s, "replication")["master_repl_offset"])
    say(f"{source}: {_name(kind, version)}, a primary at offset {offset}")
    for note in [n for n in (_check_psync(s, source), _check_persistence(s, source)) if n]:
        say(f"note: {note}")


def _source_checks(s: valkey.Valkey, source: Endpoint) -> tuple[str, tuple[int, ...], dict[str, str]]:
    """The source's kind, version and INFO replication; raises when it cannot be replicated from."""
    kind, version = _server(info(s, "server"))
    if kind == "Dragonfly":
        raise CutoverError(f"{source} is Dragonfly, which cannot be replicated from: {KEYSPACE_COPY}")
    own = info(s, "replication")
    if own.get("role") != "master":
        fenced = own.get("master_host", "").endswith(".invalid")  # the fence's name, or one like it
        raise CutoverError(
            f"{source} is fenced already (a replica of {own.get('master_host')}): a cut-over ran; to roll back, "
            "REPLICAOF NO ONE on it"
            if fenced
            else f"{source} is a replica of {own.get('master_host')}:{own.get('master_port')}: --source must be the "
            "primary the applications write to"
        )
    return kind, version, own


def check(
    s: valkey.Valkey, t: valkey.Valkey, source: Endpoint, target: Endpoint, say: Callable[[str], None]
) -> Checked:
    """Every check before anything changes; raises CutoverError saying what to do."""
    kind, version, own = _source_checks(s, source)
    notes = [note for note in (_check_psync(s, source), _check_persistence(s, source)) if note]
    head_version = _server(info(t, "server"))[1]
    refusal = stream_refusal((kind, version), head_version, config_value(t, "rdb-version-check"), _volatile_hashes(s))
    if refusal:
        raise CutoverError(f"{target} cannot replicate {source}: {refusal}")
    head = info(t, "replication")
    if head.get("role") != "slave":
        raise CutoverError(
            f"{target} is not a replica (role {head.get('role')}): --target must be the group's head while it "
            "replicates the source"
        )
    if head.get("master_link_status") != "up":
        raise _link_down(target, head)
    if head.get("master_replid") != own.get("master_replid"):
        raise CutoverError(
            f"{target} replicates {head.get('master_host')}:{head.get('master_port')}, another server than {source} "
            "(another replication ID): check --source and --target"
        )
    # The head read first: what the source wrote since adds to the lag, never makes it negative.
    offset = int(info(s, "replication")["master_repl_offset"])
    lag = offset - _offset(head)
    say(f"{source}: {_name(kind, version)}, a primary at offset {offset}")
    say(
        f"{target}: {_name('Valkey', head_version)}, its replica, link up, lag {lag} bytes, "
        f"last I/O {head.get('master_last_io_seconds_ago')} s ago"
    )
    if errors := int(info(t, "stats").get("total_error_replies", "0")):
        notes.append(
            f"the target has answered {errors} commands with errors since it started (INFO errorstats, any "
            "client's); a command from the source it cannot run is lost there and logged as '== CRITICAL == This "
            "replica is sending an error to its primary': look for that line in its log"
        )
    checked = Checked(_allowed(s, "CLIENT", "PAUSE", "1", "WRITE"), _allowed(s, "REPLICAOF", FENCE_HOST, "1"))
    for what, may in (("CLIENT PAUSE", checked.may_pause), ("REPLICAOF", checked.may_fence)):
        if may is not True:
            notes.append(f"the source {'refuses' if may is False else 'may refuse'} {what} to this login")
    for note in notes:
        say(f"note: {note}")
    return checked


@dataclass
class _Sent:
    """What promote sent to the source, whether answered or not: what putting back must undo."""

    pause: bool = False
    fence: bool = False


def _pause(s: valkey.Valkey, pause_timeout_s: float, sent: _Sent) -> None:
    sent.pause = True
    try:
        s.execute_command("CLIENT", "PAUSE", int(pause_timeout_s * 1000), "WRITE")
    except valkey.ResponseError as error:  # answered: not paused
        sent.pause = False
        raise CutoverError(
            f"the source refuses CLIENT PAUSE ... WRITE ({error}; Redis before 6.2 has no WRITE pause): stop the "
            "writers, then rerun with --writers-stopped"
        ) from error


def _wait_caught_up(s: valkey.Valkey, t: valkey.Valkey, target: Endpoint, deadline: float) -> int:
    while True:
        wanted, have = int(info(s, "replication")["master_repl_offset"]), _offset(info(t, "replication"))
        if have >= wanted:
            return wanted
        if time.monotonic() > deadline:
            raise CutoverError(f"{target} got only to offset {have} of the source's {wanted} in time")
        time.sleep(0.01)


def _wait_quiet(s: valkey.Valkey, t: valkey.Valkey, target: Endpoint, deadline: float) -> int:
    """With the writers stopped: the source's offset unchanged for QUIET_S, and the head there."""
    last, since = -1, time.monotonic()
    while True:
        wanted, now = int(info(s, "replication")["master_repl_offset"]), time.monotonic()
        if wanted != last:
            last, since = wanted, now
        elif now - since >= QUIET_S and _offset(info(t, "replication")) >= wanted:
            return wanted
        if now > deadline:
            raise CutoverError(
                f"the source's offset did not stay the same for {QUIET_S:g}s, or {target} did not reach it: "
                "are the writers stopped?"
            )
        time.sleep(0.05)


def _fence(
    s: valkey.Valkey, source: Endpoint, host: str, sent: _Sent, *, writers_stopped: bool, say: Callable[[str], None]
) -> bool:
    """The source replicates a name that resolves nowhere: it keeps its data and refuses writes.
    Returns whether it replicates that name; a refusal stops the cut-over unless the writers are
    stopped, and so does a source that would take writes as a replica (replica-read-only no)."""
    sent.fence = True  # from here on it may have run, whatever reply comes
    try:
        s.execute_command("REPLICAOF", host, source.port)
    except valkey.ResponseError as error:
        sent.fence = False  # answered: it did not run
        _not_fenced(f"the source refuses REPLICAOF ({error})", writers_stopped, say)
        return False
    if info(s, "replication").get("slave_read_only") == "0":
        why = "the source has replica-read-only no: as a replica it still takes writes"
        _not_fenced(why, writers_stopped, say, fix="CONFIG SET replica-read-only yes on it, or ")
    else:
        say(f"{source} replicates {host}:{source.port}, which resolves nowhere: it answers writes with READONLY")
    return True


def _not_fenced(why: str, writers_stopped: bool, say: Callable[[str], None], fix: str = "") -> None:
    if not writers_stopped:
        raise CutoverError(f"{why}: {fix}stop the writers, then rerun with --writers-stopped")
    say(f"WARNING: {why}. It STILL TAKES WRITES, which the new primary will never have: make sure nothing writes to it")


def _put_back(s: valkey.Valkey, sent: _Sent) -> list[str]:
    """Every change undone, each step tried whatever the others did; returns what failed. A fence
    whose reply was lost may have run: REPLICAOF NO ONE then (on a primary it changes nothing)."""
    steps: list[tuple[str, tuple[str, ...]]] = []
    if sent.fence:
        steps.append(("REPLICAOF NO ONE", ("REPLICAOF", "NO", "ONE")))
    if sent.pause:
        steps.append(("CLIENT UNPAUSE", ("CLIENT", "UNPAUSE")))
    failed = []
    for what, command in steps:
        try:
            s.execute_command(*command)
        except (valkey.ValkeyError, OSError) as error:
            failed.append(f"{what} ({error})")
    return failed


def _undone(error: BaseException, source: Endpoint, left: list[str]) -> CutoverError:
    what = str(error) or type(error).__name__
    if left:
        return CutoverError(
            f"{what}; putting {source} back failed: {'; '.join(left)}. Do that by hand: it must be a primary "
            "(REPLICAOF NO ONE) and unpaused (CLIENT UNPAUSE)"
        )
    return CutoverError(f"{what}; {source} is the primary again and unpaused: nothing changed")


def _promote_head(t: valkey.Valkey, target: Endpoint, fenced: bool) -> None:
    try:
        t.execute_command("REPLICAOF", "NO", "ONE")
    except (valkey.ValkeyError, OSError) as error:
        state = "fenced (it refuses writes)" if fenced else "not fenced"
        raise CutoverError(
            f"{target} could not be promoted, or its reply was lost ({error}); the source is {state}. Look at the "
            "head's role (INFO replication): if it is still a replica, REPLICAOF NO ONE on it by hand, or roll back "
            "with REPLICAOF NO ONE on the source"
        ) from error


def promote(
    source: Endpoint,
    target: Endpoint,
    *,
    pause_timeout_s: float = 10.0,
    fence_host: str = FENCE_HOST,
    writers_stopped: bool = False,
    log: Callable[[str], None] = print,
) -> Result:
    """The cut-over (the module's steps 1-7); raises CutoverError saying in which state things are."""
    if pause_timeout_s < MIN_PAUSE_S:
        raise CutoverError(f"a pause of {pause_timeout_s:g}s is too short (at least {MIN_PAUSE_S:g}s)")
    say = stamped(log)
    with source.session() as s, target.session() as t:
        try:
            checked = check(s, t, source, target, say)
        except (valkey.ValkeyError, OSError) as error:
            raise CutoverError(f"{error}: nothing changed") from error
        for what, may in (("CLIENT PAUSE", checked.may_pause), ("REPLICAOF", checked.may_fence)):
            if may is False and not writers_stopped:
                raise CutoverError(
                    f"the source refuses {what}: stop the writers, then rerun with --writers-stopped; nothing changed"
                )
        sent, paused_at = _Sent(), time.monotonic()
        try:
            if writers_stopped:
                offset = _wait_quiet(s, t, target, paused_at + QUIET_S + pause_timeout_s)
            else:
                _pause(s, pause_timeout_s, sent)
                say(f"writes paused on {source} (at most {pause_timeout_s:g}s)")
                offset = _wait_caught_up(s, t, target, paused_at + pause_timeout_s - MARGIN_S)
            say(f"{target} has offset {offset}")
            fenced = _fence(s, source, fence_host, sent, writers_stopped=writers_stopped, say=say)
            # Final now: a fenced source takes no writes and sends no PING. Wait for what came meanwhile;
            # the pause guards nothing any more (what waited gets READONLY), so at least a second.
            deadline = max(paused_at + pause_timeout_s - MARGIN_S, time.monotonic() + 1)
            offset = _wait_caught_up(s, t, target, deadline)
            say(f"{target} holds the source's final offset {offset}")
        except BaseException as error:  # an interrupt too: nothing may stay half done
            raise _undone(error, source, _put_back(s, sent)) from error
        _promote_head(t, target, fenced)
        say(f"{target} is the primary")
        pause_s = None
        if sent.pause:
            try:
                s.execute_command("CLIENT", "UNPAUSE")
                pause_s = time.monotonic() - paused_at
                say(f"{source} unpaused: the writes that waited there get READONLY")
            except (valkey.ValkeyError, OSError) as error:
                say(f"{source} could not be unpaused ({error}): its pause ends by itself")
        if fenced:
            _persist_fence(s, source, say)
        return Result(offset, pause_s, fenced, {"source": _keys(s), "target": _keys(t)})


def _persist_fence(s: valkey.Valkey, source: Endpoint, say: Callable[[str], None]) -> None:
    """The fence into the source's config file (CONFIG REWRITE), so a restart keeps it: a source
    that comes back as a primary takes writes the new primary never sees. After the promotion, so a
    failure here changes nothing of the cut-over."""
    try:
        s.execute_command("CONFIG", "REWRITE")
    except (valkey.ValkeyError, OSError) as error:
        say(
            f"WARNING: the fence is not in {source}'s config file (CONFIG REWRITE: {error}): a restart makes it a "
            "primary again, taking writes: stop it, or keep it from restarting and from failing over"
        )
        return
    say(f"{source}'s config file holds the fence (CONFIG REWRITE): it stays fenced across a restart")


def _keys(client: valkey.Valkey) -> dict[int, int]:
    """Keys per database for the report; empty when it cannot be read (the cut-over is done)."""
    try:
        return keyspace(client)
    except (valkey.ValkeyError, OSError):
        return {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.cutover", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("action", choices=("check", "promote"))
    parser.add_argument("--source", type=host_port, required=True, help="the server migrated from, HOST:PORT")
    parser.add_argument(
        "--target", type=host_port, help="the member to promote (pod 0, or the head), HOST:PORT; check: optional"
    )
    parser.add_argument(
        "--valkey-version", help="check without --target: the version of the stack's Valkey image, e.g. 9.1.2"
    )
    parser.add_argument(
        "--rdb-version-check",
        choices=("strict", "relaxed"),
        default="strict",
        help="check without --target: the instance's migration.rdbVersionCheck",
    )
    for end in ("source", "target"):
        parser.add_argument(f"--{end}-tls", action="store_true", help=f"connect to the {end} over TLS")
        parser.add_argument(f"--{end}-ca", help=f"CA bundle that signs the {end}'s certificate")
        parser.add_argument(f"--{end}-credentials", help="directory with the files username and password")
    parser.add_argument(
        "--pause-timeout", type=float, default=10.0, help="longest write pause (with --writers-stopped: wait), seconds"
    )
    parser.add_argument("--fence-host", default=FENCE_HOST, help="a name that resolves nowhere, for the fence")
    parser.add_argument("--writers-stopped", action="store_true", help="no pause: nothing writes to the source")
    args = parser.parse_args(argv)
    if args.target is None and (args.action == "promote" or not args.valkey_version):
        parser.error("--target is required, except for check with --valkey-version (a preflight)")
    ends = {}
    for end, default_user in (("source", None), ("target", "admin")):
        if getattr(args, end) is None:
            continue
        username, password = login(getattr(args, f"{end}_credentials"), end.upper(), default_user)
        host, port = getattr(args, end)
        tls, ca_file = getattr(args, f"{end}_tls"), getattr(args, f"{end}_ca")
        ends[end] = Endpoint(end, host, port, username, password, tls=tls, ca_file=ca_file, timeout_s=5.0)
    source, target = ends["source"], ends.get("target")
    try:
        if target is None:
            with source.session() as s:
                preflight(s, source, _version(args.valkey_version), args.rdb_version_check, stamped(print))
            print("cutover: the preflight passed: the source can be replicated from (run check again with --target)")
            return 0
        if args.action == "check":
            with source.session() as s, target.session() as t:
                check(s, t, source, target, stamped(print))
            print("cutover: the check passed")
            return 0
        result = promote(
            source,
            target,
            pause_timeout_s=args.pause_timeout,
            fence_host=args.fence_host,
            writers_stopped=args.writers_stopped,
        )
    except MigrationError as error:
        print(f"cutover: failed: {error}", file=sys.stderr)
        return 1
    except (valkey.ValkeyError, OSError) as error:
        print(f"cutover: failed ({type(error).__name__}: {error}); look at both nodes' roles", file=sys.stderr)
        return 1
    pause = "no pause (--writers-stopped)" if result.pause_s is None else f"writes paused {result.pause_s:.3f}s"
    print(f"cutover: done; {pause}; final offset {result.offset}; keys per database: {result.keys}")
    if result.fenced:
        print(
            "cutover: to roll back before any write reached the new primary: REPLICAOF NO ONE, then CONFIG REWRITE, "
            "on the source"
        )
    print("cutover: now remove the migration from the stack config and run pulumi up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
