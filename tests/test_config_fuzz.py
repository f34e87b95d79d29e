"""Property test: random mutations of the stack files either stop cleanly or render safely.

Each case changes one to three keys of ``Pulumi.region1.yaml`` or ``Pulumi.region2.yaml`` (any key
the models know, at any depth, plus misspelt ones) to a value drawn from types, bounds, unicode,
line breaks, empty values and near-valid look-alikes, runs the real program under the mock engine,
and requires one of two outcomes:

- a ``RunError`` whose message names a config key, with no Kubernetes object registered; or
- a render whose every object passes strict schema validation and the API server's name checks,
  and whose ``valkey.conf`` and ACL file hold only the lines the program writes (no injected
  directive, no extra user, no unknown ACL rule).

Anything else - another exception, a RunError after objects were registered - fails the test with
the mutation that caused it. The case count is ``FUZZ_EXAMPLES`` (default 200, which keeps CI
under its 30 minutes), drawn from a fixed seed so CI runs the same cases every time; raise it
locally to search further (400 and 1,000 found nothing more at this commit).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from functools import cache
from typing import Any

import kubernetes_validate
import pulumi
from apiserver_names import name_problems
from crd_validate import KNOWN_KINDS, validate_custom_resource
from harness import STACK_REFERENCE, CaptureMocks, Rendered, render, stack_file_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.config.models import StackConfig
from components.config.valkey_commands import known_categories, known_commands

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
PRIMARY = "organization/valkey/region1"
USERS = {"default", "replication", "probe", "reloader", "admin", "metrics", "sentinel", "labeler"}


class AnyStack(dict[str, Rendered]):
    """Every referenced stack exists and exports what region 1 exports (the real engine answers an
    unknown stack name with its own error, before the program runs on)."""

    def get(self, key: str, default: Any = None) -> Rendered:
        return self[PRIMARY]


@cache
def region1() -> Rendered:
    return render("region1")


# --- Where a mutation can land: every key the models know, at every depth ---------------------


def model_paths() -> list[tuple[str, ...]]:
    schema = StackConfig.model_json_schema(by_alias=True)
    instances = [*sorted(stack_file_config("region1")["instances"]), "cache-new"]
    paths: list[tuple[str, ...]] = []

    def walk(node: dict[str, Any], prefix: tuple[str, ...]) -> None:
        node = {**node, **next((a for a in node.get("anyOf", []) if "$ref" in a), {})}
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        paths.append(prefix)
        if "properties" in node:
            for key, sub in node["properties"].items():
                walk(sub, (*prefix, key))
            paths.append((*prefix, "typoKey"))
        elif node.get("type") == "array":
            paths.append((*prefix, "0"))
        elif isinstance(node.get("additionalProperties"), dict):
            names = instances if prefix == ("instances",) else ["app.kubernetes.io/team", "Bad Key"]
            for name in names:
                walk(node["additionalProperties"], (*prefix, name))

    walk(schema, ())
    return [p for p in paths if p]


PATHS = model_paths()

# --- What a mutation writes ------------------------------------------------------------------

TRICKY = [
    "",
    " ",
    "0",
    "-1",
    "1e3",
    "0x10",
    "2Gi",
    "64Mi",
    "512m",
    "2gb garbage",
    "2Gi\nmaxmemory 0",
    "1.5",
    "0.5s",
    "30s",
    "1h30m",
    "PT1H",
    "10s\n",
    " 6379",
    "６３７９",
    "１Gi",
    "a" * 300,
    "a" * 64,
    "a.b",
    "A",
    "fast.ssd",
    "Valkey",
    "x\nuser evil on nopass ~* &* +@all",
    'x"\nreplicaof evil.example.com 6379',
    "x\\",
    "line\u2028break",
    "carriage\rreturn",
    "nul\0byte",
    "\u202eevil",
    "é",
    "🙂",
    "@all",
    "+@all",
    "~*",
    "flushal",
    "@dangerous",
    "client|kill",
    "https://example.com/runbook",
    "javascript:alert(1)",
    "10.0.0.0/8",
    "10.0.0.1/8",
    "::/0",
    "organization/valkey/region1",
    "valkey/valkey:9.1.2-alpine",
    "valkey/valkey:latest",
    "true",
    "yes",
    "null",
    "{}",
    "[]",
]
scalars = st.one_of(
    st.sampled_from(TRICKY),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 6379, 9121, 65536, 2**63, 2**64 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=40),
)
# Values some key accepts, so that a fair share of cases gets past validation and renders.
PLAUSIBLE = [
    "1Gi", "256Mi", "4Gi", "2G", 1073741824, "512KiB", "30s", "5m", "1h", 60, "0s", "7d",
    "fast.ssd", "team-a", "apps", "monitoring", "web", True, False, 1, 2, 3, "250m", 0.5, "1", 6380,
    "10.30.0.0/16", "https://runbooks.example.com/valkey", "@dangerous", "client|kill", "cache.example.com",
    "allkeys-lfu", "volatile-ttl", "Issuer", 0.75, "sessions", "primary", "replica",
    {"namespace": "apps"}, {"generation": 2, "acceptPrevious": True}, {"enabled": False}, ["10.30.0.0/16"],
    [{"namespace": "web", "podLabels": {"app": "web"}}], {"name": "ca-issuer", "kind": "Issuer"},
]  # fmt: skip
values = st.one_of(
    st.none(),  # removes the key
    st.sampled_from(PLAUSIBLE),
    st.sampled_from(TRICKY),
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["namespace", "name", "enabled", "x", "generation"]), scalars, max_size=2),
)
SIZES = ["1Gi", "256Mi", "4Gi", "2G", 1073741824, "512MiB"]
DURATIONS = ["30s", "5m", "1h", 60, "PT10M", "1h30m"]
# Values the key at the end of a path accepts: half of the mutations draw from here.
VALID_BY_KEY: dict[str, list[Any]] = {
    "maxmemory": SIZES, "size": ["8Gi", "20Gi", "1Ti"], "memory": ["8Gi", "16Gi"], "writeRate": ["512KiB", "4MiB"],
    "replicationLagBytes": SIZES, "ttl": DURATIONS, "outageTolerance": DURATIONS, "scrapeInterval": ["15s", "1m"],
    "replicationLagSeconds": ["20s", "1m"], "linkDownFor": DURATIONS, "replicationLagFor": DURATIONS,
    "noReplicaFor": DURATIONS, "memoryFor": DURATIONS, "downFor": ["0s", "1m"], "evictionWindow": ["10m", "1h"],
    "memoryRatio": [0.5, 0.95, "0.8"], "port": [6380, "6381", 7000], "cpu": [1, "500m", 0.25], "cpuLimit": [2, "4"],
    "storageClass": ["fast.ssd", "gp3"], "maxmemoryPolicy": ["allkeys-lfu", "volatile-ttl", "noeviction"],
    "dr": [True, False], "persistence": [True, False], "enabled": [True, False], "prometheusOperator": [False],
    "createNamespace": [False], "protect": [False, True], "blockVoluntaryEviction": [False],
    "namespace": ["cache", "team-a"], "region": ["eu-west", "r1"], "clusterDomain": ["cluster.example"],
    "externalDomain": ["dr.example.net"], "externalHost": ["cache.dr.example.net"], "image": ["valkey/valkey:9.1.2"],
    "peerCidrs": [["10.30.0.0/16", "fd00::/8"]], "deniedCommands": [["@dangerous"], ["flushall", "sort_ro"]],
    "generation": [2, 3], "acceptPrevious": [True], "runbookUrl": ["https://runbooks.example.com/valkey"],
    "labels": [{"release": "prometheus"}],
    "annotations": [{"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}],
    "loadBalancerClass": ["service.k8s.aws/nlb"], "clients": [[{"namespace": "web", "podLabels": {"app": "web"}}]],
    "monitoringNamespace": ["observability"], "kubeContext": ["prod-eu"], "existingSecret": ["valkey.tls"],
    "issuer": [{"name": "ca.issuer", "kind": "Issuer"}], "role": ["primary", "replica"], "kind": ["Issuer"],
    "cache-new": [{"dr": False}, {"dr": False, "maxmemory": "64Mi", "persistence": False}],
}  # fmt: skip
mutation = st.sampled_from(PATHS).flatmap(
    lambda path: st.tuples(
        st.just(path),
        st.one_of(st.sampled_from(VALID_BY_KEY[path[-1]]), values) if path[-1] in VALID_BY_KEY else values,
    )
)


def mutated(config: dict[str, Any], changes: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    config = json.loads(json.dumps(config))
    for path, change in changes:
        node: Any = config
        for part in path[:-1]:
            if isinstance(node, list):
                if not node:
                    node.append({})
                node = node[0]
                continue
            if not isinstance(node.get(part), dict | list):
                node[part] = {}
            node = node[part]
        last = path[-1]
        value = copy.deepcopy(change)  # the strategies share their sample objects between cases
        if isinstance(node, list):
            node[:1] = [] if value is None else [value]
        elif value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return config


# --- What a safe render looks like ---------------------------------------------------------------


@cache
def valid_manifest(text: str) -> None:
    """Strict schema validation, cached by content: most objects of a case equal the baseline's."""
    manifest = json.loads(text)
    if (manifest["apiVersion"], manifest["kind"]) in KNOWN_KINDS:
        validate_custom_resource(manifest)
    else:
        kubernetes_validate.validate(manifest, "1.37", strict=True)


