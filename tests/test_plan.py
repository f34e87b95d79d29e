"""What a real ``pulumi up`` does in each routine operation (tests/plan_operations.py), from the
provider's and the engine's rules (offline/plan.py), and why each provider setting and resource
option of the program is there: each is removed once and the plan shown to go wrong without it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator

import pytest
from harness import Rendered
from plan_operations import OPERATIONS, PROMOTED_REGION2, TABLE_PAGE, Operation, page_with_table, region1, region2

from components.specs.pod import rollout_timeout_seconds
from offline.plan import PROVIDER_TYPE, SKIP_AWAIT, plan, replace_by_hand, transitive_dependencies

DATA_BEARING = ("StatefulSet", "Namespace", "PersistentVolumeClaimPatch")
"""Objects whose replacement or deletion takes the data (or the pods serving it) away."""


def ids(operations: list[Operation]) -> list[str]:
    return [f"{o.stack}: {o.title}" for o in operations]


ROUTINE = [o for o in OPERATIONS if o.routine]


@pytest.mark.parametrize("operation", ROUTINE, ids=ids(ROUTINE))
def test_a_routine_operation_succeeds_and_replaces_nothing(operation: Operation) -> None:
    p = operation.plan()
    assert p.failures == [], [s.failure for s in p.failures]
    # A Job's template is immutable: a change replaces it (the keyspace copy's successor resumes).
    assert [s for s in p.by_op("replace") if s.kind != "Job"] == []
    removal = "remove an instance" in operation.title
    for step in p.by_op("delete"):
        assert removal or step.kind not in DATA_BEARING, step.label()
    # Every await can end: none waits for something a healthy cluster may never do.
    assert [s.label() for s in p.steps if s.never_finishes_when and s.kind != "Service"] == []


def test_the_plan_table_in_the_docs_is_what_the_plans_say() -> None:
    page = TABLE_PAGE.read_text()
    assert page_with_table(page) == page, "docs/design.md's plan table is stale: run python tests/plan_operations.py"


def operation(title: str, stack: str) -> Operation:
    (found,) = [o for o in OPERATIONS if o.title.startswith(title) and o.stack == stack]
    return found


def changed_kinds(op: Operation) -> set[str]:
    return {s.kind for s in op.plan().changes()}


@pytest.mark.parametrize(("title", "stack"), [("rotate the", "region1"), ("rotate the replication", "region2")])
def test_a_rotation_restarts_no_pod_and_touches_only_passwords_and_secrets(title: str, stack: str) -> None:
    for op in (o for o in OPERATIONS if o.title.startswith(title) and o.stack == stack):
        p = op.plan()
        assert not [s for s in p.steps if s.rolls_pods], op.title
        assert changed_kinds(op) <= {"Secret", "RandomPassword"}, op.title


def test_a_maxmemory_change_restarts_only_that_instance() -> None:
    p = operation("raise maxmemory", "region1").plan()
    assert [s.name for s in p.steps if s.rolls_pods] == ["sessions"]
    # The PrometheusRule carries each instance's memory limit (the memory model's alerts): an update,
    # no pod restarts.
    assert {s.label() for s in p.changes()} == {
        "Secret sessions-config",
        "StatefulSet sessions",
        "PrometheusRule valkey-prometheusrule",
    }


def test_a_shrink_is_refused_and_a_lower_maxmemory_touches_no_volume() -> None:
    shrink = operation("shrink a volume", "region1").plan()
    # Each of the group's three claims is refused the shrink.
    assert sorted(s.label() for s in shrink.failures) == [
        f"PersistentVolumeClaimPatch sessions-data-{n}" for n in range(3)
    ]
    lower = operation("lower maxmemory of a local instance", "region1").plan()
    assert lower.succeeds and not [s for s in lower.changes() if "PersistentVolumeClaim" in s.kind]


def test_growing_a_volume_patches_the_claim_and_leaves_the_statefulset_alone() -> None:
    op = operation("grow a volume", "region1")
    assert sorted(s.label() for s in op.plan().changes()) == [
        f"PersistentVolumeClaimPatch sessions-data-{n}" for n in range(3)
    ]
    # Without ignoreChanges on the claim template, the StatefulSet would be replaced: refused while protected.
    after = copy.deepcopy(op.after())
    (sts,) = [r for r in after.registrations.values() if r.typ.endswith("StatefulSet") and r.name == "sessions"]
    sts.ignore_changes = ()
    (step,) = [s for s in plan(op.before(), after).steps if s.urn == sts.urn]
    assert step.op == "replace" and step.failure and step.failure.startswith("protected")


def test_the_claim_patch_would_never_finish_without_skip_await() -> None:
    after = copy.deepcopy(region1())
    (patch,) = [r for r in after.registrations.values() if r.typ.endswith("Patch") and r.name == "sessions-data-0"]
    assert patch.inputs["metadata"]["annotations"][SKIP_AWAIT] == "true"
    patch.inputs["metadata"]["annotations"].pop(SKIP_AWAIT)
    before = copy.deepcopy(after)
    before.registrations.pop(patch.urn)
    (step,) = [s for s in plan(before, after).steps if s.urn == patch.urn]
    assert step.op == "create" and step.never_finishes_when and "WaitForFirstConsumer" in step.never_finishes_when


def without_provider_setting(rendered: Rendered, key: str) -> Rendered:
    rendered = copy.deepcopy(rendered)
    (provider,) = [r for r in rendered.registrations.values() if r.typ == PROVIDER_TYPE]
    provider.inputs.pop(key)
    return rendered


def test_secrets_would_be_deleted_and_recreated_on_every_rotation_without_secret_mutable() -> None:
    op = operation("rotate the client password: new", "region1")
    p = plan(
        without_provider_setting(op.before(), "enableSecretMutable"),
        without_provider_setting(op.after(), "enableSecretMutable"),
    )
    replaced = p.by_op("replace")
    assert {s.kind for s in replaced} == {"Secret"} and all(s.delete_before_replace for s in replaced)
    assert len(replaced) == len(op.plan().by_op("update"))


def test_a_new_kubeconfig_would_replace_every_object_without_a_cluster_identifier() -> None:
    op = operation("a new API endpoint", "region1")
    p = plan(
        without_provider_setting(op.before(), "clusterIdentifier"),
        without_provider_setting(op.after(), "clusterIdentifier"),
    )
    assert len(p.by_op("replace")) > 40 and not p.succeeds
    assert [s.label() for s in op.plan().changes()] == ["Provider kubernetes"]


def test_removing_a_protected_instance_deletes_nothing_of_it() -> None:
    p = operation("remove an instance while protect is on", "region1").plan()
    # The marker goes first (it depends on the StatefulSet) and is protected as the StatefulSet is.
    assert [s.label() for s in p.failures] == ["ConfigMap api-cache-holds-data"]
    # The pod keeps running; its Services, Secrets, policies and passwords all stay with it.
    deleted = {s.label() for s in p.by_op("delete")} - {"ConfigMap api-cache-holds-data"}
    assert deleted == set()
    assert {s.kind for s in p.steps if s.skipped} >= {"Service", "Secret", "NetworkPolicy", "PodDisruptionBudget"}


def test_removing_an_unprotected_instance_keeps_its_volume() -> None:
    p = operation("remove an instance after protect", "region1").plan()
    assert p.succeeds and "StatefulSet api-cache" in {s.label() for s in p.by_op("delete")}
    # The program never owns the claim itself: no step deletes it, and the StatefulSet's retention
    # policy keeps it when the StatefulSet goes.
    assert not [s for s in p.steps if "PersistentVolumeClaim" in s.kind and s.op == "delete"]
    sts = region1(protect=False).objects("StatefulSet")["api-cache"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


def test_without_the_dependencies_a_protected_removal_would_cut_the_running_pod_off() -> None:
    op = operation("remove an instance while protect is on", "region1")
    before = copy.deepcopy(op.before())
    (sts,) = [r for r in before.registrations.values() if r.typ.endswith("StatefulSet") and r.name == "api-cache"]
    sts.dependencies = frozenset()
    deleted = {s.label() for s in plan(before, op.after()).by_op("delete")}
    assert {"Service api-cache", "Secret api-cache-client"} <= deleted


def named_kubernetes_objects(rendered: Rendered) -> Iterator[str]:
    for urn, reg in rendered.registrations.items():
        if reg.typ.startswith("kubernetes:") and not reg.typ.endswith("Patch") and reg.inputs.get("metadata"):
            yield urn


@pytest.mark.parametrize("rendered", [region1(), region2()], ids=["region1", "region2"])
def test_replace_by_hand_never_ends_in_already_exists(rendered: Rendered) -> None:
    """``pulumi up --replace <urn>`` skips the provider's delete-before-replace: the program sets it on
    every named object, except the Namespace, whose replacement would delete every object in it."""
    for urn in named_kubernetes_objects(rendered):
        step = replace_by_hand(rendered, urn)
        if step.kind in ("Namespace", "StatefulSet") or step.label().endswith("-holds-data"):
            assert step.failure and step.failure.startswith("protected"), step.label()
        else:
            assert step.failure is None and step.delete_before_replace, step.label()


def test_the_statefulset_await_outlasts_the_slowest_start_its_pods_allow() -> None:
    for rendered in (region1(), region2()):
        for urn, reg in rendered.registrations.items():
            if not reg.typ.endswith("StatefulSet"):
                continue
            spec = rendered.objects("StatefulSet")[reg.name]["spec"]
            pod = spec["template"]["spec"]
            startup = pod["containers"][0]["startupProbe"]
            readiness = pod["containers"][0]["readinessProbe"]
            slowest = pod["terminationGracePeriodSeconds"] + startup["periodSeconds"] * startup["failureThreshold"]
            slowest += readiness["periodSeconds"]
            step = plan(dataclasses.replace(rendered, registrations={}), rendered)
            (created,) = [s for s in step.steps if s.urn == urn]
            assert created.timeout_seconds == rollout_timeout_seconds(spec["replicas"])
            assert created.timeout_seconds > spec["replicas"] * slowest, reg.name


@pytest.mark.parametrize(
    "rendered", [region1(), region2(), region2(None, **PROMOTED_REGION2)], ids=["region1", "region2", "promoted"]
)
def test_no_statefulset_waits_for_a_load_balancer(rendered: Rendered) -> None:
    """A StatefulSet's update waits for everything it depends on: a LoadBalancer Service there would
    hold back the restart that makes a promoted region's pods primaries until the cloud hands out an
    address (or fails to, in the incident the promotion answers)."""
    balancers = {
        urn
        for urn, reg in rendered.registrations.items()
        if reg.typ.endswith(":Service") and (reg.inputs.get("spec") or {}).get("type") == "LoadBalancer"
    }
    assert balancers or rendered.stack == "region2"
    for urn, reg in rendered.registrations.items():
        if reg.typ.endswith("StatefulSet"):
            assert not (transitive_dependencies(rendered, urn) & balancers), reg.name


def test_promotion_restarts_region2s_dr_pods_on_their_volumes() -> None:
    p = operation("promote region 2", "region2").plan()
    assert sorted(s.name for s in p.steps if s.rolls_pods) == ["feature-flags", "sessions"]
    # A promoted group leads: its Sentinels get their Service, and it gets its external one.
    assert {s.label() for s in p.by_op("create")} == {
        f"Service {name}-{kind}" for name in ("sessions", "feature-flags") for kind in ("external", "sentinel")
    }
    assert PROMOTED_REGION2["role"] == "primary"


def test_a_switchover_and_a_fenced_recovery_keep_every_volume_and_marker() -> None:
    """The pulumi ups of a planned switchover, there and back (ops/switchover.py), which are also
    a fenced single pod's recovery (docs/runbooks.md#runbook-a-fenced-node): each succeeds, no
    StatefulSet is replaced or deleted, and each instance keeps its marker: a node that comes back
    empty afterwards is still fenced."""
    for title, stack in (
        ("promote region 2", "region2"),
        ("failback: region 1 follows region 2", "region1"),
        ("failback: region 1 primary again", "region1"),
        ("failback: region 2 follows region 1 again", "region2"),
    ):
        p = operation(title, stack).plan()
        assert p.succeeds, title
        kept = {"StatefulSet", "ConfigMap", "PersistentVolumeClaimPatch"}
        assert [s.label() for s in p.steps if s.op in ("replace", "delete") and s.kind in kept] == [], title


# --- The rules themselves, on a real render changed by hand ------------------------------------


def changed(rendered: Rendered, kind: str, name: str, path: list[str], value: object) -> Rendered:
    after = copy.deepcopy(rendered)
    (reg,) = [r for r in after.registrations.values() if r.typ.endswith(f":{kind}") and r.name == name]
    node = reg.inputs
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return after


@pytest.mark.parametrize(
    ("kind", "name", "path", "value", "op"),
    [
        ("Service", "sessions", ["spec", "clusterIP"], "10.0.0.10", "replace"),
        ("Service", "sessions", ["spec", "type"], "NodePort", "update"),
        ("Secret", "sessions-config", ["type"], "kubernetes.io/tls", "replace"),
        ("StatefulSet", "sessions", ["spec", "serviceName"], "other", "replace"),
        ("StatefulSet", "sessions", ["spec", "podManagementPolicy"], "Parallel", "replace"),
        ("StatefulSet", "sessions", ["spec", "replicas"], 5, "update"),
        ("PodDisruptionBudget", "sessions", ["spec", "minAvailable"], 2, "update"),
        ("Certificate", "sessions-tls", ["metadata", "name"], "other-tls", "replace"),
    ],
)
def test_the_provider_rules_replace_what_they_should(
    kind: str, name: str, path: list[str], value: object, op: str
) -> None:
    before = region1(protect=False)
    after = changed(before, kind, name, path, value)
    steps = [s for s in plan(before, after).changes() if s.kind == kind and s.name == name]
    assert [s.op for s in steps] == [op]
