"""examples/consumer runs under Pulumi's mock engine against region 1's real exports: its
Deployment points at the instance the outputs contract names, and renaming an output breaks it.

The consumer's StackReference is answered the way ``harness.render`` answers region 2's: with a
rendered region 1's ``exports`` and ``secret_exports``, never with a hand-written dictionary.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import replace
from typing import Any

import pulumi
import pytest
import yaml
from harness import ROOT, SINGLE_PODS, Rendered, render, run_program, unwrap
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs, ResourceValidationPolicy
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import unknown_checking_proxy

CONSUMER = ROOT / "examples" / "consumer"
PROJECT = "valkey-consumer"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def stack_file_config() -> dict[str, str]:
    """``Pulumi.dev.yaml``'s config as the engine passes it to a program (keys keep the project)."""
    data = yaml.safe_load((CONSUMER / "Pulumi.dev.yaml").read_text())
    return {key: str(value) for key, value in data["config"].items()}


def run_consumer(references: dict[str, Rendered], config: dict[str, str | None] | None = None) -> Rendered:
    """Run examples/consumer/__main__.py (project valkey-consumer, stack dev) with the engine that
    runs the valkey program."""
    values: dict[str, str] = stack_file_config()
    for key, value in (config or {}).items():
        if value is None:
            values.pop(f"{PROJECT}:{key}", None)
        else:
            values[f"{PROJECT}:{key}"] = value
    return run_program(CONSUMER / "__main__.py", PROJECT, "dev", values, references=references)


def consumer_deployment(consumer: Rendered) -> dict[str, Any]:
    [deployment] = consumer.of_type(DEPLOYMENT).values()
    manifest: dict[str, Any] = unwrap(deployment.inputs)
    return manifest


def test_deployment_uses_region1_host_port_and_secret(region1: Rendered) -> None:
    consumer = run_consumer({"organization/valkey/region1": region1})
    assert consumer.references == ["organization/valkey/region1"]
    sessions = region1.exports["instances"]["sessions"]
    manifest = consumer_deployment(consumer)
    assert manifest["metadata"]["namespace"] == "apps"
    assert "apps" in sessions["secretNamespaces"] and region1.exports["namespace"] == "databases"
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["VALKEY_HOST"]["value"] == sessions["host"] == "sessions.databases.svc.cluster.local"
    assert env["VALKEY_PORT"]["value"] == str(sessions["port"]) == "6379"
    assert env["VALKEY_PASSWORD"] == {
        "name": "VALKEY_PASSWORD",
        "valueFrom": {
            "secretKeyRef": {"name": sessions["secretName"], "key": sessions["secretKey"], "optional": False}
        },
    }
    # The Secret it names is one region 1 really creates, in that namespace.
    secret = region1.secret_data(sessions["secretName"], namespace="apps")
    assert sessions["secretKey"] in secret
    assert consumer.exports == {
        "deployment": "apps/sessions-consumer",
        "valkeyEndpoint": "sessions.databases.svc.cluster.local:6379",
    }


