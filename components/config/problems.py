"""What is wrong with a configuration, phrased for the person who wrote it, and the one message
that lists every problem. Pure: the loader and the primary stack's check both report through it."""

from __future__ import annotations

from dataclasses import dataclass

from .types import human

PROJECT = "valkey"
"""The config namespace: keys are written ``valkey:<key>``."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, phrased for the person who wrote it."""

    key: str
    """Config key path without the namespace, e.g. ``instances.sessions.maxmemory``."""
    given: object
    accepted: str


class Described(str):
    """A given value already phrased for the reader (``2147483648 bytes (2Gi)``): shown unquoted."""

    def __repr__(self) -> str:
        return str(self)


def not_shown(given: object) -> Described:
    """In place of a value that may be secret: its size only."""
    size = f"{len(given)} characters" if isinstance(given, str | list | dict) else type(given).__name__
    return Described(f"<a value of {size}, not shown: it may be secret>")


def format_problems(problems: list[Problem], stack: str, project: str = PROJECT, title: str | None = None) -> str:
    """One line per problem under a title: ``  <project>:<key>: given <value>; accepted: <what>``."""
    title = title or f"Invalid configuration for stack {stack!r}"
    lines = [f"{title} ({len(problems)} problem(s)):"]
    for p in problems:
        given = "nothing (not set)" if p.given is None else repr(p.given)
        if isinstance(p.given, bool):
            given = str(p.given).lower()  # as a stack file writes it
        lines.append(f"  {project}:{p.key}: given {given}; accepted: {p.accepted}")
    return "\n".join(lines)


def described_size(value: int) -> Described:
    return Described(f"{int(value)} bytes ({human(int(value))})")
