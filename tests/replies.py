"""Replies of valkey-py's synchronous client, with the types they have.

valkey-py gives its sync and asyncio clients one signature per command, returning
``Awaitable[Any] | Any``: a sync client's reply is never the awaitable half. These helpers check
that and say what a reply holds, so tests index it without casts.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any

import valkey


def sync(reply: Awaitable[Any] | Any) -> Any:
    """A synchronous client's reply, checked not to be an awaitable."""
    assert not inspect.isawaitable(reply), f"an awaitable reply from a synchronous client: {reply!r}"
    return reply


def info(client: valkey.Valkey, section: str) -> dict[str, Any]:
    """``INFO <section>``, parsed by valkey-py (numbers as numbers, ``slave0`` as a dict)."""
    reply = sync(client.info(section))
    assert isinstance(reply, dict), reply
    return reply


def config_value(client: valkey.Valkey, name: str) -> str:
    """``CONFIG GET <name>``'s value (one parameter, not a pattern)."""
    reply = sync(client.config_get(name))
    assert isinstance(reply, dict) and set(reply) == {name}, reply
    return str(reply[name])


def acl_log(client: valkey.Valkey) -> list[dict[str, Any]]:
    """``ACL LOG``: the newest entries first, each with ``reason``, ``object``, ``username``..."""
    reply = sync(client.acl_log())
    assert isinstance(reply, list), reply
    return reply
