"""The policy pack (policy/) on what the program really renders: every policy passes on both
regions, and fails with a specific message on a copy changed in one place.

Policies get their inputs the way CrossGuard gives them: the captured inputs go through
pulumi_policy's own ``deserialize_properties`` (secret envelopes decrypted, as the engine sends
them with KeepSecrets) and ``unknown_checking_proxy``. The last tests start the real pack
(``policy/__main__.py``, as the CLI does) and talk to it over the analyzer gRPC protocol.
``policy/__main__.py`` is never imported: PolicyPack blocks serving.
"""

from __future__ import annotations

import copy
import importlib.util
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, struct_pb2
from harness import ROOT, SECRET_SIG, Captured, Rendered, render
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from components.render import pod_scripts

POLICY_DIR = ROOT / "policy"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
SECRET = "kubernetes:core/v1:Secret"
PASSWORD = "s3cretPassw0rd"


def _load(name: str) -> ModuleType:
    """policy/ is a policy pack, not a package: load its module by path (never its __main__)."""
    spec = importlib.util.spec_from_file_location(name, POLICY_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vp = _load("valkey_policies")
RESOURCE_POLICIES = {p.name: p for p in vp.POLICIES if isinstance(p, ResourceValidationPolicy)}
STACK_POLICIES = {p.name: p for p in vp.POLICIES if isinstance(p, StackValidationPolicy)}


# --- building what CrossGuard passes -----------------------------------------------------------


def as_props(inputs: dict[str, Any]) -> Any:
    return unknown_checking_proxy(deserialize_properties(copy.deepcopy(inputs)))


def urn(stack: str, typ: str, name: str) -> str:
    return f"urn:pulumi:{stack}::valkey::{typ}::{name}"


def _provider(c: Captured) -> PolicyProviderResource | None:
    if not c.provider:
        return None
    provider_urn = c.provider.rsplit("::", 1)[0]
    return PolicyProviderResource("pulumi:providers:kubernetes", {}, provider_urn, provider_urn.rsplit("::", 1)[-1])


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def resource_args(stack: str, c: Captured, inputs: dict[str, Any] | None = None) -> ResourceValidationArgs:
    props = as_props(c.inputs if inputs is None else inputs)
    return ResourceValidationArgs(c.typ, props, urn(stack, c.typ, c.name), c.name, _options(), _provider(c))


def stack_args(rendered: Rendered, replace: dict[tuple[str, str], dict[str, Any]] | None = None) -> StackValidationArgs:
    resources = []
    for key, c in rendered.resources.items():
        inputs = (replace or {}).get(key, c.inputs)
        resources.append(
            PolicyResource(c.typ, as_props(inputs), urn(rendered.stack, *key), c.name, _options(), None, None, [], {})
        )
    return StackValidationArgs(resources)


def run(validate: Callable[..., Any], args: Any) -> list[tuple[str, str | None]]:
    """Call a validation the way the analyzer does, collecting (message, urn) pairs."""
    reported: list[tuple[str, str | None]] = []
    validate(args, lambda message, urn=None: reported.append((message, urn)))
    return reported


def violations(policy: str, stack: str, c: Captured, inputs: dict[str, Any] | None = None) -> list[str]:
    return [m for m, _ in run(RESOURCE_POLICIES[policy].validate, resource_args(stack, c, inputs))]


# --- the real render passes -------------------------------------------------------------------


def test_pack_declares_mandatory_policies_with_unique_names() -> None:
    names = [p.name for p in vp.POLICIES]
    assert len(names) == len(set(names)) == 7
    assert all(p.enforcement_level == vp.MANDATORY for p in vp.POLICIES)


@pytest.mark.parametrize("index", [0, 1], ids=["region1", "region2"])
def test_real_render_passes_every_policy(regions: tuple[Rendered, Rendered], index: int) -> None:
    rendered = regions[index]
    found: list[tuple[str, str | None, str]] = []
    for c in rendered.resources.values():
        for name, policy in RESOURCE_POLICIES.items():
            found += [(name, c.name, m) for m, _ in run(policy.validate, resource_args(rendered.stack, c))]
    for name, stack_policy in STACK_POLICIES.items():
        found += [(name, u, m) for m, u in run(stack_policy.validate, stack_args(rendered))]
    assert found == []


def test_local_instance_without_persistence_passes() -> None:
    """dr: false instances may run on an emptyDir: no policy asks them for a volume."""
    stack = yaml.safe_load((ROOT / "Pulumi.region1.yaml").read_text())["config"]["valkey:instances"]
    local = render("region1", {"instances": {**stack, "api-cache": {**stack["api-cache"], "persistence": False}}})
    assert "volumeClaimTemplates" not in local.objects("StatefulSet")["api-cache"]["spec"]
    found = [
        m
        for c in local.resources.values()
        for p in RESOURCE_POLICIES.values()
        for m, _ in run(p.validate, resource_args("region1", c))
    ]
    found += [m for p in STACK_POLICIES.values() for m, _ in run(p.validate, stack_args(local))]
    assert found == []


def test_policies_recognise_every_valkey_statefulset(regions: tuple[Rendered, Rendered]) -> None:
    """The passes above are not vacuous: every StatefulSet is a Valkey pod with a server container."""
    for rendered in regions:
        statefulsets = rendered.of_type(STATEFULSET)
        assert set(statefulsets) == set(rendered.exports["instances"])
        for c in statefulsets.values():
            spec = vp.pod_spec(c.typ, as_props(c.inputs))
            assert vp.is_valkey_pod(spec)
            assert [vp.runs_server(x) for x in vp.all_containers(spec)].count(True) == 1


def test_stack_policy_finds_dr_primaries_through_their_external_service(regions: tuple[Rendered, Rendered]) -> None:
    found = [{sts.name for _, sts in vp.dr_endpoints(stack_args(rendered).resources)} for rendered in regions]
    expected = [
        {name for name, out in rendered.exports["instances"].items() if out["dr"] and out["role"] == "primary"}
        for rendered in regions
    ]
    assert found == expected == [{"sessions", "feature-flags"}, set()]


def test_dr_labels_when_the_program_sets_them_agree_with_the_exports(regions: tuple[Rendered, Rendered]) -> None:
    labelled = 0
    for rendered in regions:
        for name, out in rendered.exports["instances"].items():
            for c in (rendered.of_type(STATEFULSET)[name], rendered.of_type(SECRET)[f"{name}-config"]):
                labels = c.inputs["metadata"].get("labels", {})
                if vp.DR_LABEL in labels:
                    labelled += 1
                    assert labels[vp.DR_LABEL] == str(out["dr"]).lower()
                    assert labels[vp.ROLE_LABEL] == out["role"]
    if not labelled:
        pytest.skip(
            f"the program does not set {vp.DR_LABEL}/{vp.ROLE_LABEL} yet: only the stack policy sees DR primaries"
        )


# --- mutated copies fail ------------------------------------------------------------------------


def sessions(regions: tuple[Rendered, Rendered]) -> Captured:
    return regions[0].of_type(STATEFULSET)["sessions"]


def mutated(c: Captured, change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    inputs = copy.deepcopy(c.inputs)
    change(inputs)
    return inputs


def container(inputs: dict[str, Any], name: str = "valkey") -> dict[str, Any]:
    return next(x for x in inputs["spec"]["template"]["spec"]["containers"] if x["name"] == name)


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


PASSWORD_LEAKS = {
    "server-flag": (lambda i: container(i).update(args=["--requirepass", PASSWORD]), "passes --requirepass"),
    "masterauth-flag": (
        lambda i: container(i).update(command=["valkey-server", "/etc/valkey/valkey.conf", "--masterauth", PASSWORD]),
        "passes --masterauth",
    ),
    "k8s-env-expansion": (
        lambda i: container(i).update(args=["--requirepass", "$(VALKEY_PASSWORD)"]),
        "passes --requirepass",
    ),
    "exporter-flag": (
        lambda i: container(i).update(args=["--redis.addr=redis://127.0.0.1:6379", "--redis.password=$(PASSWORD)"]),
        "passes --redis.password",
    ),
    "cli-a-in-probe": (
        lambda i: container(i)["readinessProbe"]["exec"].update(command=sh(f"valkey-cli -a {PASSWORD} ping")),
        "readinessProbe passes -a",
    ),
    "cli-pass-in-hook": (
        lambda i: container(i).update(
            lifecycle={"preStop": {"exec": {"command": ["valkey-cli", "--pass", PASSWORD, "shutdown"]}}}
        ),
        "lifecycle.preStop passes --pass",
    ),
    "rediscli-auth-literal": (
        lambda i: container(i)["livenessProbe"]["exec"].update(
            command=sh(f'REDISCLI_AUTH="{PASSWORD}" valkey-cli --user probe ping')
        ),
        "livenessProbe sets REDISCLI_AUTH to a literal value",
    ),
    "requirepass-in-script": (
        lambda i: container(i).update(
            command=sh(f"echo 'requirepass {PASSWORD}' > /tmp/v.conf && exec valkey-server /tmp/v.conf")
        ),
        "writes requirepass with a literal value",
    ),
    "config-set-masterauth": (
        lambda i: container(i)["startupProbe"]["exec"].update(
            command=sh(f"valkey-cli config set masterauth {PASSWORD}")
        ),
        "startupProbe writes masterauth with a literal value",
    ),
    "config-set-argv": (
        lambda i: container(i)["startupProbe"]["exec"].update(
            command=["valkey-cli", "CONFIG", "SET", "requirepass", PASSWORD]
        ),
        "startupProbe writes requirepass with a literal value",
    ),
    "acl-setuser": (
        lambda i: container(i)["startupProbe"]["exec"].update(
            command=sh(f"valkey-cli ACL SETUSER app on '>{PASSWORD}'")
        ),
        "startupProbe sets an ACL password with ACL SETUSER",
    ),
    "uri-with-password": (
        lambda i: container(i)["startupProbe"]["exec"].update(
            command=sh(f"valkey-cli -u redis://app:{PASSWORD}@x ping")
        ),
        "startupProbe holds a URI with a password",
    ),
    "env-value": (
        lambda i: container(i).update(env=[{"name": "VALKEY_PASSWORD", "value": PASSWORD}]),
        "env VALKEY_PASSWORD holds a password as a plain value",
    ),
    "env-masterauth": (
        lambda i: container(i).update(env=[{"name": "MASTERAUTH", "value": PASSWORD}]),
        "env MASTERAUTH holds a password",
    ),
}


@pytest.mark.parametrize("case", sorted(PASSWORD_LEAKS))
def test_password_in_pod_spec_fails(regions: tuple[Rendered, Rendered], case: str) -> None:
    change, expected = PASSWORD_LEAKS[case]
    found = violations(
        "valkey-no-password-in-pod-spec", "region1", sessions(regions), mutated(sessions(regions), change)
    )
    assert len(found) >= 1 and all(m.startswith("StatefulSet sessions: container 'valkey' ") for m in found), found
    assert any(expected in m for m in found), found
    assert not any(PASSWORD in m for m in found), "a violation message must never show the password"


PASSWORD_LOOKALIKES = {
    "secret-ref": [{"name": "VALKEY_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}}],
    "path-to-password": [{"name": "VALKEY_PASSWORD_FILE", "value": "/etc/valkey/password"}],
    "switch": [{"name": "ALLOW_EMPTY_PASSWORD", "value": "no"}],
    "secret-name": [{"name": "VALKEY_SECRET_NAME", "value": "sessions-credentials"}],
    "shell-reference": [{"name": "VALKEY_URL", "value": "redis://sessions:6379"}],
}


@pytest.mark.parametrize("case", sorted(PASSWORD_LOOKALIKES))
def test_password_lookalikes_pass(regions: tuple[Rendered, Rendered], case: str) -> None:
    inputs = mutated(sessions(regions), lambda i: container(i).update(env=PASSWORD_LOOKALIKES[case]))
    assert violations("valkey-no-password-in-pod-spec", "region1", sessions(regions), inputs) == []


# Scripts that handle passwords the right way: through files, stdin and variables. The pod's own
# scripts (shipped in the config Secret, run as `sh /etc/valkey/<script>`) must pass if inlined.
SAFE_SCRIPTS = {
    "cat-into-env": 'REDISCLI_AUTH="$(cat /etc/valkey/probe-password)" valkey-cli --user probe ping',
    "probe.sh": pod_scripts.SCRIPTS["probe.sh"],
    "reloader.sh": pod_scripts.SCRIPTS["reloader.sh"],
    "login.sh": pod_scripts.SCRIPTS["login.sh"],
    "masterauth-from-file": (
        'REDISCLI_AUTH="$(cat "$RELOADER_PASSWORD_FILE")" valkey-cli --no-auth-warning --user reloader '
        '-x CONFIG SET masterauth <"$MASTERAUTH_FILE" | grep -qx OK || ok=0'
    ),
    "exporter": "redis_exporter --redis.user=metrics --redis.password-file=/etc/valkey-exporter/password.json",
    "variable": 'REDISCLI_AUTH="$VALKEY_PASSWORD" valkey-cli -h "$VALKEY_HOST" ping',
    "grep-a": "uname -a; ls -a /data",
}


@pytest.mark.parametrize("case", sorted(SAFE_SCRIPTS))
def test_scripts_that_read_passwords_from_files_pass(regions: tuple[Rendered, Rendered], case: str) -> None:
    inputs = mutated(
        sessions(regions), lambda i: container(i)["readinessProbe"]["exec"].update(command=sh(SAFE_SCRIPTS[case]))
    )
    assert violations("valkey-no-password-in-pod-spec", "region1", sessions(regions), inputs) == []


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("valkey/valkey:latest", False),
        ("valkey/valkey", False),
        ("registry.example.com:5000/valkey/valkey", False),
        ("registry.example.com:5000/valkey/valkey:8.1.8", True),
        ("valkey/valkey@sha256:" + "a" * 64, True),
        ("valkey/valkey:latest@sha256:" + "0" * 64, True),
        ("valkey/valkey@sha256:abc", False),
    ],
)
def test_image_must_be_pinned(regions: tuple[Rendered, Rendered], image: str, pinned: bool) -> None:
    inputs = mutated(sessions(regions), lambda i: container(i).update(image=image))
    found = violations("valkey-pinned-images", "region1", sessions(regions), inputs)
    assert found == (
        []
        if pinned
        else [
            f"StatefulSet sessions: container 'valkey' image '{image}' is not pinned: "
            "use a tag other than 'latest' or an @sha256 digest"
        ]
    )


def test_every_container_needs_a_memory_limit(regions: tuple[Rendered, Rendered]) -> None:
    def drop_limit(i: dict[str, Any]) -> None:
        del container(i)["resources"]["limits"]["memory"]

    found = violations("valkey-memory-limits", "region1", sessions(regions), mutated(sessions(regions), drop_limit))
    assert found == ["StatefulSet sessions: container 'valkey' sets no memory limit (resources.limits.memory)"]

    def sidecar_without_limit(i: dict[str, Any]) -> None:
        spec = i["spec"]["template"]["spec"]
        spec["initContainers"] = [{**copy.deepcopy(container(i)), "name": "init", "resources": {}}]

    found = violations(
        "valkey-memory-limits", "region1", sessions(regions), mutated(sessions(regions), sidecar_without_limit)
    )
    assert found == ["StatefulSet sessions: container 'init' sets no memory limit (resources.limits.memory)"]


def _pod_sc(i: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = i["spec"]["template"]["spec"]["securityContext"]
    return context


def _sc(i: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = container(i)["securityContext"]
    return context


SECURITY_CONTEXTS = {
    "privileged": (lambda i: _sc(i).update(privileged=True), "privileged is true"),
    "escalation-unset": (lambda i: _sc(i).pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation is not false"),
    "escalation-true": (
        lambda i: _sc(i).update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation is not false",
    ),
    "caps-not-dropped": (lambda i: _sc(i).pop("capabilities"), "capabilities.drop does not include ALL"),
    "caps-added": (
        lambda i: _sc(i).update(capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]}),
        "capabilities.add is not empty",
    ),
    "seccomp-unset": (
        lambda i: (_sc(i).pop("seccompProfile"), _pod_sc(i).pop("seccompProfile")),
        "seccompProfile.type is not RuntimeDefault or Localhost",
    ),
    "seccomp-unconfined": (
        lambda i: _sc(i).update(seccompProfile={"type": "Unconfined"}),
        "seccompProfile.type is not RuntimeDefault or Localhost",
    ),
    "root-allowed": (
        lambda i: (_sc(i).pop("runAsNonRoot"), _pod_sc(i).pop("runAsNonRoot")),
        "runAsNonRoot is not true",
    ),
    "root-user": (lambda i: _sc(i).update(runAsUser=0.0), "runAsUser is 0 (root)"),
    "writable-root": (lambda i: _sc(i).update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem is not true"),
    "no-security-context": (lambda i: container(i).pop("securityContext"), "allowPrivilegeEscalation is not false"),
    "host-network": (lambda i: i["spec"]["template"]["spec"].update(hostNetwork=True), "hostNetwork is true"),
}


@pytest.mark.parametrize("case", sorted(SECURITY_CONTEXTS))
def test_security_context_must_be_restricted(regions: tuple[Rendered, Rendered], case: str) -> None:
    change, expected = SECURITY_CONTEXTS[case]
    inputs = mutated(sessions(regions), change)
    found = violations("valkey-restricted-security-context", "region1", sessions(regions), inputs)
    assert len(found) == 1 and found[0].startswith("StatefulSet sessions: ") and expected in found[0], found


def test_pod_level_settings_are_inherited_by_containers(regions: tuple[Rendered, Rendered]) -> None:
    """runAsNonRoot and seccompProfile may come from the pod's securityContext, as in Kubernetes."""
    inputs = mutated(sessions(regions), lambda i: (_sc(i).pop("runAsNonRoot"), _sc(i).pop("seccompProfile")))
    assert violations("valkey-restricted-security-context", "region1", sessions(regions), inputs) == []


def with_dr_primary_labels(inputs: dict[str, Any], role: str = "primary") -> None:
    """The labels the program is to set on a DR instance's StatefulSet and config Secret."""
    inputs["metadata"].setdefault("labels", {}).update({vp.DR_LABEL: "true", vp.ROLE_LABEL: role})


def test_labelled_dr_primary_without_claim_template_fails(regions: tuple[Rendered, Rendered]) -> None:
    labelled = mutated(sessions(regions), with_dr_primary_labels)
    assert violations("valkey-dr-primary-persistence", "region1", sessions(regions), labelled) == []

    def no_claims(i: dict[str, Any]) -> None:
        with_dr_primary_labels(i)
        i["spec"]["volumeClaimTemplates"] = []
        i["spec"]["template"]["spec"]["volumes"].append({"name": "data", "emptyDir": {}})

    found = violations(
        "valkey-dr-primary-persistence", "region1", sessions(regions), mutated(sessions(regions), no_claims)
    )
    assert found == [
        "StatefulSet sessions is a DR primary (valkey.io/dr=true) but container 'valkey' does not keep /data "
        "on a volumeClaimTemplate (claims: none)"
    ]

    def data_elsewhere(i: dict[str, Any]) -> None:
        with_dr_primary_labels(i)
        next(m for m in container(i)["volumeMounts"] if m["name"] == "data")["mountPath"] = "/var/lib/valkey"

    found = violations(
        "valkey-dr-primary-persistence", "region1", sessions(regions), mutated(sessions(regions), data_elsewhere)
    )
    assert len(found) == 1 and "does not keep /data on a volumeClaimTemplate (claims: ['data'])" in found[0]


def test_labelled_replica_and_local_instances_need_no_claim_template(regions: tuple[Rendered, Rendered]) -> None:
    def replica_without_claims(i: dict[str, Any]) -> None:
        with_dr_primary_labels(i, role="replica")
        i["spec"]["volumeClaimTemplates"] = []

    inputs = mutated(sessions(regions), replica_without_claims)
    assert violations("valkey-dr-primary-persistence", "region1", sessions(regions), inputs) == []


def test_labelled_dr_primary_must_be_a_statefulset() -> None:
    pod = Captured("kubernetes:core/v1:Pod", "adhoc", consumer_like_pod("valkey/valkey:8.1.8-alpine"))
    with_dr_primary_labels(pod.inputs)
    found = violations("valkey-dr-primary-persistence", "region1", pod)
    assert found == [
        "Pod adhoc is a DR primary (valkey.io/dr=true) but is not a StatefulSet, so it has no "
        "volumeClaimTemplates for its data"
    ]


def conf_holder(secret_inputs: dict[str, Any]) -> dict[str, str]:
    data: dict[str, Any] = secret_inputs["stringData"]
    files: dict[str, str] = data["value"] if SECRET_SIG in data else data
    return files


def test_labelled_dr_primary_config_must_enable_aof(regions: tuple[Rendered, Rendered]) -> None:
    config = regions[0].of_type(SECRET)["sessions-config"]
    assert violations("valkey-dr-primary-aof", "region1", config, mutated(config, with_dr_primary_labels)) == []

    def aof_off(i: dict[str, Any]) -> None:
        with_dr_primary_labels(i)
        conf_holder(i)["valkey.conf"] += "appendonly no\n"  # the last directive wins

    found = violations("valkey-dr-primary-aof", "region1", config, mutated(config, aof_off))
    assert found == ["Secret sessions-config: valkey.conf says appendonly no; a DR primary needs yes"]

    def aof_unset(i: dict[str, Any]) -> None:
        with_dr_primary_labels(i)
        holder = conf_holder(i)
        holder["valkey.conf"] = "\n".join(x for x in holder["valkey.conf"].splitlines() if "appendonly" not in x)

    found = violations("valkey-dr-primary-aof", "region1", config, mutated(config, aof_unset))
    assert found == [
        "Secret sessions-config: valkey.conf says appendonly nothing (Valkey defaults to no); a DR primary needs yes"
    ]


def test_config_still_unknown_in_a_preview_is_not_passed_silently(regions: tuple[Rendered, Rendered]) -> None:
    """Before the passwords exist, a preview cannot see valkey.conf: the policy raises the SDK's
    UnknownValueError (reported as "can't run during preview"), and is checked again at `up`."""
    config = regions[0].of_type(SECRET)["sessions-config"]

    def unknown(i: dict[str, Any]) -> None:
        with_dr_primary_labels(i)
        i["stringData"] = UNKNOWN_STRING_VALUE

    with pytest.raises(UnknownValueError):
        violations("valkey-dr-primary-aof", "region1", config, mutated(config, unknown))


# --- the stack policy, which needs no labels ----------------------------------------------------


def stack_violations(
    rendered: Rendered, replace: dict[tuple[str, str], dict[str, Any]]
) -> list[tuple[str, str | None]]:
    return run(STACK_POLICIES["valkey-dr-endpoint-persistence"].validate, stack_args(rendered, replace))


def test_stack_policy_fails_a_dr_primary_without_claim_template(regions: tuple[Rendered, Rendered]) -> None:
    sts = sessions(regions)
    inputs = mutated(sts, lambda i: i["spec"].pop("volumeClaimTemplates"))
    found = stack_violations(regions[0], {(STATEFULSET, "sessions"): inputs})
    assert found == [
        (
            "StatefulSet sessions (DR primary behind Service sessions-external) container 'valkey' does not keep "
            "/data on a volumeClaimTemplate (claims: none)",
            urn("region1", STATEFULSET, "sessions"),
        )
    ]


def test_stack_policy_fails_a_dr_primary_without_aof(regions: tuple[Rendered, Rendered]) -> None:
    config = regions[0].of_type(SECRET)["feature-flags-config"]
    inputs = mutated(
        config, lambda i: conf_holder(i).update({"valkey.conf": conf_holder(i)["valkey.conf"] + "appendonly no\n"})
    )
    found = stack_violations(regions[0], {(SECRET, "feature-flags-config"): inputs})
    assert found == [
        (
            "StatefulSet feature-flags (DR primary behind Service feature-flags-external): valkey.conf says "
            "appendonly no; a DR primary needs yes",
            urn("region1", STATEFULSET, "feature-flags"),
        )
    ]


def test_stack_policy_follows_the_data_dir_of_valkey_conf(regions: tuple[Rendered, Rendered]) -> None:
    config = regions[0].of_type(SECRET)["sessions-config"]
    moved = mutated(
        config, lambda i: conf_holder(i).update({"valkey.conf": conf_holder(i)["valkey.conf"] + 'dir "/tmp"\n'})
    )
    found = stack_violations(regions[0], {(SECRET, "sessions-config"): moved})
    assert [m for m, _ in found] == [
        "StatefulSet sessions (DR primary behind Service sessions-external) container 'valkey' does not keep "
        "/tmp on a volumeClaimTemplate (claims: ['data'])"
    ]


def test_stack_policy_checks_persistence_while_the_config_is_unknown(regions: tuple[Rendered, Rendered]) -> None:
    """In a first preview the config Secret is unknown: the AOF part waits for `up`, the claim
    template is still checked."""
    unknown = mutated(
        regions[0].of_type(SECRET)["sessions-config"], lambda i: i.update(stringData=UNKNOWN_STRING_VALUE)
    )
    assert stack_violations(regions[0], {(SECRET, "sessions-config"): unknown}) == []
    no_claims = mutated(sessions(regions), lambda i: i["spec"].pop("volumeClaimTemplates"))
    found = stack_violations(regions[0], {(SECRET, "sessions-config"): unknown, (STATEFULSET, "sessions"): no_claims})
    assert len(found) == 1 and "does not keep /data on a volumeClaimTemplate" in found[0][0]


# --- other workloads ---------------------------------------------------------------------------


def consumer_like_pod(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "adhoc", "namespace": "databases"},
        "spec": {"containers": [{"name": "cli", "image": image, "command": sh("sleep infinity")}]},
    }


def test_non_valkey_pods_are_out_of_scope() -> None:
    redis = consumer_like_pod("redis:latest")
    redis["spec"]["containers"][0]["command"] = ["redis-server", "--requirepass", PASSWORD]
    for pod in (
        Captured("kubernetes:core/v1:Pod", "web", consumer_like_pod("nginx:latest")),
        Captured("kubernetes:core/v1:Pod", "redis", redis),
    ):
        for name in RESOURCE_POLICIES:
            assert violations(name, "dev", pod) == [], name


def test_a_valkey_deployment_is_checked_like_a_statefulset() -> None:
    template = consumer_like_pod("valkey/valkey:latest")
    deployment = Captured(
        "kubernetes:apps/v1:Deployment",
        "cli",
        {"metadata": {"name": "cli"}, "spec": {"template": {"metadata": {}, "spec": template["spec"]}}},
    )
    assert violations("valkey-pinned-images", "dev", deployment) == [
        "Deployment cli: container 'cli' image 'valkey/valkey:latest' is not pinned: "
        "use a tag other than 'latest' or an @sha256 digest"
    ]
    assert len(violations("valkey-memory-limits", "dev", deployment)) == 1
    assert len(violations("valkey-restricted-security-context", "dev", deployment)) == 1


# --- the real pack, over the analyzer protocol --------------------------------------------------


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    """``policy/__main__.py`` started as the CLI starts it (policy/ is the working directory and
    sys.path[0]); it prints its gRPC port and serves until killed."""
    process = subprocess.Popen(
        [sys.executable, "-u", "__main__.py"],
        cwd=POLICY_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        port = process.stdout.readline().strip() if ready else ""
        if not port.isdigit():
            process.kill()
            pytest.fail(f"the policy pack did not start: {process.stderr.read()}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.kill()
        process.wait(timeout=10)


def _struct(inputs: dict[str, Any]) -> struct_pb2.Struct:
    """Properties as the engine sends them: secrets stay in their envelopes (KeepSecrets)."""
    struct = struct_pb2.Struct()
    struct.update(copy.deepcopy(inputs))
    return struct


def analyze(analyzer: Any, stack: str, c: Captured, inputs: dict[str, Any] | None = None) -> list[Any]:
    request = analyzer_pb2.AnalyzeRequest(
        type=c.typ,
        urn=urn(stack, c.typ, c.name),
        name=c.name,
        properties=_struct(c.inputs if inputs is None else inputs),
    )
    return list(analyzer.Analyze(request).diagnostics)


def test_pack_serves_its_policies_as_mandatory(analyzer: Any) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "valkey-policies"
    assert sorted(p.name for p in info.policies) == sorted(p.name for p in vp.POLICIES)
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}


def test_pack_passes_the_real_render_and_blocks_a_mutation(analyzer: Any, regions: tuple[Rendered, Rendered]) -> None:
    for rendered in regions:
        for c in rendered.resources.values():
            if c.typ.startswith("kubernetes:"):
                assert analyze(analyzer, rendered.stack, c) == [], c.name
        resources = [
            analyzer_pb2.AnalyzerResource(
                type=c.typ, urn=urn(rendered.stack, c.typ, c.name), name=c.name, properties=_struct(c.inputs)
            )
            for c in rendered.resources.values()
        ]
        assert list(analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources)).diagnostics) == []

    leaked = mutated(sessions(regions), lambda i: container(i, "valkey").update(args=["--requirepass", PASSWORD]))
    [diagnostic] = analyze(analyzer, "region1", sessions(regions), leaked)
    assert diagnostic.policyName == "valkey-no-password-in-pod-spec"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert "passes --requirepass" in diagnostic.message and PASSWORD not in diagnostic.message


def test_pack_reads_the_config_secret_through_its_secret_envelope(
    analyzer: Any, regions: tuple[Rendered, Rendered]
) -> None:
    config = regions[0].of_type(SECRET)["sessions-config"]
    assert SECRET_SIG in config.inputs["stringData"], "the test must send the envelope the engine sends"

    def aof_off(i: dict[str, Any]) -> None:
        with_dr_primary_labels(i)
        conf_holder(i)["valkey.conf"] += "appendonly no\n"

    [diagnostic] = analyze(analyzer, "region1", config, mutated(config, aof_off))
    assert diagnostic.policyName == "valkey-dr-primary-aof"
    assert "valkey.conf says appendonly no" in diagnostic.message


def test_the_pack_keys_on_the_labels_and_annotation_the_program_writes(regions: tuple[Rendered, Rendered]) -> None:
    """The pack runs on its own (its own requirements), so it names the DR and role labels and the
    external-dns annotation itself: they must be the ones the rendered objects carry."""
    dr = _load("dr")
    r1, _ = regions
    statefulset = r1.statefulset("sessions")
    assert statefulset["metadata"]["labels"][dr.DR_LABEL] == "true"
    assert statefulset["metadata"]["labels"][dr.ROLE_LABEL] == "primary"
    assert dr.EXTERNAL_DNS_HOSTNAME in r1.manifest("Service", "sessions-external")["metadata"]["annotations"]
