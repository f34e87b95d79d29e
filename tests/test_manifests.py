"""Every Kubernetes object both stacks create: valid against the real OpenAPI schemas (strict),
pods within the Pod Security Standards restricted profile, and no password outside a Secret."""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate
import pytest
from apiserver_names import name_problems
from crd_validate import KNOWN_KINDS, validate_custom_resource
from harness import Rendered, is_secret_envelope, render
from pss import restricted_violations

# The oldest Kubernetes this program supports (PVC retention policy and PDB unhealthy-pod
# eviction policy are GA there) and the newest schema bundled with kubernetes-validate.
K8S_VERSIONS = ("1.32", "1.37")


@pytest.fixture(scope="module")
def promoted() -> Rendered:
    return render("region2", {"role": "primary", "primaryStack": None})


@pytest.fixture
def stacks(regions: tuple[Rendered, Rendered], promoted: Rendered) -> dict[str, Rendered]:
    r1, r2 = regions
    return {"region1": r1, "region2": r2, "region2-promoted": promoted}


def pod_specs(rendered: Rendered) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(StatefulSet name, pod spec, pod annotations) of every workload."""
    return [
        (name, sts["spec"]["template"]["spec"], sts["spec"]["template"]["metadata"].get("annotations") or {})
        for name, sts in rendered.objects("StatefulSet").items()
    ]


def is_custom(manifest: dict[str, Any]) -> bool:
    return (manifest["apiVersion"], manifest["kind"]) in KNOWN_KINDS


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_passes_strict_schema_validation(stacks: dict[str, Rendered], version: str) -> None:
    for rendered in stacks.values():
        manifests = [m for m in rendered.manifests() if not is_custom(m)]
        assert len(manifests) >= 20
        for manifest in manifests:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_every_name_label_and_selector_passes_the_api_servers_checks(stacks: dict[str, Rendered]) -> None:
    """What no OpenAPI schema says: names, label keys and values, port names, DNS names."""
    for rendered in stacks.values():
        assert [p for m in rendered.manifests() for p in name_problems(m)] == []


def test_the_name_checks_can_fail(stacks: dict[str, Rendered]) -> None:
    sts = copy.deepcopy(stacks["region1"].objects("StatefulSet")["sessions"])
    sts["spec"]["template"]["metadata"]["labels"]["valkey.io/dr"] = "yes please"
    sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"] = "valkey-server-port"
    assert len(name_problems(sts)) == 2


def test_every_custom_resource_passes_its_crd_schema(stacks: dict[str, Rendered]) -> None:
    """cert-manager and Prometheus Operator objects, against the vendored CRD schemas
    (tests/crd_schemas/SOURCES.md), with the API server's strict field validation."""
    for rendered in stacks.values():
        custom = [m for m in rendered.manifests() if is_custom(m)]
        assert {m["kind"] for m in custom} >= {"Certificate"}
        for manifest in custom:
            validate_custom_resource(manifest)


def test_schema_validation_can_fail(stacks: dict[str, Rendered]) -> None:
    """The validator is live: a misspelt field in a rendered StatefulSet is rejected."""
    sts = copy.deepcopy(stacks["region1"].objects("StatefulSet")["sessions"])
    sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["execute"] = {"command": ["true"]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, K8S_VERSIONS[-1], strict=True)


