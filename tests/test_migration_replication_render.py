"""The live-replication migration as the program renders it (instances.<name>.migration, method
replication): the group follows the source as region 2's groups follow region 1, its pods mount
the source's own Secret where the scripts that log in read it (and nowhere else), the
NetworkPolicy lets them reach the source, the alerts treat it as a following group, what a real
`pulumi up` does when the migration starts and ends, and the config's mistakes each stop with one
message. Real servers: tests/test_migration_drill.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from apiserver_names import name_problems
from harness import NO_TLS, Rendered, render
from pss import restricted_violations
from replies import config_value
from test_manifests import K8S_VERSIONS, text_outside_secrets
from valkey_process import BUILDS, Server, every_build, free_port, localized

from components.config.loader import parse_stack_config
from components.specs.monitoring import topology
from offline.engine import stack_file_config, with_overrides
from offline.plan import plan

SOURCE = {"host": "redis.legacy.example.com", "port": 6380, "tls": True, "credentialsSecret": "legacy-login"}
REPLICATION = {
    "instances.sessions.migration": {"method": "replication", "source": {**SOURCE, "cidrs": ["192.0.2.0/24"]}},
    # No login: the source takes none.
    "instances.feature-flags.migration": {
        "method": "replication",
        "source": {"host": "10.1.2.3", "tls": True, "cidrs": ["10.1.2.3/32"]},
    },
}


@pytest.fixture(scope="module")
def migrating() -> Rendered:
    return render("region1", REPLICATION)


def pod_spec(rendered: Rendered, instance: str) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.objects("StatefulSet")[instance]["spec"]["template"]["spec"]
    return spec


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_the_migrating_objects_pass_strict_schema_name_and_pod_security_checks(migrating: Rendered) -> None:
    for manifest in migrating.manifests():
        if manifest["kind"] in ("StatefulSet", "NetworkPolicy", "Service", "Secret"):
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(manifest, version, strict=True)
        assert name_problems(manifest) == []
    for instance in ("sessions", "feature-flags"):
        assert restricted_violations(pod_spec(migrating, instance)) == []


def test_the_group_follows_the_source_with_no_sentinel_and_logs_in_to_its_head_with_its_own_password(
    migrating: Rendered,
) -> None:
    files = migrating.secret_data("sessions-config")
    assert files["upstream"] == "redis.legacy.example.com 6380\n"
    own = migrating.exports["replicationCredentials"]["sessions"]["password"]
    # The members' login to the head: this region's own replication password, nobody else's.
    assert files["masterauth-password"] == own
    assert files["masterauth.conf"].strip() == f'masterauth "{own}"'
    assert "login.sh" in files
    services = migrating.objects("Service")
    assert "sessions-sentinel" not in services and "sessions-external" in services
    containers = {c["name"]: c for c in pod_spec(migrating, "sessions")["containers"]}
    assert "sentinel" not in containers and "keeper" in containers
    assert env(containers["valkey"])["GROUP_MODE"] == "follower"
    # Region 2 and the applications find the instance where they will after the cut-over; only the
    # Sentinel fields are empty until then (it has none).
    exported, plain = migrating.exports["instances"]["sessions"], render("region1").exports["instances"]["sessions"]
    sentinel_fields = {k for k in plain if k.startswith("sentinel")}
    assert sentinel_fields and all(exported[k] is None for k in sentinel_fields)
    assert {k: v for k, v in exported.items() if k not in sentinel_fields} == {
        k: v for k, v in plain.items() if k not in sentinel_fields
    }


def test_only_the_containers_that_log_in_mount_the_source_secret(migrating: Rendered) -> None:
    spec = pod_spec(migrating, "sessions")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["migration-source"]["secret"] == {"secretName": "legacy-login", "defaultMode": 0o440}
    mounting = {
        c["name"] for c in spec["containers"] if any(m["name"] == "migration-source" for m in c.get("volumeMounts", []))
    }
    assert mounting == {"valkey", "reloader", "keeper"}
    # The keeper reads and writes the data volume's migration record (login.sh); no other sidecar.
    keeper = next(c for c in spec["containers"] if c["name"] == "keeper")
    assert {"name": "data", "mountPath": "/data"} in keeper["volumeMounts"]
    assert env(keeper)["MIGRATION_FILE"] == "/data/migration-source"
    for c in spec["containers"]:
        if c["name"] in mounting:
            mount = next(m for m in c["volumeMounts"] if m["name"] == "migration-source")
            assert mount["readOnly"] is True
            assert env(c)["MIGRATING"] == "yes" and env(c)["SOURCE_LOGIN_DIR"] == mount["mountPath"]
    # Without a credentials Secret: nothing mounted, and login.sh logs in with no password.
    other = pod_spec(migrating, "feature-flags")
    assert "migration-source" not in {v["name"] for v in other["volumes"]}
    valkey = next(c for c in other["containers"] if c["name"] == "valkey")
    assert env(valkey)["MIGRATING"] == "yes" and env(valkey)["SOURCE_LOGIN_DIR"] == ""
    # An instance that does not migrate carries none of it.
    plain = next(c for c in pod_spec(migrating, "rate-limiting")["containers"] if c["name"] == "valkey")
    assert "MIGRATING" not in env(plain)


def test_no_password_reaches_the_migrating_objects_outside_a_secret(migrating: Rendered) -> None:
    places = text_outside_secrets(migrating)
    for password in migrating.passwords:
        for where, text in places:
            assert password not in text, where


def test_the_network_policy_lets_the_pods_reach_the_source_there_only(migrating: Rendered) -> None:
    egress = migrating.objects("NetworkPolicy")["sessions"]["spec"]["egress"]
    to_source = [r for r in egress if {"protocol": "TCP", "port": 6380} in r.get("ports", [])]
    assert to_source == [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"protocol": "TCP", "port": 6380}]}]
    plain = render("region1").objects("NetworkPolicy")["sessions"]["spec"]
    assert "192.0.2.0/24" not in json.dumps(plain)


def test_the_alerts_treat_a_migrating_group_as_a_following_one() -> None:
    config = with_overrides(stack_file_config("region1"), REPLICATION)
    cfg, problems = parse_stack_config(config, "region1")
    assert problems == [] and cfg is not None
    groups = topology(cfg).groups
    assert groups["sessions"].follows and groups["feature-flags"].follows
    assert not groups["rate-limiting"].follows


def test_pulumi_up_rolls_the_group_when_the_migration_starts_and_when_it_ends(migrating: Rendered) -> None:
    """Both changes are pod-template updates of the StatefulSet (a rolling restart, never a
    replacement): the data volumes stay."""
    plain = render("region1")
    for before, after in ((plain, migrating), (migrating, plain)):
        changes = plan(before, after)
        rolled = {s.name for s in changes.steps if s.rolls_pods}
        assert {"sessions", "feature-flags"} <= rolled
        assert not [s for s in changes.by_op("replace") if s.kind == "StatefulSet"]


@pytest.mark.parametrize(
    ("overrides", "key", "accepted"),
    [
        ({"instances.sessions.replicas": 1}, "instances.sessions.replicas", "a single pod migrates with method copy"),
        ({"instances.sessions.persistence": False}, "instances.sessions.persistence", "records that its data"),
        ({"instances.sessions.migration.source.tls": False}, "instances.sessions.migration.source.tls", "one switch"),
        (
            {"instances.sessions.migration.source.caSecret": "legacy-ca"},
            "instances.sessions.migration.source.caSecret",
            "tls.caBundle",
        ),
        (
            {"instances.sessions.migration.keyspaceCopy": {"image": "registry.example.com/ops:1"}},
            "instances.sessions.migration.keyspaceCopy",
            "unset with method replication",
        ),
        ({"instances.sessions.migration.source.cidrs": []}, "instances.sessions.migration.source.cidrs", "CIDRs"),
        (
            {"instances.sessions.migration.rdbVersionCheck": "lenient"},
            "instances.sessions.migration.rdbVersionCheck",
            "'relaxed'",
        ),
        (
            {"instances.sessions.migration.source.cidrs": ["10.0.0.300/8"]},
            "instances.sessions.migration.source.cidrs.0",
            "CIDR",
        ),
    ],
)
def test_a_bad_replication_setting_names_its_key(overrides: dict[str, Any], key: str, accepted: str) -> None:
    config = with_overrides(stack_file_config("region1"), {**REPLICATION, **overrides})
    _, problems = parse_stack_config(config, "region1")
    assert [p.key for p in problems] == [key]
    assert accepted in problems[0].accepted


@every_build
def test_a_relaxed_rdb_version_check_is_rendered_for_the_migration_only_and_both_builds_take_it(
    tmp_path: Path, build: str
) -> None:
    """migration.rdbVersionCheck: relaxed (Redis 7.4's RDB 12 into Valkey 9, docs/migration.md):
    a line of the migrating instance's valkey.conf, which a real server of each build starts with."""
    relaxed = render("region1", {**REPLICATION, "instances.sessions.migration.rdbVersionCheck": "relaxed"})
    assert "\nrdb-version-check relaxed\n" in relaxed.secret_data("sessions-config")["valkey.conf"]
    assert "rdb-version-check" not in relaxed.secret_data("feature-flags-config")["valkey.conf"]
    assert "rdb-version-check" not in render("region1").secret_data("sessions-config")["valkey.conf"]
    plaintext = {
        **NO_TLS,
        "instances.sessions.migration": {
            "method": "replication",
            "source": {**SOURCE, "tls": False, "cidrs": ["192.0.2.0/24"]},
            "rdbVersionCheck": "relaxed",
        },
    }
    conf = render("region1", plaintext).secret_data("sessions-config")["valkey.conf"]
    # The rendered file alone (start.sh adds the group's runtime lines), its port and paths here.
    port = free_port()
    (tmp_path / "data").mkdir()
    (tmp_path / "users.acl").write_text("user default on nopass ~* &* +@all\n")
    kept = "\n".join(line for line in conf.splitlines() if not line.startswith("unixsocket"))
    config = tmp_path / "valkey.conf"
    config.write_text(localized(kept, tmp_path, port) + "\n")
    server = Server(config, port, None, binary=BUILDS[build])
    try:
        assert config_value(server.client(), "rdb-version-check") == "relaxed"
    finally:
        server.stop()