def test_a_group_hands_the_app_its_read_and_sentinel_endpoints(region1: Rendered) -> None:
    alone = render("region1", SINGLE_PODS)
    single = {e["name"] for e in consumer_container(run_consumer({"organization/valkey/region1": alone}))["env"]}
    assert not {n for n in single if "SENTINEL" in n or "READ" in n}
    grouped = region1
    sessions = grouped.exports["instances"]["sessions"]
    env = {
        e["name"]: e.get("value")
        for e in consumer_container(run_consumer({"organization/valkey/region1": grouped}))["env"]
    }
    assert env["VALKEY_HOST"] == sessions["host"]
    assert env["VALKEY_READ_HOST"] == sessions["readHost"] == "sessions-read.databases.svc.cluster.local"
    assert env["VALKEY_SENTINEL_HOST"] == sessions["sentinelHost"]
    assert (env["VALKEY_SENTINEL_PORT"], env["VALKEY_SENTINEL_MASTER"]) == ("26379", "sessions")
    assert env["VALKEY_SENTINEL_USERNAME"] == "client"
    (password,) = [
        e
        for e in consumer_container(run_consumer({"organization/valkey/region1": grouped}))["env"]
        if e["name"] == "VALKEY_SENTINEL_PASSWORD"
    ]
    ref = password["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (sessions["secretName"], "sentinel-password")
    assert "sentinel-password" in grouped.secret_data(ref["name"], namespace="apps")


def consumer_container(consumer: Rendered) -> dict[str, Any]:
    [container] = consumer_deployment(consumer)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_tls_is_verified_against_the_exported_ca(region1: Rendered) -> None:
    assert region1.exports["instances"]["sessions"]["tls"] is True
    consumer = run_consumer({"organization/valkey/region1": region1})
    [config_map] = [unwrap(c.inputs) for c in consumer.of_type("kubernetes:core/v1:ConfigMap").values()]
    assert config_map["data"] == {"ca.crt": region1.exports["caBundle"]}
    spec = consumer_deployment(consumer)["spec"]["template"]["spec"]
    assert spec["volumes"] == [{"name": "ca", "configMap": {"name": config_map["metadata"]["name"]}}]
    [container] = spec["containers"]
    assert container["volumeMounts"] == [{"name": "ca", "mountPath": "/etc/valkey-ca", "readOnly": True}]
    assert "--tls --cacert /etc/valkey-ca/ca.crt" in container["command"][2]


def test_plaintext_instance_needs_no_ca() -> None:
    plaintext = render("region1", {"tls": {"enabled": False}})
    assert plaintext.exports["instances"]["sessions"]["tls"] is False
    consumer = run_consumer({"organization/valkey/region1": plaintext})
    assert consumer.of_type("kubernetes:core/v1:ConfigMap") == {}
    [container] = consumer_deployment(consumer)["spec"]["template"]["spec"]["containers"]
    assert "--tls" not in container["command"][2] and "volumeMounts" not in container


def admitted(rendered: Rendered, instance: str, namespace: str, pod_labels: dict[str, str]) -> bool:
    """Whether the instance's NetworkPolicy lets such a pod reach the client port."""
    policy = rendered.objects("NetworkPolicy")[instance]
    for rule in policy["spec"].get("ingress", []):
        for peer in rule.get("from", []):
            namespaces = peer.get("namespaceSelector", {}).get("matchLabels", {})
            pods = (peer.get("podSelector") or {}).get("matchLabels") or {}
            if namespaces.get("kubernetes.io/metadata.name") == namespace and pods.items() <= pod_labels.items():
                return True
    return False


def test_network_policy_admits_the_consumer(region1: Rendered) -> None:
    manifest = consumer_deployment(run_consumer({"organization/valkey/region1": region1}))
    pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert admitted(region1, "sessions", "apps", pod_labels)
    assert not admitted(region1, "sessions", "databases", pod_labels)


def test_a_namespace_without_the_secret_is_refused(region1: Rendered) -> None:
    with pytest.raises(
        pulumi.RunError, match=r"valkey-consumer:namespace: given 'web'; accepted: one of \['databases', 'apps'\]"
    ):
        run_consumer({"organization/valkey/region1": region1}, {"namespace": "web"})


def test_no_password_reaches_the_consumer(region1: Rendered) -> None:
    consumer = run_consumer({"organization/valkey/region1": region1})
    text = repr([c.inputs for c in consumer.resources.values()])
    assert not [p for p in region1.passwords if p in text]


def test_consumer_pod_is_restricted_and_pinned(region1: Rendered) -> None:
    manifest = consumer_deployment(run_consumer({"organization/valkey/region1": region1}))
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "valkey/valkey:8.1.8-alpine"
    assert container["resources"]["limits"]["memory"] == "32Mi"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 999,
        "runAsGroup": 1000,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_another_instance_is_chosen_by_config(region1: Rendered) -> None:
    consumer = run_consumer({"organization/valkey/region1": region1}, {"instance": "rate-limiting"})
    [container] = consumer_deployment(consumer)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["VALKEY_HOST"]["value"] == region1.exports["instances"]["rate-limiting"]["host"]
    assert env["VALKEY_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "rate-limiting-credentials"


def test_renamed_output_fails_the_consumer_before_it_creates_anything(region1: Rendered) -> None:
    exports = copy.deepcopy(region1.exports)
    exports["valkeyInstances"] = exports.pop("instances")
    renamed = replace(region1, exports=exports)
    with pytest.raises(
        pulumi.RunError,
        match=r"valkey-consumer:valkeyStack: stack organization/valkey/region1 exports no 'instances' \(",
    ):
        run_consumer({"organization/valkey/region1": renamed})


def test_unknown_instance_names_the_ones_exported(region1: Rendered) -> None:
    with pytest.raises(pulumi.RunError, match=r"valkey-consumer:instance: given 'session'; accepted: one of \["):
        run_consumer({"organization/valkey/region1": region1}, {"instance": "session"})


def test_consumer_passes_the_policy_pack(region1: Rendered) -> None:
    """The example runs a valkey image, so the pack's pod policies apply to it too."""
    spec = importlib.util.spec_from_file_location("valkey_policies", ROOT / "policy" / "valkey_policies.py")
    assert spec is not None and spec.loader is not None
    policies = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(policies)
    [deployment] = run_consumer({"organization/valkey/region1": region1}).of_type(DEPLOYMENT).values()
    props = unknown_checking_proxy(deserialize_properties(copy.deepcopy(deployment.inputs)))
    assert policies.is_valkey_pod(policies.pod_spec(DEPLOYMENT, props))
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    args = ResourceValidationArgs(DEPLOYMENT, props, f"urn:pulumi:dev::{PROJECT}::{DEPLOYMENT}::x", "x", options, None)
    reported: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        reported.append(message)

    for policy in policies.POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            policy.validate(args, report)
    assert reported == []
