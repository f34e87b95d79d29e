"""The copy itself: every key of every database, with its value and remaining TTL, in batches.

1. **Checks**: both ends answer; the target is a primary and empty (or holds this tool's
   checkpoint from an earlier run): the copy never overwrites a key it did not write.
2. **Tracking** (``tracking.py``) starts before the first key is read.
3. **Bulk pass**, per database: ``SCAN`` a batch, read each key's ``PTTL`` and ``DUMP`` in one
   pipeline, write them with ``RESTORE … REPLACE`` in another (a key gone meanwhile is deleted on
   the target too). After every batch the checkpoint (a hash in the target's database 0) records
   the cursor.
4. **Changed keys**: after a barrier (``WriteTracker.sync``), every key an event named is read and
   written again. Without ``follow`` that repeats until a round finds none (the writers must be
   stopped); with ``follow`` it repeats every ``sync_every_s`` until ``stop`` is set, and each
   round records ``synced_at``: the target then held every write the source took before it.
5. **Verification** (``verify.py``), then the checkpoint is deleted.

**Stopping**: ``interrupt`` (SIGTERM) is looked at between any two batches of every step, the
verification's included: the copy then raises ``Interrupted`` and keeps its checkpoint. So does a
connection lost once the checks have passed, a target that restarted (its ``run_id``, looked at
every round) or that became a replica (``READONLY``): each is ``Resumable``, and the Job retries.

**Resuming**: a run that finds a checkpoint continues from its cursor only if the source has
taken no write since that copy began (the same ``run_id``, ``rdb_changes_since_last_save`` and
``rdb_last_save_time`` as recorded): writes made while no copy ran were tracked by nobody. Else
it stops and says so; ``start_over`` (after a person has checked the source still holds the
data) empties the target, which holds nothing but that copy, and copies again. It never empties
the target on its own: a source that restarted empty would otherwise take the only copy along.

Memory: one batch of keys and their payloads at a time (``batch`` keys; a single key's payload is
as large as its value), and the set of changed keys not yet copied.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import valkey

from .endpoint import (
    Endpoint,
    MigrationError,
    Resumable,
    Unreachable,
    config_value,
    info,
    keyspace,
    refusal,
    scan,
    scan_all,
)
from .progress import Progress
from .tracking import WriteTracker
from .verify import Verification, verify

READ_AHEAD = 2
STREAM_BATCH = 16
"""Streams per read when every stream is copied once more: a stream is read whole, so a batch of
``batch`` of them could be a reply of gigabytes."""
CHECKPOINT_KEY = "valkey-migration:checkpoint"
"""A hash in the target's database 0 while a copy is under way; deleted once it is verified."""


READ_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  out[2 * i - 1] = redis.call('PTTL', key)
  out[2 * i] = redis.call('DUMP', key)
end
return out
"""
"""A batch's PTTLs and DUMPs in one call (a key gone meanwhile: DUMP's nil, which Lua holds as false)."""


@dataclass(frozen=True)
class Options:
    batch: int = 1000
    """Keys per SCAN and per pipeline."""
    track_writes: bool = True
    """False: the writers are stopped for the whole copy (nothing changes on the source)."""
    follow: bool = False
    """Keep copying changed keys until ``stop`` is set (a Job until its cut-over)."""
    notifications_configured: bool = False
    """The source's notify-keyspace-events already holds K and A: do not read or set it (CONFIG)."""
    start_over: bool = False
    """Empty a target that holds an unfinished copy which cannot resume, and copy again."""
    sample: int = 1000
    """Keys whose values and TTLs the verification compares (every key's type is counted)."""
    sync_every_s: float = 0.25
    """How often a following copy copies what changed: the target trails the source by about this."""
    log_every_s: float = 10.0


@dataclass
class Report:
    progress: Progress
    verification: Verification
    resumed: bool


def _source_marks(client: valkey.Valkey) -> dict[bytes, bytes]:
    server, persistence = info(client, "server"), info(client, "persistence")
    return {
        b"run_id": server.get("run_id", "").encode(),
        b"changes": persistence.get("rdb_changes_since_last_save", "").encode(),
        b"save_time": persistence.get("rdb_last_save_time", "").encode(),
    }