@cache
def directives() -> frozenset[str]:
    """Every directive the program writes, across the configurations it renders differently."""
    seen: set[str] = set()
    renders = [region1(), render("region2", references={PRIMARY: region1()})]
    # A single pod replicating across regions (the stack files run groups there now, whose
    # replicaof is written at start by start.sh, not into valkey.conf).
    renders.append(render("region2", {"instances.sessions.replicas": 1}, references={PRIMARY: region1()}))
    renders.append(render("region1", {"tls": {"enabled": False}}))
    local = {"instances": {"c": {"dr": False, "persistence": False}}, "monitoring": {"enabled": False}}
    renders.append(render("region1", local))
    for rendered in renders:
        for conf in config_files(rendered, "valkey.conf"):
            seen |= {line.split(" ", 1)[0] for line in conf.splitlines() if line and not line.startswith("#")}
    return frozenset(seen)


def config_files(manifests: Rendered | list[dict[str, Any]], key: str) -> list[str]:
    """Every rendered file ``key`` (valkey.conf, users.acl) of the config Secrets."""
    if isinstance(manifests, Rendered):
        manifests = manifests.manifests()
    secrets = [m for m in manifests if m["kind"] == "Secret"]
    return [s["stringData"][key] for s in secrets if key in s.get("stringData", {})]