def test_pods_meet_the_restricted_pod_security_standard(stacks: dict[str, Rendered]) -> None:
    for rendered in stacks.values():
        specs = pod_specs(rendered)
        assert len(specs) == 4
        for name, spec, pod_annotations in specs:
            assert restricted_violations(spec, pod_annotations) == [], f"{rendered.stack}/{name}"
            assert spec["automountServiceAccountToken"] is False
            container = spec["containers"][0]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_restricted_checker_finds_violations(stacks: dict[str, Rendered]) -> None:
    _, spec, _ = pod_specs(stacks["region1"])[0]
    bad = copy.deepcopy(spec)
    bad["securityContext"].pop("runAsNonRoot")
    container = bad["containers"][0]
    container["securityContext"].pop("runAsNonRoot")
    container["securityContext"]["allowPrivilegeEscalation"] = True
    container["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    bad["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    found = " ".join(restricted_violations(bad))
    for expected in ("runAsNonRoot", "allowPrivilegeEscalation", "drop ALL", "NET_ADMIN", "hostPath"):
        assert expected in found


def text_outside_secrets(rendered: Rendered) -> list[tuple[str, str]]:
    """(where, text) of everything a password must never appear in: container commands, args,
    env values, probes, every ConfigMap, all metadata, and non-secret stack outputs."""
    places: list[tuple[str, str]] = []
    for manifest in rendered.manifests():
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        if manifest["kind"] == "Secret":
            places.append((f"{where} metadata", json.dumps(manifest["metadata"])))
        else:
            places.append((where, json.dumps(manifest)))
    for name, value in rendered.exports.items():
        if name not in rendered.secret_exports:
            places.append((f"output {name}", json.dumps(value)))
    return places


def test_no_password_outside_a_secret(stacks: dict[str, Rendered]) -> None:
    for rendered in stacks.values():
        groups = sum(int(s["spec"]["replicas"]) > 1 for s in rendered.objects("StatefulSet").values())
        # client, replication, metrics, probe, reloader, admin per instance; a group adds the
        # Sentinels' node user, their peer, client and metrics users, and the label updater.
        assert len(rendered.passwords) == 6 * 4 + 5 * groups
        places = text_outside_secrets(rendered)
        assert any(where.startswith("StatefulSet/") for where, _ in places)
        for password in rendered.passwords:
            for where, text in places:
                assert password not in text, f"{rendered.stack}: a generated password appears in {where}"
    # The only ConfigMaps: each instance's marker (components/specs/marker.py), one key, no file.
    for rendered in stacks.values():
        statefulsets = rendered.objects("StatefulSet")
        persistent = {n for n, s in statefulsets.items() if s["spec"].get("volumeClaimTemplates")}
        markers = rendered.objects("ConfigMap")
        assert set(markers) == {f"{n}-holds-data" for n in persistent}
        assert all(list(m["data"]) == ["expected"] for m in markers.values())


def test_container_commands_carry_no_credentials(stacks: dict[str, Rendered]) -> None:
    for name, spec, _ in pod_specs(stacks["region2"]):
        containers = {c["name"]: c for c in spec["containers"]}
        if "labeler" in containers:  # a group: start.sh decides the role (whom to follow, in a DR one)
            assert containers["valkey"]["command"] == ["sh", "/etc/valkey/start.sh"]
            assert set(containers) - {"keeper", "sentinel", "sentinel-exporter"} == {
                "valkey", "reloader", "exporter", "labeler"
            }  # fmt: skip
            # A Sentinel and its exporter, or a keeper alone (a group following region 1).
            assert set(containers) & {"keeper", "sentinel", "sentinel-exporter"} in (
                {"keeper"},
                {"sentinel", "sentinel-exporter"},
            )
        else:  # a single pod with persistence: single.sh fences a primary on an empty volume
            assert containers["valkey"]["command"] == ["sh", "/etc/valkey/single.sh"]
            assert set(containers) == {"valkey", "reloader", "exporter"}
        for container in containers.values():
            # Only plain values and the pod's own name (no Secret references); what they hold is
            # checked outside Secrets above.
            assert "envFrom" not in container
            for e in container.get("env", []):
                assert "valueFrom" not in e or e["valueFrom"] in (
                    {"fieldRef": {"fieldPath": "metadata.name"}},
                    # The marker (components/specs/marker.py): one key of a ConfigMap, no Secret.
                    {"configMapKeyRef": {"name": f"{name}-holds-data", "key": "expected", "optional": True}},
                ), e
            commands = [" ".join(container["command"] + container.get("args", []))]
            commands += [
                " ".join(p["exec"]["command"]) for k, p in container.items() if k.endswith("Probe") and "exec" in p
            ]
            for command in commands:
                assert " -a " not in command and "--pass " not in command and "requirepass" not in command
                assert "--redis.password=" not in command
        # The probes read their password from the file the container's environment names.
        assert {"name": "PROBE_PASSWORD_FILE", "value": "/etc/valkey/probe-password"} in containers["valkey"]["env"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert containers["valkey"][probe]["exec"]["command"][:2] == ["sh", "/etc/valkey/probe.sh"]


def test_secret_values_reach_the_engine_as_pulumi_secrets(stacks: dict[str, Rendered]) -> None:
    for rendered in stacks.values():
        secrets = rendered.of_type("kubernetes:core/v1:Secret")
        assert len(secrets) == 16  # config, admin, and client credentials in databases and apps, per instance
        for name, captured in secrets.items():
            data = captured.inputs["stringData"]
            assert is_secret_envelope(data) or all(is_secret_envelope(v) for v in data.values()), name
        assert rendered.secret_exports == {"replicationCredentials"}
