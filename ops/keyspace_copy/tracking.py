"""Which keys the source's writers change while the copy runs: keyspace notifications.

Before the first key is read, the tracker subscribes to ``__keyspace@*__:*`` on the source (and
turns the notifications on, ``notify-keyspace-events`` with ``K`` and ``A``, restoring the
source's own setting when it stops). Every event names a key that changed after the
subscription; the copier copies it again. Nothing a writer does after that moment is missed, with
these exceptions: ``FLUSHDB``/``FLUSHALL`` and ``SWAPDB`` send no per-key event (the verification's
counts show them), nor do ``XREADGROUP``, ``XACK``, ``XCLAIM`` and ``XAUTOCLAIM``, which change a
stream's consumer groups (the copier copies every stream once more at the end).

**Barrier**: the source runs commands one at a time and queues each event on the subscriber's
connection as the command runs. So once a message the tracker itself publishes on a channel it
listens to has arrived, every event of every command the source ran before it has arrived too
(``sync``). With the writers stopped, a drained tracker after a barrier means the target holds
everything. A subscription that breaks (a lost connection, the source's pub/sub output-buffer
limit) loses events: ``lost`` is then set and the copy must start over.

**Settings the tool does not make** (``configured``: a managed service refusing CONFIG): where
the source still answers ``CONFIG GET``, a setting without K and A stops the copy at once. Where
it does not, each barrier checks, until a first event has come, that the source took no write
since the subscription (``rdb_changes_since_last_save``, which counts the changes to its data and
nothing the copy does): writes without a single event mean the notifications are off, and every
key those writes changed would stay stale on the target, which the verification's sample may not
show; so the copy stops, before it verifies. Of the source's counters, this one moves with the
writes that send events and with little else (the replication offset moves with pings to replicas
and ``PUBLISH`` too, the command count with the copy's own reads): only the few writes that send
no event move it as well, so stream consumers alone (``XREADGROUP``, ``XACK``) stop it the same way.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict

import valkey

from .endpoint import Endpoint, MigrationError, config_value, info, refusal

PATTERN = b"__keyspace@*__:*"
FLAGS = "KA"
"""K: keyspace events (the key in the channel name); A: every class of command, expiry and eviction."""


class WriteTracker:
    def __init__(self, source: Endpoint, configured: bool = False) -> None:
        """``configured``: the source's notify-keyspace-events already holds K and A (a managed
        service that refuses CONFIG, set in its parameter group): the tracker leaves it alone."""
        self._source = source
        self._configured = configured
        self._lock = threading.Lock()
        self._dirty: dict[int, set[bytes]] = defaultdict(set)
        self._barriers: dict[bytes, threading.Event] = {}
        self._original: str | None = None
        self._client: valkey.Valkey | None = None
        self._pubsub: valkey.client.PubSub | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.lost: str | None = None
        """Why events may have been missed, once they may have."""
        self.events = 0
        self._writes_at_start: tuple[int, str] | None = None

    def start(self) -> str | None:
        """Subscribe (after turning the notifications on, unless ``configured``); a note for the log
        when whether events arrive cannot be checked, if so."""
        if self._configured:
            self._check_configured()
        else:
            self._turn_on()
        self._subscribe()
        if not self._configured:
            return None
        # Read once subscribed: every write it counts from here on sends its event to the tracker.
        self._writes_at_start = self._writes()
        if self._writes_at_start is None:
            return (f"{self._source} reports no rdb_changes_since_last_save: whether its keyspace notifications "
                    "arrive cannot be checked; they must be on (notify-keyspace-events KA)")  # fmt: skip
        return None

    def _check_configured(self) -> None:
        """A source that answers CONFIG GET after all: its setting must hold K and A."""
        with self._source.session() as client:
            try:
                setting = config_value(client, "notify-keyspace-events")
            except valkey.ResponseError:
                return  # refused, as the flag says: the barriers check that events come
        if not ("K" in setting and "A" in setting):
            raise MigrationError(
                f"{self._source}'s notify-keyspace-events is {setting!r}, without K and A, though the copy was run "
                "with --notifications-configured: no change made during the copy would be tracked. Set it to KA "
                "(on a managed service, in its parameter group), or run the copy without "
                "--notifications-configured, which turns it on where CONFIG SET is allowed"
            )

    def _writes(self) -> tuple[int, str] | None:
        """The source's changes since its last save, and that save's time (a save resets the count)."""
        with self._source.session() as client:
            persistence = info(client, "persistence")
        changes, saved = persistence.get("rdb_changes_since_last_save", ""), persistence.get("rdb_last_save_time")
        return (int(changes), saved) if changes.isdigit() and saved else None

    def _check_events_arrive(self, writes: tuple[int, str] | None) -> None:
        """``writes``: read before the barrier that has just come back, so every event of the writes
        it counts has come too."""
        start = self._writes_at_start
        if start is None or writes is None or self.events:
            return
        wrote = writes[0] > start[0] if writes[1] == start[1] else writes[0] > 0
        if wrote:
            raise MigrationError(
                f"{self._source} took writes since the copy subscribed to its keyspace notifications "
                f"(rdb_changes_since_last_save {start[0]} -> {writes[0]}), and not one event came: its "
                "notifications seem off, though the copy was run with --notifications-configured. Set its "
                "notify-keyspace-events to KA (on a managed service, in its parameter group), then run the copy "
                "again with --start-over. Nothing was verified. (Stream consumers' XREADGROUP and XACK send no "
                "event: if they alone wrote, the setting may be right, and the rerun shows it.)"
            )

    def _turn_on(self) -> None:
        with self._source.session() as client:
            try:
                original = config_value(client, "notify-keyspace-events")
                if not ("K" in original and "A" in original):
                    client.config_set("notify-keyspace-events", original + FLAGS)
                    self._original = original
            except valkey.ResponseError as error:
                raise MigrationError(
                    f"{self._source} does not let this tool turn on keyspace notifications ({error}): set its "
                    "notify-keyspace-events to KA yourself (on a managed service, in its parameter group), or stop "
                    "every writer for the whole copy and run it with --no-track-writes; if it is set already, run it "
                    "with --notifications-configured"
                ) from error

    def _subscribe(self) -> None:
        self._client = self._source.connect()
        self._pubsub = self._client.pubsub()
        try:
            self._pubsub.psubscribe(PATTERN)
            confirmed = self._pubsub.get_message(timeout=self._source.timeout_s)
        except valkey.ResponseError as error:  # a user without the channels (&__keyspace@*)
            raise refusal(error, self._source) from error
        if not confirmed or confirmed.get("type") != "psubscribe":
            raise MigrationError(f"{self._source} did not confirm the keyspace subscription ({confirmed!r})")
        self._thread = threading.Thread(target=self._listen, name="write-tracker", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        assert self._pubsub is not None
        try:
            while not self._stopping.is_set():
                message = self._pubsub.get_message(timeout=0.5)
                if message is None or message.get("type") != "pmessage":
                    continue
                channel: bytes = message["channel"]
                prefix, _, key = channel.partition(b"__:")
                db = int(prefix.removeprefix(b"__keyspace@"))
                with self._lock:
                    barrier = self._barriers.get(key)
                    if barrier is not None and message["data"] == b"barrier":
                        barrier.set()
                        continue
                    self._dirty[db].add(key)
                    self.events += 1
        except Exception as error:  # noqa: BLE001 - any failure means events may be missing
            if not self._stopping.is_set():
                self.lost = f"the keyspace subscription broke ({type(error).__name__}: {error})"

    def take(self) -> dict[int, set[bytes]]:
        """The keys changed since the last take, per database; the tracker starts a new set."""
        with self._lock:
            dirty, self._dirty = self._dirty, defaultdict(set)
        return dict(dirty)

    def pending(self) -> int:
        with self._lock:
            return sum(len(keys) for keys in self._dirty.values())

    def sync(self, timeout_s: float = 10.0) -> None:
        """Return once every event of every command the source ran before this call has arrived."""
        token = b"valkey-migration-barrier-" + secrets.token_hex(8).encode()
        writes = self._writes() if self._writes_at_start is not None and not self.events else None
        arrived = threading.Event()
        with self._lock:
            self._barriers[token] = arrived
        try:
            with self._source.session() as client:
                client.publish(b"__keyspace@0__:" + token, b"barrier")
            deadline = time.monotonic() + timeout_s
            while not arrived.wait(0.1):
                if self.lost is not None:
                    raise MigrationError(f"{self.lost}: writes may have been missed; start the copy again")
                if time.monotonic() > deadline:
                    raise MigrationError(f"{self._source} did not deliver the tracker's barrier within {timeout_s:g}s")
        finally:
            with self._lock:
                self._barriers.pop(token, None)
        self._check_events_arrive(writes)

    def stop(self) -> str | None:
        """Unsubscribe and give the source back its own setting; what could not be done, if anything
        (never raised: it must not hide why the copy stopped)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pubsub is not None:
            self._pubsub.close()
        if self._client is not None:
            self._client.close()
        if self._original is not None:
            try:
                with self._source.session() as client:
                    client.config_set("notify-keyspace-events", self._original)
            except (MigrationError, valkey.ValkeyError, OSError) as error:
                return (f"could not set {self._source}'s notify-keyspace-events back to {self._original!r} ({error}): "
                        "set it by hand")  # fmt: skip
        return None