ACL_RULE = re.compile(r"[+-](@?[a-z_|-]+)|~\*|&\*|&__sentinel__:hello")
"""A command or category rule, all keys or channels, or the one channel the Sentinels' user may use."""
ACL_LINE = re.compile(r"user (?P<user>\S+) on (?P<hashes>(?:#[0-9a-f]{64} )+)resetchannels (?P<rules>.+)")


def file_problems(rendered: Rendered | list[dict[str, Any]]) -> list[str]:
    problems = []
    for conf in config_files(rendered, "valkey.conf"):
        names = [line.split(" ", 1)[0] for line in conf.splitlines() if line and not line.startswith("#")]
        problems += [f"valkey.conf: unknown directive {n!r}" for n in set(names) - directives()]
        problems += [f"valkey.conf: {n} set twice" for n in set(names) if names.count(n) > 1]
        problems += ["valkey.conf: a carriage return or NUL"] if re.search(r"[\r\0]", conf) else []
    for acl in config_files(rendered, "users.acl"):
        users = []
        for line in acl.splitlines():
            match = ACL_LINE.fullmatch(line)
            if match is None:
                problems.append(f"users.acl: line {line!r}")
                continue
            users.append(match["user"])
            for rule in match["rules"].split(" "):
                rule_match = ACL_RULE.fullmatch(rule)
                name = rule_match and rule_match.group(1)
                known = known_commands() | known_categories() | {"all"}
                if rule_match is None or (name and name.lstrip("@") not in known):
                    problems.append(f"users.acl: rule {rule!r}")
        if sorted(users) != sorted(set(users)) or not set(users) <= USERS:
            problems.append(f"users.acl: users {users}")
    return problems


