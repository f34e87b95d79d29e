"""The keyspace copy as the program renders it (instances.<name>.migration, method copy): its Job,
metrics Service and ServiceMonitor are valid objects, its pod is restricted and holds no secret in
any argument, what a real `pulumi up` does with it, and the config's mistakes each stop with one
message."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
from apiserver_names import name_problems
from crd_validate import validate_custom_resource
from harness import Rendered, render
from pss import restricted_violations
from test_manifests import K8S_VERSIONS, text_outside_secrets

from components.config.loader import parse_stack_config
from offline.engine import stack_file_config, with_overrides
from offline.plan import plan

IMAGE = "registry.example.com/valkey-ops:1.0.0"
COPY = {
    "instances.sessions.migration": {
        "method": "copy",
        "source": {
            "host": "redis.legacy.svc.cluster.local",
            "port": 6380,
            "tls": True,
            "caSecret": "legacy-ca",
            "credentialsSecret": "legacy-login",
        },
        "keyspaceCopy": {"image": IMAGE, "batch": 500},
    },
    "instances.api-cache.migration": {
        "method": "copy",
        "source": {"host": "10.1.2.3"},
        "keyspaceCopy": {"image": IMAGE, "follow": False},
    },
}


@pytest.fixture(scope="module")
def migrating() -> Rendered:
    return render("region1", COPY)


def volumes_mode(pod: dict[str, Any]) -> set[int]:
    return {v["secret"]["defaultMode"] for v in pod["volumes"] if "secret" in v}


def job(rendered: Rendered, instance: str) -> dict[str, Any]:
    return rendered.objects("Job")[f"{instance}-migration"]


def test_the_copy_objects_pass_strict_schema_crd_and_name_checks(migrating: Rendered) -> None:
    kinds = [(m["kind"], m["metadata"]["name"]) for m in migrating.manifests()]
    for instance in ("sessions", "api-cache"):
        for kind in ("Job", "Service", "ServiceMonitor"):
            assert (kind, f"{instance}-migration") in kinds
    for manifest in migrating.manifests():
        if manifest["kind"] == "ServiceMonitor":
            validate_custom_resource(manifest)
        elif manifest["kind"] in ("Job", "Service", "NetworkPolicy"):
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(manifest, version, strict=True)
        assert name_problems(manifest) == []


def test_the_copy_pod_is_restricted_and_reads_its_logins_from_mounted_secrets(migrating: Rendered) -> None:
    spec = job(migrating, "sessions")["spec"]
    pod = spec["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    # The Secret files (0440, group fsGroup) are readable by the copy's user.
    security = pod["securityContext"]
    assert security["fsGroup"] == security["runAsGroup"] and volumes_mode(pod) == {0o440}
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-m", "ops.keyspace_copy"]
    args = container["args"]
    assert args[:4] == [
        "--source",
        "redis.legacy.svc.cluster.local:6380",
        "--target",
        "sessions.databases.svc.cluster.local:6379",
    ]
    flags = " ".join(args)
    for expected in (
        "--source-credentials /etc/migration/source",
        "--target-credentials /etc/migration/target",
        "--source-tls --source-ca /etc/migration/source-ca/ca.crt",
        "--target-tls --target-ca /etc/migration/target-ca/ca.crt",
        "--batch 500",
        "--follow",
        "--metrics-port 9400",
    ):
        assert expected in flags
    assert "envFrom" not in container and all("valueFrom" not in e for e in container["env"])
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    assert volumes["source-credentials"] == {"secretName": "legacy-login", "defaultMode": 0o440}
    assert volumes["source-ca"]["secretName"] == "legacy-ca"
    assert volumes["target-credentials"]["secretName"] == "sessions-admin-credentials"
    # Of the config Secret, the CA bundle alone: none of the passwords it holds.
    assert volumes["target-ca"] == {
        "secretName": "sessions-config",
        "defaultMode": 0o440,
        "items": [{"key": "ca-bundle.crt", "path": "ca.crt"}],
    }
    other = job(migrating, "api-cache")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--follow" not in other and "--source-credentials" not in other and "--source-tls" not in other
    assert "--target-tls" in other  # the stack serves TLS


def test_no_password_reaches_the_copy_objects_outside_a_secret(migrating: Rendered) -> None:
    places = [(where, text) for where, text in text_outside_secrets(migrating) if "migration" in where]
    assert len(places) >= 6
    for password in migrating.passwords:
        for where, text in places:
            assert password not in text, where


def test_pulumi_up_does_not_wait_for_the_copy_and_a_failure_a_retry_cannot_mend_fails_the_job(
    migrating: Rendered,
) -> None:
    """pulumi-kubernetes awaits a Job until it completes (10 minutes by default) unless
    ``pulumi.com/skipAwait`` is "true"; a following copy completes only at its cut-over."""
    copy = job(migrating, "sessions")
    assert copy["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    rules = copy["spec"]["podFailurePolicy"]["rules"][::-1]  # Ignore first: the first match applies
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "copy", "operator": "In", "values": [1, 2]},
    }
    assert rules[1]["action"] == "Ignore" and rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"
    registrations = {(r.typ, r.name): r for r in migrating.registrations.values()}
    statefulset = registrations[("kubernetes:apps/v1:StatefulSet", "sessions")].urn
    assert statefulset in registrations[("kubernetes:batch/v1:Job", "sessions-migration")].dependencies


def test_the_network_policy_admits_the_copy_to_the_client_port_only(migrating: Rendered) -> None:
    policy = migrating.objects("NetworkPolicy")["sessions"]["spec"]
    job_labels = job(migrating, "sessions")["spec"]["template"]["metadata"]["labels"]
    admitting = [
        r
        for r in policy["ingress"]
        if any(p.get("podSelector", {}).get("matchLabels") == job_labels for p in r["from"])
    ]
    assert admitting == [
        {"from": [{"podSelector": {"matchLabels": job_labels}}], "ports": [{"port": 6379, "protocol": "TCP"}]}
    ]
    # The copy's pod is none of the instance's Valkey pods: no Service of the instance selects it.
    for name, service in migrating.objects("Service").items():
        selector = service["spec"].get("selector") or {}
        if name != "sessions-migration":
            assert not set(selector.items()) <= set(job_labels.items()), name
    plain = render("region1").objects("NetworkPolicy")["sessions"]["spec"]
    assert json.dumps(job_labels) not in json.dumps(plain)


@pytest.mark.parametrize(
    ("overrides", "key", "accepted"),
    [
        (
            {"instances.sessions.migration.keyspaceCopy": None},
            "instances.sessions.migration.keyspaceCopy",
            "at least its image",
        ),
        (
            {"instances.sessions.migration.source.tls": False},
            "instances.sessions.migration.source.caSecret",
            "only with source.tls: true",
        ),
        ({"instances.sessions.migration.method": "dump"}, "instances.sessions.migration.method", "'copy'"),
        (
            {"instances.sessions.migration.source.host": "Not A Host"},
            "instances.sessions.migration.source.host",
            "DNS name",
        ),
        (
            {"instances.sessions.migration.keyspaceCopy.batch": 0},
            "instances.sessions.migration.keyspaceCopy.batch",
            "1 to 100000",
        ),
    ],
)
def test_a_bad_migration_setting_names_its_key(overrides: dict[str, Any], key: str, accepted: str) -> None:
    config = with_overrides(stack_file_config("region1"), {**COPY, **overrides})
    _, problems = parse_stack_config(config, "region1")
    assert [p.key for p in problems] == [key]
    assert accepted in problems[0].accepted


def test_a_replica_stacks_replicated_instance_cannot_migrate() -> None:
    config = with_overrides(
        stack_file_config("region2"), {"instances.sessions.migration": COPY["instances.sessions.migration"]}
    )
    _, problems = parse_stack_config(config, "region2")
    assert [p.key for p in problems] == ["instances.sessions.migration"]
    assert "replicates the primary region" in problems[0].accepted


def test_pulumi_up_starts_replaces_and_removes_the_copy_without_touching_the_instance(migrating: Rendered) -> None:
    """offline/plan.py's rules (pulumi-kubernetes' diff.go: a Job's template forces a replacement)."""
    plain = render("region1")
    started = plan(plain, migrating)
    job_steps = [s for s in started.steps if s.kind == "Job"]
    assert {s.op for s in job_steps} == {"create"} and all(s.waits_for is None for s in job_steps)
    assert not [s for s in started.steps if s.rolls_pods] and started.succeeds
    changed = plan(migrating, render("region1", {**COPY, "instances.sessions.migration.keyspaceCopy.batch": 5000}))
    (replaced,) = changed.by_op("replace")
    assert (replaced.kind, replaced.name, replaced.delete_before_replace) == ("Job", "sessions-migration", True)
    ended = plan(migrating, plain)
    assert {s.kind for s in ended.by_op("delete")} == {"Job", "Service", "ServiceMonitor"}
    assert ended.succeeds and not [s for s in ended.steps if s.rolls_pods]


def test_a_source_whose_owner_turned_notifications_on_gets_a_copy_that_leaves_them(migrating: Rendered) -> None:
    """keyspaceCopy.notificationsConfigured: the Job tells the copy not to set them (a managed source
    whose user may not run CONFIG)."""
    assert (
        "--notifications-configured"
        not in job(migrating, "sessions")["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    told = render("region1", {**COPY, "instances.sessions.migration.keyspaceCopy.notificationsConfigured": True})
    assert "--notifications-configured" in job(told, "sessions")["spec"]["template"]["spec"]["containers"][0]["args"]
