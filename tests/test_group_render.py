"""What a Sentinel group (instances.<name>.replicas > 1) renders, object by object, and that a single
pod renders exactly as it did before groups existed."""

from __future__ import annotations

from typing import Any

import harness
import kubernetes_validate
import pytest
from pss import restricted_violations

from components.render.files import RESTART_KEYS
from components.render.paths import SENTINEL_CONFIG_KEY
from components.specs.labeler import TOKEN_DIR
from components.specs.labels import NODE_ROLE_LABEL

GROUP: dict[str, object] = {}
"""The stack files run sessions as a group of 3."""


@pytest.fixture(scope="module")
def group() -> harness.Rendered:
    return harness.render("region1", GROUP)


@pytest.fixture(scope="module")
def single() -> harness.Rendered:
    return harness.render("region1", harness.SINGLE_PODS)


def sessions_objects(rendered: harness.Rendered) -> list[dict[str, Any]]:
    return [m for m in rendered.manifests() if m["metadata"]["name"].startswith("sessions")]


def test_every_object_of_a_group_passes_strict_schema_validation_and_its_pod_is_restricted(
    group: harness.Rendered,
) -> None:
    kinds = set()
    for manifest in sessions_objects(group):
        if manifest["apiVersion"].startswith(("cert-manager.io", "monitoring.coreos.com")):
            continue  # custom resources: tests/test_crd_validate.py
        kubernetes_validate.validate(manifest, "1.37", strict=True)
        kinds.add(manifest["kind"])
    assert {"ServiceAccount", "Role", "RoleBinding", "StatefulSet", "Service"} <= kinds
    assert restricted_violations(group.pod_spec("sessions")) == []


def test_a_group_is_three_pods_spread_over_nodes_and_zones(group: harness.Rendered) -> None:
    spec = group.statefulset("sessions")["spec"]
    assert spec["replicas"] == 3
    assert "podManagementPolicy" not in spec  # OrderedReady; a change would replace the StatefulSet
    pod = spec["template"]["spec"]
    selector = spec["selector"]["matchLabels"]
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term == {"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"}
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone" and spread["whenUnsatisfiable"] == "ScheduleAnyway"
    relaxed = harness.render("region1", {**GROUP, "scheduling": {"nodeSpread": "preferred", "zoneSpread": "none"}})
    pod = relaxed.pod_spec("sessions")
    assert "topologySpreadConstraints" not in pod
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"]["podAntiAffinity"]


def test_the_client_and_external_services_follow_the_run_time_primary_label(group: harness.Rendered) -> None:
    services = group.objects("Service")
    for name in ("sessions", "sessions-external"):
        assert services[name]["spec"]["selector"][NODE_ROLE_LABEL] == "primary", name
    assert NODE_ROLE_LABEL not in services["sessions-read"]["spec"]["selector"]
    sentinel = services["sessions-sentinel"]["spec"]
    assert sentinel["publishNotReadyAddresses"] is True and sentinel["ports"][0]["port"] == 26379
    # Never in the template or the StatefulSet's selector: Pulumi would fight the label updater.
    sts = group.statefulset("sessions")
    assert NODE_ROLE_LABEL not in sts["spec"]["selector"]["matchLabels"]
    assert NODE_ROLE_LABEL not in sts["spec"]["template"]["metadata"]["labels"]


def test_only_the_label_updater_gets_an_api_token_and_only_for_its_group(group: harness.Rendered) -> None:
    pod = group.pod_spec("sessions")
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "sessions-labeler"
    with_token = [
        c["name"] for c in pod["containers"] for m in c.get("volumeMounts", []) if m["mountPath"] == TOKEN_DIR
    ]
    assert with_token == ["labeler"]
    (rule,) = group.manifest("Role", "sessions-labeler")["rules"]
    assert rule == {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["get", "patch"],
        "resourceNames": ["sessions-0", "sessions-1", "sessions-2"],
    }
    binding = group.manifest("RoleBinding", "sessions-labeler")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sessions-labeler", "namespace": "databases"}]
    assert group.manifest("ServiceAccount", "sessions-labeler")["automountServiceAccountToken"] is False


def test_a_groups_budget_lets_drains_take_one_pod_at_a_time(group: harness.Rendered) -> None:
    spec = group.manifest("PodDisruptionBudget", "sessions")["spec"]
    assert spec.get("maxUnavailable") == 1 and "minAvailable" not in spec


def test_group_members_fence_themselves_and_announce_their_names(group: harness.Rendered) -> None:
    conf = group.valkey_conf("sessions")
    assert harness.conf_directive(conf, "min-replicas-to-write") == "1"
    assert harness.conf_directive(conf, "min-replicas-max-lag") == "10"
    assert harness.conf_directive(conf, "replicaof") is None  # start.sh decides the role
    assert harness.conf_directive(conf, "masteruser") == '"replication"'
    files = group.config_files("sessions")
    assert "sentinel resolve-hostnames yes" in files[SENTINEL_CONFIG_KEY]
    assert "sentinel announce-hostnames yes" in files[SENTINEL_CONFIG_KEY]
    acl = group.users_acl("sessions")
    assert "user sentinel on" in acl and "user labeler on" in acl


def test_nothing_of_a_group_reaches_a_single_pod(single: harness.Rendered) -> None:
    """A single pod's template, Secret keys, Services and users hold nothing of a group. (Its start
    script, single.sh, fences a primary on an empty volume: the one change of the fencing release.)"""
    names = {m["metadata"]["name"] for m in sessions_objects(single)}
    assert not {"sessions-read", "sessions-sentinel", "sessions-labeler"} & names
    pod = single.pod_spec("sessions")
    assert [c["name"] for c in pod["containers"]] == ["valkey", "reloader", "exporter"]
    assert "affinity" not in pod and "serviceAccountName" not in pod
    assert single.container("sessions", "valkey")["command"] == ["sh", "/etc/valkey/single.sh"]
    assert NODE_ROLE_LABEL not in single.objects("Service")["sessions"]["spec"]["selector"]
    assert set(single.config_files("sessions")) & set(RESTART_KEYS) == {
        "valkey.conf",
        "reloader-password",
        "reloader.sh",
        "fence.sh",
        "login.sh",
        "single.sh",
    }
    assert "sentinel" not in single.users_acl("sessions")


def test_a_group_exports_its_read_and_sentinel_endpoints(group: harness.Rendered, single: harness.Rendered) -> None:
    out = group.exports["instances"]["sessions"]
    assert out["replicas"] == 3
    assert out["host"] == "sessions.databases.svc.cluster.local"
    assert out["readHost"] == "sessions-read.databases.svc.cluster.local"
    assert out["sentinelHost"] == "sessions-sentinel.databases.svc.cluster.local"
    assert (out["sentinelPort"], out["sentinelMasterName"]) == (26379, "sessions")
    assert (out["sentinelUsername"], out["sentinelSecretKey"]) == ("client", "sentinel-password")
    assert "sentinel-password" in group.secret_data(out["secretName"], namespace="apps")
    assert "sentinel-password" not in single.secret_data(out["secretName"], namespace="apps")
    alone = single.exports["instances"]["sessions"]
    assert (alone["replicas"], alone["readHost"], alone["sentinelHost"]) == (1, None, None)
