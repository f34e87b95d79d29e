"""Stack config validation: every bad input stops the program before any resource is registered,
with one message naming the key, the value given and what is accepted."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
import pytest
from harness import CaptureMocks, render, render_both, stack_file_config
from pki import make_ca

from components.config.loader import parse_stack_config
from components.config.models import Instance, StackConfig, tls_enabled
from components.sizing import backlog_bytes, storage_bytes

SESSIONS = "instances.sessions"


# (key the message must name, overrides of region1's stack file: by path, the rest of the file kept)
INVALID: list[tuple[str, dict[str, Any]]] = [
    ("role", {"role": "leader"}),
    ("primaryStack", {"role": "replica"}),
    ("primaryStack", {"role": "replica", "primaryStack": "region1-only"}),
    ("primaryStack", {"primaryStack": "organization/valkey/region2"}),
    ("primaryStack", {"role": "replica", "primaryStack": "organization/valkey/region1"}),
    ("namespace", {"namespace": "Databases"}),
    ("namespace", {"namespace": "x" * 64}),
    ("image", {"image": "valkey/valkey"}),
    ("image", {"image": "valkey/valkey:latest"}),
    ("image", {"image": "valkey/valkey@sha256:abc123"}),
    ("image", {"image": "Valkey/Valkey:8.1"}),
    ("instance", {"instance": {"valkey": {}}}),
    ("clusterDomain", {"clusterDomain": "cluster..local"}),
    ("externalDomain", {"externalDomain": None}),
    ("externalDomain", {"externalDomain": "Example.COM"}),
    ("peerCidrs.0", {"peerCidrs": ["10.20.0.1/16"]}),
    ("peerCidrs", {"peerCidrs": []}),
    ("externalService.loadBalancerSourceRanges", {"externalService": {"loadBalancerSourceRanges": ["10.0.0.0/8"]}}),
    ("tls", {"tls.issuer": None}),
    ("tls", {"tls.existingSecret": "valkey-tls"}),
    ("tls.caBundle", {"tls.caBundle": None}),
    ("tls.caBundle", {"tls.caBundle": "not a certificate"}),
    ("tls.issuer.kind", {"tls.issuer.kind": "Vault"}),
    ("tls.enabled", {"tls.enabled": "sometimes"}),
    ("networkPolicy.clients.0.namespace", {"networkPolicy": {"clients": [{"namespace": "Apps"}]}}),
    ("networkPolicy.clients.0.labels", {"networkPolicy": {"clients": [{"namespace": "apps", "labels": {}}]}}),
    ("passwordRotation.client.generation", {"passwordRotation": {"client": {"generation": 0}}}),
    ("passwordRotation.probe", {"passwordRotation": {"probe": {"generation": 2}}}),
    ("deniedCommands.0", {"deniedCommands": ["auth"]}),
    ("deniedCommands.1", {"deniedCommands": ["flushall", "rm -rf"]}),
    ("protect", {"protect": "please"}),
    (f"{SESSIONS}.persistence", {f"{SESSIONS}.persistence": False}),
    ("externalService.internal", {"externalService": {"internal": True}}),
    ("createNamespace", {"createNamespace": "perhaps"}),
    ("blockVoluntaryEviction", {"blockVoluntaryEviction": "sometimes"}),
    ("instances", {"instances": {}}),
    ("instances", {"instances": "valkey"}),
    ("instances", {"instances": "{not json"}),
    ("instances", {"instances": {"Sessions_1": {"dr": False}}}),
    ("instances", {"instances": {"1cache": {"dr": False}}}),
    ("instances", {"instances": {"a" * 41: {"dr": False}}}),
    (f"{SESSIONS}.maxmemoryPolicy", {f"{SESSIONS}.maxmemoryPolicy": "lru"}),
    (f"{SESSIONS}.maxmemoryPolicy", {f"{SESSIONS}.maxmemoryPolicy": "fixed"}),
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.maxmemory": "lots"}),
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.maxmemory": "0"}),
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.maxmemory": "-2gb"}),
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.resources.memory": "2Gi"}),
    (f"{SESSIONS}.maxMemory", {f"{SESSIONS}.maxMemory": "2gb"}),
    (f"{SESSIONS}.port", {f"{SESSIONS}.port": 80}),
    (f"{SESSIONS}.port", {f"{SESSIONS}.port": 70000}),
    (f"{SESSIONS}.port", {f"{SESSIONS}.port": "redis"}),
    (f"{SESSIONS}.dr", {f"{SESSIONS}.dr": "maybe"}),
    (f"{SESSIONS}.ttl", {f"{SESSIONS}.ttl": "forever"}),
    (f"{SESSIONS}.ttl", {f"{SESSIONS}.ttl": "0s"}),
    (f"{SESSIONS}.storage.size", {f"{SESSIONS}.storage.size": "1Gi"}),
    (f"{SESSIONS}.storage.storageClass", {f"{SESSIONS}.storage.storageClass": "Fast SSD"}),
    (f"{SESSIONS}.storage.iops", {f"{SESSIONS}.storage.iops": 3000}),
    (f"{SESSIONS}.resources.cpu", {f"{SESSIONS}.resources.cpu": "lots"}),
    (f"{SESSIONS}.resources.cpuLimit", {f"{SESSIONS}.resources.cpuLimit": "100m"}),
    (f"{SESSIONS}.resources.memory", {f"{SESSIONS}.resources.memory": "many"}),
    (f"{SESSIONS}.replication.outageTolerance", {f"{SESSIONS}.replication.outageTolerance": "a while"}),
    (f"{SESSIONS}.replication.writeRate", {f"{SESSIONS}.replication.writeRate": "fast"}),
    (f"{SESSIONS}.externalHost", {f"{SESSIONS}.externalHost": "sessions..example.com"}),
    ("instances.api-cache.externalHost", {"instances.api-cache.externalHost": "api.region1.example.com"}),
    # Values that used to pass and then failed after resources existed, or were rendered truncated.
    ("monitoring.thresholds.replicationLagSeconds", {"monitoring": {"thresholds": {"replicationLagSeconds": 10.5}}}),
    ("monitoring.thresholds.replicationLagSeconds", {"monitoring": {"thresholds": {"replicationLagSeconds": "10s"}}}),
    ("monitoring.scrapeInterval", {"monitoring": {"scrapeInterval": 0.5}}),
    ("monitoring.scrapeInterval", {"monitoring": {"scrapeInterval": "500ms"}}),
    ("monitoring.thresholds.evictionWindow", {"monitoring": {"thresholds": {"evictionWindow": "45s"}}}),
    ("monitoring.thresholds.failoverWindow", {"monitoring": {"thresholds": {"failoverWindow": "45s"}}}),
    ("monitoring.thresholds.headDownFor", {"monitoring": {"thresholds": {"headDownFor": "soon"}}}),
    ("monitoring.thresholds.memoryRatio", {"monitoring": {"thresholds": {"memoryRatio": "nan"}}}),
    ("monitoring.thresholds.memoryRatio", {"monitoring": {"thresholds": {"memoryRatio": True}}}),
    ("monitoring.thresholds.linkDownFor", {"monitoring": {"thresholds": {"linkDownFor": "8d"}}}),
    (f"{SESSIONS}.ttl", {f"{SESSIONS}.ttl": 0.5}),
    (f"{SESSIONS}.ttl", {f"{SESSIONS}.ttl": "1.5s"}),
    # Sizes: the whole value or nothing, within bounds, no ambiguous units.
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.maxmemory": "2Gi garbage"}),
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.maxmemory": "2Gi\nmaxmemory 0"}),
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.maxmemory": "18446744073709551617"}),
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.maxmemory": "2Ti"}),
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.maxmemory": "512m"}),
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.maxmemory": True}),
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.maxmemory": 0.5}),
    (f"{SESSIONS}.resources.memory", {f"{SESSIONS}.resources.memory": "40Ti"}),
    (f"{SESSIONS}.storage.size", {f"{SESSIONS}.storage.size": "100Ti"}),
    (f"{SESSIONS}.replication.writeRate", {f"{SESSIONS}.replication.writeRate": "2GiB"}),
    (f"{SESSIONS}.replication.outageTolerance", {f"{SESSIONS}.replication.outageTolerance": "25h"}),
    (f"{SESSIONS}.replication.outageTolerance", {f"{SESSIONS}.replication.writeRate": "512MiB"}),
    # The 80 % fit counts the backlog: 2Gi + 610Mi does not fit in 80 % of 2600Mi, 2Gi alone would.
    (f"{SESSIONS}.maxmemory", {f"{SESSIONS}.resources.memory": "2600Mi"}),
    (f"{SESSIONS}.resources.cpu", {f"{SESSIONS}.resources.cpu": 0}),
    (f"{SESSIONS}.resources.cpu", {f"{SESSIONS}.resources.cpu": "1000"}),
    (f"{SESSIONS}.resources.cpu", {f"{SESSIONS}.resources.cpu": 1.0005}),
    # Names Kubernetes, DNS or cert-manager would refuse half-way through a deployment.
    (f"{SESSIONS}.externalHost", {f"{SESSIONS}.externalHost": f"{'s' * 64}.example.com"}),
    ("externalDomain", {"externalDomain": f"{'e' * 64}.com"}),
    ("externalDomain", {"externalDomain": ".".join(["d" * 60] * 4)}),
    ("clusterDomain", {"clusterDomain": ".".join(["c" * 60] * 4)}),
    ("tls.issuer.name", {"tls.issuer.name": "Valkey CA"}),
    ("tls.existingSecret", {"tls.issuer": None, "tls.existingSecret": "Valkey_TLS"}),
    ("monitoring.labels", {"monitoring": {"labels": {"release prometheus": "x"}}}),
    ("monitoring.labels.release", {"monitoring": {"labels": {"release": "p" * 64}}}),
    (
        "networkPolicy.clients.0.podLabels.app",
        {"networkPolicy": {"clients": [{"namespace": "apps", "podLabels": {"app": "web app"}}]}},
    ),
    ("externalService.loadBalancerClass", {"externalService": {"loadBalancerClass": "internal lb"}}),
    ("externalService.annotations", {"externalService": {"annotations": {"bad key": "x"}}}),
    (
        "externalService.annotations.external-dns.alpha.kubernetes.io/hostname",
        {"externalService": {"annotations": {"external-dns.alpha.kubernetes.io/hostname": "x.example.com"}}},
    ),
    ("monitoring.runbookUrl", {"monitoring": {"runbookUrl": "javascript:alert(1)"}}),
    ("monitoring.runbookUrl", {"monitoring": {"runbookUrl": "https://example.com/a b"}}),
    ("kubeContext", {"kubeContext": "prod\nkubeconfig: x"}),
    ("passwordRotation.client.generation", {"passwordRotation": {"client": {"generation": 10001}}}),
    ("passwordRotation.client.generation", {"passwordRotation": {"client": {"generation": True}}}),
    # Ports and generated names that collide.
    (f"{SESSIONS}.port", {f"{SESSIONS}.port": 9121}),
    # sessions is a group: its pods also run the Sentinel's exporter on 9122.
    (f"{SESSIONS}.port", {f"{SESSIONS}.port": 9122}),
    ("failover.sentinelPort", {"failover": {"sentinelPort": 9122}}),
    ("instances.sessions-external", {"instances.sessions-external.dr": False}),
    ("instances.feature-flags-admin", {"instances.feature-flags-admin.dr": False}),
    (
        "instances.feature-flags.externalHost",
        {"instances.feature-flags.externalHost": "sessions.region1.example.com"},
    ),
    # Commands Valkey does not know make it refuse to start: a crash loop, not a config error.
    ("deniedCommands.0", {"deniedCommands": ["flushal"]}),
    ("deniedCommands.0", {"deniedCommands": ["hgetdel"]}),  # Valkey 9 only: the default image is 8.1
    ("deniedCommands.0", {"deniedCommands": ["@connection"]}),
    ("deniedCommands.0", {"deniedCommands": ["@nosuchcategory"]}),
    ("deniedCommands.0", {"deniedCommands": ["client|nosuch"]}),
    # What the API server or the pod would trip over although each value is valid alone.
    ("externalService.annotations", {"externalService": {"annotations": {f"a{i}": "x" * 60_000 for i in range(5)}}}),
    ("tls.existingSecret", {"tls.issuer": None, "tls.existingSecret": "sessions-config"}),
    ("monitoring.thresholds.memoryRatio", {"monitoring": {"thresholds": {"memoryRatio": " 0.9"}}}),
]


@pytest.mark.parametrize(("key", "overrides"), INVALID, ids=[f"{i:02d}-{k}" for i, (k, _) in enumerate(INVALID)])
def test_invalid_config_stops_before_any_resource(key: str, overrides: dict[str, Any]) -> None:
    mocks = CaptureMocks()
    with pytest.raises(pulumi.RunError) as raised:
        render("region1", overrides, mocks=mocks)
    message = str(raised.value)
    named = re.findall(r"^  valkey:(\S+): given ", message, flags=re.MULTILINE)
    assert named == [key], message
    assert "accepted: " in message
    # What pydantic and Python print on their own must not reach the user.
    for leak in ("Traceback", "validation error", "errors.pydantic.dev", "[type="):
        assert leak not in message
    assert mocks.resources == {}


def test_message_shows_value_given_and_accepted_values() -> None:
    with pytest.raises(pulumi.RunError) as raised:
        render("region1", {f"{SESSIONS}.maxmemoryPolicy": "fixed"})
    line = str(raised.value).splitlines()[1]
    assert "given 'fixed'" in line
    for policy in ("noeviction", "allkeys-lru", "volatile-ttl"):
        assert policy in line


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(pulumi.RunError) as raised:
        render("region1", {"role": "leader", "namespace": "DB", f"{SESSIONS}.port": 1})
    keys = set(re.findall(r"^  valkey:(\S+):", str(raised.value), flags=re.MULTILINE))
    assert keys == {"role", "namespace", f"{SESSIONS}.port"}


def test_region_defaults_to_stack_name_and_must_be_a_dns_label() -> None:
    local_only = {"instances": {"cache": {"dr": False}}}
    cfg, problems = parse_stack_config(local_only, stack="eu-west")
    assert problems == [] and cfg is not None and cfg.region == "eu-west"
    cfg, problems = parse_stack_config(local_only, stack="EU_West")
    assert cfg is None and [p.key for p in problems] == ["region"]
    cfg, problems = parse_stack_config({**local_only, "region": "eu-west"}, stack="EU_West")
    assert problems == [] and cfg is not None and cfg.region == "eu-west"


def test_tls_is_on_by_default_only_with_dr_instances() -> None:
    assert tls_enabled(StackConfig.model_validate({"instances": {"cache": {"dr": False}}})) is False
    assert tls_enabled(StackConfig()) is True
    assert tls_enabled(StackConfig.model_validate({"tls": {"enabled": False}})) is False


def test_replica_on_another_port_than_its_primary_is_refused() -> None:
    region2 = {"instances.feature-flags.port": 6380}
    with pytest.raises(pulumi.RunError, match=r"valkey:instances\.feature-flags\.port: given 6380"):
        render_both(region2=region2)


def test_replica_without_tls_of_a_tls_primary_is_refused() -> None:
    with pytest.raises(pulumi.RunError, match=r"valkey:tls\.enabled: given false"):
        render_both(region2={"tls": {"enabled": False}})


def test_replica_smaller_than_primary_is_refused() -> None:
    region2 = {f"{SESSIONS}.maxmemory": "1Gi"}
    with pytest.raises(pulumi.RunError, match=r"valkey:instances\.sessions\.maxmemory: given 1073741824 bytes"):
        render_both(region2=region2)


def test_replica_of_an_instance_the_primary_does_not_replicate_is_refused() -> None:
    region2 = {"instances.api-cache.dr": True}
    with pytest.raises(
        pulumi.RunError,
        match=r"valkey:instances\.api-cache: given dr: true; accepted: an instance stack \S+ replicates",
    ):
        render_both(region2=region2)


def test_both_stack_files_are_valid() -> None:
    for stack in ("region1", "region2"):
        cfg, problems = parse_stack_config(stack_file_config(stack), stack)
        assert problems == [], problems
        assert cfg is not None and set(cfg.instances) == {"sessions", "api-cache", "feature-flags", "rate-limiting"}


def test_sizes_and_durations_accept_the_documented_forms() -> None:
    inst = Instance.model_validate(
        {"maxmemory": "2gb", "ttl": "24h", "replication": {"writeRate": "512KiB", "outageTolerance": "5m"}}
    )
    assert inst.maxmemory == 2 * 10**9  # pydantic ByteSize: gb is a power of 1000
    assert inst.ttl is not None and inst.ttl.total_seconds() == 86400
    assert Instance.model_validate({"maxmemory": "2Gi"}).maxmemory == 2 * 1024**3
    assert Instance.model_validate({"maxmemory": "2GiB"}).maxmemory == 2 * 1024**3
    assert Instance.model_validate({"ttl": 90}).ttl.total_seconds() == 90  # type: ignore[union-attr]
    assert Instance.model_validate({"ttl": "PT1H"}).ttl.total_seconds() == 3600  # type: ignore[union-attr]
    assert backlog_bytes(inst) == 512 * 1024 * (300 + 5)  # the outage, and the reconnect after it


def test_digest_pinned_images_are_accepted() -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    for image in (
        f"valkey/valkey@{digest}",
        f"valkey/valkey:8.1.8-alpine@{digest}",
        "registry.example.com:5000/team/valkey:8.1.8",
    ):
        assert StackConfig.model_validate({"image": image}).image == image


def test_defaults_are_the_seed_setup() -> None:
    cfg = StackConfig()
    assert cfg.namespace == "databases" and cfg.role == "primary"
    assert list(cfg.instances) == ["valkey"]
    seed = cfg.instances["valkey"]
    assert (seed.maxmemory, seed.port, seed.dr) == (2 * 1024**3, 6379, True)
    assert cfg.image.startswith("valkey/valkey:8.")


def test_default_storage_holds_three_copies() -> None:
    for maxmemory in ("64Mi", "256Mi", "1Gi", "2Gi", "7gb"):
        inst = Instance.model_validate({"maxmemory": maxmemory})
        assert storage_bytes(inst) >= 3 * inst.maxmemory


@pytest.mark.parametrize(
    ("overrides", "secret", "hidden"),
    [
        ({"kubeContext": "prod\ntoken-abc123"}, ["kubeContext"], "token-abc123"),
        ({"kubeConfig": "apiVersion: v1\nusers: [{user: {token: abc123}}]"}, [], "abc123"),
        ({"kubeconfig": "token: abc123\0"}, [], "abc123"),
    ],
    ids=["secret-key", "misspelt-key", "kubeconfig"],
)
def test_a_refused_value_that_may_be_secret_is_not_shown(
    overrides: dict[str, Any], secret: list[str], hidden: str
) -> None:
    with pytest.raises(pulumi.RunError) as raised:
        render("region1", overrides, secret_keys=secret)
    message = str(raised.value)
    assert hidden not in message and "not shown" in message, message


def test_a_ca_bundle_with_a_private_key_is_refused_without_showing_the_key(tmp_path: Path) -> None:
    key, cert = make_ca(tmp_path, "ca")
    bundle = cert.read_text() + key.read_text()
    with pytest.raises(pulumi.RunError) as raised:
        render("region1", {"tls.caBundle": bundle})
    body = "".join(key.read_text().splitlines()[1:-1])
    assert "private key" in str(raised.value) and body[:40] not in str(raised.value).replace("\\n", "")
