"""The exporter sidecar and the Prometheus Operator objects, as Kubernetes would receive them: built
under Pulumi's mock engine and read back as plain manifests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import needs
import pulumi
import pulumi_kubernetes as k8s
import pytest
from harness import PROJECT, CaptureMocks, unwrap
from podrunner.image import REDIS_EXPORTER_TAGS
from pss import restricted_violations
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components.config.models import AlertThresholds
from components.monitoring import Monitoring
from components.render import exporter
from components.render.acl import EXPORTER_RULES, EXPORTER_USER, AclUser, password_hash, render_acl
from components.render.alerts import rule_groups
from components.specs import exporter as exporter_spec
from components.specs.monitoring import MonitoringArgs

SECRET_PASSWORD = "exporter-password-that-must-not-leak"
CUSTOM = "kubernetes:monitoring.coreos.com/v1"


def manifests(build: Callable[[], None]) -> dict[str, dict[str, Any]]:
    """What ``build`` registers, by resource type and name, as plain manifests."""
    mocks = CaptureMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="unit", preview=False)

    async def program() -> None:
        build()

    _sync_await(run_pulumi_func(program))
    return {f"{typ}/{name}": unwrap(c.inputs) for (typ, name), c in mocks.resources.items()}


def sidecar_pod(pod_security_context: k8s.core.v1.PodSecurityContextArgs | None = None) -> dict[str, Any]:
    def build() -> None:
        k8s.core.v1.Pod(
            "sessions-0",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="sessions-0", namespace="databases"),
            spec=k8s.core.v1.PodSpecArgs(
                automount_service_account_token=False,
                security_context=pod_security_context,
                containers=[exporter_spec.container(6379)],
                volumes=[exporter_spec.volume("sessions-config")],
            ),
        )

    return manifests(build)["kubernetes:core/v1:Pod/sessions-0"]


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    return sidecar_pod()


def test_sidecar_meets_the_restricted_profile_on_its_own(pod: dict[str, Any]) -> None:
    """No pod-level security context to lean on: the container's own settings suffice."""
    assert "securityContext" not in pod["spec"]
    assert restricted_violations(pod["spec"]) == []


def test_sidecar_runs_as_the_images_user_with_nothing_writable(pod: dict[str, Any]) -> None:
    [container] = pod["spec"]["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "runAsUser": 59000, "runAsGroup": 59000, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    assert container["resources"]["limits"]["memory"] == container["resources"]["requests"]["memory"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9121, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "metrics"}


@pytest.mark.parametrize("version", ["1.32", "1.37"])
def test_pod_with_sidecar_passes_strict_schema_validation(pod: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(pod, version, strict=True)


def test_password_reaches_the_exporter_only_as_a_file(pod: dict[str, Any]) -> None:
    [container] = pod["spec"]["containers"]
    assert "env" not in container and "envFrom" not in container and container["command"] == ["/redis_exporter"]
    assert "--redis.password-file=/etc/valkey-exporter/password.json" in container["args"]
    assert not [a for a in container["args"] if a.startswith("--redis.password=")]
    [volume] = pod["spec"]["volumes"]
    assert container["volumeMounts"] == [
        {"name": volume["name"], "mountPath": "/etc/valkey-exporter", "readOnly": True}
    ]
    # Only the exporter's key of the config Secret is projected: not valkey.conf, not the masterauth files.
    assert volume["secret"] == {
        "secretName": "sessions-config",
        "items": [{"key": "exporter-password.json", "path": "password.json"}],
        "defaultMode": 0o440,
    }


def test_image_is_pinned_to_a_tag_the_real_process_tests_run(pod: dict[str, Any]) -> None:
    """An exact release (no floating ``latest`` or ``v1``), and one whose command line the pod runner's
    stand-in knows: the drills and rotation tests that run the sidecar ran this tag's flags."""
    [container] = pod["spec"]["containers"]
    repository, tag = container["image"].rsplit(":", 1)
    assert repository == "oliver006/redis_exporter" and re.fullmatch(r"v\d+\.\d+\.\d+", tag)
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert tag in REDIS_EXPORTER_TAGS


def test_password_file_serves_old_and_new_exporters() -> None:
    content = exporter.password_file(6380, SECRET_PASSWORD)
    assert json.loads(content) == {
        "redis://127.0.0.1:6380": SECRET_PASSWORD,  # exporter 1.45: the address as given
        "redis://metrics@127.0.0.1:6380": SECRET_PASSWORD,  # later: --redis.user inserted
    }
    assert "--redis.addr=redis://127.0.0.1:6380" in exporter.args(6380)
    assert f"--redis.user={EXPORTER_USER}" in exporter.args(6380)
    assert SECRET_PASSWORD not in " ".join(exporter.args(6380) + exporter.PINNED_ONLY_ARGS)


def test_under_tls_the_exporter_verifies_against_the_projected_ca_bundle() -> None:
    def build() -> None:
        k8s.core.v1.Pod(
            "tls",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="tls", namespace="databases"),
            spec=k8s.core.v1.PodSpecArgs(
                containers=[exporter_spec.container(6379, tls=True)],
                volumes=[exporter_spec.volume("sessions-config", tls=True)],
            ),
        )

    spec = manifests(build)["kubernetes:core/v1:Pod/tls"]["spec"]
    args = spec["containers"][0]["args"]
    assert "--redis.addr=rediss://127.0.0.1:6379" in args
    assert "--tls-ca-cert-file=/etc/valkey-exporter/ca-bundle.crt" in args
    assert "--skip-tls-verification" not in " ".join(args)
    assert spec["volumes"][0]["secret"]["items"] == [
        {"key": "exporter-password.json", "path": "password.json"},
        {"key": "ca-bundle.crt", "path": "ca-bundle.crt"},
    ]
    assert set(json.loads(exporter.password_file(6379, SECRET_PASSWORD, tls=True))) == {
        "rediss://127.0.0.1:6379",
        "rediss://metrics@127.0.0.1:6379",
    }


def test_exporter_acl_user_reads_no_data() -> None:
    line = render_acl([AclUser(EXPORTER_USER, (SECRET_PASSWORD,), EXPORTER_RULES)])
    assert line == f"user metrics on #{password_hash(SECRET_PASSWORD)} resetchannels -@all +info\n"
    assert "~" not in line and "&" not in line


@needs.debian({"prometheus-redis-exporter": ["prometheus-redis-exporter"]})
def test_debian_exporter_parses_the_common_flags_but_not_the_pinned_only_ones() -> None:
    """Go's flag parser exits on an unknown flag: the e2e test may pass only ``args()`` to 1.45."""
    binary = shutil.which("prometheus-redis-exporter")
    assert binary is not None

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, *flags, "--version"], capture_output=True, text=True, timeout=10, check=False)

    ok = run(*exporter.args(6379, "/nonexistent/password.json", tls_ca_path="/nonexistent/ca.crt"))
    assert ok.returncode == 0, ok.stderr
    assert "1.45" in ok.stdout + ok.stderr
    for flag in exporter.PINNED_ONLY_ARGS:
        refused = run(flag)
        assert refused.returncode != 0 and "flag provided but not defined" in refused.stderr, flag


