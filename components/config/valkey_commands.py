"""The commands and ACL categories every supported Valkey version knows, read from real servers.

``valkey_commands.json`` holds, per version, ``COMMAND LIST`` (commands and ``container|sub``
subcommands) and ``ACL CAT`` with each category's members, as the servers the tests run report them
(``python tests/valkey_commands_dump.py`` rewrites it; ``tests/test_valkey_commands.py`` fails when
it drifts). An ACL rule naming a command or category the server does not know makes Valkey refuse to
start ("Unknown command or category name in ACL"), so the config accepts only what *every* supported
version knows: the same stack config must start on the old image and on the new one during an upgrade.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).with_name("valkey_commands.json")


@dataclass(frozen=True)
class VersionCommands:
    commands: frozenset[str]
    """Commands and ``container|subcommand`` names, lowercase."""
    categories: dict[str, frozenset[str]]
    """ACL category (without '@') -> its commands."""


@cache
def versions() -> dict[str, VersionCommands]:
    """Supported Valkey version -> what it knows."""
    return {
        number: VersionCommands(
            commands=frozenset(data["commands"]),
            categories={name: frozenset(members) for name, members in data["categories"].items()},
        )
        for number, data in json.loads(DATA.read_text()).items()
    }


@cache
def known_commands() -> frozenset[str]:
    """Commands and subcommands every supported version knows."""
    return frozenset.intersection(*(v.commands for v in versions().values()))


@cache
def known_categories() -> frozenset[str]:
    return frozenset.intersection(*(frozenset(v.categories) for v in versions().values()))


def category_members(category: str) -> frozenset[str]:
    """Commands in ``@category`` in any supported version (the union: what denying it may take away)."""
    return frozenset().union(*(v.categories.get(category, frozenset()) for v in versions().values()))


def versions_knowing(name: str) -> list[str]:
    """Supported versions that know ``name``: a command, or a category without its '@'."""
    return sorted(n for n, v in versions().items() if name in v.commands or name in v.categories)
