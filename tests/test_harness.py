"""The test harness itself: path overrides of a stack file, and Rendered's accessors failing loudly
instead of answering for the wrong object."""

from __future__ import annotations

from typing import Any

import pytest
from harness import Rendered, conf_directive, with_overrides

FILE: dict[str, Any] = {
    "role": "primary",
    "tls": {"issuer": {"name": "ca", "kind": "ClusterIssuer"}, "caBundle": "PEM"},
    "instances": {"sessions": {"maxmemory": "2Gi", "storage": {"size": "8Gi"}}, "api-cache": {"dr": False}},
    "networkPolicy": {"clients": [{"namespace": "apps"}]},
}


def test_a_path_sets_one_nested_key_and_keeps_the_rest() -> None:
    changed = with_overrides(FILE, {"instances.sessions.maxmemory": "1Gi"})
    assert changed["instances"] == {
        "sessions": {"maxmemory": "1Gi", "storage": {"size": "8Gi"}},
        "api-cache": {"dr": False},
    }
    assert {k: v for k, v in changed.items() if k != "instances"} == {k: v for k, v in FILE.items() if k != "instances"}
    assert FILE["instances"]["sessions"]["maxmemory"] == "2Gi"  # the file's map is left as it was


def test_none_removes_a_nested_key_and_missing_maps_are_created() -> None:
    changed = with_overrides(
        FILE,
        {"tls.issuer": None, "tls.existingSecret": "own-tls", "instances.cache-new.dr": False, "nothing.here": None},
    )
    assert changed["tls"] == {"caBundle": "PEM", "existingSecret": "own-tls"}
    assert changed["instances"]["cache-new"] == {"dr": False}
    assert "nothing" not in changed


def test_a_top_level_key_still_replaces_the_whole_value_and_order_counts() -> None:
    changed = with_overrides(FILE, {"tls": {"enabled": False}, "tls.caBundle": "PEM2", "role": None})
    assert changed["tls"] == {"enabled": False, "caBundle": "PEM2"} and "role" not in changed


def test_list_items_are_reached_by_index() -> None:
    changed = with_overrides(FILE, {"networkPolicy.clients.0.namespace": "web"})
    assert changed["networkPolicy"]["clients"] == [{"namespace": "web"}]
    with pytest.raises(ValueError, match=r"'1' is not an index of a list of 1"):
        with_overrides(FILE, {"networkPolicy.clients.1.namespace": "web"})


def test_a_path_through_a_plain_value_is_refused() -> None:
    with pytest.raises(ValueError, match=r"instances.sessions.maxmemory is '2Gi', neither a map nor a list"):
        with_overrides(FILE, {"instances.sessions.maxmemory.unit": "Gi"})


def test_a_directive_set_twice_fails_instead_of_answering_the_first() -> None:
    assert conf_directive("port 0\ntls-port 6379\n", "port") == "0"
    assert conf_directive("port 0\n", "tls-port") is None
    with pytest.raises(AssertionError, match="maxmemory set 2 times"):
        conf_directive("maxmemory 1\nmaxmemory 0\n", "maxmemory")


def test_accessors_name_what_they_did_not_find(region1: Rendered) -> None:
    # The client Secret has a copy in the client namespace: one object needs the namespace.
    with pytest.raises(AssertionError, match=r"2 Secret objects named 'sessions-credentials'"):
        region1.manifest("Secret", "sessions-credentials")
    assert region1.manifest("Secret", "sessions-credentials", namespace="apps")["metadata"]["namespace"] == "apps"
    assert region1.secret_data("sessions-credentials") == region1.secret_data("sessions-credentials", "databases")
    with pytest.raises(AssertionError, match=r"no container 'sidecar' \(has \[('[\w-]+', )*'valkey'\]\)"):
        region1.container("sessions", "sidecar")
    with pytest.raises(AssertionError, match="0 StatefulSet objects named 'nope'"):
        region1.statefulset("nope")


def test_accessors_return_copies(region1: Rendered) -> None:
    region1.config_files("sessions")["valkey.conf"] = "changed"
    region1.pod_spec("sessions")["containers"].clear()
    assert region1.valkey_conf("sessions") != "changed"
    assert region1.container("sessions", "valkey")["name"] == "valkey"


def test_the_first_rollout_lacks_what_pulumi_creates_after_the_statefulsets(region1: Rendered) -> None:
    """What the pods of a first ``pulumi up`` can read: not the markers, claim patches or external
    Services, each of which depends on its StatefulSet (the engine creates it after the await)."""

    def names(manifests: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(m["kind"], m["metadata"]["name"]) for m in manifests}

    later = names(region1.manifests()) - names(region1.first_rollout())
    markers = {("ConfigMap", f"{n}-holds-data") for n in region1.objects("StatefulSet")}
    assert markers <= later
    assert ("Service", "sessions-external") in later
    assert {kind for kind, _ in later} == {"ConfigMap", "Service", "PersistentVolumeClaim"}  # the claim patches
    assert ("StatefulSet", "sessions") not in later and ("Secret", "sessions-config") not in later
