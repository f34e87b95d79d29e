"""Copy a live Redis-protocol keyspace into this program's Valkey: ``python -m ops.keyspace_copy``.

For sources Valkey cannot replicate from (docs/migration.md): Dragonfly, Redis 7.4 and later,
managed services that block ``SYNC``/``PSYNC``. ``copier.py`` says how; ``tracking.py`` how
writes made during the copy reach the target; ``verify.py`` what is compared at the end.
"""
