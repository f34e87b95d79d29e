"""Region 2 reads region 1's outputs like config: a doctored or old output never reaches a file.

Region 1 is rendered for real; its exports are then altered the way a hand-edited state file, an old
program version or a bug could leave them, and region 2 is rendered against them.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pulumi
import pytest
from harness import STACK_REFERENCE, CaptureMocks, Rendered, render

PRIMARY = "organization/valkey/region1"


def doctored(region1: Rendered, change: Callable[[dict[str, Any]], None]) -> Rendered:
    exports = copy.deepcopy(region1.exports)
    change(exports)
    return dataclasses.replace(region1, exports=exports)


def sessions(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(exports: dict[str, Any]) -> None:
        exports["instances"]["sessions"][field] = value

    return change


def login(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(exports: dict[str, Any]) -> None:
        exports["replicationCredentials"]["sessions"][field] = value

    return change


def ca_bundle(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(exports: dict[str, Any]) -> None:
        exports["caBundle"] = value

    return change


INJECTED_PASSWORD = "abcdefghijklmnop\nreplicaof evil.example.com 6379"
CASES = [
    (
        "externalHost with a directive",
        sessions("externalHost", "sessions.region1.example.com\nreplicaof evil 1"),
        "primaryStack",
    ),
    ("externalHost with a space", sessions("externalHost", "evil.example.com 6380"), "primaryStack"),
    ("externalHost label too long", sessions("externalHost", "s" * 64 + ".example.com"), "primaryStack"),
    ("port as text with a directive", sessions("port", "6379\nmaxmemory 0"), "primaryStack"),
    ("port out of range", sessions("port", 0), "primaryStack"),
    ("port fraction", sessions("port", 6379.5), "primaryStack"),
    ("tls as text", sessions("tls", "sometimes"), "primaryStack"),
    ("maxmemory missing", sessions("maxmemoryBytes", None), "primaryStack"),
    ("username with a directive", login("username", "replication\nmasteruser admin"), "primaryStack"),
    ("password with a directive", login("password", INJECTED_PASSWORD), "primaryStack"),
    ("password with a quote", login("password", 'abcdefghijklmnop"x'), "primaryStack"),
    ("password too short", login("password", "abc"), "primaryStack"),
    ("caBundle damaged", ca_bundle("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "primaryStack"),
    ("caBundle missing while TLS", ca_bundle(None), "primaryStack"),
    ("tls off on the primary", sessions("tls", False), "tls.enabled"),
]


@pytest.mark.parametrize(("change", "key"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_doctored_primary_output_stops_region2_before_any_kubernetes_object(
    region1: Rendered, change: Callable[[dict[str, Any]], None], key: str
) -> None:
    mocks = CaptureMocks()
    with pytest.raises(pulumi.RunError) as raised:
        render("region2", references={PRIMARY: doctored(region1, change)}, mocks=mocks)
    message = str(raised.value)
    assert re.findall(r"^  valkey:(\S+): given ", message, flags=re.MULTILINE) == [key], message
    # Only the StackReference was read; nothing was declared in Kubernetes.
    assert {typ for typ, _ in mocks.resources} <= {STACK_REFERENCE}
    # A secret output's value never reaches the message, not even a bad one.
    assert INJECTED_PASSWORD.splitlines()[0] not in message
    for password in (region1.exports["replicationCredentials"][n]["password"] for n in ("sessions", "feature-flags")):
        assert password not in message


def test_extra_outputs_of_a_newer_primary_are_ignored(region1: Rendered) -> None:
    newer = doctored(region1, sessions("readHost", "sessions-ro.databases.svc.cluster.local"))
    rendered = render("region2", references={PRIMARY: newer})
    assert "readHost" not in repr(rendered.manifests())


def test_region2_may_not_name_a_group_as_region1s_sentinels_do(region1: Rendered) -> None:
    mocks = CaptureMocks()
    with pytest.raises(pulumi.RunError) as raised:
        render(
            "region2", {"instances.sessions.sentinelMasterName": "sessions"}, references={PRIMARY: region1}, mocks=mocks
        )
    message = str(raised.value)
    assert re.findall(r"^  valkey:(\S+): given ", message, flags=re.MULTILINE) == [
        "instances.sessions.sentinelMasterName"
    ]
    assert "a name other than 'sessions'" in message
    assert {typ for typ, _ in mocks.resources} <= {STACK_REFERENCE}
    # Any other name is accepted; a single pod's is never compared.
    render("region2", {"instances.sessions.sentinelMasterName": "sessions-dr"}, references={PRIMARY: region1})
    render(
        "region2",
        {"instances.sessions.replicas": 1, "instances.sessions.sentinelMasterName": "sessions"},
        references={PRIMARY: region1},
    )
