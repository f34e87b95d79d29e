"""How far the copy is: a log line now and then, and the same figures as Prometheus metrics."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

METRICS = (
    ("valkey_migration_keys_copied_total", "counter", "Keys written to the target (bulk pass and changed keys)."),
    ("valkey_migration_bytes_copied_total", "counter", "DUMP payload bytes written to the target."),
    ("valkey_migration_keys_expected", "gauge", "Keys the source held when the bulk pass started."),
    ("valkey_migration_pending_keys", "gauge", "Keys changed on the source and not copied again yet."),
    ("valkey_migration_bulk_done", "gauge", "1 once every key of the source has been copied once."),
    ("valkey_migration_synced_timestamp_seconds", "gauge", "When the target last held every write made before it."),
    ("valkey_migration_verified", "gauge", "1: the last verification matched; 0: it did not; absent: none yet."),
)


@dataclass
class Progress:
    expected: int = 0
    keys: int = 0
    bytes: int = 0
    pending: int = 0
    bulk_done: bool = False
    synced_at: float | None = None
    verified: bool | None = None
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, keys: int, payload_bytes: int) -> None:
        with self._lock:
            self.keys += keys
            self.bytes += payload_bytes

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate, mb_rate = self.keys / elapsed, self.bytes / elapsed / 1e6
        share = f" of {self.expected} ({100 * self.keys / self.expected:.1f}%)" if self.expected else ""
        left = self.expected - self.keys
        eta = f", ETA {left / rate:.0f}s" if not self.bulk_done and rate > 0 and left > 0 else ""
        return (
            f"copied {self.keys} keys{share}, {self.bytes / 1e6:.1f} MB in {elapsed:.1f}s: "
            f"{rate:.0f} keys/s, {mb_rate:.1f} MB/s{eta}; {self.pending} changed keys pending"
        )

    def metrics(self) -> str:
        """Prometheus text exposition format."""
        values = {
            "valkey_migration_keys_copied_total": self.keys,
            "valkey_migration_bytes_copied_total": self.bytes,
            "valkey_migration_keys_expected": self.expected,
            "valkey_migration_pending_keys": self.pending,
            "valkey_migration_bulk_done": int(self.bulk_done),
            "valkey_migration_synced_timestamp_seconds": None if self.synced_at is None else self.synced_at,
            "valkey_migration_verified": None if self.verified is None else int(self.verified),
        }
        lines = []
        for name, kind, help_text in METRICS:
            value = values[name]
            if value is None:
                continue
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"
