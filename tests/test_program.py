"""What each stack creates and exports, rendered from the real stack files: objects per instance,
cross-region wiring through region 1's actual exports, promotion and failback."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

from harness import Rendered, render, stack_file_config

from components.render.acl import password_hash

DR = ("sessions", "feature-flags")
LOCAL = ("api-cache", "rate-limiting")


def masterauth(rendered: Rendered, instance: str) -> str | None:
    """A replica's masterauth as the reloader applies it: raw, in its own key (valkey.conf includes
    masterauth.conf, the same password as a config line)."""
    return rendered.config_files(instance).get("masterauth-password")


def group(rendered: Rendered, instance: str) -> bool:
    return int(rendered.statefulset(instance)["spec"]["replicas"]) > 1


def client_login(rendered: Rendered, instance: str, user: str) -> str:
    """The plaintext password of ``user`` on ``instance``, found among the generated ones by its hash."""
    line = rendered.acl_line(instance, user)
    (password,) = [p for p in rendered.passwords if f"#{password_hash(p)}" in line]
    return password


def client_password(rendered: Rendered, instance: str) -> str:
    return rendered.secret_data(f"{instance}-credentials")["password"]


def mebibytes(quantity: str) -> int:
    assert quantity.endswith("Mi"), quantity
    return int(quantity[:-2]) * 1024**2


def test_default_config_is_the_seed_setup() -> None:
    region1 = stack_file_config("region1")
    stack_level = {k: region1[k] for k in ("externalDomain", "peerCidrs", "tls")}
    rendered = render("seed", stack_level, from_stack_file=False)
    assert set(rendered.objects("StatefulSet")) == {"valkey"}
    assert (
        rendered.objects("Namespace")["databases"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == "restricted"
    )
    secret = rendered.manifest("Secret", "valkey-credentials")
    assert secret["metadata"]["namespace"] == "databases"
    assert list(secret["stringData"]) == ["password"]
    # valkey.conf's "2gb" of data, plus the backlog, which Valkey counts inside maxmemory.
    backlog = int(rendered.directive("valkey", "repl-backlog-size") or 0)
    assert rendered.directive("valkey", "maxmemory") == str(2 * 1024**3 + backlog)
    assert rendered.directive("valkey", "tls-port") == "6379" and rendered.directive("valkey", "port") == "0"
    assert rendered.directive("valkey", "replicaof") is None
    assert (
        rendered.objects("Service")["valkey-external"]["metadata"]["annotations"][
            "external-dns.alpha.kubernetes.io/hostname"
        ]
        == "valkey.seed.example.com"
    )
    out = rendered.exports["instances"]["valkey"]
    assert out == {
        "host": "valkey.databases.svc.cluster.local",
        "port": 6379,
        "externalHost": "valkey.seed.example.com",
        "role": "primary",
        "tls": True,
        "replicas": 1,
        "readHost": None,
        "sentinelHost": None,
        "sentinelPort": None,
        "sentinelMasterName": None,
        "sentinelUsername": None,
        "sentinelSecretKey": None,
        "dr": True,
        "secretName": "valkey-credentials",
        "secretKey": "password",
        "secretNamespaces": ["databases"],
        "maxmemoryBytes": 2 * 1024**3,
        "maxmemoryPolicy": "allkeys-lru",
        "ttlSeconds": None,
    }


def test_each_instance_gets_its_objects(regions: tuple[Rendered, Rendered]) -> None:
    r1, _ = regions
    services = r1.objects("Service")
    for name in DR + LOCAL:
        sts = r1.objects("StatefulSet")[name]
        scrape_labels = sts["spec"]["template"]["metadata"]["labels"]
        headless = services[sts["spec"]["serviceName"]]
        assert headless["metadata"]["name"] == f"{name}-headless"
        assert headless["spec"]["clusterIP"] == "None"
        # The client Service of a group also selects the run-time label of its primary.
        extra = {"valkey.io/node-role": "primary"} if group(r1, name) else {}
        for svc, labels in ((headless, scrape_labels), (services[name], {**scrape_labels, **extra})):
            assert svc["spec"]["selector"].items() <= labels.items()
            assert svc["spec"]["ports"][0]["port"] == 6379
        pdb = r1.objects("PodDisruptionBudget")[name]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= scrape_labels.items()
        assert pdb["spec"].get("minAvailable") == (None if group(r1, name) else 1)
        claim = sts["spec"]["volumeClaimTemplates"][0]
        assert claim["metadata"]["name"] == "data"
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
        mounts = {m["name"]: m for m in r1.container(name, "valkey")["volumeMounts"]}
        assert mounts["data"]["mountPath"] == (r1.directive(name, "dir") or "").strip('"')
        assert mounts["config"]["readOnly"] is True
        assert sts["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == f"{name}-config"
    assert (
        r1.objects("StatefulSet")["sessions"]["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"][
            "storage"
        ]
        == "8192Mi"
    )


def test_only_dr_primaries_are_exposed_to_the_other_region(regions: tuple[Rendered, Rendered]) -> None:
    r1, r2 = regions
    external = {n: s for n, s in r1.objects("Service").items() if s["spec"].get("type") == "LoadBalancer"}
    assert set(external) == {f"{n}-external" for n in DR}
    for name in DR:
        svc = external[f"{name}-external"]
        assert (
            svc["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"] == f"{name}.region1.example.com"
        )
        assert svc["spec"]["loadBalancerSourceRanges"] == ["10.20.0.0/16"]
        assert svc["spec"]["externalTrafficPolicy"] == "Local"
    assert not [s for s in r2.objects("Service").values() if s["spec"].get("type") == "LoadBalancer"]


def test_explicit_external_host_replaces_the_derived_name() -> None:
    instances = {"valkey": {"externalHost": "cache.dr.internal"}}
    rendered = render("region1", {"instances": instances, "externalDomain": None})
    assert (
        rendered.objects("Service")["valkey-external"]["metadata"]["annotations"][
            "external-dns.alpha.kubernetes.io/hostname"
        ]
        == "cache.dr.internal"
    )
    assert rendered.exports["instances"]["valkey"]["externalHost"] == "cache.dr.internal"


def test_dr_replicas_follow_region1_with_its_replication_login(regions: tuple[Rendered, Rendered]) -> None:
    r1, r2 = regions
    assert r2.references == ["organization/valkey/region1"]
    for name in DR:
        assert r2.upstream(name) == f"{name}.region1.example.com 6379"
        assert r2.directive(name, "masteruser") == '"replication"'
        region1_login = r1.exports["replicationCredentials"][name]
        assert masterauth(r2, name) == region1_login["password"] and r2.directive(name, "masterauth") is None
        # Region 1 accepts exactly that password for its replication user.
        hashed = password_hash(region1_login["password"])
        assert r1.acl_line(name, "replication").startswith(f"user replication on #{hashed} ")
        # A group's members log in to their head with the same password: region 2 accepts it too.
        assert f" #{hashed} " in r2.acl_line(name, "replication")
        assert r2.exports["instances"][name]["role"] == "replica"
        assert r2.exports["instances"][name]["externalHost"] is None


def test_local_instances_are_writable_primaries_in_every_region(regions: tuple[Rendered, Rendered]) -> None:
    for rendered in regions:
        for name in LOCAL:
            assert rendered.upstream(name) is None
            # A group's members log in to each other as the replication user; a single pod has no masterauth.
            expected = client_login(rendered, name, "replication") if group(rendered, name) else None
            assert masterauth(rendered, name) == expected
            assert rendered.exports["instances"][name]["role"] == "primary"
            assert rendered.exports["instances"][name]["externalHost"] is None
        assert set(rendered.exports["replicationCredentials"]) == set(DR)


def test_each_region_has_its_own_client_password(regions: tuple[Rendered, Rendered]) -> None:
    r1, r2 = regions
    for name in DR + LOCAL:
        assert client_password(r1, name) != client_password(r2, name)
        # Region 2's default user is its own: region 1's client password never reaches it.
        hashed = password_hash(client_password(r2, name))
        assert r2.acl_line(name, "default").startswith(f"user default on #{hashed} ")
    region1_clients = {client_password(r1, n) for n in DR + LOCAL}
    everything_in_region2 = repr(r2.manifests()) + repr(r2.exports)
    assert not [p for p in region1_clients if p in everything_in_region2]


def test_memory_limit_is_the_request_and_leaves_room_above_maxmemory(regions: tuple[Rendered, Rendered]) -> None:
    """Request = limit, and room above the server's maxmemory for a fork and buffers (how much: the
    memory model, tests/test_memory_model.py)."""
    for rendered in regions:
        for name in rendered.objects("StatefulSet"):
            resources = rendered.container(name, "valkey")["resources"]
            limit = mebibytes(resources["limits"]["memory"])
            assert mebibytes(resources["requests"]["memory"]) == limit
            maxmemory = int(rendered.directive(name, "maxmemory") or 0)
            backlog = int(rendered.directive(name, "repl-backlog-size") or 0)
            assert 1.25 * maxmemory <= limit <= 1.65 * maxmemory, name
            assert maxmemory == rendered.exports["instances"][name]["maxmemoryBytes"] + backlog


def test_backlog_is_sized_from_write_rate_and_outage(regions: tuple[Rendered, Rendered]) -> None:
    r1, _ = regions
    # writeRate x (outageTolerance + 5 s to reconnect): 2MiB/s for 5m, and the defaults 1MiB/s for 60s.
    assert r1.directive("sessions", "repl-backlog-size") == str(2 * 1024**2 * 305)
    assert r1.directive("feature-flags", "repl-backlog-size") == str(1024**2 * 65)
    assert r1.directive("sessions", "auto-aof-rewrite-min-size") == str(2 * 1024**3)


def test_eviction_policies_follow_the_use_cases(regions: tuple[Rendered, Rendered]) -> None:
    r1, _ = regions
    policies = {name: r1.directive(name, "maxmemory-policy") for name in DR + LOCAL}
    assert policies == {
        "sessions": "allkeys-lru",
        "api-cache": "allkeys-lru",
        "feature-flags": "allkeys-lru",
        "rate-limiting": "noeviction",
    }
    ttls = {name: r1.exports["instances"][name]["ttlSeconds"] for name in DR + LOCAL}
    assert ttls == {"sessions": 86400, "api-cache": 300, "feature-flags": 60, "rate-limiting": 60}


def test_a_config_change_rolls_only_the_changed_instance(region1: Rendered) -> None:
    before = region1
    after = render("region1", {"instances.sessions.maxmemoryPolicy": "allkeys-lfu"})
    assert before.checksum("sessions") != after.checksum("sessions")
    for name in ("api-cache", "feature-flags", "rate-limiting"):
        assert before.checksum(name) == after.checksum(name)
    assert re.fullmatch(r"[0-9a-f]{64}", before.checksum("sessions"))


def test_promotion_makes_region2_primaries_that_stay_primaries() -> None:
    promoted = render("region2", {"role": "primary", "primaryStack": None})
    assert promoted.references == []  # no longer follows region 1
    for name in DR:
        assert promoted.directive(name, "replicaof") is None
        assert promoted.exports["instances"][name]["role"] == "primary"
        svc = promoted.objects("Service")[f"{name}-external"]
        assert (
            svc["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"] == f"{name}.region2.example.com"
        )
    assert promoted.exports["role"] == "primary"


def master_names(rendered: Rendered, name: str) -> set[str]:
    """The MASTER_NAME every container of the instance's pods is given."""
    containers = rendered.pod_spec(name)["containers"] + rendered.pod_spec(name).get("initContainers", [])
    return {e["value"] for c in containers for e in c.get("env", []) if e["name"] == "MASTER_NAME"}


