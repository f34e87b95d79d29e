"""Monitoring as both stacks render it: exporter sidecars, their ACL user, the metrics port, the
ServiceMonitor and PrometheusRule, and the config that switches and tunes them."""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pytest
from harness import ROOT, SINGLE_PODS, Rendered, render
from markdown_anchors import anchors

from components.render.acl import EXPORTER_USER, password_hash
from components.render.alerts import ALERTS
from components.render.sentinel_conf import METRICS_RULES

INSTANCES = ("sessions", "api-cache", "feature-flags", "rate-limiting")


def test_every_pod_has_an_exporter_logged_in_as_its_own_user(regions: tuple[Rendered, Rendered]) -> None:
    images = set()
    for rendered in regions:
        for name in INSTANCES:
            sidecar = rendered.container(name, "exporter")
            images.add(sidecar["image"])
            assert f"--redis.user={EXPORTER_USER}" in sidecar["args"]
            # The file its flag names, followed through its mount to the key of the config Secret.
            (flag,) = [a.split("=", 1)[1] for a in sidecar["args"] if a.startswith("--redis.password-file=")]
            (mount,) = sidecar["volumeMounts"]
            volume = {v["name"]: v for v in rendered.pod_spec(name)["volumes"]}[mount["name"]]["secret"]
            assert volume["secretName"] == f"{name}-config" and mount["readOnly"] is True
            keys = {f"{mount['mountPath']}/{item['path']}": item["key"] for item in volume["items"]}
            assert sorted(keys.values()) == sorted([keys[flag], "ca-bundle.crt"])  # never valkey.conf, masterauth
            # That file holds the metrics password the ACL accepts, nothing else.
            password_file = json.loads(rendered.config_files(name)[keys[flag]])
            (password,) = set(password_file.values())
            assert (
                rendered.acl_line(name, "metrics")
                == f"user metrics on #{password_hash(password)} resetchannels -@all +info"
            )
    # One exporter release everywhere, pinned to an exact tag (test_exporter.py says which tags run).
    (image,) = images
    assert re.fullmatch(r"oliver006/redis_exporter:v\d+\.\d+\.\d+", image)


def test_only_the_headless_service_has_the_metrics_port(regions: tuple[Rendered, Rendered]) -> None:
    for rendered in regions:
        for name, service in rendered.objects("Service").items():
            ports = {p["name"] for p in service["spec"]["ports"]}
            assert ("metrics" in ports) == name.endswith("-headless"), name
            if "sentinelmetrics" in ports:
                assert name.endswith("-headless"), name


def sentinel_exporter_pods(rendered: Rendered) -> set[str]:
    return {n for n in INSTANCES if "sentinel-exporter" in {c["name"] for c in rendered.pod_spec(n)["containers"]}}


def test_every_sentinel_has_its_exporter_logged_in_as_the_sentinels_metrics_user(
    regions: tuple[Rendered, Rendered],
) -> None:
    r1, r2 = regions
    # Where there are Sentinels: region 1's groups, and local groups in region 2 (a following group has none).
    assert sentinel_exporter_pods(r1) == {"sessions", "feature-flags", "rate-limiting"}
    assert sentinel_exporter_pods(r2) == {"rate-limiting"}
    for rendered in regions:
        for name in sentinel_exporter_pods(rendered):
            sidecar = rendered.container(name, "sentinel-exporter")
            assert "--redis.addr=rediss://127.0.0.1:26379" in sidecar["args"]
            assert "--redis.user=metrics" in sidecar["args"]
            assert sidecar["ports"] == [{"name": "sentinelmetrics", "containerPort": 9122, "protocol": "TCP"}]
            (flag,) = [a.split("=", 1)[1] for a in sidecar["args"] if a.startswith("--redis.password-file=")]
            (mount,) = sidecar["volumeMounts"]
            volume = {v["name"]: v for v in rendered.pod_spec(name)["volumes"]}[mount["name"]]["secret"]
            keys = {f"{mount['mountPath']}/{item['path']}": item["key"] for item in volume["items"]}
            assert sorted(keys.values()) == ["ca-bundle.crt", "sentinel-exporter-password.json"]
            (password,) = set(json.loads(rendered.config_files(name)[keys[flag]]).values())
            # The same password's hash in the Sentinel's config, with the read-only rules; not a node's user.
            sentinel_conf = rendered.config_files(name)["sentinel.conf"]
            assert f"user metrics on #{password_hash(password)} resetchannels {METRICS_RULES}" in sentinel_conf
            assert password_hash(password) not in rendered.users_acl(name)
            assert password not in json.dumps(rendered.pod_spec(name))
            headless = rendered.objects("Service")[f"{name}-headless"]["spec"]["ports"]
            assert {"name": "sentinelmetrics", "port": 9122, "targetPort": "sentinelmetrics", "protocol": "TCP"} in (
                headless
            )


def test_scrape_labels_are_on_the_pods(regions: tuple[Rendered, Rendered]) -> None:
    r1, _ = regions
    labels = {name: r1.pod_template(name)["metadata"]["labels"] for name in INSTANCES}
    assert labels["sessions"]["valkey.io/dr"] == "true"
    assert labels["rate-limiting"]["valkey.io/dr"] == "false"
    assert labels["rate-limiting"]["valkey.io/maxmemory-policy"] == "noeviction"
    # Not in the selector: a StatefulSet's selector is immutable.
    selector = r1.statefulset("sessions")["spec"]["selector"]["matchLabels"]
    assert "valkey.io/dr" not in selector


