"""The custom resource validator: the real CRD schemas, applied as strictly as the API server does."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from crd_validate import (
    KNOWN_KINDS,
    SCHEMA_DIR,
    CustomResourceInvalid,
    UnknownCustomResource,
    strict_schema,
    validate_custom_resource,
)
from harness import Rendered

CERTIFICATE: dict[str, Any] = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "Certificate",
    "metadata": {"name": "sessions-tls", "namespace": "valkey", "labels": {"app.kubernetes.io/name": "valkey"}},
    "spec": {
        "secretName": "sessions-tls",
        "issuerRef": {"name": "valkey-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
        "dnsNames": ["sessions", "sessions.valkey.svc", "*.sessions-headless.valkey.svc.cluster.local"],
        "duration": "2160h",
        "renewBefore": "720h",
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": ["server auth", "client auth"],
    },
}

SERVICE_MONITOR: dict[str, Any] = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {"name": "valkey", "namespace": "valkey", "labels": {"release": "prometheus"}},
    "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "valkey"}},
        "namespaceSelector": {"matchNames": ["valkey"]},
        "endpoints": [
            {
                "port": "metrics",
                "interval": "30s",
                "relabelings": [
                    {"action": "replace", "targetLabel": "region", "replacement": "region1"},
                    {
                        "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
                        "targetLabel": "instance",
                    },
                ],
            }
        ],
    },
}

PROMETHEUS_RULE: dict[str, Any] = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "valkey", "namespace": "valkey"},
    "spec": {
        "groups": [
            {
                "name": "valkey.rules",
                "rules": [
                    {
                        "record": "valkey:memory_used:ratio",
                        "expr": "redis_memory_used_bytes / redis_memory_max_bytes",
                        "labels": {"team": "platform"},
                    },
                    {
                        "alert": "ValkeyDown",
                        "expr": "redis_up == 0",
                        "for": "5m",
                        "labels": {"severity": "critical"},
                        "annotations": {"summary": "Valkey {{ $labels.instance }} is down"},
                    },
                ],
            }
        ]
    },
}

EXAMPLES = {"Certificate": CERTIFICATE, "ServiceMonitor": SERVICE_MONITOR, "PrometheusRule": PROMETHEUS_RULE}


def errors_of(manifest: dict[str, Any]) -> dict[str, str]:
    """path -> message of every error; fails the test if the manifest is valid."""
    with pytest.raises(CustomResourceInvalid) as info:
        validate_custom_resource(manifest)
    return dict(info.value.errors)


def changed(example: dict[str, Any], edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    manifest = copy.deepcopy(example)
    edit(manifest)
    return manifest


def walk(node: Any) -> list[dict[str, Any]]:
    """Every schema node (dict) under ``node``."""
    if isinstance(node, dict):
        return [node, *(n for v in node.values() for n in walk(v))]
    if isinstance(node, list):
        return [n for v in node for n in walk(v)]
    return []


# --- the schemas ------------------------------------------------------------------------------


def test_every_known_kind_has_the_real_crd_schema() -> None:
    assert set(KNOWN_KINDS) == {(m["apiVersion"], m["kind"]) for m in EXAMPLES.values()}
    sources = (SCHEMA_DIR / "SOURCES.md").read_text()
    for (_, kind), filename in KNOWN_KINDS.items():
        schema = json.loads((SCHEMA_DIR / filename).read_text())
        assert schema["type"] == "object"
        assert {"apiVersion", "kind", "metadata", "spec"} <= set(schema["properties"]), kind
        # Unchanged since it was copied from upstream (SOURCES.md records where from, and its hash).
        digest = hashlib.sha256((SCHEMA_DIR / filename).read_bytes()).hexdigest()
        assert f"`{filename}` |" in sources and digest in sources, f"{filename}: sha256 {digest} not in SOURCES.md"
        # Nothing the validator cannot check is hidden in them: no CEL rules, no open subtrees.
        for node in walk(schema):
            assert "x-kubernetes-validations" not in node, kind
            assert "x-kubernetes-preserve-unknown-fields" not in node, kind


@pytest.mark.parametrize("api_version, kind", sorted(KNOWN_KINDS))
def test_strict_schema_closes_every_structural_object(api_version: str, kind: str) -> None:
    schema = strict_schema(api_version, kind)
    objects = [n for n in walk(schema) if n.get("type") == "object" and "properties" in n]
    assert objects
    for node in objects:
        assert "additionalProperties" in node, node.get("description", "")[:80]


# --- valid examples -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_minimal_valid_example_passes(kind: str) -> None:
    validate_custom_resource(EXAMPLES[kind])


def test_valid_variants_pass() -> None:
    # int-or-string fields take either; RE2's "^(?i)" pattern works under Python's re.
    validate_custom_resource(changed(SERVICE_MONITOR, lambda m: m["spec"]["endpoints"][0].update(targetPort=9121)))
    validate_custom_resource(changed(SERVICE_MONITOR, lambda m: m["spec"]["endpoints"][0].update(targetPort="exp")))
    validate_custom_resource(
        changed(PROMETHEUS_RULE, lambda m: m["spec"]["groups"][0].update(partial_response_strategy="ABORT"))
    )
    validate_custom_resource(changed(CERTIFICATE, lambda m: m["metadata"].pop("namespace")))
    validate_custom_resource(changed(CERTIFICATE, lambda m: m["spec"].update(revisionHistoryLimit=2**31 - 1)))


def test_rendered_custom_resources_pass(regions: tuple[Rendered, Rendered]) -> None:
    """Every custom resource both stacks render (today the Certificates) is valid."""
    seen = 0
    for rendered in regions:
        for manifest in rendered.manifests():
            if (manifest["apiVersion"], manifest["kind"]) in KNOWN_KINDS:
                validate_custom_resource(manifest)
                seen += 1
    assert seen > 0


# --- invalid examples ---------------------------------------------------------------------------


def test_misspelt_field_is_rejected() -> None:
    manifest = changed(CERTIFICATE, lambda m: m["spec"].update(dnsName=m["spec"].pop("dnsNames")))
    assert errors_of(manifest) == {"spec.dnsName": "unknown field"}


def test_wrong_type_is_rejected() -> None:
    errors = errors_of(changed(CERTIFICATE, lambda m: m["spec"].update(duration=5)))
    assert list(errors) == ["spec.duration"]
    assert "not of type 'string'" in errors["spec.duration"]


def test_value_outside_enum_is_rejected() -> None:
    errors = errors_of(changed(CERTIFICATE, lambda m: m["spec"]["privateKey"].update(algorithm="DSA")))
    assert list(errors) == ["spec.privateKey.algorithm"]
    assert "'DSA' is not one of ['RSA', 'ECDSA', 'Ed25519']" in errors["spec.privateKey.algorithm"]


def test_unknown_field_inside_endpoints_is_rejected() -> None:
    manifest = changed(SERVICE_MONITOR, lambda m: m["spec"]["endpoints"][0].update(scrapeInterval="30s"))
    assert errors_of(manifest) == {"spec.endpoints[0].scrapeInterval": "unknown field"}


@pytest.mark.parametrize(
    "example, edit, path",
    [
        (CERTIFICATE, lambda m: m.update(specs={}), "specs"),
        (CERTIFICATE, lambda m: m["spec"]["issuerRef"].update(namespace="x"), "spec.issuerRef.namespace"),
        (CERTIFICATE, lambda m: m["spec"]["privateKey"].update(rotation="Always"), "spec.privateKey.rotation"),
        (
            SERVICE_MONITOR,
            lambda m: m["spec"]["endpoints"][0]["relabelings"][0].update(target_label="x"),
            "spec.endpoints[0].relabelings[0].target_label",
        ),
        (SERVICE_MONITOR, lambda m: m["spec"]["selector"].update(matchLabel={}), "spec.selector.matchLabel"),
        (PROMETHEUS_RULE, lambda m: m["spec"]["groups"][0]["rules"][1].update(severity="x"), "spec.groups[0]"),
        (PROMETHEUS_RULE, lambda m: m["metadata"].update(label={}), "metadata.label"),
    ],
)
def test_unknown_fields_are_rejected_at_every_depth(
    example: dict[str, Any], edit: Callable[[dict[str, Any]], object], path: str
) -> None:
    errors = errors_of(changed(example, edit))
    [(where, message)] = errors.items()
    assert where.startswith(path) and message == "unknown field", errors


@pytest.mark.parametrize(
    "example, edit, path, fragment",
    [
        (CERTIFICATE, lambda m: m["spec"].pop("secretName"), "spec.secretName", "required"),
        (CERTIFICATE, lambda m: m["spec"]["issuerRef"].pop("name"), "spec.issuerRef.name", "required"),
        (CERTIFICATE, lambda m: m["spec"].update(usages=["server"]), "spec.usages[0]", "is not one of"),
        (CERTIFICATE, lambda m: m["spec"]["privateKey"].update(size="256"), "spec.privateKey.size", "integer"),
        (CERTIFICATE, lambda m: m["spec"].update(renewBeforePercentage=2**31), "spec.renewBeforePercentage", "int32"),
        (CERTIFICATE, lambda m: m["spec"].update(isCA="true"), "spec.isCA", "boolean"),
        (CERTIFICATE, lambda m: m["metadata"]["labels"].update(tier=1), "metadata.labels.tier", "string"),
        (CERTIFICATE, lambda m: m["metadata"].update(namespace=7), "metadata.namespace", "string"),
        (CERTIFICATE, lambda m: m["metadata"].pop("name"), "metadata", "name"),
        (CERTIFICATE, lambda m: m["spec"].update(commonName=None), "spec.commonName", "None"),
        (
            SERVICE_MONITOR,
            lambda m: m["spec"]["endpoints"][0].update(interval="30 s"),
            "spec.endpoints[0].interval",
            "match",
        ),
        (
            SERVICE_MONITOR,
            lambda m: m["spec"]["endpoints"][0].update(targetPort=9121.5),
            "spec.endpoints[0].targetPort",
            "integer or a string",
        ),
        (
            SERVICE_MONITOR,
            lambda m: m["spec"]["endpoints"][0]["relabelings"][0].update(action="rewrite"),
            "spec.endpoints[0].relabelings[0].action",
            "is not one of",
        ),
        (SERVICE_MONITOR, lambda m: m["spec"].pop("selector"), "spec.selector", "required"),
        (SERVICE_MONITOR, lambda m: m["spec"].update(sampleLimit="1000"), "spec.sampleLimit", "integer"),
        (
            PROMETHEUS_RULE,
            lambda m: m["spec"]["groups"][0]["rules"][0].pop("expr"),
            "spec.groups[0].rules[0].expr",
            "required",
        ),
        (
            PROMETHEUS_RULE,
            lambda m: m["spec"]["groups"][0]["rules"][1].update(**{"for": 300}),
            "spec.groups[0].rules[1].for",
            "string",
        ),
        (
            PROMETHEUS_RULE,
            lambda m: m["spec"]["groups"][0].update(partial_response_strategy="x"),
            "spec.groups[0]",
            "match",
        ),
        (PROMETHEUS_RULE, lambda m: m["spec"]["groups"].append({"name": "valkey.rules"}), "spec.groups", "duplicate"),
        (PROMETHEUS_RULE, lambda m: m.pop("spec"), "spec", "required"),
    ],
)
def test_invalid_values_are_rejected(
    example: dict[str, Any], edit: Callable[[dict[str, Any]], object], path: str, fragment: str
) -> None:
    errors = errors_of(changed(example, edit))
    assert any(where.startswith(path) and fragment in message for where, message in errors.items()), errors


def test_every_error_is_listed_with_its_path() -> None:
    def break_it(m: dict[str, Any]) -> None:
        m["spec"]["dnsName"] = m["spec"].pop("dnsNames")
        m["spec"]["duration"] = 5
        m["spec"]["privateKey"]["algorithm"] = "DSA"

    with pytest.raises(CustomResourceInvalid) as info:
        validate_custom_resource(changed(CERTIFICATE, break_it))
    assert info.value.paths == ["spec.dnsName", "spec.duration", "spec.privateKey.algorithm"]
    text = str(info.value)
    assert text.startswith("Certificate valkey/sessions-tls is invalid (3 errors):")
    assert "spec.dnsName: unknown field" in text


def test_status_is_checked_too() -> None:
    manifest = changed(CERTIFICATE, lambda m: m.update(status={"notAfter": "2025-02-30T00:00:00Z"}))
    assert errors_of(manifest) == {"status.notAfter": "'2025-02-30T00:00:00Z' is not a valid date-time"}
    validate_custom_resource(changed(CERTIFICATE, lambda m: m.update(status={"notAfter": "2025-02-28T00:00:00Z"})))


@pytest.mark.parametrize(
    "api_version, kind",
    [("cert-manager.io/v1alpha2", "Certificate"), ("cert-manager.io/v1", "Issuer"), ("v1", "ConfigMap"), (None, None)],
)
def test_a_kind_without_schema_is_refused(api_version: str | None, kind: str | None) -> None:
    manifest = changed(CERTIFICATE, lambda m: m.update(apiVersion=api_version, kind=kind))
    with pytest.raises(UnknownCustomResource):
        validate_custom_resource(manifest)