def test_each_regions_sentinels_know_a_group_by_a_name_of_their_own() -> None:
    """Sentinel hellos reach the other region through the replication stream: under one name, the
    two regions' Sentinels would take each other's primary (docs/design.md)."""
    region1 = render("region1")
    promoted = render("region2", {"role": "primary", "primaryStack": None})
    unpinned = render("region1", {f"instances.{name}.sentinelMasterName": None for name in DR})
    for name in DR:
        # Region 1's stack file keeps the names its groups had; the default is per region.
        assert region1.exports["instances"][name]["sentinelMasterName"] == name
        assert master_names(region1, name) == {name}
        assert promoted.exports["instances"][name]["sentinelMasterName"] == f"{name}-region2"
        assert master_names(promoted, name) == {f"{name}-region2"}
        assert master_names(unpinned, name) == {f"{name}-region1"}


def test_a_promoted_region2_needs_nothing_from_region1() -> None:
    """Region 1's cluster, state and secrets may all be out of reach when region 2 is promoted
    (docs/runbooks.md#runbook-promote-region-2): its render reads no StackReference, and nothing of
    region 1's (a password, the replication login) is in any object or output."""
    region1 = render("region1")
    promoted = render("region2", {"role": "primary", "primaryStack": None})  # no reference answered
    assert promoted.references == []
    text = json.dumps([promoted.manifests(), promoted.exports], default=str)
    leaked = [p for p in region1.passwords if p in text]
    assert leaked == []
    for name in DR:
        assert promoted.directive(name, "replicaof") is None