def monitoring(interval: int = 30) -> dict[str, dict[str, Any]]:
    def build() -> None:
        Monitoring(
            "valkey",
            MonitoringArgs(
                namespace="databases",
                region="region2",
                selector={"app.kubernetes.io/name": "valkey"},
                rule_groups=rule_groups(AlertThresholds(), "https://example.com/README.md"),
                labels={"release": "prometheus"},
                scrape_interval_seconds=interval,
            ),
        )

    return manifests(build)


def test_service_monitor_scrapes_the_metrics_port_with_the_rules_labels() -> None:
    sm = monitoring()[f"{CUSTOM}:ServiceMonitor/valkey-servicemonitor"]
    assert (sm["apiVersion"], sm["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert sm["metadata"]["namespace"] == "databases" and sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "valkey"}}
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["databases"]}
    [endpoint, sentinels] = sm["spec"]["endpoints"]
    # The Sentinels' exporters: the same labels, their own port and job.
    assert sentinels["port"] == "sentinelmetrics"
    assert sentinels["relabelings"] == [
        {"action": "replace", "targetLabel": "job", "replacement": "valkey-sentinel"},
        *endpoint["relabelings"][1:],
    ]
    # The labels the alert rules group and filter by: job and region set, the rest from pod labels.
    assert endpoint == {
        "port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s",
        "relabelings": [
            {"action": "replace", "targetLabel": "job", "replacement": "valkey"},
            {"action": "replace", "targetLabel": "region", "replacement": "region2"},
            {"action": "replace", "targetLabel": "instance",
             "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"]},
            {"action": "replace", "targetLabel": "dr", "sourceLabels": ["__meta_kubernetes_pod_label_valkey_io_dr"]},
            {"action": "replace", "targetLabel": "eviction_policy",
             "sourceLabels": ["__meta_kubernetes_pod_label_valkey_io_maxmemory_policy"]},
        ],
    }  # fmt: skip


def test_scrape_timeout_never_exceeds_the_interval() -> None:
    for endpoint in monitoring(interval=5)[f"{CUSTOM}:ServiceMonitor/valkey-servicemonitor"]["spec"]["endpoints"]:
        assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("5s", "5s")


def test_prometheus_rule_carries_the_rule_groups() -> None:
    rule = monitoring()[f"{CUSTOM}:PrometheusRule/valkey-prometheusrule"]
    assert (rule["kind"], rule["metadata"]["name"]) == ("PrometheusRule", "valkey")
    assert rule["spec"]["groups"] == rule_groups(AlertThresholds(), "https://example.com/README.md")