def test_one_servicemonitor_and_one_rule_set_per_stack(regions: tuple[Rendered, Rendered]) -> None:
    for rendered, region in zip(regions, ("region1", "region2"), strict=True):
        (monitor,) = rendered.objects("ServiceMonitor").values()
        (rule,) = rendered.objects("PrometheusRule").values()
        nodes, sentinels = monitor["spec"]["endpoints"]
        for endpoint, port, job in ((nodes, "metrics", "valkey"), (sentinels, "sentinelmetrics", "valkey-sentinel")):
            assert endpoint["port"] == port and endpoint["interval"] == "30s"
            assert {"action": "replace", "targetLabel": "region", "replacement": region} in endpoint["relabelings"]
            assert {"action": "replace", "targetLabel": "job", "replacement": job} in endpoint["relabelings"]
        records = {r.get("record") for g in rule["spec"]["groups"] for r in g["rules"]}
        assert {"valkey_connected_replicas", "valkey_replication_lag", "valkey_used_memory"} <= records
        assert "valkey_commands_processed_total" in records


def test_network_policy_admits_the_monitoring_namespace_to_the_metrics_ports(
    regions: tuple[Rendered, Rendered],
) -> None:
    """Both exporters where there are Sentinels; the node's alone in a single pod or a following group."""
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    for rendered in regions:
        for name in INSTANCES:
            ingress = rendered.objects("NetworkPolicy")[name]["spec"]["ingress"]
            scraped = [rule["ports"] for rule in ingress if rule["from"] == monitoring]
            ports = [{"port": 9121, "protocol": "TCP"}]
            if name in sentinel_exporter_pods(rendered):
                ports.append({"port": 9122, "protocol": "TCP"})
            assert scraped == [ports], (rendered.stack, name)


def test_the_rules_know_each_stacks_groups(regions: tuple[Rendered, Rendered]) -> None:
    for rendered, mode in zip(regions, ("leader", "follower"), strict=True):
        (rule,) = rendered.objects("PrometheusRule").values()
        configured = {
            r["labels"]["instance"]: (r["expr"], r["labels"]["mode"])
            for g in rule["spec"]["groups"]
            for r in g["rules"]
            if r.get("record") == "valkey_group_members_configured"
        }
        # Region 2's DR groups follow region 1; a local group leads in every region; api-cache is one pod.
        assert configured == {
            "sessions": ("vector(3)", mode),
            "feature-flags": ("vector(3)", mode),
            "rate-limiting": ("vector(3)", "leader"),
        }


def test_thresholds_come_from_the_stack_config() -> None:
    thresholds = {"replicationLagBytes": "16Mi", "linkDownFor": "30s", "memoryRatio": 0.8}
    rendered = render("region1", {"monitoring": {"thresholds": thresholds, "labels": {"release": "kube-prom"}}})
    (rule,) = rendered.objects("PrometheusRule").values()
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert str(16 * 1024**2) in alerts["ValkeyReplicationLagBytes"]["expr"]
    assert alerts["ValkeyReplicaLinkDown"]["for"] == "30s"
    assert "0.8" in alerts["ValkeyMemoryNearMaxmemory"]["expr"]
    assert rule["metadata"]["labels"]["release"] == "kube-prom"


def test_runbook_links_point_into_the_readme(regions: tuple[Rendered, Rendered]) -> None:
    r1, _ = regions
    (rule,) = r1.objects("PrometheusRule").values()
    for group in rule["spec"]["groups"]:
        for alert in (r for r in group["rules"] if "alert" in r):
            anchor = alert["annotations"]["runbook_url"].rsplit("#", 1)[1]
            assert anchor == f"alert-{alert['alert'].lower()}"


def test_operator_objects_can_be_left_out_and_the_exporter_too() -> None:
    no_crds = render("region1", {"monitoring": {"prometheusOperator": False}})
    assert no_crds.objects("ServiceMonitor") == {} and no_crds.objects("PrometheusRule") == {}
    assert "exporter" in {c["name"] for c in no_crds.pod_spec("sessions")["containers"]}
    off = render("region1", {"monitoring": {"enabled": False}, **SINGLE_PODS})
    assert off.objects("ServiceMonitor") == {}
    assert {c["name"] for c in off.pod_spec("sessions")["containers"]} == {"valkey", "reloader"}
    # No exporter password file: the files the server and the reloader read, nothing else.
    assert set(off.config_files("sessions")) == {
        "valkey.conf", "users.acl", "ca-bundle.crt", "probe-password", "reloader-password", "probe.sh", "reloader.sh",
        "fence.sh", "login.sh", "single.sh",
    }  # fmt: skip
    assert "user metrics" not in off.users_acl("sessions")


@pytest.mark.parametrize(
    ("key", "thresholds"),
    [
        ("monitoring.thresholds.memoryRatio", {"memoryRatio": 1.5}),
        ("monitoring.thresholds.replicationLagSeconds", {"replicationLagSeconds": "5s"}),
        ("monitoring.thresholds.linkDownFor", {"linkDownFor": "soon"}),
    ],
)
def test_bad_thresholds_are_refused(key: str, thresholds: dict[str, Any]) -> None:
    with pytest.raises(pulumi.RunError, match=re.escape(f"valkey:{key}: given ")):
        render("region1", {"monitoring": {"thresholds": thresholds}})


def test_every_alert_has_a_runbook_heading_in_the_alerts_page() -> None:
    found = anchors(ROOT / "docs" / "alerts.md")
    for alert in ALERTS:
        assert f"alert-{alert.lower()}" in found, alert