def test_failback_region1_replicates_from_promoted_region2() -> None:
    promoted = render("region2", {"role": "primary", "primaryStack": None})
    demoted = render(
        "region1",
        {"role": "replica", "primaryStack": "organization/valkey/region2"},
        references={"organization/valkey/region2": promoted},
    )
    for name in DR:
        assert demoted.upstream(name) == f"{name}.region2.example.com 6379"
        password = promoted.exports["replicationCredentials"][name]["password"]
        assert masterauth(demoted, name) == password
        assert f"#{password_hash(password)}" in promoted.acl_line(name, "replication")


def provider_urn(rendered: Rendered) -> str:
    return f"urn:pulumi:{rendered.stack}::valkey::pulumi:pulumi:Stack$pulumi:providers:kubernetes::kubernetes::"


def test_provider_uses_the_configured_cluster(region1: Rendered) -> None:
    rendered = render("region1", {"kubeContext": "prod-eu", "kubeconfig": "/etc/kube/config"})
    provider = rendered.of_type("pulumi:providers:kubernetes")["kubernetes"].inputs
    assert provider["context"] == "prod-eu"
    assert provider["kubeconfig"]["value"] == "/etc/kube/config"  # wrapped: kubeconfig content is a secret
    managed = [c for c in rendered.resources.values() if c.typ.startswith("kubernetes:")]
    assert len(managed) > 20
    for captured in managed:
        assert (captured.provider or "").startswith(provider_urn(rendered)), captured.name
    default = region1.of_type("pulumi:providers:kubernetes")["kubernetes"].inputs
    assert "context" not in default and "kubeconfig" not in default


