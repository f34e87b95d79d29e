"""The command-line conventions that ``ops.keyspace_copy`` and ``ops.cutover`` share: an endpoint
is ``HOST:PORT``, and a login comes from a credentials directory or the environment, never from
an argument."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def host_port(value: str) -> tuple[str, int]:
    """An argument HOST:PORT (argparse's ``type``)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"HOST:PORT expected, got {value!r}")
    return host, int(port)


def login(directory: str | None, prefix: str, default_user: str | None) -> tuple[str | None, str | None]:
    """A login: the files ``username`` and ``password`` of ``directory`` (a mounted Secret), else
    ``PREFIX_USERNAME``/``PREFIX_PASSWORD``; the user ``default_user`` when none is given."""
    if directory is not None:
        folder = Path(directory)
        user_file, password_file = folder / "username", folder / "password"
        username = user_file.read_text().strip() if user_file.exists() else default_user
        password = password_file.read_text().rstrip("\n") if password_file.exists() else None
        return username or None, password
    username = os.environ.get(f"{prefix}_USERNAME") or default_user
    return username, os.environ.get(f"{prefix}_PASSWORD") or None