def source_version(client: valkey.Valkey) -> str:
    server = info(client, "server")
    for name in ("dragonfly_version", "valkey_version", "redis_version"):
        if name in server:
            return f"{name.split('_')[0]} {server[name]}"
    return "unknown version"


class Interrupted(Resumable):
    """Stopped before its end (SIGTERM: an eviction, a drain, a replaced Job): nothing verified,
    the checkpoint kept; a rerun resumes where it can."""


class Copier:
    def __init__(
        self, source: Endpoint, target: Endpoint, options: Options = Options(), log: Callable[[str], None] = print
    ) -> None:
        self.source, self.target, self.options = source, target, options
        self.progress = Progress()
        self._log = log
        self._last_log = 0.0
        self._tracker: WriteTracker | None = None
        self._marks: dict[bytes, bytes] = {}
        self._script: Any = None
        self._interrupt = threading.Event()
        self._cutover = threading.Event()
        self._cue_noted = False
        self._checked = False
        self._target_run_id = ""
        self.bulk_done = threading.Event()
        self.version = ""

    def log(self, message: str) -> None:
        self._log(f"keyspace-copy: {message}")

    def run(self, cutover: threading.Event | None = None, interrupt: threading.Event | None = None) -> Report:
        """``cutover``: a following copy's cue that the writers have stopped (copy what is left,
        verify, finish). ``interrupt``: stop at the next batch or round without verifying
        (Interrupted); the checkpoint stays for a rerun. Raises MigrationError (the message says
        what to do) or Resumable (a rerun resumes where it can), never a server's error reply."""
        self._cutover = cutover or threading.Event()
        self._interrupt = interrupt or threading.Event()
        try:
            return self._run()
        except valkey.ResponseError as error:
            raise refusal(error) from error
        except Unreachable as error:
            if not self._checked:
                raise  # an address or login that never worked: a retry would not mend it
            raise Resumable(
                f"lost {error.endpoint} ({error.cause}): it restarted or failed over; a rerun (the Job retries it) "
                "resumes where it can"
            ) from error
        except (valkey.ConnectionError, valkey.TimeoutError) as error:
            raise Resumable(
                f"a connection was lost ({type(error).__name__}: {error}); a rerun resumes where it can"
            ) from error

    def _run(self) -> Report:
        cutover = self._cutover
        start_at = self._check()
        self._checked = True
        with self.source.session() as s:
            self._script = s.register_script(READ_SCRIPT)
        try:
            if self.options.track_writes:
                self._tracker = WriteTracker(self.source, configured=self.options.notifications_configured)
                note = self._tracker.start()
                self.log("tracking the source's writes (keyspace notifications)")
                if note:
                    self.log(note)
            self._bulk(start_at)
            self.progress.bulk_done = True
            self.bulk_done.set()
            self.log(f"bulk pass done: {self.progress.line()}")
            if self._tracker is None:
                self._check_untouched()
            if self._tracker is not None:
                if self.options.follow:
                    while not cutover.wait(self.options.sync_every_s):
                        self._interrupted()
                        self._sync_round()
                    self.log("cut-over: copying what changed last, then verifying")
                self._catch_up()
            self._interrupted()
            self.log(f"verifying: every key's type on both ends, {self.options.sample} values sampled")
            verification = verify(
                self.source, self.target, self.options.sample, {0: {CHECKPOINT_KEY.encode()}}, self._interrupted
            )
        finally:
            if self._tracker is not None:
                problem = self._tracker.stop()
                if problem:
                    self.log(problem)
        self.progress.verified = verification.ok
        self.log(verification.summary())
        if verification.ok:
            with self.target.session() as t:
                t.delete(CHECKPOINT_KEY)
        return Report(self.progress, verification, resumed=start_at != (0, 0))

    # 1. Checks and the checkpoint.
    def _check(self) -> tuple[int, int]:
        with self.source.session() as s, self.target.session() as t:
            self.version = source_version(s)
            try:
                scan(s, 0, 1, "string")
            except valkey.ResponseError as error:
                raise MigrationError(
                    f"{self.source} does not answer SCAN 0 COUNT 1 TYPE string ({error}; it runs {self.version}): the "
                    "copy needs SCAN with TYPE (Redis 6.0 and later) to copy the streams once more and to verify. An "
                    "older Redis can migrate by replication instead (docs/migration.md)"
                ) from error
            self._target_run_id = info(t, "server").get("run_id", "")
            role = info(t, "replication").get("role")
            if role != "master":
                raise MigrationError(
                    f"{self.target} is a {role}, not a primary: copy into the instance's primary (its host endpoint), "
                    "and not into one that replicates a migration source"
                )
            databases = int(config_value(t, "databases") or 16)
            source_dbs = keyspace(s)
            too_high = [db for db in source_dbs if db >= databases]
            if too_high:
                raise MigrationError(f"the source uses databases {too_high}; the target has only {databases}")
            self.progress.expected = sum(source_dbs.values())
            if s.execute_command("EXISTS", CHECKPOINT_KEY):
                raise MigrationError(f"{self.source} holds a key named {CHECKPOINT_KEY!r}, this tool's checkpoint")
            checkpoint: dict[bytes, bytes] = t.execute_command("HGETALL", CHECKPOINT_KEY)
            held = keyspace(t)
            held[0] = held.get(0, 0) - (1 if checkpoint else 0)
            if not checkpoint and any(held.values()):
                raise MigrationError(
                    f"{self.target} already holds {sum(held.values())} keys and no checkpoint of an earlier copy: "
                    "copy only into an empty instance, so that nothing in it is overwritten"
                )
            marks = self._marks = _source_marks(s)
            self.log(f"{self.source} runs {self.version} and holds {self.progress.expected} keys in {len(source_dbs)} "
                     f"database(s) {sorted(source_dbs)}")  # fmt: skip
            if checkpoint:
                # A source that reports no marks (not Redis or Valkey) cannot show it took no write.
                same = all(value and checkpoint.get(name) == value for name, value in marks.items())
                if same and checkpoint.get(b"tracked") == (b"1" if self.options.track_writes else b"0"):
                    db, cursor = int(checkpoint[b"db"]), int(checkpoint[b"cursor"])
                    self.progress.add(int(checkpoint[b"keys"]), int(checkpoint[b"bytes"]))
                    self.log(f"resuming from the checkpoint: database {db}, cursor {cursor}, {self.progress.keys} "
                             "keys copied before; the source took no write since")  # fmt: skip
                    return db, cursor
                if not self.options.start_over:
                    why = "restarted" if checkpoint.get(b"run_id") != marks[b"run_id"] else "took writes"
                    raise MigrationError(
                        f"{self.target} holds an earlier copy that stopped before it ended ({int(checkpoint[b'keys'])} "
                        f"keys written), and {self.source} {why} since: it cannot resume, as keys changed or deleted "
                        f"meanwhile would stay stale. Check that the source holds the data (it has "
                        f"{self.progress.expected} keys now), then run the copy with --start-over, which empties "
                        "the target first (it holds nothing but that copy)"
                    )
                t.execute_command("FLUSHALL")
                self.log(f"starting over: emptied {self.target}, which held an earlier, unfinished copy")
            t.hset(CHECKPOINT_KEY, mapping={**marks, b"db": 0, b"cursor": 0, b"keys": 0, b"bytes": 0,
                                            b"tracked": int(self.options.track_writes)})  # fmt: skip
            return 0, 0

    # 3. The bulk pass.
    def _bulk(self, start_at: tuple[int, int]) -> None:
        """Per database, a reader thread scans and reads the next batch while this one writes the
        last: at most two batches wait between them (``READ_AHEAD``)."""
        with self.source.session() as s:
            dbs = sorted(db for db in keyspace(s) if db >= start_at[0])
        with self.target.session() as checkpoint:
            for db in dbs:
                batches: queue.Queue[tuple[int, list[bytes], list[Any]] | BaseException] = queue.Queue(READ_AHEAD)
                cursor = start_at[1] if db == start_at[0] else 0
                with self.source.session(db) as s, self.target.session(db) as t:
                    threading.Thread(target=self._scan_db, args=(s, cursor, batches), daemon=True).start()
                    while True:
                        item = batches.get()
                        if isinstance(item, BaseException):
                            raise item
                        cursor, keys, replies = item
                        self._write(t, keys, replies)
                        # A database gone through: the next one is where a rerun starts.
                        at = (db, cursor) if cursor else (db + 1, 0)
                        checkpoint.hset(CHECKPOINT_KEY, mapping={b"db": at[0], b"cursor": at[1],
                                        b"keys": self.progress.keys, b"bytes": self.progress.bytes})  # fmt: skip
                        self._interrupted()
                        if self._tracker is not None and self._tracker.lost is not None:
                            raise MigrationError(f"{self._tracker.lost}: writes may have been missed; run it again")
                        self._maybe_log()
                        if cursor == 0:
                            break

    def _interrupted(self) -> None:
        """Raise Interrupted once a stop was asked; say once that a cut-over's cue has no effect on
        a copy that does not follow (it ends on its own: its writers must be stopped already)."""
        if self._interrupt.is_set():
            raise Interrupted(f"interrupted: {self.progress.line()}; the checkpoint stays for a rerun")
        if self._cutover.is_set() and not self.options.follow and not self._cue_noted:
            self._cue_noted = True
            self.log("the cut-over's cue (SIGUSR1) has no effect without --follow: this copy copies what changed "
                     "until a round finds nothing, verifies and ends on its own")  # fmt: skip

    def _scan_db(self, s: valkey.Valkey, cursor: int, batches: queue.Queue[Any]) -> None:
        try:
            while True:
                cursor, keys = scan(s, cursor, self.options.batch)
                batches.put((cursor, keys, self._read(s, keys) if keys else []))
                if cursor == 0:
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the writer, which raises it
            batches.put(error)

    def _copy(self, s: valkey.Valkey, t: valkey.Valkey, keys: list[bytes]) -> None:
        if keys:
            self._write(t, keys, self._read(s, keys))

    def _write(self, t: valkey.Valkey, keys: list[bytes], replies: list[Any]) -> None:
        """RESTORE … REPLACE each key read (``replies``: its PTTL and DUMP), DEL those gone."""
        restores: list[Any] = []
        gone: list[bytes] = []
        payload_bytes = 0
        for key, ttl, payload in zip(keys, replies[0::2], replies[1::2], strict=True):
            if payload is None or ttl == 0:  # gone since the SCAN, or expiring this very millisecond
                gone.append(key)
                continue
            restores += [key, ttl if isinstance(ttl, int) and ttl > 0 else 0, payload]
            payload_bytes += len(payload)
        write = t.pipeline(transaction=False)
        if gone:
            write.execute_command("DEL", *gone)
        for i in range(0, len(restores), 3):
            write.execute_command("RESTORE", restores[i], restores[i + 1], restores[i + 2], "REPLACE")
        for reply in write.execute(raise_on_error=False):
            if isinstance(reply, valkey.ResponseError):
                raise self._restore_error(reply)
        self.progress.add(len(restores) // 3, payload_bytes)

    def _read(self, s: valkey.Valkey, keys: list[bytes]) -> list[Any]:
        """Each key's PTTL and DUMP, in that order: one script call per batch where the source runs
        scripts (one reply to parse instead of two per key), else a pipeline."""
        if self._script is not None:
            try:
                return list(self._script(keys=keys, client=s))
            except valkey.ResponseError as error:
                self.log(f"{self.source} does not run the read script ({error}): reading with pipelines instead")
                self._script = None
        read = s.pipeline(transaction=False)
        for key in keys:
            read.execute_command("PTTL", key)
            read.execute_command("DUMP", key)
        replies: list[Any] = read.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise MigrationError(
                    f"{self.source} refused to read a key ({reply}): its user needs SCAN, PTTL and DUMP on every "
                    "key; a service that blocks DUMP cannot be copied by this tool"
                )
        return replies

    def _restore_error(self, error: valkey.ResponseError) -> MigrationError | Resumable:
        if "payload version" in str(error) or "checksum" in str(error):
            return MigrationError(
                f"{self.target} cannot load {self.source}'s DUMP payloads ({error}; the source runs {self.version}). "
                "A source newer than the target's RDB format (Redis 7.4 and later write RDB 12) needs "
                "rdb-version-check relaxed on the target (Valkey 8.1 and later), and values of types Valkey does "
                "not have (hash fields with their own TTL) cannot be copied this way. Nothing the target held "
                "before the copy was overwritten"
            )
        return refusal(error, self.target, "a RESTORE")

    def _maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last_log >= self.options.log_every_s:
            self._last_log = now
            if self._tracker is not None:
                self.progress.pending = self._tracker.pending()
            self.log(self.progress.line())

    def _check_untouched(self) -> None:
        """Without tracking, the source must not have changed while the copy ran."""
        with self.source.session() as s:
            marks = _source_marks(s)
        if not all(marks.values()):
            self.log(f"{self.source} does not report rdb_changes_since_last_save: whether it took writes during the "
                     "copy cannot be checked; the writers must have been stopped")  # fmt: skip
        elif marks != self._marks:
            raise MigrationError(
                f"{self.source} took writes while the copy ran without tracking them (rdb_changes_since_last_save "
                f"{self._marks[b'changes'].decode()} -> {marks[b'changes'].decode()}): keys copied early may be "
                "stale. Stop every writer and run it again (it starts over), or run it with write tracking"
            )

    # 4. Changed keys.
    def _drain(self) -> int:
        assert self._tracker is not None
        if self._tracker.lost is not None:
            raise MigrationError(f"{self._tracker.lost}: writes may have been missed; start the copy again")
        changed = self._tracker.take()
        for db, keys in sorted(changed.items()):
            with self.source.session(db) as s, self.target.session(db) as t:
                ordered = sorted(keys)
                for i in range(0, len(ordered), self.options.batch):
                    self._interrupted()
                    self._copy(s, t, ordered[i : i + self.options.batch])
        self.progress.pending = self._tracker.pending()
        return sum(len(keys) for keys in changed.values())

    def _sync_round(self) -> int:
        """Copy every key changed before this round began; ``synced_at`` is that moment (wall clock)."""
        assert self._tracker is not None
        self._interrupted()
        self._check_target()
        before = time.time()
        self._tracker.sync()
        copied = self._drain()
        self.progress.synced_at = before
        self._maybe_log()
        return copied

    def _check_target(self) -> None:
        """A target that restarted may have lost its last second of writes (its AOF's fsync), which
        the copy counts as copied."""
        with self.target.session() as t:
            run_id = info(t, "server").get("run_id", "")
        if run_id != self._target_run_id:
            raise Resumable(
                f"{self.target} restarted (its run_id changed): writes it took last may be lost. A rerun (the Job "
                "retries it) resumes where it can, else it says why not"
            )

    def _catch_up(self) -> None:
        """Rounds until one finds no changed key: with the writers stopped, the target then holds
        everything. Then every stream once more: XREADGROUP, XACK, XCLAIM and XAUTOCLAIM change a
        consumer group (its pending entries, last-delivered ID) without a keyspace event."""
        while self._sync_round():
            pass
        streams = 0
        with self.source.session() as s:
            dbs = sorted(keyspace(s))
        for db in dbs:
            with self.source.session(db) as s, self.target.session(db) as t:
                for keys in scan_all(s, self.options.batch, "stream"):
                    for i in range(0, len(keys), STREAM_BATCH):
                        self._interrupted()
                        self._copy(s, t, keys[i : i + STREAM_BATCH])
                    streams += len(keys)
        if streams:
            self.log(f"copied the {streams} stream(s) once more, for their consumer groups")
        self.log(f"in sync: the target holds every write the source took before {self.progress.synced_at:.3f}")