def test_existing_namespace_is_used_without_creating_it() -> None:
    rendered = render("region1", {"createNamespace": False, "namespace": "cache"})
    assert rendered.objects("Namespace") == {}
    namespaces: dict[str, set[str]] = {m["kind"]: set() for m in rendered.manifests()}
    for m in rendered.manifests():
        namespaces[m["kind"]].add(m["metadata"]["namespace"])
    # Only the client Secrets have copies in the client namespace the NetworkPolicy admits.
    assert namespaces == {**{key: {"cache"} for key in namespaces}, "Secret": {"cache", "apps"}}
    assert rendered.exports["instances"]["sessions"]["host"] == "sessions.cache.svc.cluster.local"


def test_eviction_can_be_allowed() -> None:
    rendered = render("region1", {"blockVoluntaryEviction": False})
    spec = rendered.objects("PodDisruptionBudget")["sessions"]["spec"]
    assert spec["maxUnavailable"] == 1 and "minAvailable" not in spec


def outputs_table_keys(after: str | None = None) -> list[str]:
    """First-column names of the first table of docs/outputs.md (after the line ``after``)."""
    section = (Path(__file__).parents[1] / "docs" / "outputs.md").read_text()
    if after:
        section = section.split(after, 1)[1]
    table = "| " + section.split("\n\n| ", 1)[1]
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), table.splitlines()))
    return [row.split("|")[1].strip(" `") for row in rows[2:]]  # after the header and |---|


def test_the_outputs_page_documents_exactly_the_exported_outputs(regions: tuple[Rendered, Rendered]) -> None:
    for rendered in regions:
        assert sorted(outputs_table_keys()) == sorted(rendered.exports)
        per_instance = outputs_table_keys(after="Per instance")
        for instance in rendered.exports["instances"].values():
            assert sorted(per_instance) == sorted(instance)