def outcome(stack: str, config: dict[str, Any]) -> None:
    """Render ``config`` for ``stack``; an AssertionError says which of the two outcomes it missed."""
    mocks = CaptureMocks()
    references = AnyStack({PRIMARY: region1()})
    try:
        rendered = render(stack, config, references=references, from_stack_file=False, mocks=mocks)
    except pulumi.RunError as error:
        message = str(error)
        assert re.search(r"^  valkey:\S+: given |^valkey:primaryStack: ", message, flags=re.MULTILINE), message
        registered = {typ for typ, _ in mocks.resources}
        assert registered <= {STACK_REFERENCE}, f"RunError after registering {sorted(registered)}: {message}"
        return
    safe_render(rendered)


def safe_render(rendered: Rendered) -> None:
    manifests = rendered.manifests()
    for manifest in manifests:
        valid_manifest(json.dumps(manifest, sort_keys=True))
        assert name_problems(manifest) == []
    assert file_problems(manifests) == []


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(stack=st.sampled_from(["region1", "region2"]), changes=st.lists(mutation, min_size=1, max_size=3))
def test_a_mutated_stack_file_stops_cleanly_or_renders_safely(
    stack: str, changes: list[tuple[tuple[str, ...], Any]]
) -> None:
    outcome(stack, mutated(stack_file_config(stack), changes))


EXPORT_PATHS = [
    ("caBundle",),
    ("instances", "sessions", "externalHost"),
    ("instances", "sessions", "port"),
    ("instances", "sessions", "tls"),
    ("instances", "sessions", "maxmemoryBytes"),
    ("instances", "feature-flags", "externalHost"),
    ("replicationCredentials", "sessions", "username"),
    ("replicationCredentials", "sessions", "password"),
    ("replicationCredentials", "feature-flags"),
    ("instances",),
]


@settings(max_examples=max(EXAMPLES // 2, 20), deadline=None, derandomize=True, database=None)
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(EXPORT_PATHS), st.one_of(st.sampled_from(TRICKY), values)), min_size=1, max_size=2
    )
)
def test_mutated_primary_outputs_stop_region2_cleanly_or_render_safely(
    changes: list[tuple[tuple[str, ...], Any]],
) -> None:
    doctored = dataclasses.replace(region1(), exports=mutated(region1().exports, changes))
    mocks = CaptureMocks()
    try:
        rendered = render("region2", references={PRIMARY: doctored}, mocks=mocks)
    except pulumi.RunError as error:
        assert re.search(r"valkey:\S+: ", str(error)), str(error)
        assert {typ for typ, _ in mocks.resources} <= {STACK_REFERENCE}
        return
    safe_render(rendered)


def test_the_checks_of_a_safe_render_can_fail() -> None:
    """An injected directive, a repeated one and an extra ACL user are each caught."""
    manifests = region1().manifests()
    (secret,) = [m for m in manifests if m["metadata"]["name"] == "sessions-config"]
    files = secret["stringData"]
    files["valkey.conf"] += "maxmemory 0\nloadmodule /tmp/evil.so\n"
    files["users.acl"] += "user evil on #" + "0" * 64 + " resetchannels ~* &* +@all\n"
    assert sorted(file_problems(manifests)) == [
        "users.acl: users ['default', 'replication', 'probe', 'reloader', 'admin', 'metrics', 'sentinel', "
        "'labeler', 'evil']",
        "valkey.conf: maxmemory set twice",
        "valkey.conf: unknown directive 'loadmodule'",
    ]
